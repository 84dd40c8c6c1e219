/**
 * Standard test functions for search samplers, each with its search space and known minimum
 * (Surjanovic & Bingham's Virtual Library of Simulation Experiments).
 */
import { float, type Params, type Space } from '../kernel/tune/space';

export interface TestFunction {
  name: string;
  space: Space;
  /** The global minimum's value. */
  optimum: number;
  /** A point where the minimum is reached. */
  argmin: Params;
  f: (p: Params) => number;
}

/** Branin-Hoo on x1 ∈ [-5, 10], x2 ∈ [0, 15]: three global minima of 0.397887. */
export function branin(x1: number, x2: number): number {
  const b = 5.1 / (4 * Math.PI * Math.PI);
  const c = 5 / Math.PI;
  const t = 1 / (8 * Math.PI);
  return (x2 - b * x1 * x1 + c * x1 - 6) ** 2 + 10 * (1 - t) * Math.cos(x1) + 10;
}

const H6_ALPHA = [1.0, 1.2, 3.0, 3.2];
const H6_A = [
  [10, 3, 17, 3.5, 1.7, 8],
  [0.05, 10, 17, 0.1, 8, 14],
  [3, 3.5, 1.7, 10, 17, 8],
  [17, 8, 0.05, 10, 0.1, 14],
];
const H6_P = [
  [1312, 1696, 5569, 124, 8283, 5886],
  [2329, 4135, 8307, 3736, 1004, 9991],
  [2348, 1451, 3522, 2883, 3047, 6650],
  [4047, 8828, 8732, 5743, 1091, 381],
].map((row) => row.map((v) => v * 1e-4));

/** Hartmann 6-D on [0,1]^6: one global minimum of -3.32237 among six local ones. */
export function hartmann6(x: readonly number[]): number {
  let s = 0;
  for (let i = 0; i < 4; i++) {
    let e = 0;
    for (let j = 0; j < 6; j++) e += H6_A[i][j] * (x[j] - H6_P[i][j]) ** 2;
    s -= H6_ALPHA[i] * Math.exp(-e);
  }
  return s;
}

const H6_KEYS = ['x1', 'x2', 'x3', 'x4', 'x5', 'x6'];

export const FUNCTIONS: Record<'branin' | 'hartmann6', TestFunction> = {
  branin: {
    name: 'branin',
    space: { x1: float(-5, 10), x2: float(0, 15) },
    optimum: 0.397887,
    argmin: { x1: Math.PI, x2: 2.275 },
    f: (p) => branin(p.x1 as number, p.x2 as number),
  },
  hartmann6: {
    name: 'hartmann6',
    space: Object.fromEntries(H6_KEYS.map((k) => [k, float(0, 1)])),
    optimum: -3.32237,
    argmin: { x1: 0.20169, x2: 0.150011, x3: 0.476874, x4: 0.275332, x5: 0.311652, x6: 0.6573 },
    f: (p) => hartmann6(H6_KEYS.map((k) => p[k] as number)),
  },
};
