#!/usr/bin/env node
'use strict';
// Builds the optional OpenBLAS matmul addon (kernel/backend/native/blas.cc) with g++ directly: no
// node-gyp, which would try to download Node's headers. Without g++, Node's headers or OpenBLAS
// (Debian: libopenblas-dev) it prints why and exits 0: the library then runs on pure wasm.
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const dir = path.join(__dirname, '..', 'kernel', 'backend', 'native');
const out = path.join(dir, 'blas.node');
const prefix = path.resolve(path.dirname(process.execPath), '..');
const nodeInclude = [process.env.npm_config_nodedir, prefix, '/usr', '/usr/local']
  .filter(Boolean)
  .map((p) => path.join(p, 'include', 'node'))
  .find((p) => fs.existsSync(path.join(p, 'node_api.h')));
const blasInclude = ['/usr/include/x86_64-linux-gnu', '/usr/include/aarch64-linux-gnu', '/usr/include/openblas', '/usr/include'].find((p) =>
  fs.existsSync(path.join(p, 'cblas.h')),
);

function skip(why) {
  console.warn(`chromatune: native matmul not built (${why}); training uses the wasm matmul (slower).`);
  process.exit(0);
}

if (!nodeInclude) skip("Node's headers (node_api.h) not found");
if (!blasInclude) skip('cblas.h not found: install libopenblas-dev');
try {
  execFileSync('g++', ['-O3', '-shared', '-fPIC', '-std=c++17', `-I${nodeInclude}`, `-I${blasInclude}`, path.join(dir, 'blas.cc'), '-o', `${out}.tmp`, '-lopenblas'], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  fs.renameSync(`${out}.tmp`, out);
  console.log(`chromatune: built ${path.relative(process.cwd(), out)} (OpenBLAS sgemm)`);
} catch (e) {
  skip(`g++ failed: ${e.message.split('\n')[0]}`);
}
