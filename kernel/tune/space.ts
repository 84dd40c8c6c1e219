/**
 * Search spaces: named parameters (float, int, categorical, or a point in the unit cube) and their
 * mapping to and from the unit hypercube, where every sampler works. Spaces are plain data, so a
 * study file can store its space and check it on resume.
 */

export interface FloatParam {
  kind: 'float';
  low: number;
  high: number;
  /** Sample on a log scale (low must be > 0). */
  log?: boolean;
  /** Grid step in the parameter's own units; also rounds sampled values to low + k·step. */
  step?: number;
}

export interface IntParam {
  kind: 'int';
  low: number;
  high: number;
  log?: boolean;
  step?: number;
}

export interface CategoricalParam {
  kind: 'categorical';
  choices: ReadonlyArray<string | number | boolean>;
}

/** A point in [0,1]^dims (a ChromaTune parameter node's position; dims 3 by default). */
export interface CubeParam {
  kind: 'cube';
  dims: number;
}

export type Param = FloatParam | IntParam | CategoricalParam | CubeParam;
export type Space = Record<string, Param>;
export type ParamValue = number | string | boolean | number[];
export type Params = Record<string, ParamValue>;

export const float = (low: number, high: number, o: { log?: boolean; step?: number } = {}): FloatParam => ({ kind: 'float', low, high, ...o });
export const int = (low: number, high: number, o: { log?: boolean; step?: number } = {}): IntParam => ({ kind: 'int', low, high, ...o });
export const categorical = (choices: ReadonlyArray<string | number | boolean>): CategoricalParam => ({ kind: 'categorical', choices: [...choices] });
export const cube = (dims = 3): CubeParam => ({ kind: 'cube', dims });

export class SpaceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SpaceError';
  }
}

const KINDS = ['float', 'int', 'categorical', 'cube'];

/** Throws a SpaceError naming the parameter and what would be valid. */
export function validateSpace(space: Space): void {
  if (!space || typeof space !== 'object' || Object.keys(space).length === 0) {
    throw new SpaceError('the search space is empty: give at least one parameter, e.g. { lr: float(1e-4, 1e-2, { log: true }) }');
  }
  for (const [name, p] of Object.entries(space)) {
    if (!p || !KINDS.includes((p as Param).kind)) {
      throw new SpaceError(`parameter "${name}": unknown kind ${JSON.stringify((p as Param)?.kind)}; valid kinds: ${KINDS.join(', ')}`);
    }
    if (p.kind === 'categorical') {
      if (!Array.isArray(p.choices) || p.choices.length === 0) throw new SpaceError(`parameter "${name}": categorical needs at least one choice`);
      if (new Set(p.choices.map((c) => JSON.stringify(c))).size !== p.choices.length) {
        throw new SpaceError(`parameter "${name}": categorical choices repeat: ${JSON.stringify(p.choices)}`);
      }
      continue;
    }
    if (p.kind === 'cube') {
      if (!Number.isInteger(p.dims) || p.dims < 1) throw new SpaceError(`parameter "${name}": cube dims must be an integer >= 1, got ${p.dims}`);
      continue;
    }
    const { low, high, log, step } = p;
    if (!Number.isFinite(low) || !Number.isFinite(high)) {
      throw new SpaceError(`parameter "${name}": bounds must be finite numbers, got [${low}, ${high}]`);
    }
    if (low > high) throw new SpaceError(`parameter "${name}": inverted bounds, low ${low} > high ${high}; give low <= high`);
    if (p.kind === 'int' && (!Number.isInteger(low) || !Number.isInteger(high))) {
      throw new SpaceError(`parameter "${name}": int bounds must be integers, got [${low}, ${high}]`);
    }
    if (log && low <= 0) {
      throw new SpaceError(`parameter "${name}": a log range must be positive, but [${low}, ${high}] includes ${low === 0 ? '0' : 'values <= 0'}; use low > 0 or log: false`);
    }
    if (step !== undefined) {
      if (!(Number.isFinite(step) && step > 0)) throw new SpaceError(`parameter "${name}": step must be > 0, got ${step}`);
      if (log) throw new SpaceError(`parameter "${name}": step and log cannot be combined; choose one`);
      if (p.kind === 'int' && !Number.isInteger(step)) throw new SpaceError(`parameter "${name}": int step must be an integer, got ${step}`);
    }
  }
}

/** Number of unit-cube coordinates a parameter occupies. */
export const paramDims = (p: Param): number => (p.kind === 'cube' ? p.dims : 1);

/** Total dimension of the space's unit-cube encoding. */
export const spaceDims = (space: Space): number => Object.values(space).reduce((s, p) => s + paramDims(p), 0);

/** u clamped to [0, 1]. */
export const clamp01 = (u: number): number => (u < 0 ? 0 : u > 1 ? 1 : u);

/** Values k·step from low that lie within [low, high] (floating error tolerated). */
function stepCount(low: number, high: number, step: number): number {
  return Math.floor((high - low) / step + 1e-9);
}

/** The value u of the way from low to high, on the parameter's scale (log or linear); not rounded. */
function scaled(p: FloatParam | IntParam, u: number): number {
  return p.log ? Math.exp(Math.log(p.low) + u * (Math.log(p.high) - Math.log(p.low))) : p.low + u * (p.high - p.low);
}

/** An int parameter's range on its scale, widened by ½ each side: one equal-width bin per integer. */
function intEdges(p: IntParam): { lo: number; hi: number } {
  return p.log
    ? { lo: Math.log(p.low - 0.5 > 0 ? p.low - 0.5 : p.low), hi: Math.log(p.high + 0.5) }
    : { lo: p.low - 0.5, hi: p.high + 0.5 };
}

/** Parameter value for a unit coordinate u (or coordinates, for a cube). */
export function decodeParam(p: Param, u: number[]): ParamValue {
  if (p.kind === 'cube') return u.map(clamp01);
  const v = clamp01(u[0]);
  if (p.kind === 'categorical') return p.choices[Math.min(p.choices.length - 1, Math.floor(v * p.choices.length))];
  const { low, high } = p;
  if (low === high) return low;
  if (p.step !== undefined) {
    const k = Math.round(v * stepCount(low, high, p.step));
    return roundStep(low + k * p.step, p.step);
  }
  if (p.kind === 'int') {
    // Equal-width bins per integer, so every value is equally likely under uniform u.
    const { lo, hi } = intEdges(p);
    const y = lo + v * (hi - lo);
    return Math.min(high, Math.max(low, Math.round(p.log ? Math.exp(y) : y)));
  }
  if (v === 0 || v === 1) return v === 0 ? low : high; // exact endpoints, not exp(log(x)) round-off
  return Math.min(high, Math.max(low, scaled(p, v)));
}

/** low + k·step, rounded to the step's decimals so 0.1 steps print as 0.3, not 0.30000000000000004. */
function roundStep(x: number, step: number): number {
  const decimals = Math.max(0, -Math.floor(Math.log10(step)) + 2);
  return Number(x.toFixed(Math.min(decimals, 12)));
}

/** Unit coordinate(s) of a parameter value: the inverse of decodeParam (bin centre for categories). */
export function encodeParam(p: Param, value: ParamValue): number[] {
  if (p.kind === 'cube') {
    if (!Array.isArray(value) || value.length !== p.dims) throw new SpaceError(`expected a point with ${p.dims} coordinates, got ${JSON.stringify(value)}`);
    return value.map(clamp01);
  }
  if (p.kind === 'categorical') {
    const i = p.choices.findIndex((c) => c === value);
    if (i < 0) throw new SpaceError(`value ${JSON.stringify(value)} is not one of ${JSON.stringify(p.choices)}`);
    return [(i + 0.5) / p.choices.length];
  }
  const x = Number(value);
  const { low, high } = p;
  if (low === high) return [0.5];
  if (p.step !== undefined) {
    const n = stepCount(low, high, p.step);
    return [n === 0 ? 0.5 : clamp01(Math.round((x - low) / p.step) / n)];
  }
  if (p.kind === 'int') {
    const { lo, hi } = intEdges(p);
    return [clamp01(((p.log ? Math.log(x) : x) - lo) / (hi - lo))];
  }
  return [clamp01(p.log ? (Math.log(x) - Math.log(low)) / (Math.log(high) - Math.log(low)) : (x - low) / (high - low))];
}

/** Params for a point u in [0,1]^spaceDims (parameters in the space's key order). */
export function decode(space: Space, u: number[]): Params {
  const out: Params = {};
  let i = 0;
  for (const [name, p] of Object.entries(space)) {
    const d = paramDims(p);
    out[name] = decodeParam(p, u.slice(i, i + d));
    i += d;
  }
  return out;
}

/** The unit-cube point of a set of params (the inverse of decode, up to rounding and bins). */
export function encode(space: Space, params: Params): number[] {
  const out: number[] = [];
  for (const [name, p] of Object.entries(space)) {
    if (!(name in params)) throw new SpaceError(`params lack "${name}"; the space has ${Object.keys(space).join(', ')}`);
    out.push(...encodeParam(p, params[name]));
  }
  return out;
}

/**
 * Grid values of one parameter: its step if it has one, every choice of a categorical, every integer
 * of a small int range, otherwise points `interval` apart in unit coordinates (0.25: 5 points).
 */
export function gridValues(p: Param, interval: number): ParamValue[] {
  if (!(interval > 0 && interval <= 1)) throw new SpaceError(`grid interval must be in (0, 1], got ${interval}`);
  // Evenly spaced from 0 to 1 inclusive, as near `interval` apart as a whole number of steps allows
  // (0.3 gives 0, 1/3, 2/3, 1), so both ends of every range are always tried.
  const units = (): number[] => {
    const n = Math.max(1, Math.round(1 / interval));
    return Array.from({ length: n + 1 }, (_, k) => k / n);
  };
  if (p.kind === 'categorical') return [...p.choices];
  if (p.kind === 'cube') {
    // Cartesian product of the axes' unit grid.
    let pts: number[][] = [[]];
    for (let a = 0; a < p.dims; a++) pts = pts.flatMap((pt) => units().map((u) => [...pt, u]));
    return pts;
  }
  if (p.step !== undefined) {
    const n = stepCount(p.low, p.high, p.step);
    return Array.from({ length: n + 1 }, (_, k) => roundStep(p.low + k * p.step!, p.step!));
  }
  if (p.kind === 'int' && !p.log && p.high - p.low <= Math.round(1 / interval)) {
    return Array.from({ length: p.high - p.low + 1 }, (_, k) => p.low + k);
  }
  const seen = new Set<string>();
  return units()
    .map((u) => {
      // Interval points in the parameter's own scale, endpoints exact.
      if (p.low === p.high) return p.low;
      const x = scaled(p, u);
      return p.kind === 'int' ? Math.round(x) : Number(x.toPrecision(12));
    })
    .filter((v) => (seen.has(String(v)) ? false : (seen.add(String(v)), true)));
}
