/**
 * Backend selection for TensorFlow.js.
 *
 * Order when nothing is asked: tfjs-node-gpu, tfjs-node (both native libtensorflow; optional
 * dependencies whose install fails without internet, so they are probed with require), wasm
 * (XNNPACK; with the hand-written kernels of ./wasmKernels), then the pure-JS cpu backend.
 * `CHROMATUNE_BACKEND=gpu|node|wasm|cpu` replaces the automatic order; an explicit argument to
 * `initBackend` wins over both. An explicitly requested backend that cannot load is an error, never
 * a silent fallback: a run that asked for the GPU must not quietly train on one CPU core.
 */
// ./tf also registers every gradient (tfjs-core's Node bundle has none), so any backend initBackend returns can train.
import * as tf from './tf';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { installWasmKernels } from './wasmKernels';
import { loadBlas } from './blas';

export type BackendChoice = 'gpu' | 'node' | 'wasm' | 'cpu';
export const BACKEND_CHOICES: readonly BackendChoice[] = ['gpu', 'node', 'wasm', 'cpu'];
export const BACKEND_ENV = 'CHROMATUNE_BACKEND';
export const THREADS_ENV = 'CHROMATUNE_THREADS';

export interface BackendInfo {
  choice: BackendChoice;
  /** tf.getBackend() after initialisation: 'tensorflow', 'wasm' or 'cpu'. */
  tfBackend: string;
  simd: boolean;
  threads: number;
  /** Threads of the native matmul addon (wasm backend with OpenBLAS); absent when there is none. */
  matmulThreads?: number;
  /** What runs matrix products: 'openblas' (native addon, wasm backend), 'xnnpack' (wasm), or the backend's own. */
  matmul: string;
  /** Why the native matmul is not used, when it is not. */
  matmulReason?: string;
  /** Why earlier choices of the automatic order were skipped, e.g. "gpu: Cannot find module ...". */
  reasons: string[];
}

let current: BackendInfo | undefined;
/** Serialises concurrent calls: two awaits of initBackend must not race two setBackend calls. */
let queue: Promise<unknown> = Promise.resolve();

function isChoice(v: string): v is BackendChoice {
  return (BACKEND_CHOICES as readonly string[]).includes(v);
}

/** The choice named by CHROMATUNE_BACKEND, undefined when unset or empty; throws when invalid. */
export function backendFromEnv(env: NodeJS.ProcessEnv = process.env): BackendChoice | undefined {
  const raw = env[BACKEND_ENV]?.trim().toLowerCase();
  if (!raw) return undefined;
  if (!isChoice(raw)) {
    throw new Error(
      `${BACKEND_ENV}=${JSON.stringify(env[BACKEND_ENV])} is not a valid backend; ` +
        `valid choices: ${BACKEND_CHOICES.join(', ')}`,
    );
  }
  return raw;
}

/**
 * Threads for the wasm backend's OpenBLAS matrix products: CHROMATUNE_THREADS, default 1. One thread
 * keeps a seeded run's numbers the same on every machine (threaded products round differently) and
 * costs little at this model size: 2 threads trained 1.1x faster on 2 cores for 1.6x the CPU time
 * (bench/RESULTS.md). Throws on a value that is not a whole number >= 1.
 */
export function threadsFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[THREADS_ENV]?.trim();
  if (!raw) return 1;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`${THREADS_ENV}=${JSON.stringify(env[THREADS_ENV])} is not a valid thread count; expected a whole number >= 1 (this machine has ${os.availableParallelism()} cores)`);
  }
  return n;
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0];
}

/** Native TF's intra-op thread count: its env override if set, else TF's default (all cores). */
function nativeThreads(): number {
  const n = Number(process.env.TF_NUM_INTRAOP_THREADS);
  return Number.isInteger(n) && n > 0 ? n : os.cpus().length;
}

async function activate(name: string): Promise<void> {
  // setBackend returns false (and only logs) when the backend fails to initialise.
  if (!(await tf.setBackend(name))) throw new Error(`tf.setBackend('${name}') failed`);
  await tf.ready();
}

const NATIVE_PACKAGES = { gpu: '@tensorflow/tfjs-node-gpu', node: '@tensorflow/tfjs-node' } as const;
/** The reason a backend is skipped when its package is not installed at all (the usual case: not worth a note). */
const notInstalled = (pkg: string) => `Cannot find module '${pkg}'`;

/**
 * The native packages are useless without their binding, which their install script downloads. When
 * the script did not run (npm 11 skips dependencies' scripts unless approved; offline machines) the
 * package is present but the binding is not, and requiring it would register a hundred kernels before
 * failing, each re-registration printing a warning. Checking the file first keeps the fallback quiet.
 */
function checkNativeBinding(pkg: string): void {
  let dir: string;
  try {
    dir = path.dirname(require.resolve(`${pkg}/package.json`));
  } catch {
    throw new Error(notInstalled(pkg));
  }
  const lib = path.join(dir, 'lib');
  const found = fs.existsSync(lib) && fs.readdirSync(lib).some((d) => d.startsWith('napi-v') && fs.existsSync(path.join(lib, d, 'tfjs_binding.node')));
  if (!found) throw new Error(`${pkg} is installed without its native binding (its install script did not run or could not download libtensorflow)`);
}

/** Loads and activates one backend; throws with the cause when it cannot. */
async function load(choice: BackendChoice): Promise<Omit<BackendInfo, 'reasons'>> {
  switch (choice) {
    case 'gpu':
    case 'node': {
      const pkg = NATIVE_PACKAGES[choice];
      checkNativeBinding(pkg);
      // Both packages register the 'tensorflow' backend with the shared tfjs-core engine.
      require(pkg);
      await activate('tensorflow');
      return { choice, tfBackend: tf.getBackend(), simd: true, threads: nativeThreads(), matmul: 'tensorflow' };
    }
    case 'wasm': {
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      const wasm = require('@tensorflow/tfjs-backend-wasm') as typeof import('@tensorflow/tfjs-backend-wasm');
      const dist = path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');
      wasm.setWasmPaths(dist + path.sep);
      installWasmKernels();
      await activate('wasm');
      const simd = Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'));
      // The library disables multithreading under Node; then XNNPACK runs on the calling thread.
      const mt = Boolean(await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT'));
      const blas = loadBlas();
      const threads = mt ? Math.max(1, wasm.getThreadsCount()) : 1;
      if (!blas.addon) return { choice, tfBackend: tf.getBackend(), simd, threads, matmul: 'xnnpack', matmulReason: blas.reason };
      const matmulThreads = blas.addon.threads(threadsFromEnv());
      return { choice, tfBackend: tf.getBackend(), simd, threads, matmul: 'openblas', matmulThreads };
    }
    case 'cpu': {
      require('@tensorflow/tfjs-backend-cpu');
      await activate('cpu');
      // Its first write prints an advertisement for tfjs-node to the console; we report the backend ourselves.
      (tf.backend() as unknown as { firstUse: boolean }).firstUse = false;
      return { choice, tfBackend: tf.getBackend(), simd: false, threads: 1, matmul: 'js' };
    }
  }
}

async function init(choice: BackendChoice | undefined): Promise<BackendInfo> {
  const requested = choice ?? backendFromEnv();
  if (current && (requested === undefined || requested === current.choice)) return current;
  if (requested !== undefined) {
    try {
      current = { ...(await load(requested)), reasons: [] };
    } catch (e) {
      throw new Error(`backend '${requested}' was requested but cannot be used: ${firstLine(e)}`);
    }
    return current;
  }
  const reasons: string[] = [];
  for (const c of BACKEND_CHOICES) {
    try {
      current = { ...(await load(c)), reasons };
      return current;
    } catch (e) {
      reasons.push(`${c}: ${firstLine(e)}`);
    }
  }
  throw new Error(`no TensorFlow.js backend could be initialised (${reasons.join('; ')})`);
}

/**
 * Chooses, loads and activates the backend. Idempotent: a call without a choice (and without a
 * different CHROMATUNE_BACKEND) returns the cached info; a different explicit choice switches.
 */
export function initBackend(choice?: BackendChoice): Promise<BackendInfo> {
  if (choice !== undefined && !isChoice(choice)) {
    return Promise.reject(new Error(`unknown backend ${JSON.stringify(choice)}; valid choices: ${BACKEND_CHOICES.join(', ')}`));
  }
  const p = queue.then(() => init(choice));
  queue = p.catch(() => undefined);
  return p;
}

/** Forgets the cached choice (the active tf backend stays); the next initBackend chooses afresh. For tests. */
export function resetBackendCache(): void {
  current = undefined;
}

/** The info of the last successful initBackend, if any. */
export function backendInfo(): BackendInfo | undefined {
  return current;
}

/**
 * One line, e.g. "wasm (SIMD, 1 thread, openblas matmul)" ("openblas matmul on 2 threads" with
 * CHROMATUNE_THREADS=2) or "node/tensorflow (16 threads)".
 */
export function describeBackend(info: BackendInfo): string {
  const name = info.choice === info.tfBackend ? info.choice : `${info.choice}/${info.tfBackend}`;
  const threads = `${info.threads} thread${info.threads === 1 ? '' : 's'}`;
  const matmul = `${info.matmul} matmul${info.matmulThreads && info.matmulThreads > 1 ? ` on ${info.matmulThreads} threads` : ''}`;
  const parts = info.choice === 'wasm' ? [info.simd ? 'SIMD' : 'no SIMD', threads, matmul] : [threads];
  return `${name} (${parts.join(', ')})`;
}

/**
 * Why the backend is slower than it could be, one line each, for a log: the native matmul missing, or a
 * backend in the automatic order that is installed but failed to load (not merely absent).
 */
export function backendNotes(info: BackendInfo): string[] {
  const absent = Object.values(NATIVE_PACKAGES).map(notInstalled);
  const notes = info.reasons.filter((r) => !absent.some((a) => r.endsWith(a))).map((r) => `skipped ${r}`);
  if (info.matmulReason) notes.push(`matrix products run on XNNPACK, about half as fast as OpenBLAS: ${info.matmulReason}`);
  return notes;
}

export { installWasmKernels, uninstallWasmKernels, wasmKernelsInstalled, originalKernel } from './wasmKernels';
export { measureMatmulGflops } from './flops';
