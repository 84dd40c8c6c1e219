/**
 * A small box-constrained L-BFGS minimiser (projected steps, Armijo backtracking) for a handful of
 * smooth variables: the Gaussian process's log hyperparameters.
 */

/** Value and gradient at x. */
export type ValueAndGradient = (x: Float64Array) => { value: number; grad: Float64Array };

export interface LbfgsOptions {
  lower: ArrayLike<number>;
  upper: ArrayLike<number>;
  maxIter?: number;
  /** Pairs of curvature history kept. */
  memory?: number;
  /** Stop when the projected gradient's largest entry falls below this. */
  gtol?: number;
}

export interface LbfgsResult {
  x: Float64Array;
  value: number;
  iterations: number;
}

const dot = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

export function lbfgs(f: ValueAndGradient, x0: ArrayLike<number>, o: LbfgsOptions): LbfgsResult {
  const n = x0.length;
  const { lower, upper } = o;
  const maxIter = o.maxIter ?? 100;
  const m = o.memory ?? 6;
  const gtol = o.gtol ?? 1e-5;
  const project = (x: Float64Array) => {
    for (let i = 0; i < n; i++) x[i] = Math.min(upper[i], Math.max(lower[i], x[i]));
    return x;
  };
  let x = project(Float64Array.from(x0));
  let { value, grad } = f(x);
  const ss: Float64Array[] = [];
  const ys: Float64Array[] = [];
  // A variable at a bound whose gradient points outward stays fixed for this step.
  const free = (x: Float64Array, g: Float64Array, i: number) => !((x[i] <= lower[i] && g[i] > 0) || (x[i] >= upper[i] && g[i] < 0));
  let it = 0;
  for (; it < maxIter; it++) {
    let pg = 0;
    for (let i = 0; i < n; i++) if (free(x, grad, i)) pg = Math.max(pg, Math.abs(grad[i]));
    if (!(pg > gtol) || !Number.isFinite(value)) break;
    // Two-loop recursion for d = -H·g on the free variables.
    const q = Float64Array.from(grad, (g, i) => (free(x, grad, i) ? g : 0));
    const alpha: number[] = [];
    for (let k = ss.length - 1; k >= 0; k--) {
      const a = dot(ss[k], q) / dot(ys[k], ss[k]);
      alpha[k] = a;
      for (let i = 0; i < n; i++) q[i] -= a * ys[k][i];
    }
    const gamma = ss.length ? dot(ss[ss.length - 1], ys[ys.length - 1]) / dot(ys[ys.length - 1], ys[ys.length - 1]) : 1 / Math.max(1, pg);
    for (let i = 0; i < n; i++) q[i] *= gamma;
    for (let k = 0; k < ss.length; k++) {
      const b = dot(ys[k], q) / dot(ys[k], ss[k]);
      for (let i = 0; i < n; i++) q[i] += (alpha[k] - b) * ss[k][i];
    }
    const d = Float64Array.from(q, (v, i) => (free(x, grad, i) ? -v : 0));
    if (dot(d, grad) >= 0) {
      // Not a descent direction (stale curvature): restart from steepest descent.
      ss.length = 0;
      ys.length = 0;
      for (let i = 0; i < n; i++) d[i] = free(x, grad, i) ? -grad[i] / Math.max(1, pg) : 0;
    }
    let t = 1;
    let next: { value: number; grad: Float64Array } | undefined;
    let xn = x;
    for (let bt = 0; bt < 30; bt++, t *= 0.5) {
      xn = project(Float64Array.from(x, (v, i) => v + t * d[i]));
      const trial = f(xn);
      let decrease = 0;
      for (let i = 0; i < n; i++) decrease += grad[i] * (xn[i] - x[i]);
      if (Number.isFinite(trial.value) && trial.value <= value + 1e-4 * decrease) {
        next = trial;
        break;
      }
    }
    if (!next) break;
    const s = Float64Array.from(xn, (v, i) => v - x[i]);
    const y = Float64Array.from(next.grad, (v, i) => v - grad[i]);
    if (dot(s, y) > 1e-12) {
      ss.push(s);
      ys.push(y);
      if (ss.length > m) {
        ss.shift();
        ys.shift();
      }
    }
    const improvement = value - next.value;
    x = xn;
    value = next.value;
    grad = next.grad;
    if (improvement < 1e-10 * Math.max(1, Math.abs(value))) break;
  }
  return { x, value, iterations: it };
}
