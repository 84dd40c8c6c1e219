/**
 * The study history as model-based samplers see it: trials as points of the unit cube, values turned
 * into a quantity to minimise.
 */
import { decodeParam, encode, encodeParam, type Space } from './space';
import type { SamplerContext, TrialRecord } from './types';

export interface Observations {
  /** Unit-cube points of finished trials that have a value. */
  x: number[][];
  /** Their values, negated when the study maximises: lower is always better. */
  y: number[];
  /** Trial numbers of x's rows. */
  numbers: number[];
  /** Unit-cube points of trials still running (asked, not told). */
  pending: number[][];
  /** Unit-cube points of every trial, failed ones included (to keep proposals apart). */
  all: number[][];
}

export interface ObservationOptions {
  /** Use pruned trials with their last reported value (default true): a pessimistic but real signal. */
  pruned?: boolean;
}

/** A trial's value as "lower is better", or undefined when it has none to learn from. */
export function lossOf(t: TrialRecord, direction: SamplerContext['direction'], o: ObservationOptions = {}): number | undefined {
  const usable = t.state === 'complete' || (t.state === 'pruned' && (o.pruned ?? true));
  if (!usable || typeof t.value !== 'number' || !Number.isFinite(t.value)) return undefined;
  return direction === 'maximize' ? -t.value : t.value;
}

/** Encoded history; failed trials only count as occupied points. */
export function observations(ctx: Pick<SamplerContext, 'space' | 'direction' | 'trials'>, o: ObservationOptions = {}): Observations {
  const out: Observations = { x: [], y: [], numbers: [], pending: [], all: [] };
  for (const t of ctx.trials) {
    const u = encode(ctx.space, t.params);
    out.all.push(u);
    if (t.state === 'running') {
      out.pending.push(u);
      continue;
    }
    const v = lossOf(t, ctx.direction, o);
    if (v === undefined) continue;
    out.x.push(u);
    out.y.push(v);
    out.numbers.push(t.number);
  }
  return out;
}

/**
 * Maps a unit-cube point to the point its decoded params encode back to (bin centre of a category,
 * nearest step of a stepped or int parameter), so a model scores what will really be tried.
 * Continuous dimensions pass through untouched.
 */
export function snapper(space: Space): (u: number[]) => number[] {
  const params = Object.values(space);
  const discrete = params.some((p) => p.kind === 'categorical' || (p.kind !== 'cube' && (p.kind === 'int' || p.step !== undefined || p.low === p.high)));
  if (!discrete) return (u) => u;
  return (u) => {
    const out: number[] = [];
    let i = 0;
    for (const p of params) {
      if (p.kind === 'cube') {
        for (let k = 0; k < p.dims; k++) out.push(u[i + k]);
        i += p.dims;
        continue;
      }
      const continuous = p.kind === 'float' && p.step === undefined && p.low !== p.high;
      out.push(continuous ? u[i] : encodeParam(p, decodeParam(p, [u[i]]))[0]);
      i += 1;
    }
    return out;
  };
}
