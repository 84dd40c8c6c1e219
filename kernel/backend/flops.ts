/**
 * Matmul throughput of the active TensorFlow.js backend, in GFLOP/s (2·m·k·n per product).
 * Used to report what a machine can do and to sanity-check the wasm matmul kernels.
 */
import * as tf from './tf';
import { median } from '../stats';

export interface MatmulShape {
  m?: number;
  k?: number;
  n?: number;
  iters?: number;
}

/** Shapes measured when none is given: a d=128 model's projection ([16*64,128]x[128,384]) and a larger one. */
export const DEFAULT_MATMUL_SHAPES: ReadonlyArray<Required<Pick<MatmulShape, 'm' | 'k' | 'n'>>> = [
  { m: 1024, k: 128, n: 384 },
  { m: 1024, k: 512, n: 1024 },
];


/** Median GFLOP/s over `iters` timed products (after 2 warm-up runs) of one [m,k]x[k,n] shape. */
async function measureShape(m: number, k: number, n: number, iters: number): Promise<number> {
  const a = tf.randomNormal([m, k]);
  const b = tf.randomNormal([k, n]);
  try {
    const rates: number[] = [];
    for (let i = 0; i < iters + 2; i++) {
      const t0 = performance.now();
      const c = tf.matMul(a, b);
      c.dataSync(); // forces completion on asynchronous backends (webgl/gpu); a small copy elsewhere
      const ms = performance.now() - t0;
      c.dispose();
      if (i >= 2) rates.push((2 * m * k * n) / (ms * 1e6));
      await Promise.resolve();
    }
    return median(rates);
  } finally {
    a.dispose();
    b.dispose();
  }
}

/**
 * Measures the current backend's 2-D matmul GFLOP/s. Each shape's figure is the MEDIAN over its
 * timed iterations (robust to GC pauses and scheduling noise). With an explicit m/k/n that one shape
 * is measured; otherwise every DEFAULT_MATMUL_SHAPES entry is, and the BEST of their medians is
 * returned (small products understate what the backend can do).
 */
export async function measureMatmulGflops(opts: MatmulShape = {}): Promise<number> {
  const iters = Math.max(1, opts.iters ?? 10);
  const explicit = opts.m !== undefined || opts.k !== undefined || opts.n !== undefined;
  const shapes = explicit
    ? [{ m: opts.m ?? 1024, k: opts.k ?? 128, n: opts.n ?? 384 }]
    : DEFAULT_MATMUL_SHAPES;
  let best = 0;
  for (const s of shapes) best = Math.max(best, await measureShape(s.m, s.k, s.n, iters));
  return best;
}
