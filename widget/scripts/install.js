#!/usr/bin/env node
'use strict';
// Installs the built extension (widget/labextension, from `npm run build:widget`) as a prebuilt
// JupyterLab extension: a copy at <jupyter data dir>/labextensions/chromatune-widget, where JupyterLab 4
// finds prebuilt extensions at startup (no rebuild of JupyterLab, no Python package).
//
//   npm run widget:install                      the user's data dir (`jupyter --data-dir`)
//   npm run widget:install -- --prefix DIR      DIR/share/jupyter/labextensions (a virtual environment's
//                                               prefix, or any DIR with JUPYTER_PATH=DIR/share/jupyter)
//   npm run widget:install -- --link            a symbolic link instead of a copy (rebuilds show on reload)
//   npm run widget:install -- --uninstall       removes it again
//
// Check with `jupyter labextension list` (lists "chromatune-widget ... enabled OK").
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const widgetDir = path.resolve(__dirname, '..');
const pkg = JSON.parse(fs.readFileSync(path.join(widgetDir, 'package.json'), 'utf8'));
const built = path.join(widgetDir, pkg.jupyterlab.outputDir);
const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const option = (name) => {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  if (!args[i + 1] || args[i + 1].startsWith('--')) throw new Error(`${name} needs a folder`);
  return args[i + 1];
};

/** Jupyter's per-user data dir: what `jupyter --data-dir` prints, else jupyter_core's rule. */
function userDataDir() {
  if (process.env.JUPYTER_DATA_DIR) return process.env.JUPYTER_DATA_DIR;
  for (const [cmd, cmdArgs] of [['jupyter', ['--data-dir']], ['/usr/bin/python3', ['-m', 'jupyter', '--data-dir']]]) {
    const r = spawnSync(cmd, cmdArgs, { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  }
  const home = os.homedir();
  if (process.platform === 'darwin') return path.join(home, 'Library', 'Jupyter');
  if (process.platform === 'win32') return path.join(process.env.APPDATA || home, 'jupyter');
  return path.join(process.env.XDG_DATA_HOME || path.join(home, '.local', 'share'), 'jupyter');
}

function main() {
  const prefix = option('--prefix');
  const dataDir = prefix ? path.resolve(prefix, 'share', 'jupyter') : userDataDir();
  const dest = path.join(dataDir, 'labextensions', pkg.name);
  fs.rmSync(dest, { recursive: true, force: true });
  if (flag('--uninstall')) {
    console.log(`chromatune: removed ${dest}`);
    return;
  }
  const meta = path.join(built, 'package.json');
  if (!fs.existsSync(meta) || !JSON.parse(fs.readFileSync(meta, 'utf8')).jupyterlab?._build) {
    throw new Error(`the extension is not built (${built} has no build): run \`npm run build:widget\` first`);
  }
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  if (flag('--link')) fs.symlinkSync(built, dest, 'junction');
  else fs.cpSync(built, dest, { recursive: true });
  console.log(`chromatune: JupyterLab extension ${pkg.name} ${flag('--link') ? 'linked' : 'installed'} at ${dest}`);
  if (prefix) console.log(`chromatune: JupyterLab finds it in that prefix's environment, or anywhere with JUPYTER_PATH=${dataDir}`);
  console.log('chromatune: restart JupyterLab (or reload the page) to load it; `jupyter labextension list` shows it');
}

try {
  main();
} catch (e) {
  console.error(`chromatune: ${e.message}`);
  process.exit(1);
}
