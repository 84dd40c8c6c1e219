/**
 * The optional OpenBLAS matmul addon (kernel/backend/native/blas.cc, built by scripts/build-native.js
 * at install time). The wasm backend's kernels use it for every float32 product when it loaded;
 * CHROMATUNE_BLAS=0 turns it off (pure wasm/XNNPACK, e.g. to compare).
 */
import * as path from 'path';

export interface BlasAddon {
  /** C[i] = op(A[i])·op(B[i]) (+ bias) for i < batch; stride 0 broadcasts an operand. */
  gemm(
    a: Float32Array, b: Float32Array, c: Float32Array,
    batch: number, m: number, n: number, k: number,
    transA: boolean, transB: boolean, strideA: number, strideB: number,
    bias?: Float32Array,
  ): void;
  /** Sets (with an argument) and returns OpenBLAS's thread count. */
  threads(n?: number): number;
}

let loaded: { addon?: BlasAddon; reason?: string } | undefined;

export function loadBlas(): { addon?: BlasAddon; reason?: string } {
  if (loaded) return loaded;
  if (process.env.CHROMATUNE_BLAS === '0') return (loaded = { reason: 'disabled by CHROMATUNE_BLAS=0' });
  try {
    // From kernel/backend (sources, under jest) or dist/kernel/backend (compiled): the addon stays in the sources.
    const candidates = [path.join(__dirname, 'native', 'blas.node'), path.join(__dirname, '..', '..', '..', 'kernel', 'backend', 'native', 'blas.node')];
    let lastError: unknown;
    for (const file of candidates) {
      try {
        return (loaded = { addon: require(file) as BlasAddon });
      } catch (e) {
        lastError = e;
      }
    }
    throw lastError;
  } catch (e) {
    return (loaded = { reason: `native addon not available (${(e as Error).message.split('\n')[0]}); run npm run build:native after installing libopenblas-dev` });
  }
}

/** Turns the native matmul off or back on at run time (tests compare both paths). */
export function setBlasEnabled(enabled: boolean): void {
  loaded = enabled ? undefined : { reason: 'disabled by setBlasEnabled(false)' };
  if (enabled) delete process.env.CHROMATUNE_BLAS;
}
