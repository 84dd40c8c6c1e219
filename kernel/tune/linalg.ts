/**
 * Dense symmetric positive-definite algebra for the Gaussian process: Cholesky factor, triangular
 * solves and the inverse, on row-major Float64Array n×n matrices. Written by hand because no
 * maintained, dependency-light JS library fits (the matrices are tiny: one row per trial).
 */

/** Lower-triangular L with L·Lᵀ = A (row-major, upper triangle zero); null if A is not positive definite. */
export function cholesky(a: Float64Array, n: number): Float64Array | null {
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = a[i * n + j];
      for (let k = 0; k < j; k++) s -= l[i * n + k] * l[j * n + k];
      if (i === j) {
        if (!(s > 0)) return null;
        l[i * n + i] = Math.sqrt(s);
      } else l[i * n + j] = s / l[j * n + j];
    }
  }
  return l;
}

/**
 * Cholesky of A + jitter·I, raising the jitter tenfold until it succeeds, so near-duplicate trials
 * (a singular kernel matrix) still give a factor. Returns the factor and the jitter added.
 */
export function choleskyJitter(a: Float64Array, n: number, jitter = 1e-10): { l: Float64Array; jitter: number } {
  const b = Float64Array.from(a);
  let added = 0;
  for (let tries = 0; tries < 12; tries++) {
    const l = cholesky(b, n);
    if (l) return { l, jitter: added };
    const next = added === 0 ? jitter : added * 10;
    for (let i = 0; i < n; i++) b[i * n + i] += next - added;
    added = next;
  }
  throw new RangeError(`matrix is not positive definite even with jitter ${added}`);
}

/** x with L·x = b (forward substitution). */
export function solveLower(l: Float64Array, n: number, b: ArrayLike<number>): Float64Array {
  const x = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = b[i];
    for (let k = 0; k < i; k++) s -= l[i * n + k] * x[k];
    x[i] = s / l[i * n + i];
  }
  return x;
}

/** x with Lᵀ·x = b (back substitution). */
export function solveUpper(l: Float64Array, n: number, b: ArrayLike<number>): Float64Array {
  const x = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let s = b[i];
    for (let k = i + 1; k < n; k++) s -= l[k * n + i] * x[k];
    x[i] = s / l[i * n + i];
  }
  return x;
}

/** x with A·x = b, given A's Cholesky factor L. */
export const cholSolve = (l: Float64Array, n: number, b: ArrayLike<number>): Float64Array => solveUpper(l, n, solveLower(l, n, b));

/** A⁻¹ from A's Cholesky factor (symmetric, row-major). */
export function cholInverse(l: Float64Array, n: number): Float64Array {
  // L⁻¹ column by column, then A⁻¹ = L⁻ᵀ·L⁻¹.
  const li = new Float64Array(n * n);
  const e = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    e.fill(0);
    e[j] = 1;
    const c = solveLower(l, n, e);
    for (let i = 0; i < n; i++) li[i * n + j] = c[i];
  }
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = i; k < n; k++) s += li[k * n + i] * li[k * n + j];
      inv[i * n + j] = s;
      inv[j * n + i] = s;
    }
  }
  return inv;
}

/** log det A = 2·Σ log L_ii. */
export function cholLogDet(l: Float64Array, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) s += Math.log(l[i * n + i]);
  return 2 * s;
}
