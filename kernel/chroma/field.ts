/**
 * A node's quality field: a smooth estimate of run quality over the node's cube, fitted from the runs
 * by Gaussian-process regression (the same GP as the Bayesian sampler), with its uncertainty. The node
 * is coloured by the field at its position; the field's gradient there is the direction of improvement.
 */
import { makeRng } from '../sample/sampler';
import { fitGP, type GaussianProcess } from '../tune/gp';
import type { Vec3 } from './node';

export interface FieldSample {
  p: Vec3;
  /** Estimated quality in [0, 1]. */
  mean: number;
  /** Standard deviation of the estimate (quality units). */
  sd: number;
}

export interface QualityField {
  /** Runs the field was fitted on. */
  runs: number;
  /** The field at the node's position. */
  value: FieldSample;
  /** Unit vector of steepest quality increase at the node (zeros when flat or unfitted). */
  improvement: Vec3;
  /** Gradient magnitude: quality gained per unit move. */
  slope: number;
  /** The field on a resolution³ grid over the cube (x fastest, then y, then z). */
  samples: FieldSample[];
  resolution: number;
}

const PRIOR: Omit<FieldSample, 'p'> = { mean: 0.5, sd: 0.5 };
const clamp01 = (q: number): number => (q < 0 ? 0 : q > 1 ? 1 : q);

/** Predicts quality (mean, sd) at p, undoing the standardisation of the fit. */
export type Predictor = (p: Vec3) => Omit<FieldSample, 'p'>;

function predictor(points: Vec3[], qualities: number[], seed: number): Predictor {
  if (points.length === 0) return () => PRIOR;
  const mu = qualities.reduce((a, b) => a + b, 0) / qualities.length;
  const sd = Math.sqrt(qualities.reduce((a, b) => a + (b - mu) ** 2, 0) / qualities.length);
  // One run, or runs of equal quality: a flat field at that quality, uncertain away from the runs.
  if (points.length === 1 || sd < 1e-9) {
    return (p) => {
      const d = Math.min(...points.map((x) => Math.hypot(p[0] - x[0], p[1] - x[1], p[2] - x[2])));
      return { mean: mu, sd: Math.min(0.5, 0.05 + 0.5 * d) };
    };
  }
  const gp: GaussianProcess = fitGP(points, qualities.map((q) => (q - mu) / sd), { restarts: 2, rng: makeRng(`field:${seed}`), minNoise: 1e-4 });
  return (p) => {
    const { mean, variance } = gp.predict(p);
    return { mean: clamp01(mu + sd * mean), sd: sd * Math.sqrt(variance + gp.hyper.noise) };
  };
}

/**
 * The field fitted from (position, quality) pairs of runs, before it is read at a node: the grid
 * samples and the predictor. Moving a node reads the same fit at another position (fieldAt); only
 * new runs or new qualities need a new fit.
 */
export interface FittedField {
  runs: number;
  resolution: number;
  samples: FieldSample[];
  predict: Predictor;
}

/** Fits the field from (position, quality) pairs of runs and evaluates it on a grid. */
export function fitQuality(points: Vec3[], qualities: number[], o: { resolution?: number; seed?: number } = {}): FittedField {
  if (points.length !== qualities.length) throw new RangeError(`fitField: ${points.length} positions but ${qualities.length} qualities`);
  qualities.forEach((q, i) => {
    if (!(q >= 0 && q <= 1)) throw new RangeError(`fitField: quality of run ${i} must be in [0, 1], got ${q}`);
  });
  const f = predictor(points, qualities, o.seed ?? 0);
  const res = o.resolution ?? 5;
  const samples: FieldSample[] = [];
  for (let k = 0; k < res; k++) {
    for (let j = 0; j < res; j++) {
      for (let i = 0; i < res; i++) {
        const p: Vec3 = [i / (res - 1), j / (res - 1), k / (res - 1)];
        samples.push({ p, ...f(p) });
      }
    }
  }
  return { runs: points.length, resolution: res, samples, predict: f };
}

/** A fitted field read at the node's position `at`: its value there and the direction of improvement. */
export function fieldAt(fit: FittedField, at: Vec3): QualityField {
  const f = fit.predict;
  // Central differences, one-sided at the cube's faces.
  const h = 0.02;
  const grad = [0, 1, 2].map((a) => {
    const lo = [...at] as Vec3;
    const hi = [...at] as Vec3;
    lo[a] = Math.max(0, at[a] - h);
    hi[a] = Math.min(1, at[a] + h);
    return (f(hi).mean - f(lo).mean) / (hi[a] - lo[a]);
  }) as Vec3;
  const slope = Math.hypot(...grad);
  return {
    runs: fit.runs,
    value: { p: at, ...f(at) },
    improvement: slope > 1e-6 ? (grad.map((g) => g / slope) as Vec3) : [0, 0, 0],
    slope,
    samples: fit.samples,
    resolution: fit.resolution,
  };
}

/** Fits the field from (position, quality) pairs of runs and evaluates it at the node and on a grid. */
export function fitField(points: Vec3[], qualities: number[], at: Vec3, o: { resolution?: number; seed?: number } = {}): QualityField {
  return fieldAt(fitQuality(points, qualities, o), at);
}
