#!/usr/bin/env node
'use strict';
// The CLI is compiled from kernel/cli by `npm run build` (run automatically by `npm install`).
require('../dist/kernel/cli/index.js').main(process.argv).catch((err) => {
  process.stderr.write(`chromatune: ${err && err.message ? err.message : err}\n`);
  process.exit(1);
});
