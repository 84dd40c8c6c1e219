#!/usr/bin/env node
'use strict';
// Installs the `chromatune` Jupyter kernel spec: this Node running this project's kernel
// (dist/kernel/notebook/main.js, built by `npm run build`). Per-user by default; `--prefix DIR` (or
// CHROMATUNE_KERNEL_PREFIX=DIR) installs into DIR/share/jupyter/kernels, for CI and virtual environments
// (then JUPYTER_PATH=DIR/share/jupyter finds it). Jupyter's Python (jupyter_client) does the install:
// CHROMATUNE_PYTHON, else /usr/bin/python3, else python3 on PATH.
// `--auto` is npm's postinstall: without Jupyter it says so and exits 0; it never fails an install.
const { spawnSync } = require('child_process');
const path = require('path');

const root = path.resolve(__dirname, '..');
const auto = process.argv.includes('--auto');
const prefixAt = process.argv.indexOf('--prefix');
const prefix = prefixAt >= 0 ? process.argv[prefixAt + 1] : process.env.CHROMATUNE_KERNEL_PREFIX || '';

const spec = {
  argv: [process.execPath, path.join(root, 'dist', 'kernel', 'notebook', 'main.js'), '{connection_file}'],
  display_name: 'TypeScript (ChromaTune)',
  language: 'typescript',
  interrupt_mode: 'signal',
  metadata: { debugger: false },
};

// Writes kernel.json into a temporary folder and lets jupyter_client copy it where Jupyter looks.
const INSTALL = `
import json, os, sys, tempfile
from jupyter_client.kernelspec import KernelSpecManager
spec, prefix = json.loads(sys.argv[1]), sys.argv[2] or None
with tempfile.TemporaryDirectory() as d:
    os.chmod(d, 0o755)
    with open(os.path.join(d, "kernel.json"), "w") as f:
        json.dump(spec, f, indent=1)
    print(KernelSpecManager().install_kernel_spec(d, "chromatune", user=prefix is None, prefix=prefix))
`;

function jupyterPython() {
  const candidates = [process.env.CHROMATUNE_PYTHON, '/usr/bin/python3', 'python3'].filter(Boolean);
  return candidates.find((py) => spawnSync(py, ['-c', 'import jupyter_client'], { stdio: 'ignore' }).status === 0);
}

function main() {
  if (prefixAt >= 0 && !prefix) throw new Error('--prefix needs a folder');
  const python = jupyterPython();
  if (!python) {
    const msg = 'Jupyter not found (no python3 with jupyter_client); notebook kernel not installed. Install Jupyter, then `npm run kernel:install`.';
    if (auto) return console.log(`chromatune: ${msg}`);
    throw new Error(msg);
  }
  const r = spawnSync(python, ['-c', INSTALL, JSON.stringify(spec), prefix ? path.resolve(prefix) : ''], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`installing the kernel spec failed:\n${r.stderr || r.error}`);
  console.log(`chromatune: Jupyter kernel "chromatune" (${spec.display_name}) installed in ${r.stdout.trim()}`);
  if (prefix) console.log(`chromatune: Jupyter finds it with JUPYTER_PATH=${path.resolve(prefix, 'share', 'jupyter')}`);
}

try {
  main();
} catch (e) {
  console.error(`chromatune: ${e.message}`);
  process.exit(auto ? 0 : 1);
}
