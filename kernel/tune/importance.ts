/**
 * Parameter importance from complete trials, after fANOVA (Hutter, Hoos & Leyton-Brown, "An
 * Efficient Approach for Assessing Hyperparameter Importance", ICML 2014):
 *
 * 1. encode every complete trial's params into the unit cube (space.encode);
 * 2. fit a random forest of regression trees (bootstrap samples, variance-reduction splits) to
 *    the objective over those coordinates;
 * 3. each tree is a piecewise-constant function on the cube; under the uniform measure its
 *    variance V and the variance V_S of its marginal over one parameter S (averaging out all other
 *    coordinates) have closed forms over the leaf boxes;
 * 4. a parameter's importance is V_S / V averaged over the trees, normalised so the shares sum to 1.
 *
 * Only first-order (single-parameter) shares are kept, so the normalisation spreads whatever the
 * interactions explain across the parameters, as Optuna's FanovaImportanceEvaluator does.
 * A cube parameter is one parameter over its several coordinates. A categorical is its bin-centre
 * coordinate: a tree isolates any single choice with at most two splits, so order does not matter.
 * A parameter whose value never varies gets 0. The objective's raw values are used: variance does
 * not depend on the sign, so minimising and maximising studies give the same shares.
 */
import { makeRng } from '../sample/sampler';
import { encodeParam, paramDims, type Space } from './space';
import type { Direction, TrialRecord } from './types';

export interface ParamImportance {
  name: string;
  /** Share of the objective's variance explained by this parameter alone, in [0, 1]; shares sum to 1. */
  importance: number;
}

export interface ImportanceOptions {
  /** Trees in the forest (default 32): more trees, steadier shares. */
  trees?: number;
  /** Deepest split level (default 16). */
  maxDepth?: number;
  /** Fewest samples in a leaf (default 1, as fANOVA: leaves average out in the marginals). */
  minLeaf?: number;
  /** Seed of the bootstrap samples (default 0): the same trials always give the same shares. */
  seed?: number;
}

/** A leaf of a regression tree: a box [lo, hi] in the unit cube and the mean objective inside it. */
interface Leaf {
  lo: Float64Array;
  hi: Float64Array;
  value: number;
}

/**
 * Each parameter's share of the objective's variance, highest first (ties in space order).
 * Fewer than 2 complete trials with finite values (and params that fit the space) give [].
 * `direction` is accepted so that a study's own fields can be passed; shares do not depend on it.
 */
export function parameterImportance(space: Space, trials: readonly TrialRecord[], _direction?: Direction, o: ImportanceOptions = {}): ParamImportance[] {
  const names = Object.keys(space);
  const X: number[][] = [];
  const y: number[] = [];
  for (const t of trials) {
    if (t.state !== 'complete' || typeof t.value !== 'number' || !Number.isFinite(t.value)) continue;
    const x = encodeTrial(space, t);
    if (x) {
      X.push(x);
      y.push(t.value);
    }
  }
  if (X.length < 2) return [];
  // Centred values keep V = E[f²] − E[f]² free of cancellation when the objective sits far from 0.
  const centre = y.reduce((a, b) => a + b, 0) / y.length;
  for (let i = 0; i < y.length; i++) y[i] -= centre;

  // Coordinate ranges [start, end) of each parameter in the encoding.
  const coords: Array<[number, number]> = [];
  let at = 0;
  for (const n of names) {
    coords.push([at, at + paramDims(space[n])]);
    at += paramDims(space[n]);
  }
  const varies = coords.map(([a, b]) => X.some((x) => x.slice(a, b).some((v, k) => v !== X[0][a + k])));

  const trees = o.trees ?? 32;
  const rng = makeRng(`importance:${o.seed ?? 0}`);
  const sums = new Array<number>(names.length).fill(0);
  let used = 0;
  for (let t = 0; t < trees; t++) {
    const sample = Array.from({ length: X.length }, () => Math.floor(rng() * X.length));
    const leaves = growTree(X, y, sample, at, o.maxDepth ?? 16, o.minLeaf ?? 1);
    const shares = varianceShares(leaves, coords, at);
    if (!shares) continue; // a bootstrap sample with one value: nothing to explain
    shares.forEach((s, i) => (sums[i] += varies[i] ? s : 0));
    used++;
  }
  const mean = sums.map((s) => (used ? s / used : 0));
  const total = mean.reduce((a, b) => a + b, 0);
  return names
    .map((name, i) => ({ name, importance: total > 0 ? mean[i] / total : 0, i }))
    .sort((a, b) => b.importance - a.importance || a.i - b.i)
    .map(({ name, importance }) => ({ name, importance }));
}

/** A trial's unit-cube point, or undefined when its params do not fit the space (e.g. an older study). */
function encodeTrial(space: Space, t: TrialRecord): number[] | undefined {
  const out: number[] = [];
  for (const [name, p] of Object.entries(space)) {
    if (!(name in t.params)) return undefined;
    try {
      out.push(...encodeParam(p, t.params[name]));
    } catch {
      return undefined;
    }
  }
  return out.every(Number.isFinite) ? out : undefined;
}

/** CART regression tree over the rows `idx` (with repeats, from a bootstrap), as its leaf boxes. */
function growTree(X: number[][], y: number[], idx: number[], dims: number, maxDepth: number, minLeaf: number): Leaf[] {
  const leaves: Leaf[] = [];
  const grow = (rows: number[], lo: Float64Array, hi: Float64Array, depth: number): void => {
    const n = rows.length;
    const mean = rows.reduce((s, r) => s + y[r], 0) / n;
    const split = depth < maxDepth && n >= 2 * minLeaf ? bestSplit(X, y, rows, dims, minLeaf) : undefined;
    if (!split) {
      leaves.push({ lo, hi, value: mean });
      return;
    }
    const { d, threshold } = split;
    const left = rows.filter((r) => X[r][d] <= threshold);
    const right = rows.filter((r) => X[r][d] > threshold);
    const hiL = hi.slice();
    hiL[d] = threshold;
    const loR = lo.slice();
    loR[d] = threshold;
    grow(left, lo, hiL, depth + 1);
    grow(right, loR, hi, depth + 1);
  };
  grow(idx, new Float64Array(dims).fill(0), new Float64Array(dims).fill(1), 0);
  return leaves;
}

/** The split (coordinate, threshold midway between two observed values) that most reduces the squared error. */
function bestSplit(X: number[][], y: number[], rows: number[], dims: number, minLeaf: number): { d: number; threshold: number } | undefined {
  const n = rows.length;
  let sum = 0;
  let sumSq = 0;
  for (const r of rows) {
    sum += y[r];
    sumSq += y[r] * y[r];
  }
  const parentSse = sumSq - (sum * sum) / n;
  // Relative tolerance: no split when the node's values are equal up to rounding.
  if (!(parentSse > 1e-12 * (sumSq + 1e-300))) return undefined;
  let best: { d: number; threshold: number; sse: number } | undefined;
  for (let d = 0; d < dims; d++) {
    const sorted = [...rows].sort((a, b) => X[a][d] - X[b][d]);
    let sl = 0;
    let ql = 0;
    for (let k = 1; k < n; k++) {
      const v = y[sorted[k - 1]];
      sl += v;
      ql += v * v;
      const a = X[sorted[k - 1]][d];
      const b = X[sorted[k]][d];
      if (a === b || k < minLeaf || n - k < minLeaf) continue;
      const sr = sum - sl;
      const sse = ql - (sl * sl) / k + (sumSq - ql) - (sr * sr) / (n - k);
      if (!best || sse < best.sse) best = { d, threshold: (a + b) / 2, sse };
    }
  }
  return best && best.sse < parentSse ? best : undefined;
}

/**
 * V_S / V for each parameter's coordinates S, for one tree under the uniform measure on the cube,
 * or undefined when the tree is constant. With f = Σ_a v_a·1[box_a], the marginal over S is
 * f_S(x_S) = Σ_a v_a·vol_rest(a)·1[x_S ∈ box_a|S], so ∫ f_S² = Σ_a Σ_b w_a·w_b·vol_S(box_a ∩ box_b)
 * with w_a = v_a·vol_rest(a): exact, no grid over the cube needed.
 */
function varianceShares(leaves: Leaf[], coords: Array<[number, number]>, dims: number): number[] | undefined {
  /** Volume of a leaf's box outside the coordinates [skipFrom, skipTo). */
  const vol = (l: Leaf, skipFrom = 0, skipTo = 0): number => {
    let v = 1;
    for (let d = 0; d < dims; d++) if (d < skipFrom || d >= skipTo) v *= l.hi[d] - l.lo[d];
    return v;
  };
  let mean = 0;
  let second = 0;
  for (const l of leaves) {
    const v = vol(l);
    mean += v * l.value;
    second += v * l.value * l.value;
  }
  const total = second - mean * mean;
  if (!(total > 1e-12 * (second + 1e-300))) return undefined;
  return coords.map(([a, b]) => {
    const w = leaves.map((l) => l.value * vol(l, a, b));
    if (b - a === 1) return Math.max(0, Math.min(1, (sweep(leaves, w, a) - mean * mean) / total));
    let sq = 0;
    for (let i = 0; i < leaves.length; i++) {
      if (w[i] === 0) continue;
      for (let j = i; j < leaves.length; j++) {
        let overlap = 1;
        for (let d = a; d < b && overlap > 0; d++) {
          overlap *= Math.max(0, Math.min(leaves[i].hi[d], leaves[j].hi[d]) - Math.max(leaves[i].lo[d], leaves[j].lo[d]));
        }
        if (overlap > 0) sq += (i === j ? 1 : 2) * w[i] * w[j] * overlap;
      }
    }
    return Math.max(0, Math.min(1, (sq - mean * mean) / total));
  });
}

/**
 * ∫ f_S² for a single coordinate d in O(L log L): f_S is piecewise constant between the leaves'
 * edges along d, so sweep the edges adding w_a where a leaf starts and removing it where it ends.
 */
function sweep(leaves: Leaf[], w: number[], d: number): number {
  const events: Array<[number, number]> = [];
  leaves.forEach((l, i) => {
    if (w[i] !== 0) events.push([l.lo[d], w[i]], [l.hi[d], -w[i]]);
  });
  events.sort((x, y) => x[0] - y[0]);
  let sq = 0;
  let level = 0;
  for (let k = 0; k < events.length; k++) {
    level += events[k][1];
    const next = k + 1 < events.length ? events[k + 1][0] : events[k][0];
    sq += level * level * (next - events[k][0]);
  }
  return sq;
}
