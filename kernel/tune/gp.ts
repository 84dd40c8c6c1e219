/**
 * Gaussian-process regression for Bayesian optimisation: zero mean (callers standardise outputs), an
 * ARD Matérn-5/2 kernel on inputs in [0,1]^d, Gaussian noise. Hyperparameters are fitted by maximising
 * the log marginal likelihood plus weak log-normal priors (MAP), which keeps the fit sane when there
 * are only a few trials.
 */
import { cholInverse, cholLogDet, choleskyJitter, cholSolve, solveLower } from './linalg';
import { lbfgs } from './lbfgs';

/** Kernel hyperparameters (variances, not standard deviations). */
export interface GPHyper {
  /** One lengthscale per input dimension, in unit-cube units. */
  lengthscales: number[];
  /** Signal variance s² (the kernel's value at distance 0). */
  signal: number;
  /** Observation noise variance σ². */
  noise: number;
}

const SQRT5 = Math.sqrt(5);

/** Matérn-5/2 correlation at scaled distance r: (1 + √5r + 5r²/3)·exp(−√5r). */
export const matern52 = (r: number): number => (1 + SQRT5 * r + (5 / 3) * r * r) * Math.exp(-SQRT5 * r);

/** k(a, b) for one pair of points. */
export function kernel(a: ArrayLike<number>, b: ArrayLike<number>, h: GPHyper): number {
  let r2 = 0;
  for (let k = 0; k < a.length; k++) {
    const t = (a[k] - b[k]) / h.lengthscales[k];
    r2 += t * t;
  }
  return h.signal * matern52(Math.sqrt(r2));
}

/** A GP conditioned on (x, y) with fixed hyperparameters. */
export class GaussianProcess {
  readonly n: number;
  /** Cholesky factor of K + σ²I (+ jitter). */
  readonly chol: Float64Array;
  /** (K + σ²I)⁻¹·y. */
  readonly alpha: Float64Array;

  constructor(readonly x: readonly (readonly number[])[], readonly y: readonly number[], readonly hyper: GPHyper) {
    this.n = x.length;
    const n = this.n;
    const k = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < i; j++) k[i * n + j] = k[j * n + i] = kernel(x[i], x[j], hyper);
      k[i * n + i] = hyper.signal + hyper.noise;
    }
    this.chol = choleskyJitter(k, n, 1e-9 * hyper.signal).l;
    this.alpha = cholSolve(this.chol, n, y);
  }

  /** Posterior mean and latent variance (without the noise) of f at a point. */
  predict(p: ArrayLike<number>): { mean: number; variance: number } {
    const n = this.n;
    const ks = new Float64Array(n);
    let mean = 0;
    for (let i = 0; i < n; i++) {
      ks[i] = kernel(p, this.x[i], this.hyper);
      mean += ks[i] * this.alpha[i];
    }
    const v = solveLower(this.chol, n, ks);
    let vv = 0;
    for (let i = 0; i < n; i++) vv += v[i] * v[i];
    return { mean, variance: Math.max(0, this.hyper.signal - vv) };
  }

  /** The same GP with more observations (for pending trials: "kriging believer"). */
  withObservations(x: readonly (readonly number[])[], y: readonly number[]): GaussianProcess {
    return new GaussianProcess([...this.x, ...x], [...this.y, ...y], this.hyper);
  }
}

/** Bounds and priors of the log hyperparameters [log ℓ_1..d, log s², log σ²]. */
export interface GPFitOptions {
  /** Random restarts besides the default start. */
  restarts?: number;
  /** Uniform [0,1) source for the restarts. */
  rng?: () => number;
  /** Lower bound of the noise variance (outputs are standardised: 1 is the data's variance). */
  minNoise?: number;
  maxIter?: number;
}

const LOG_LS: [number, number] = [Math.log(0.01), Math.log(20)];
const LOG_SIGNAL: [number, number] = [Math.log(0.05), Math.log(20)];
// Priors (mean, sd) on the logs: lengthscales around 0.5 of the cube, unit signal, small noise.
const PRIOR_LS = { mean: Math.log(0.5), sd: 1.5 };
const PRIOR_SIGNAL = { mean: 0, sd: 1.5 };
const PRIOR_NOISE = { mean: Math.log(1e-3), sd: 3 };

const hyperOf = (t: ArrayLike<number>, d: number): GPHyper => ({
  lengthscales: Array.from({ length: d }, (_, k) => Math.exp(t[k])),
  signal: Math.exp(t[d]),
  noise: Math.exp(t[d + 1]),
});

/**
 * Negative log posterior of the log hyperparameters and its analytic gradient:
 * ∂LML/∂θ = ½·tr((ααᵀ − K⁻¹)·∂K/∂θ), with ∂K/∂log ℓ_k = s²·(5/3)(1+√5r)e^{−√5r}·Δ_k²/ℓ_k².
 */
export function negLogPosterior(x: readonly (readonly number[])[], y: readonly number[], t: ArrayLike<number>): { value: number; grad: Float64Array } {
  const n = x.length;
  const d = t.length - 2;
  const h = hyperOf(t, d);
  const inv2 = h.lengthscales.map((l) => 1 / (l * l));
  const k = new Float64Array(n * n);
  // Per pair: the Matérn radial factor (for the lengthscale gradients).
  const radial = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < i; j++) {
      let r2 = 0;
      for (let c = 0; c < d; c++) {
        const dx = x[i][c] - x[j][c];
        r2 += dx * dx * inv2[c];
      }
      const r = Math.sqrt(r2);
      const e = Math.exp(-SQRT5 * r);
      k[i * n + j] = k[j * n + i] = h.signal * (1 + SQRT5 * r + (5 / 3) * r2) * e;
      radial[i * n + j] = radial[j * n + i] = h.signal * (5 / 3) * (1 + SQRT5 * r) * e;
    }
    k[i * n + i] = h.signal + h.noise;
  }
  const { l } = choleskyJitter(k, n, 1e-9 * h.signal);
  const alpha = cholSolve(l, n, y);
  const kinv = cholInverse(l, n);
  let fit = 0;
  for (let i = 0; i < n; i++) fit += y[i] * alpha[i];
  const lml = -0.5 * fit - 0.5 * cholLogDet(l, n) - 0.5 * n * Math.log(2 * Math.PI);
  const grad = new Float64Array(d + 2);
  // W = ααᵀ − K⁻¹; the gradients are ½·Σ W ∘ ∂K.
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < i; j++) {
      const w = alpha[i] * alpha[j] - kinv[i * n + j]; // symmetric: count the pair twice
      const rad = radial[i * n + j];
      for (let c = 0; c < d; c++) {
        const dx = x[i][c] - x[j][c];
        grad[c] += w * rad * dx * dx * inv2[c];
      }
      grad[d] += w * (k[i * n + j]);
    }
    const w = alpha[i] * alpha[i] - kinv[i * n + i];
    grad[d] += 0.5 * w * h.signal;
    grad[d + 1] += 0.5 * w * h.noise;
  }
  let value = -lml;
  for (let c = 0; c < d + 2; c++) grad[c] = -grad[c];
  const prior = (c: number, p: { mean: number; sd: number }) => {
    const z = (t[c] - p.mean) / p.sd;
    value += 0.5 * z * z;
    grad[c] += z / p.sd;
  };
  for (let c = 0; c < d; c++) prior(c, PRIOR_LS);
  prior(d, PRIOR_SIGNAL);
  prior(d + 1, PRIOR_NOISE);
  return { value, grad };
}

/** A GP on (x, y) with MAP hyperparameters: L-BFGS on the logs from a default and `restarts` random starts. */
export function fitGP(x: readonly (readonly number[])[], y: readonly number[], o: GPFitOptions = {}): GaussianProcess {
  const d = x[0]?.length ?? 0;
  if (x.length === 0 || d === 0) throw new RangeError('fitGP needs at least one point with at least one dimension');
  const minNoise = o.minNoise ?? 1e-6;
  const lower = [...Array(d).fill(LOG_LS[0]), LOG_SIGNAL[0], Math.log(minNoise)];
  const upper = [...Array(d).fill(LOG_LS[1]), LOG_SIGNAL[1], Math.log(0.5)];
  const starts: number[][] = [[...Array(d).fill(Math.log(0.3)), 0, Math.log(Math.max(minNoise, 1e-4))]];
  const rng = o.rng ?? Math.random;
  for (let r = 0; r < (o.restarts ?? 2); r++) {
    starts.push([...Array.from({ length: d }, () => Math.log(0.05) + rng() * (Math.log(2) - Math.log(0.05))), rng() * 2 - 1, Math.log(minNoise) + rng() * (Math.log(0.1) - Math.log(minNoise))]);
  }
  let best: { x: Float64Array; value: number } | undefined;
  for (const s of starts) {
    const r = lbfgs((t) => negLogPosterior(x, y, t), s, { lower, upper, maxIter: o.maxIter ?? 60 });
    if (!best || r.value < best.value) best = r;
  }
  return new GaussianProcess(x, y, hyperOf(best!.x, d));
}
