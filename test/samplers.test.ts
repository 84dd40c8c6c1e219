/**
 * Search samplers: grid coverage, seeded and resumable proposals, the Gaussian process and expected
 * improvement against direct computations, Bayesian optimisation against random search, the particle
 * swarm's moves and bests, TPE densities, and the sampler registry.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { FUNCTIONS } from '../bench/functions';
import { expectedImprovement, logExpectedImprovement } from '../kernel/tune/acquisition';
import { BayesSampler } from '../kernel/tune/bayes';
import { fitGP, GaussianProcess, type GPHyper, kernel, negLogPosterior } from '../kernel/tune/gp';
import { GridSampler } from '../kernel/tune/grid';
import { cholesky, cholInverse, cholLogDet, cholSolve } from '../kernel/tune/linalg';
import { normCdf, normPdf } from '../kernel/tune/normal';
import { ParticleSwarmSampler, particleState } from '../kernel/tune/pso';
import { RandomSampler } from '../kernel/tune/random';
import { makeSampler, SAMPLER_NAMES } from '../kernel/tune/samplers';
import { categorical, cube, encode, float, int, type Params, type Space } from '../kernel/tune/space';
import { optimize, Study } from '../kernel/tune/study';
import { parzen, parzenLogPdf, TpeSampler } from '../kernel/tune/tpe';
import type { Sampler, TrialRecord } from '../kernel/tune/types';
import { makeRng } from '../kernel/sample/sampler';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ct-samplers-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const key = (p: Params) => JSON.stringify(p);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
/** A cheap bowl with its minimum 0 at (0.3, 0.7) in a [0,1]² space. */
const bowlSpace: Space = { a: float(0, 1), b: float(0, 1) };
const bowl = (p: Params) => ((p.a as number) - 0.3) ** 2 + 2 * ((p.b as number) - 0.7) ** 2;

/** Every params a study proposes, asking and telling `f` until the sampler stops or `limit` is reached. */
function drain(study: Study, f: (p: Params) => number, limit = 10_000): Params[] {
  const out: Params[] = [];
  for (let i = 0; i < limit; i++) {
    const t = study.ask();
    if (!t) break;
    out.push(t.params);
    study.tell(t.number, f(t.params));
  }
  return out;
}

/** A hand-made trial record for feeding samplers directly. */
const record = (number: number, params: Params, value?: number, state: TrialRecord['state'] = value === undefined ? 'running' : 'complete'): TrialRecord => ({
  number,
  params,
  state,
  value,
  intermediate: [],
  attrs: {},
  startedAt: '2026-11-22T00:00:00.000Z',
});

describe('grid sampler', () => {
  test('covers exactly the Cartesian product of the grid values, once each, then stops', () => {
    const space: Space = { temperature: float(0.1, 1.0, { step: 0.1 }), layers: int(1, 3), act: categorical(['gelu', 'relu']), x: float(0, 1) };
    // Independent grid: 0.1..1.0 in tenths, the three integers, both choices, x at 0, 0.25, ..., 1.
    const temps = Array.from({ length: 10 }, (_, k) => (k + 1) / 10);
    const xs = [0, 0.25, 0.5, 0.75, 1];
    const expected = new Set<string>();
    for (const temperature of temps) for (const layers of [1, 2, 3]) for (const act of ['gelu', 'relu']) for (const x of xs) expected.add(key({ temperature, layers, act, x }));
    const study = new Study({ space, sampler: new GridSampler() });
    const seen = drain(study, () => 0);
    expect(seen).toHaveLength(expected.size);
    expect(new Set(seen.map(key)).size).toBe(seen.length);
    for (const p of seen) expect(expected.has(key(p))).toBe(true);
    expect(study.ask()).toBeNull();
    // Nested-loop order: the last parameter varies fastest.
    expect(seen.slice(0, 2)).toEqual([
      { temperature: 0.1, layers: 1, act: 'gelu', x: 0 },
      { temperature: 0.1, layers: 1, act: 'gelu', x: 0.25 },
    ]);
  });

  test('interval 0.1 gives 11 values per parameter without a step', () => {
    const seen = drain(new Study({ space: { x: float(-1, 1) }, sampler: new GridSampler({ interval: 0.1 }) }), () => 0);
    expect(seen).toHaveLength(11);
    expect(seen.map((p) => p.x as number)).toEqual(Array.from({ length: 11 }, (_, k) => expect.closeTo(-1 + k * 0.2, 12)));
  });

  test('skips points earlier trials already hold, whatever their state', () => {
    const sampler = new GridSampler({ interval: 0.5 });
    const space: Space = { x: float(0, 1) };
    const ctx = (trials: TrialRecord[]) => ({ space, direction: 'minimize' as const, trials, number: trials.length, rng: makeRng(1) });
    expect(sampler.sample(ctx([]))).toEqual({ x: 0 });
    expect(sampler.sample(ctx([record(0, { x: 0 }, undefined, 'failed')]))).toEqual({ x: 0.5 });
    // An off-grid trial takes no grid point; a running one does.
    expect(sampler.sample(ctx([record(0, { x: 0.3 }, 1), record(1, { x: 0 })]))).toEqual({ x: 0.5 });
    expect(sampler.sample(ctx([record(0, { x: 0.5 }, 1), record(1, { x: 1 }, 1), record(2, { x: 0 }, 1)]))).toBeNull();
  });

  test('shuffle visits the same points in a seeded random order', () => {
    const space: Space = { a: float(0, 1), b: categorical([1, 2, 3]) };
    const run = (seed: number) => drain(new Study({ space, sampler: new GridSampler({ shuffle: true }), seed }), () => 0);
    const ordered = drain(new Study({ space, sampler: new GridSampler() }), () => 0);
    const s1 = run(1);
    expect(s1.map(key).sort()).toEqual(ordered.map(key).sort());
    expect(s1).not.toEqual(ordered);
    expect(run(1)).toEqual(s1);
    expect(run(2)).not.toEqual(s1);
  });
});

describe('seeded, stateless proposals', () => {
  const space: Space = { lr: float(1e-4, 1e-1, { log: true }), x: float(-2, 2), n: int(1, 8), act: categorical(['a', 'b', 'c']) };
  const f = (p: Params) => (Math.log10(p.lr as number) + 2.5) ** 2 + ((p.x as number) - 0.5) ** 2 + (p.act === 'b' ? 0 : 0.3) + Math.abs((p.n as number) - 5) * 0.1;
  const samplers: Array<[string, () => Sampler]> = [
    ['random', () => new RandomSampler()],
    ['grid (shuffled)', () => new GridSampler({ shuffle: true })],
    ['bayes', () => new BayesSampler({ startupTrials: 4 })],
    ['tpe', () => new TpeSampler({ startupTrials: 4 })],
    ['pso', () => new ParticleSwarmSampler({ particles: 4 })],
  ];
  const params = async (make: () => Sampler, seed: number, trials = 10) => (await optimize(f, space, { sampler: make(), trials, seed })).trials.map((t) => t.params);

  test.each(samplers)('%s: the same seed proposes the same, another seed differently', async (_, make) => {
    const a = await params(make, 3);
    expect(await params(make, 3)).toEqual(a);
    expect(await params(make, 4)).not.toEqual(a);
    for (const p of a) expect(Object.keys(p)).toEqual(Object.keys(space));
  });

  test.each(samplers.filter(([name]) => ['bayes', 'pso', 'tpe'].includes(name)))('%s: a study resumed from its file after 6 trials proposes what an uninterrupted one does', async (name, make) => {
    const file = path.join(dir, `resume-${name}.jsonl`);
    await optimize(f, space, { sampler: make(), trials: 6, seed: 9, path: file });
    const resumed = await optimize(f, space, { sampler: make(), trials: 12, seed: 9, path: file });
    expect(resumed.trials).toHaveLength(12);
    expect(resumed.trials.map((t) => t.params)).toEqual(await params(make, 9, 12));
  });
});

/** A symmetric positive-definite n×n matrix B·Bᵀ + n·I from a seeded source. */
function spd(n: number, seed: number): Float64Array {
  const rng = makeRng(seed);
  const b = Array.from({ length: n * n }, () => rng() * 2 - 1);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    let s = i === j ? n : 0;
    for (let k = 0; k < n; k++) s += b[i * n + k] * b[j * n + k];
    a[i * n + j] = s;
  }
  return a;
}

/** Gauss-Jordan inverse and determinant with partial pivoting: a direct computation to check against. */
function gaussJordan(a: ArrayLike<number>, n: number): { inv: number[][]; det: number } {
  const m = Array.from({ length: n }, (_, i) => [...Array.from({ length: n }, (_, j) => a[i * n + j]), ...Array.from({ length: n }, (_, j) => (i === j ? 1 : 0))]);
  let det = 1;
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r][c]) > Math.abs(m[p][c])) p = r;
    if (p !== c) {
      [m[p], m[c]] = [m[c], m[p]];
      det = -det;
    }
    det *= m[c][c];
    const piv = m[c][c];
    for (let j = 0; j < 2 * n; j++) m[c][j] /= piv;
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = m[r][c];
      for (let j = 0; j < 2 * n; j++) m[r][j] -= f * m[c][j];
    }
  }
  return { inv: m.map((row) => row.slice(n)), det };
}

describe('linear algebra', () => {
  test('Cholesky factor, solve, inverse and log-determinant agree with Gauss-Jordan', () => {
    const n = 7;
    const a = spd(n, 5);
    const l = cholesky(a, n)!;
    expect(l).not.toBeNull();
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
      if (j > i) expect(l[i * n + j]).toBe(0);
      let s = 0;
      for (let k = 0; k < n; k++) s += l[i * n + k] * l[j * n + k];
      expect(s).toBeCloseTo(a[i * n + j], 10);
    }
    const { inv, det } = gaussJordan(a, n);
    const b = Array.from({ length: n }, (_, i) => Math.sin(i + 1));
    const x = cholSolve(l, n, b);
    for (let i = 0; i < n; i++) expect(x[i]).toBeCloseTo(inv[i].reduce((s, v, j) => s + v * b[j], 0), 10);
    const ci = cholInverse(l, n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) expect(ci[i * n + j]).toBeCloseTo(inv[i][j], 10);
    expect(cholLogDet(l, n)).toBeCloseTo(Math.log(det), 9);
    expect(cholesky(Float64Array.from([1, 2, 2, 1]), 2)).toBeNull(); // indefinite
  });
});

describe('Gaussian process', () => {
  const rng = makeRng('gp');
  const x = Array.from({ length: 9 }, () => [rng(), rng()]);
  const y = x.map(([a, b]) => Math.sin(5 * a) + Math.cos(3 * b));
  const hyper: GPHyper = { lengthscales: [0.3, 0.5], signal: 1.3, noise: 1e-10 };

  test('posterior mean interpolates the training points when the noise is tiny, with no variance left there', () => {
    const gp = new GaussianProcess(x, y, hyper);
    x.forEach((p, i) => {
      const { mean, variance } = gp.predict(p);
      expect(mean).toBeCloseTo(y[i], 5);
      expect(variance).toBeLessThan(1e-6);
    });
    // Far from the data the prior returns: mean 0, variance the signal variance.
    const far = gp.predict([40, 40]);
    expect(far.mean).toBeCloseTo(0, 10);
    expect(far.variance).toBeCloseTo(hyper.signal, 10);
  });

  test('posterior mean and variance equal k*ᵀK⁻¹y and k** − k*ᵀK⁻¹k* computed directly', () => {
    const h: GPHyper = { ...hyper, noise: 0.01 };
    const gp = new GaussianProcess(x, y, h);
    const n = x.length;
    // The Matérn-5/2 kernel written out, independently of kernel().
    const k = (a: number[], b: number[]) => {
      const r = Math.hypot((a[0] - b[0]) / h.lengthscales[0], (a[1] - b[1]) / h.lengthscales[1]);
      return h.signal * (1 + Math.sqrt(5) * r + (5 / 3) * r * r) * Math.exp(-Math.sqrt(5) * r);
    };
    const kmat = Array.from({ length: n * n }, (_, idx) => k(x[Math.floor(idx / n)], x[idx % n]) + (Math.floor(idx / n) === idx % n ? h.noise : 0));
    const { inv } = gaussJordan(kmat, n);
    for (const p of [[0.5, 0.5], [0.1, 0.9], [1.2, -0.1]]) {
      const ks = x.map((xi) => k(p, xi));
      expect(kernel(p, x[0], h)).toBeCloseTo(ks[0], 12);
      const w = inv.map((row) => row.reduce((s, v, j) => s + v * ks[j], 0)); // K⁻¹k*
      const { mean, variance } = gp.predict(p);
      expect(mean).toBeCloseTo(w.reduce((s, v, i) => s + v * y[i], 0), 8);
      expect(variance).toBeCloseTo(h.signal - w.reduce((s, v, i) => s + v * ks[i], 0), 8);
    }
  });

  test('the hyperparameter objective has the gradient finite differences give, and fitting lowers it', () => {
    const t = [Math.log(0.4), Math.log(0.2), Math.log(1.5), Math.log(1e-3)];
    const { value, grad } = negLogPosterior(x, y, t);
    for (let c = 0; c < t.length; c++) {
      const e = 1e-6;
      const up = negLogPosterior(x, y, t.map((v, i) => (i === c ? v + e : v))).value;
      const down = negLogPosterior(x, y, t.map((v, i) => (i === c ? v - e : v))).value;
      expect(grad[c]).toBeCloseTo((up - down) / (2 * e), 4);
    }
    const gp = fitGP(x, y, { rng: makeRng(1) });
    const fitted = [...gp.hyper.lengthscales.map(Math.log), Math.log(gp.hyper.signal), Math.log(gp.hyper.noise)];
    expect(negLogPosterior(x, y, fitted).value).toBeLessThan(value);
    // The fitted model predicts held-out points of the smooth function better than its mean does.
    const test = Array.from({ length: 20 }, () => [rng(), rng()]);
    const err = test.reduce((s, p) => s + (gp.predict(p).mean - (Math.sin(5 * p[0]) + Math.cos(3 * p[1]))) ** 2, 0);
    const base = test.reduce((s, p) => s + (Math.sin(5 * p[0]) + Math.cos(3 * p[1])) ** 2, 0);
    expect(err).toBeLessThan(0.2 * base);
  });
});

describe('expected improvement', () => {
  test('matches numerical integration of E[max(best − f, 0)], is never negative, and vanishes far below the best', () => {
    for (const [mean, sd, best] of [[0, 1, 0], [1, 0.5, 0.2], [-1, 2, 0.5], [3, 0.1, 2.5]]) {
      // Midpoint rule over ±12 sd.
      let integral = 0;
      const steps = 20000;
      const h = (24 * sd) / steps;
      for (let i = 0; i < steps; i++) {
        const f = mean - 12 * sd + (i + 0.5) * h;
        integral += Math.max(best - f, 0) * (normPdf((f - mean) / sd) / sd) * h;
      }
      expect(expectedImprovement(mean, sd, best)).toBeCloseTo(integral, 6);
    }
    const rng = makeRng('ei');
    for (let i = 0; i < 200; i++) expect(expectedImprovement(rng() * 10 - 5, rng() * 3, rng() * 10 - 5)).toBeGreaterThanOrEqual(0);
    expect(expectedImprovement(10, 1, 0)).toBeLessThan(1e-20);
    expect(normCdf(0)).toBeCloseTo(0.5, 7);
    expect(normCdf(1.959964)).toBeCloseTo(0.975, 6);
  });

  test('log EI equals log(EI) where EI is representable and keeps ordering points far below the best', () => {
    for (let z = -30; z <= 5; z += 0.25) {
      const ei = expectedImprovement(0, 1, z);
      expect(Math.abs(logExpectedImprovement(0, 1, z) - Math.log(ei))).toBeLessThan(2e-5 * Math.max(1, Math.abs(Math.log(ei))));
    }
    let prev = Infinity;
    for (let z = -2; z >= -2000; z *= 1.5) {
      const l = logExpectedImprovement(0, 1, z);
      expect(Number.isFinite(l)).toBe(true);
      expect(l).toBeLessThan(prev);
      prev = l;
    }
  });
});

describe('Bayesian optimisation', () => {
  test('finds lower Branin values than random search with the same budget (median over seeds)', async () => {
    const fn = FUNCTIONS.branin;
    const regret = async (sampler: Sampler, seed: number) => (await optimize(fn.f, fn.space, { sampler, trials: 20, seed })).best!.value! - fn.optimum;
    const bayes: number[] = [];
    const random: number[] = [];
    for (let seed = 0; seed < 5; seed++) {
      bayes.push(await regret(new BayesSampler(), seed));
      random.push(await regret(new RandomSampler(), seed));
    }
    expect(median(bayes)).toBeLessThan(median(random));
  });

  test('maximises when asked to, and two asks before a tell propose different points', async () => {
    const study = await optimize((p) => -bowl(p), bowlSpace, { sampler: new BayesSampler({ startupTrials: 4 }), trials: 14, seed: 2, direction: 'maximize' });
    expect(study.best!.value!).toBeGreaterThan(-0.01);
    const s = new Study({ space: bowlSpace, sampler: new BayesSampler({ startupTrials: 4 }), seed: 3 });
    drain(s, bowl, 8);
    const a = s.ask()!;
    const b = s.ask()!;
    const dist = Math.hypot(...encode(bowlSpace, a.params).map((v, k) => v - encode(bowlSpace, b.params)[k]));
    expect(dist).toBeGreaterThan(1e-3);
  });

  test('proposes valid values of int, categorical, stepped and log parameters', async () => {
    const space: Space = { n: int(1, 6), act: categorical(['a', 'b', 'c']), t: float(0, 1, { step: 0.1 }), lr: float(1e-5, 1e-1, { log: true }) };
    const study = await optimize((p) => ((p.n as number) - 4) ** 2 + (p.act === 'c' ? 0 : 1) + ((p.t as number) - 0.3) ** 2 + (Math.log10(p.lr as number) + 3) ** 2, space, {
      sampler: new BayesSampler({ startupTrials: 4 }),
      trials: 14,
      seed: 1,
    });
    for (const t of study.trials) {
      expect(Number.isInteger(t.params.n) && (t.params.n as number) >= 1 && (t.params.n as number) <= 6).toBe(true);
      expect(['a', 'b', 'c']).toContain(t.params.act);
      expect(Math.abs((t.params.t as number) * 10 - Math.round((t.params.t as number) * 10))).toBeLessThan(1e-9);
      expect(t.params.lr as number).toBeGreaterThanOrEqual(1e-5);
      expect(t.params.lr as number).toBeLessThanOrEqual(1e-1);
    }
  });
});

describe('particle swarm', () => {
  const space: Space = { node: cube(3) };
  const target = [0.2, 0.8, 0.5];
  const f = (p: Params) => (p.node as number[]).reduce((s, v, k) => s + (v - target[k]) ** 2, 0);
  const P = 5;

  test('particles stay in the cube, and each move is the PSO update from the rebuilt state', async () => {
    const sampler = new ParticleSwarmSampler({ particles: P });
    const study = await optimize(f, space, { sampler, trials: 6 * P, seed: 4 });
    const { inertia: w, cognitive: c1, social: c2, maxVelocity: vmax } = sampler.options;
    for (const t of study.trials) for (const v of t.params.node as number[]) expect(v >= 0 && v <= 1).toBe(true);
    for (let n = P; n < study.trials.length; n++) {
      const [i, g] = [n % P, Math.floor(n / P)];
      const x = study.trials[n - P].params.node as number[];
      const v = g >= 2 ? x.map((xv, k) => xv - (study.trials[n - 2 * P].params.node as number[])[k]) : [0, 0, 0];
      // Bests from the finished trials of earlier generations, found here independently.
      const earlier = study.trials.slice(0, g * P);
      const argmin = (ts: TrialRecord[]) => ts.reduce((b, t) => (t.value! < b.value! ? t : b));
      const pbest = argmin(earlier.filter((t) => t.number % P === i)).params.node as number[];
      const gbest = argmin(earlier).params.node as number[];
      const rng = makeRng(`4:${n}`);
      const expected = x.map((xk, k) => {
        const r1 = rng();
        const r2 = rng();
        const vk = Math.max(-vmax, Math.min(vmax, w * v[k] + c1 * r1 * (pbest[k] - xk) + c2 * r2 * (gbest[k] - xk)));
        return Math.min(1, Math.max(0, xk + vk));
      });
      (study.trials[n].params.node as number[]).forEach((u, k) => expect(u).toBeCloseTo(expected[k], 12));
    }
  });

  test('the global best never gets worse from one generation to the next, and the swarm improves on generation 0', async () => {
    const study = await optimize(f, space, { sampler: new ParticleSwarmSampler({ particles: P }), trials: 8 * P, seed: 6 });
    const ctx = { space, direction: 'minimize' as const, trials: study.trials };
    const bests = Array.from({ length: 8 }, (_, g) => particleState(ctx, P, 0, g + 1).globalBest!.loss);
    for (let g = 1; g < bests.length; g++) expect(bests[g]).toBeLessThanOrEqual(bests[g - 1]);
    expect(bests[bests.length - 1]).toBeLessThan(bests[0]);
    // The reported best is the true minimum over the generations counted.
    expect(bests[bests.length - 1]).toBe(Math.min(...study.trials.map((t) => t.value!)));
  });

  test('maximising flips the comparison; failed trials never become bests', () => {
    const trials = [record(0, { node: [0.1, 0.1, 0.1] }, 1), record(1, { node: [0.9, 0.9, 0.9] }, 5), record(2, { node: [0.5, 0.5, 0.5] }, undefined, 'failed')];
    const max = particleState({ space, direction: 'maximize', trials }, 3, 0, 1);
    expect(max.globalBest!.trial).toBe(1);
    expect(max.personalBest!.trial).toBe(0);
    const min = particleState({ space, direction: 'minimize', trials }, 3, 2, 1);
    expect(min.globalBest!.trial).toBe(0);
    expect(min.personalBest).toBeUndefined();
  });
});

describe('TPE', () => {
  test.each([true, false])('Parzen densities integrate to 1 over the unit interval (multivariate %s)', (mv) => {
    const p = parzen([[0.05], [0.3], [0.32], [0.9]], 1, mv);
    let s = 0;
    const steps = 20000;
    for (let i = 0; i < steps; i++) s += Math.exp(parzenLogPdf(p, [(i + 0.5) / steps], mv)) / steps;
    expect(s).toBeCloseTo(1, 4);
  });

  test('beats random search on a bowl (median over seeds)', async () => {
    const best = async (sampler: Sampler, seed: number) => (await optimize(bowl, bowlSpace, { sampler, trials: 30, seed })).best!.value!;
    const tpe: number[] = [];
    const random: number[] = [];
    for (let seed = 0; seed < 7; seed++) {
      tpe.push(await best(new TpeSampler(), seed));
      random.push(await best(new RandomSampler(), seed));
    }
    expect(median(tpe)).toBeLessThan(median(random));
  });
});

describe('makeSampler', () => {
  test('builds every named sampler and names the valid choices for an unknown one', () => {
    for (const name of SAMPLER_NAMES) expect(makeSampler(name).name).toBe(name);
    expect(makeSampler('grid', { interval: 0.5 }).options).toEqual({ interval: 0.5, shuffle: false });
    let message = '';
    try {
      makeSampler('anneal');
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/unknown sampler "anneal"/);
    for (const name of SAMPLER_NAMES) expect(message).toContain(name);
  });
});
