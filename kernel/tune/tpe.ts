/**
 * Tree-structured Parzen estimator (Bergstra et al. 2011), in the unit cube: the finished trials are
 * split into the best ⌈γ·n⌉ ("good", at most 25) and the rest ("bad"); each set becomes a mixture of
 * Gaussians truncated to [0,1], one per trial plus a wide prior; the next trial is the candidate drawn
 * from the good mixture with the largest log good(x) − log bad(x).
 *
 * Multivariate (default) uses joint kernels with Scott-style bandwidths, which captures interactions
 * between parameters; univariate treats each coordinate independently with neighbour-gap bandwidths
 * (Optuna's default). Failed trials are ignored, pruned ones count with their last value, running
 * ones are not modelled (two asks before a tell differ only by their rng).
 */
import { observations } from './history';
import { gaussian, LOG_SQRT_2PI, normCdf } from './normal';
import { randomParams } from './random';
import { decode, spaceDims } from './space';
import type { Sampler, SamplerContext } from './types';

export type TpeOptions = {
  /** Random trials before the estimator takes over (default 10). */
  startupTrials?: number;
  /** Candidates drawn from the good density per trial (default 24). */
  candidates?: number;
  /** Fraction of finished trials counted as good (default 0.1; at least 1, at most 25 trials). */
  gamma?: number;
  /** Joint kernels over all coordinates (default true) or one independent density per coordinate. */
  multivariate?: boolean;
};

/** A mixture of Gaussians truncated to [0,1]^d; sigma per component and coordinate. */
export interface Parzen {
  mu: number[][];
  sigma: number[][];
  weight: number[];
}

/** log of N(x; μ, σ) truncated to [0,1]. */
function logTruncNormal(x: number, mu: number, sigma: number): number {
  const z = (x - mu) / sigma;
  const mass = normCdf((1 - mu) / sigma) - normCdf(-mu / sigma);
  return -0.5 * z * z - LOG_SQRT_2PI - Math.log(sigma) - Math.log(Math.max(mass, 1e-300));
}

/** The estimator of a set of points: one kernel each plus a prior kernel at the centre (σ = 1). */
export function parzen(points: readonly number[][], d: number, multivariate: boolean): Parzen {
  const m = points.length;
  // Optuna's "magic clip": no kernel narrower than 1/(kernels + 1) of the range.
  const minSigma = 1 / Math.min(100, m + 2);
  const mu = [...points.map((p) => [...p]), Array(d).fill(0.5)];
  let sigma: number[][];
  if (multivariate) {
    const s = Math.max(minSigma, Math.min(1, 0.2 * Math.pow(m, -1 / (d + 4))));
    sigma = points.map(() => Array(d).fill(s));
  } else {
    // Per coordinate: the larger gap to the sorted neighbours (the prior's centre included); the
    // outermost kernels use their inner gap only, so a point near a face is not made artificially wide.
    sigma = points.map(() => Array(d).fill(0));
    for (let k = 0; k < d; k++) {
      const order = [...points.keys(), m].sort((a, b) => mu[a][k] - mu[b][k]);
      const at = (j: number) => mu[order[j]][k];
      order.forEach((idx, j) => {
        if (idx === m) return;
        const left = j > 0 ? at(j) - at(j - 1) : 0;
        const right = j < order.length - 1 ? at(j + 1) - at(j) : 0;
        sigma[idx][k] = Math.max(minSigma, Math.min(1, Math.max(left, right)));
      });
    }
  }
  sigma.push(Array(d).fill(1));
  const weight = Array(m + 1).fill(1 / (m + 1));
  return { mu, sigma, weight };
}

/** log density of a point; joint kernels, or a product of per-coordinate mixtures. */
export function parzenLogPdf(p: Parzen, x: readonly number[], multivariate: boolean): number {
  const logSumExp = (v: number[]) => {
    const top = Math.max(...v);
    return top + Math.log(v.reduce((s, a) => s + Math.exp(a - top), 0));
  };
  const c = p.weight.length;
  if (multivariate) {
    return logSumExp(p.mu.map((mu, i) => Math.log(p.weight[i]) + mu.reduce((s, m, k) => s + logTruncNormal(x[k], m, p.sigma[i][k]), 0)));
  }
  let s = 0;
  for (let k = 0; k < x.length; k++) {
    const terms: number[] = [];
    for (let i = 0; i < c; i++) terms.push(Math.log(p.weight[i]) + logTruncNormal(x[k], p.mu[i][k], p.sigma[i][k]));
    s += logSumExp(terms);
  }
  return s;
}

/** A draw from the estimator (joint: one component for all coordinates; univariate: one per coordinate). */
export function parzenSample(p: Parzen, d: number, multivariate: boolean, rng: () => number): number[] {
  const pick = () => {
    let r = rng();
    for (let i = 0; i < p.weight.length; i++) if ((r -= p.weight[i]) < 0) return i;
    return p.weight.length - 1;
  };
  const joint = pick();
  return Array.from({ length: d }, (_, k) => {
    const i = multivariate ? joint : pick();
    // Rejection from the untruncated normal: every component has its centre in [0,1], so at least
    // about a third of the draws land inside.
    for (let tries = 0; tries < 64; tries++) {
      const v = p.mu[i][k] + p.sigma[i][k] * gaussian(rng);
      if (v >= 0 && v <= 1) return v;
    }
    return Math.min(1, Math.max(0, p.mu[i][k]));
  });
}

export class TpeSampler implements Sampler {
  readonly name = 'tpe';
  readonly options: TpeOptions;

  constructor(o: TpeOptions = {}) {
    if (o.gamma !== undefined && !(o.gamma > 0 && o.gamma < 1)) throw new RangeError(`tpe gamma must be in (0, 1), got ${o.gamma}`);
    for (const k of ['startupTrials', 'candidates'] as const) {
      const v = o[k];
      if (v !== undefined && !(Number.isInteger(v) && v >= (k === 'candidates' ? 1 : 0))) throw new RangeError(`tpe ${k} must be a positive integer, got ${v}`);
    }
    this.options = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
  }

  sample(ctx: SamplerContext) {
    const d = spaceDims(ctx.space);
    const obs = observations(ctx);
    const n = obs.y.length;
    if (ctx.trials.length < (this.options.startupTrials ?? 10) || n < 2) return randomParams(ctx);
    const multivariate = this.options.multivariate ?? true;
    const order = obs.y.map((_, i) => i).sort((a, b) => obs.y[a] - obs.y[b] || a - b);
    const nGood = Math.min(25, Math.max(1, Math.ceil((this.options.gamma ?? 0.1) * n)));
    const good = parzen(order.slice(0, nGood).map((i) => obs.x[i]), d, multivariate);
    const bad = parzen(order.slice(nGood).map((i) => obs.x[i]), d, multivariate);
    let best: number[] = [];
    let bestScore = -Infinity;
    for (let c = this.options.candidates ?? 24; c > 0; c--) {
      const u = parzenSample(good, d, multivariate, ctx.rng);
      const s = parzenLogPdf(good, u, multivariate) - parzenLogPdf(bad, u, multivariate);
      if (s > bestScore || best.length === 0) {
        bestScore = s;
        best = u;
      }
    }
    return decode(ctx.space, best);
  }
}
