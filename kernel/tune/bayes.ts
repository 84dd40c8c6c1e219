/**
 * Bayesian optimisation: a Gaussian process (ARD Matérn-5/2, MAP hyperparameters) on the trials'
 * unit-cube points, and the next trial where expected improvement is largest.
 *
 * - Internally everything is minimised (values are negated for 'maximize') and standardised.
 * - The first `startupTrials` trials are a space-filling design (best-candidate sampling: of a few
 *   random points, the one farthest from the trials so far), drawn from the trial's own seeded rng.
 * - Failed trials are ignored; pruned trials count with their last reported value: only an
 *   intermediate value, but a real sign that the region is poor, which keeps the GP away from it.
 * - Trials still running are "kriging believer" observations: the GP is conditioned on its own mean
 *   there, which removes their uncertainty, so two asks before a tell propose different points.
 * - EI is maximised over random candidates plus perturbations of the best trials, then the best few
 *   are refined by a (1+1) evolution strategy. Candidates are snapped to what their decoded params
 *   encode back to, so discrete parameters are scored as they will be tried.
 */
import { logExpectedImprovement } from './acquisition';
import { fitGP, type GaussianProcess } from './gp';
import { observations, snapper } from './history';
import { gaussian } from './normal';
import { clamp01, decode, spaceDims } from './space';
import type { Sampler, SamplerContext } from './types';

export type BayesOptions = {
  /** Trials proposed by the space-filling design before the GP takes over (default: ⌈dims/2⌉ + 2, at most 10). */
  startupTrials?: number;
  /** Uniform random EI candidates (default 500 + 250·dims, at most 3000). */
  candidates?: number;
  /** Random restarts of the hyperparameter fit besides the default start (default 2). */
  restarts?: number;
};

/**
 * Default design size for a space of `dims` unit-cube dimensions: small, because with a budget of a
 * few dozen trials the GP learns more from its own proposals than from a larger design (tuned on
 * Branin and Hartmann-6 at 30 trials: 4 and 5).
 */
export const defaultStartupTrials = (dims: number): number => Math.min(10, Math.ceil(dims / 2) + 2);

export class BayesSampler implements Sampler {
  readonly name = 'bayes';
  readonly options: BayesOptions;

  constructor(o: BayesOptions = {}) {
    for (const [k, v] of Object.entries(o)) {
      if (v !== undefined && !(Number.isInteger(v) && v >= 0)) throw new RangeError(`bayes option ${k} must be an integer >= 0, got ${v}`);
    }
    this.options = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
  }

  sample(ctx: SamplerContext) {
    const d = spaceDims(ctx.space);
    const obs = observations(ctx);
    const startup = this.options.startupTrials ?? defaultStartupTrials(d);
    const snap = snapper(ctx.space);
    if (ctx.trials.length < startup || obs.y.length < 2) return decode(ctx.space, snap(spaceFilling(ctx.rng, obs.all, d)));

    // Standardise: zero mean, unit variance (a constant history leaves the scale at 1).
    const mean = obs.y.reduce((a, b) => a + b, 0) / obs.y.length;
    const sd = Math.sqrt(obs.y.reduce((a, b) => a + (b - mean) ** 2, 0) / obs.y.length) || 1;
    const ys = obs.y.map((v) => (v - mean) / sd);
    let gp = fitGP(obs.x, ys, { rng: ctx.rng, restarts: this.options.restarts ?? 2 });
    if (obs.pending.length) gp = gp.withObservations(obs.pending, obs.pending.map((p) => gp.predict(p).mean));
    const best = Math.min(...ys);
    const score = (u: number[]) => {
      const p = gp.predict(u);
      return logExpectedImprovement(p.mean, Math.sqrt(p.variance), best);
    };
    const u = maximise(score, gp, obs.x, ys, d, ctx.rng, snap, this.options.candidates ?? Math.min(3000, 500 + 250 * d));
    return decode(ctx.space, u);
  }
}

const SPACE_FILLING_CANDIDATES = 8;

/**
 * Mitchell's best candidate: of a few random points, the one farthest from all `taken` ones. Few, on
 * purpose: the farthest of many points sits on the cube's faces, where little is usually learnt.
 */
export function spaceFilling(rng: () => number, taken: readonly number[][], d: number): number[] {
  const draw = () => Array.from({ length: d }, () => rng());
  if (taken.length === 0) return draw();
  let best: number[] = [];
  let bestDist = -1;
  for (let c = SPACE_FILLING_CANDIDATES; c > 0; c--) {
    const u = draw();
    let near = Infinity;
    for (const t of taken) {
      let s = 0;
      for (let k = 0; k < d; k++) s += (u[k] - t[k]) ** 2;
      if (s < near) near = s;
    }
    if (near > bestDist) {
      bestDist = near;
      best = u;
    }
  }
  return best;
}

/** The candidate with the highest score: random and local candidates, then (1+1)-ES refinement of the best few. */
function maximise(
  score: (u: number[]) => number,
  gp: GaussianProcess,
  x: readonly number[][],
  y: readonly number[],
  d: number,
  rng: () => number,
  snap: (u: number[]) => number[],
  randomCount: number,
): number[] {
  const scored: Array<{ u: number[]; s: number }> = [];
  const add = (raw: number[]) => {
    const u = snap(raw.map(clamp01));
    scored.push({ u, s: score(u) });
  };
  for (let c = 0; c < randomCount; c++) add(Array.from({ length: d }, () => rng()));
  // Around the best trials, at scales tied to the fitted lengthscales.
  const ls = gp.hyper.lengthscales.map((l) => Math.min(0.5, l));
  const order = y.map((_, i) => i).sort((a, b) => y[a] - y[b]);
  for (const i of order.slice(0, 5)) {
    for (const scale of [0.5, 0.1, 0.02]) {
      for (let c = 0; c < 40; c++) add(x[i].map((v, k) => v + scale * ls[k] * gaussian(rng)));
    }
  }
  scored.sort((a, b) => b.s - a.s);
  let best = scored[0];
  for (const start of scored.slice(0, 3)) {
    let cur = start;
    let step = 0.05;
    for (let it = 0; it < 60 && step > 1e-4; it++) {
      const u = snap(cur.u.map((v, k) => clamp01(v + step * ls[k] * 2 * gaussian(rng))));
      const s = score(u);
      if (s > cur.s) {
        cur = { u, s };
        step *= 1.5;
      } else step *= 0.85;
    }
    if (cur.s > best.s) best = cur;
  }
  return best.u;
}
