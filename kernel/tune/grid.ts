/**
 * Grid search: the Cartesian product of every parameter's grid values (gridValues: its step, its
 * choices, or points `interval` apart in unit coordinates), one point per trial. Points are numbered
 * in mixed radix, the space's first parameter most significant (nested loops, last one innermost).
 * A trial takes the first point no earlier trial holds (compared by params, whatever their state), so
 * a resumed or concurrent study never repeats one; `shuffle` takes a random free point instead, drawn
 * from the trial's seeded rng. Exhausted grids return null.
 */
import { gridValues, type ParamValue, type Params, type Space, SpaceError } from './space';
import type { Sampler, SamplerContext } from './types';

export type GridOptions = {
  /** Spacing in unit coordinates for parameters without a step (default 0.25: 5 values). */
  interval?: number;
  /** Visit the points in a seeded random order instead of in order (default false). */
  shuffle?: boolean;
};

interface Axis {
  name: string;
  values: ParamValue[];
  /** JSON of a value → its index. */
  index: Map<string, number>;
}

/** The grid of a space: its axes and point count. */
export function gridAxes(space: Space, interval: number): { axes: Axis[]; size: number } {
  const axes = Object.entries(space).map(([name, p]) => {
    const values = gridValues(p, interval);
    return { name, values, index: new Map(values.map((v, i) => [JSON.stringify(v), i])) };
  });
  const size = axes.reduce((n, a) => n * a.values.length, 1);
  if (!Number.isSafeInteger(size)) throw new SpaceError(`the grid has more than 2^53 points; use a larger interval or fewer parameters`);
  return { axes, size };
}

/** Points in the full grid of a space at `interval`. */
export const gridSize = (space: Space, interval: number): number => gridAxes(space, interval).size;

/** Point k of the grid (0 ≤ k < size). */
export function gridPoint(axes: readonly Axis[], k: number): Params {
  const out: Params = {};
  for (let a = axes.length - 1; a >= 0; a--) {
    const n = axes[a].values.length;
    out[axes[a].name] = axes[a].values[k % n];
    k = Math.floor(k / n);
  }
  // Keep the space's key order in the params.
  return Object.fromEntries(axes.map((a) => [a.name, out[a.name]]));
}

/** The grid index of params, or undefined when some value is not a grid value. */
export function gridIndex(axes: readonly Axis[], params: Params): number | undefined {
  let k = 0;
  for (const a of axes) {
    const i = a.index.get(JSON.stringify(params[a.name]));
    if (i === undefined) return undefined;
    k = k * a.values.length + i;
  }
  return k;
}

export class GridSampler implements Sampler {
  readonly name = 'grid';
  readonly options: { interval: number; shuffle: boolean };

  constructor(o: GridOptions = {}) {
    const interval = o.interval ?? 0.25;
    if (!(interval > 0 && interval <= 1)) throw new SpaceError(`grid interval must be in (0, 1], got ${interval}`);
    this.options = { interval, shuffle: o.shuffle ?? false };
  }

  sample(ctx: SamplerContext): Params | null {
    const { axes, size } = gridAxes(ctx.space, this.options.interval);
    const taken = new Set<number>();
    for (const t of ctx.trials) {
      const k = gridIndex(axes, t.params);
      if (k !== undefined) taken.add(k);
    }
    if (taken.size >= size) return null;
    // The r-th free point: start at r and step over every taken index at or below it, in order.
    let k = this.options.shuffle ? Math.floor(ctx.rng() * (size - taken.size)) : 0;
    for (const t of [...taken].sort((a, b) => a - b)) if (t <= k) k++;
    return gridPoint(axes, k);
  }
}
