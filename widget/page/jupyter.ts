/**
 * A real Jupyter server for the widget's page (see harness.ts): Debian's `jupyter server` with the
 * project's `chromatune` kernel spec installed into a temporary prefix, a token, and the page's origin
 * allowed, so that a page on another port connects to it with @jupyterlab/services as JupyterLab does.
 * Also what the kernel and notebook tests share with it: the check that Jupyter is there, the kernel
 * installed into a temporary prefix, and running Jupyter's Python. Node side only.
 */
import { spawn, spawnSync, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { randomBytes } from 'crypto';
import { ROOT_DIR } from './harness';

/** Jupyter's Python: the `python3` first on PATH may lack Jupyter. */
export const JUPYTER_PYTHON = '/usr/bin/python3';

/** Throws, saying what to install, when JUPYTER_PYTHON cannot import `modules`; `purpose` says what needs them. */
export function requireJupyter(modules: string[], purpose: string, packages: string[]): void {
  const r = spawnSync(JUPYTER_PYTHON, ['-c', `import ${modules.join(', ')}`], { encoding: 'utf8' });
  if (r.status !== 0) {
    const why = (r.stderr || String(r.error)).trim().split('\n').pop();
    throw new Error(`Jupyter is missing for ${JUPYTER_PYTHON} (${why}): ${purpose}. Install it with: apt-get install ${packages.join(' ')}`);
  }
}

export const requireJupyterServer = (): void =>
  requireJupyter(['jupyter_server', 'jupyter_client'], 'these tests run a real Jupyter server', ['jupyter-server', 'jupyter-client', 'python3-ipykernel', 'chromium']);

/** Installs the `chromatune` kernel spec into `prefix` with scripts/kernel-install.js; returns the JUPYTER_PATH entry. */
function installKernelSpec(prefix: string): string {
  const r = spawnSync(process.execPath, [path.join(ROOT_DIR, 'scripts', 'kernel-install.js'), '--prefix', prefix], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`installing the chromatune kernel spec failed:\n${r.stderr}`);
  return path.join(prefix, 'share', 'jupyter');
}

export interface KernelPrefix {
  /** The temporary prefix (remove it when done); the spec is at share/jupyter/kernels/chromatune. */
  dir: string;
  /** Its JUPYTER_PATH entry. */
  jupyterPath: string;
  /** This environment with Jupyter finding the kernel there, and a data folder of its own. */
  env: NodeJS.ProcessEnv;
}

/**
 * A temporary Jupyter prefix with the `chromatune` kernel installed, as the kernel, notebook and
 * widget-server tests run it: dist/kernel rebuilt first when a source is newer.
 */
export function kernelPrefix(name: string): KernelPrefix {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `chromatune-${name}-`));
  try {
    buildKernelIfStale(dir);
    const jupyterPath = installKernelSpec(dir);
    return { dir, jupyterPath, env: { ...process.env, JUPYTER_PATH: jupyterPath, JUPYTER_DATA_DIR: path.join(dir, 'data'), PYTHONDONTWRITEBYTECODE: '1' } };
  } catch (e) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Runs JUPYTER_PYTHON with `args` to its end, collecting its output; `input` goes to its stdin. */
export function runPython(args: string[], o: { cwd: string; env: NodeJS.ProcessEnv; input?: string }): Promise<Ran> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const p = spawn(JUPYTER_PYTHON, args, { cwd: o.cwd, env: o.env });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr, seconds: (Date.now() - t0) / 1000 }));
    p.stdin.end(o.input ?? '');
  });
}

/** A free local port: bound and released (jupyter is told not to retry others, so a race fails loudly). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export interface JupyterServer {
  /** e.g. http://127.0.0.1:PORT (no trailing slash) */
  url: string;
  wsUrl: string;
  token: string;
  rootDir: string;
  process: ChildProcess;
  /** The server's log so far (stderr and stdout), for failure messages. */
  log(): string;
  /** Authorised request to the REST API (path like '/api/kernels'). */
  api(pathname: string, init?: RequestInit): Promise<Response>;
  /** Shuts its kernels down through the API, then stops the server's process group. */
  stop(): Promise<void>;
}

export interface JupyterServerOptions {
  /** Folders with a kernels/ folder (JUPYTER_PATH). */
  jupyterPath: string[];
  /** The server's root: notebooks and kernels' working directories. */
  rootDir: string;
  /** Origins allowed to call the API and open kernel websockets (the page's). */
  allowOrigin: string;
  /** How long to wait for /api/status to answer. */
  timeoutMs?: number;
}

/** A pause that does not keep Node running on its own (races against a process's exit). */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms).unref());

/** Starts `jupyter server` in its own process group and waits until it answers /api/status with the token. */
export async function startJupyterServer(o: JupyterServerOptions): Promise<JupyterServer> {
  requireJupyterServer();
  const port = await freePort();
  const token = randomBytes(24).toString('hex');
  // Its own config, data and runtime folders: nothing from the user's Jupyter setup leaks in.
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'chromatune-jupyter-'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    JUPYTER_PATH: o.jupyterPath.join(path.delimiter),
    JUPYTER_CONFIG_DIR: path.join(home, 'config'),
    JUPYTER_DATA_DIR: path.join(home, 'data'),
    JUPYTER_RUNTIME_DIR: path.join(home, 'runtime'),
    PYTHONDONTWRITEBYTECODE: '1',
  };
  const args = [
    '-m', 'jupyter_server', '--no-browser',
    '--ServerApp.ip=127.0.0.1', `--ServerApp.port=${port}`, '--ServerApp.port_retries=0',
    // ServerApp.token: jupyter_server 1.x (Debian 12) knows no IdentityProvider; 2.x still reads it.
    `--ServerApp.token=${token}`, `--ServerApp.allow_origin=${o.allowOrigin}`,
    `--ServerApp.root_dir=${o.rootDir}`,
  ];
  if (process.getuid?.() === 0) args.push('--allow-root');
  const child = spawn(JUPYTER_PYTHON, args, { cwd: o.rootDir, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.on('data', (d) => (log += d));
  child.stderr!.on('data', (d) => (log += d));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let gone = false;
  void exited.then(() => (gone = true));

  const url = `http://127.0.0.1:${port}`;
  const api = (pathname: string, init: RequestInit = {}) =>
    fetch(`${url}${pathname}`, { ...init, headers: { ...(init.headers as Record<string, string>), authorization: `token ${token}` } });

  const killGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      // already gone
    }
  };

  const stop = async () => {
    if (!gone) {
      // Kernels run in sessions of their own (jupyter_client starts them so): shut them down through the server.
      try {
        const kernels = (await (await api('/api/kernels', { signal: AbortSignal.timeout(5000) })).json()) as { id: string }[];
        await Promise.all(kernels.map((k) => api(`/api/kernels/${k.id}`, { method: 'DELETE', signal: AbortSignal.timeout(10000) }).catch(() => undefined)));
      } catch {
        // the server no longer answers: stop it anyway
      }
      killGroup('SIGTERM');
      const stopped = await Promise.race([exited.then(() => true), sleep(10000).then(() => false)]);
      if (!stopped) {
        killGroup('SIGKILL');
        await exited;
      }
    }
    fs.rmSync(home, { recursive: true, force: true });
  };

  const deadline = Date.now() + (o.timeoutMs ?? 30000);
  for (;;) {
    if (gone) {
      await stop();
      throw new Error(`jupyter server exited before answering (exit code ${child.exitCode}):\n${log}`);
    }
    try {
      const r = await api('/api/status', { signal: AbortSignal.timeout(2000) });
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`jupyter server did not answer ${url}/api/status within ${o.timeoutMs ?? 30000} ms:\n${log}`);
    }
    await sleep(200);
  }
  return { url, wsUrl: `ws://127.0.0.1:${port}`, token, rootDir: o.rootDir, process: child, log: () => log, api, stop };
}

/** Every kernel/ source whose compiled file in dist/ is missing or older. */
function staleSources(dir = path.join(ROOT_DIR, 'kernel')): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const src = path.join(dir, e.name);
    if (e.isDirectory()) return staleSources(src);
    if (!e.name.endsWith('.ts') || e.name.endsWith('.d.ts')) return [];
    const out = path.join(ROOT_DIR, 'dist', path.relative(ROOT_DIR, src)).replace(/\.ts$/, '.js');
    return !fs.existsSync(out) || fs.statSync(out).mtimeMs < fs.statSync(src).mtimeMs ? [src] : [];
  });
}

/**
 * Compiles the kernel and the library its cells import (dist/kernel, as `npm run build` does) when a
 * source is newer. `workDir` holds the temporary tsconfig. Returns whether it compiled.
 */
function buildKernelIfStale(workDir: string): boolean {
  if (staleSources().length === 0) return false;
  const config = path.join(workDir, 'tsconfig.kernel.json');
  fs.writeFileSync(
    config,
    JSON.stringify({
      extends: path.join(ROOT_DIR, 'tsconfig.json'),
      compilerOptions: { typeRoots: [path.join(ROOT_DIR, 'node_modules', '@types')] },
      files: ['kernel/notebook/main.ts', 'kernel/notebook/output.ts', 'kernel/index.ts'].map((f) => path.join(ROOT_DIR, f)),
      include: [],
    }),
  );
  // Type errors elsewhere in the tree do not stop the emit; a missing output does.
  spawnSync(path.join(ROOT_DIR, 'node_modules', '.bin', 'tsc'), ['-p', config], { cwd: ROOT_DIR, stdio: 'ignore' });
  for (const f of ['notebook/main.js', 'index.js']) {
    if (!fs.existsSync(path.join(ROOT_DIR, 'dist', 'kernel', f))) throw new Error(`building the kernel did not write dist/kernel/${f}: run \`npm run build\``);
  }
  return true;
}
