/**
 * Search samplers on standard test functions: for each function, sampler and seed, one study of
 * `trials` trials; the figure is the regret of the best value found (best − known minimum), summarised
 * over seeds by its median and quartiles, and compared with random search as random's median regret
 * over the sampler's (higher is better; 5 means five times closer to the optimum). Optuna's samplers,
 * run on the same functions, seeds and budget by bench/optuna_peer.py, are a same-run peer.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import { performance } from 'perf_hooks';
import { projectPath } from '../kernel/paths';
import { makeSampler, type SamplerName } from '../kernel/tune/samplers';
import { spaceDims } from '../kernel/tune/space';
import { optimize } from '../kernel/tune/study';
import type { Sampler } from '../kernel/tune/types';
import { FUNCTIONS, type TestFunction } from './functions';

export type FunctionName = keyof typeof FUNCTIONS;

export interface SearchBenchOptions {
  /** Studies per function and sampler, seeds 0..seeds−1 (default 20). */
  seeds?: number;
  /** Trials per study (default 30). */
  trials?: number;
  samplers?: SamplerName[];
  functions?: FunctionName[];
  /** Run bench/optuna_peer.py as a peer (default true). */
  peer?: boolean;
  /** Progress lines (one per function and sampler). */
  log?: (line: string) => void;
}

/** Best-found regret over seeds. */
export interface RegretSummary {
  median: number;
  q1: number;
  q3: number;
  /** Per seed, in seed order. */
  regrets: number[];
  /** Wall time of all seeds' studies. */
  seconds: number;
}

export const BENCH_SAMPLERS: SamplerName[] = ['random', 'grid', 'bayes', 'tpe', 'pso'];

/** Quantile with linear interpolation between order statistics (numpy's default). */
export function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const h = (s.length - 1) * q;
  const lo = Math.floor(h);
  return lo + 1 < s.length ? s[lo] + (h - lo) * (s[lo + 1] - s[lo]) : s[lo];
}

export function summarise(regrets: number[], seconds: number): RegretSummary {
  return { median: quantile(regrets, 0.5), q1: quantile(regrets, 0.25), q3: quantile(regrets, 0.75), regrets, seconds };
}

/**
 * The grid that fits the budget: k values per coordinate with k^d ≤ trials (at least 2), visited in a
 * seeded random order so that seeds differ and a budget smaller than the grid is not spent in one corner.
 */
export function benchGridOptions(fn: TestFunction, trials: number): { interval: number; shuffle: boolean } {
  const k = Math.max(2, Math.floor(Math.pow(trials, 1 / spaceDims(fn.space)) + 1e-9));
  return { interval: 1 / (k - 1), shuffle: true };
}

function samplerFor(name: SamplerName, fn: TestFunction, trials: number): Sampler {
  return name === 'grid' ? makeSampler('grid', benchGridOptions(fn, trials)) : makeSampler(name);
}

/** Best-found regret of one study. */
async function regretOf(fn: TestFunction, sampler: Sampler, trials: number, seed: number): Promise<number> {
  const study = await optimize((p) => fn.f(p), fn.space, { sampler, trials, seed });
  const best = study.best?.value;
  if (best === undefined) throw new Error(`bench: ${sampler.name} on ${fn.name} (seed ${seed}) finished no trial`);
  return best - fn.optimum;
}

/** Runs bench/optuna_peer.py; a string saying why when python3 or optuna is missing or it fails. */
export function optunaPeer(seeds: number, trials: number, functions: FunctionName[]): Record<string, unknown> | string {
  const script = projectPath('bench', 'optuna_peer.py');
  if (!fs.existsSync(script)) return `peer unavailable: ${script} not found`;
  // Debian's python3-optuna lives in the system interpreter, which a PATH python3 may shadow.
  const pythons = ['/usr/bin/python3', 'python3'].filter((p) => !p.startsWith('/') || fs.existsSync(p));
  let why = 'python3 not found';
  for (const python of pythons) {
    try {
      execFileSync(python, ['-c', 'import optuna'], { stdio: 'ignore' });
    } catch (e) {
      why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'python3 not found' : `optuna not importable by ${python} (apt-get install python3-optuna)`;
      continue;
    }
    try {
      const out = execFileSync(python, [script, '--json', '--seeds', String(seeds), '--trials', String(trials), '--functions', functions.join(',')], {
        encoding: 'utf8',
        maxBuffer: 16 << 20,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      return JSON.parse(out);
    } catch (e) {
      const err = e as { stderr?: string; message: string };
      return `peer unavailable: ${python} ${script} failed: ${(err.stderr || err.message).trim().split('\n').slice(-1)[0]}`;
    }
  }
  return `peer unavailable: ${why}`;
}

type Table = Record<string, Record<string, RegretSummary>>;

/** random's median regret over each sampler's (absent where a median is 0). */
function ratiosOf(results: Table): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const [fn, bySampler] of Object.entries(results)) {
    const random = bySampler.random?.median;
    if (random === undefined) continue;
    out[fn] = {};
    for (const [name, s] of Object.entries(bySampler)) if (name !== 'random' && s.median > 0) out[fn][name] = random / s.median;
  }
  return out;
}

export async function runSearchBench(opts: SearchBenchOptions = {}) {
  const seeds = opts.seeds ?? 20;
  const trials = opts.trials ?? 30;
  if (!(Number.isInteger(seeds) && seeds >= 1)) throw new RangeError(`seeds must be an integer >= 1, got ${seeds}`);
  if (!(Number.isInteger(trials) && trials >= 2)) throw new RangeError(`trials must be an integer >= 2, got ${trials}`);
  const samplers = opts.samplers ?? BENCH_SAMPLERS;
  const functions = opts.functions ?? (Object.keys(FUNCTIONS) as FunctionName[]);
  const start = performance.now();
  const results: Table = {};
  const samplerOptions: Record<string, Record<string, Record<string, unknown>>> = {};
  for (const name of functions) {
    const fn = FUNCTIONS[name];
    results[name] = {};
    samplerOptions[name] = {};
    for (const s of samplers) {
      // Samplers keep no state between trials, so one serves every seed.
      const sampler = samplerFor(s, fn, trials);
      const t0 = performance.now();
      const regrets: number[] = [];
      for (let seed = 0; seed < seeds; seed++) regrets.push(await regretOf(fn, sampler, trials, seed));
      const r = summarise(regrets, (performance.now() - t0) / 1000);
      results[name][s] = r;
      samplerOptions[name][s] = sampler.options;
      opts.log?.(`${name} ${s}: median regret ${r.median.toPrecision(3)} (q1 ${r.q1.toPrecision(3)}, q3 ${r.q3.toPrecision(3)}), ${r.seconds.toFixed(1)} s`);
    }
  }
  const seconds = (performance.now() - start) / 1000;
  let peer: Record<string, unknown> | string | undefined;
  if (opts.peer !== false) {
    const t0 = performance.now();
    peer = optunaPeer(seeds, trials, functions);
    opts.log?.(typeof peer === 'string' ? peer : `optuna peer: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const peerResults = typeof peer === 'object' ? (peer.results as Table | undefined) : undefined;
  // Our samplers against the peer's on the same functions, seeds count and budget: peer median / ours.
  const versusPeer: Record<string, Record<string, number>> = {};
  if (peerResults) {
    for (const name of functions) {
      const theirs = peerResults[name] ?? {};
      const ours = results[name];
      versusPeer[name] = {};
      for (const [o, t] of [['random', 'random'], ['tpe', 'tpe'], ['bayes', 'tpe'], ['bayes', 'tpe_multivariate'], ['tpe', 'tpe_multivariate']]) {
        if (ours[o] && theirs[t] && ours[o].median > 0) versusPeer[name][`${o}_vs_optuna_${t}`] = theirs[t].median / ours[o].median;
      }
    }
  }
  return {
    date: new Date().toISOString(),
    config: {
      seeds,
      trials,
      functions: Object.fromEntries(functions.map((n) => [n, { dims: spaceDims(FUNCTIONS[n].space), optimum: FUNCTIONS[n].optimum }])),
      samplers: samplerOptions,
    },
    results,
    /** random's median regret / the sampler's, per function (≥ 5 is the target for bayes). */
    ratios: ratiosOf(results),
    seconds,
    peer: peer === undefined ? 'peer skipped (--no-peer)' : typeof peer === 'string' ? peer : ({ ...peer, ratios: peerResults ? ratiosOf(peerResults) : undefined } as Record<string, unknown>),
    versus_peer: peerResults ? versusPeer : undefined,
  };
}

export type SearchBenchResult = Awaited<ReturnType<typeof runSearchBench>>;

/** The figures as text tables, one per function. */
export function formatSearchBench(r: SearchBenchResult): string {
  const lines: string[] = [`${r.config.seeds} seeds × ${r.config.trials} trials; regret = best found − optimum; ratio = random median / sampler median`];
  const peerResults = typeof r.peer === 'object' ? (r.peer.results as Table | undefined) : undefined;
  const peerRatios = typeof r.peer === 'object' ? (r.peer.ratios as Record<string, Record<string, number>> | undefined) : undefined;
  const fmt = (x: number) => (Math.abs(x) >= 0.01 || x === 0 ? x.toFixed(3) : x.toExponential(2));
  for (const [fn, bySampler] of Object.entries(r.results)) {
    lines.push('', `${fn} (optimum ${r.config.functions[fn].optimum}, ${r.config.functions[fn].dims}-D)`);
    lines.push(`  ${'sampler'.padEnd(26)}${'median'.padStart(11)}${'q1'.padStart(11)}${'q3'.padStart(11)}${'ratio'.padStart(9)}${'s'.padStart(8)}`);
    const row = (name: string, s: RegretSummary, ratio?: number) =>
      lines.push(`  ${name.padEnd(26)}${fmt(s.median).padStart(11)}${fmt(s.q1).padStart(11)}${fmt(s.q3).padStart(11)}${(ratio === undefined ? '-' : ratio.toFixed(1)).padStart(9)}${s.seconds.toFixed(1).padStart(8)}`);
    for (const [name, s] of Object.entries(bySampler)) row(name, s, r.ratios[fn]?.[name]);
    for (const [name, s] of Object.entries(peerResults?.[fn] ?? {})) row(`optuna ${name}`, s, peerRatios?.[fn]?.[name]);
    for (const [name, v] of Object.entries(r.versus_peer?.[fn] ?? {})) lines.push(`  ${name}: ${v.toFixed(2)}`);
  }
  if (typeof r.peer === 'string') lines.push('', r.peer);
  return lines.join('\n');
}
