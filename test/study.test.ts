/**
 * The study API: spaces and their unit-cube encoding, ask/tell, failed and pruned trials, the JSONL
 * study file, resume without repeating finished trials, and a process killed mid-trial.
 */
import { execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { categorical, cube, decode, encode, float, gridValues, int, type Space, SpaceError, validateSpace } from '../kernel/tune/space';
import { optimize, Study, StudyFileError, StudyStopped, TrialPruned } from '../kernel/tune/study';
import { RandomSampler } from '../kernel/tune/random';

const ROOT = path.resolve(__dirname, '..');
let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ct-study-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const readEvents = (file: string) =>
  fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));

describe('search spaces', () => {
  test('bad spaces name the parameter and the fix', () => {
    expect(() => validateSpace({})).toThrow(/search space is empty/);
    expect(() => validateSpace({ lr: float(1e-2, 1e-4) })).toThrow(/"lr": inverted bounds, low 0.01 > high 0.0001/);
    expect(() => validateSpace({ lr: float(0, 1, { log: true }) })).toThrow(/"lr": a log range must be positive.*includes 0.*log: false/);
    expect(() => validateSpace({ r: int(-4, 8, { log: true }) })).toThrow(/"r": a log range must be positive/);
    expect(() => validateSpace({ r: int(1.5, 8) })).toThrow(/"r": int bounds must be integers/);
    expect(() => validateSpace({ c: categorical([]) })).toThrow(/"c": categorical needs at least one choice/);
    expect(() => validateSpace({ x: { kind: 'nope' } as never })).toThrow(/unknown kind "nope"; valid kinds: float, int, categorical, cube/);
    expect(() => validateSpace({ x: float(0, 1, { step: 0 }) })).toThrow(/step must be > 0/);
    expect(() => new Study({ space: {}, sampler: new RandomSampler() })).toThrow(SpaceError);
  });

  test('decode maps the unit cube onto each parameter and encode inverts it', () => {
    const space: Space = { lr: float(1e-4, 1e-2, { log: true }), x: float(-5, 10), r: int(1, 64, { log: true }), b: categorical([8, 16, 32]), p: cube() };
    // Independent: the log-scale midpoint is the geometric mean; the linear midpoint the mean.
    const mid = decode(space, [0.5, 0.5, 0.5, 0.5, 0.2, 0.4, 0.6]);
    expect(mid.lr).toBeCloseTo(Math.sqrt(1e-4 * 1e-2), 12);
    expect(mid.x).toBeCloseTo(2.5, 12);
    expect(mid.b).toBe(16);
    expect(mid.p).toEqual([0.2, 0.4, 0.6]);
    const back = decode(space, encode(space, mid));
    expect(back).toEqual(mid);
    expect(decode(space, [0, 0, 0, 0, 0, 0, 0])).toMatchObject({ lr: 1e-4, x: -5, r: 1, b: 8 });
    expect(decode(space, [1, 1, 1, 1, 1, 1, 1])).toMatchObject({ lr: 1e-2, x: 10, r: 64, b: 32 });
  });

  test('uniform unit points give every integer of an int range about equally often', () => {
    const p = int(1, 4);
    const counts = new Map<number, number>();
    for (let i = 0; i < 4000; i++) {
      const v = decode({ p }, [(i + 0.5) / 4000]).p as number;
      counts.set(v, (counts.get(v) ?? 0) + 1);
    }
    expect([...counts.keys()].sort()).toEqual([1, 2, 3, 4]);
    for (const c of counts.values()) expect(c).toBe(1000);
  });

  test('grid values at an interval and at a step', () => {
    expect(gridValues(float(0, 1), 0.1)).toHaveLength(11);
    // An interval that does not divide 1 still reaches both ends: 0.3 gives 3 equal steps.
    expect((gridValues(float(0, 3), 0.3) as number[]).map((v) => +v.toFixed(12))).toEqual([0, 1, 2, 3]);
    expect(gridValues(float(0.1, 1.0, { step: 0.1 }), 1)).toEqual([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]);
    expect(gridValues(categorical(['a', 'b']), 0.5)).toEqual(['a', 'b']);
    expect(gridValues(int(1, 3), 0.25)).toEqual([1, 2, 3]);
    expect(gridValues(cube(3), 0.5)).toHaveLength(27);
    const logs = gridValues(float(1e-4, 1e-2, { log: true }), 0.5) as number[];
    expect(logs[1]).toBeCloseTo(1e-3, 15);
  });
});

describe('study', () => {
  const space: Space = { x: float(-2, 2), c: categorical(['a', 'b']) };

  test('ask/tell by hand, best trial, direction', () => {
    const s = new Study({ space, sampler: new RandomSampler(), direction: 'maximize', seed: 3 });
    const values: number[] = [];
    for (let i = 0; i < 6; i++) {
      const t = s.ask()!;
      const v = -((t.params.x as number) ** 2);
      values.push(v);
      s.tell(t.number, v);
    }
    expect(s.best!.value).toBe(Math.max(...values));
    expect(() => s.tell(0, 1)).toThrow(/trial 0 already finished/);
    expect(() => s.tell(99, 1)).toThrow(/no trial 99/);
  });

  test('a throwing objective or a NaN records a failed trial and the study goes on', async () => {
    const file = path.join(dir, 'failures.jsonl');
    const s = await optimize(
      (p, t) => {
        if (t.number === 1) throw new Error('CUDA out of memory (pretend)');
        if (t.number === 2) return NaN;
        return (p.x as number) ** 2;
      },
      space,
      { sampler: new RandomSampler(), trials: 5, seed: 1, path: file },
    );
    expect(s.trials.map((t) => t.state)).toEqual(['complete', 'failed', 'failed', 'complete', 'complete']);
    expect(s.trials[1].error).toBe('CUDA out of memory (pretend)');
    expect(s.trials[2].error).toMatch(/objective returned NaN, not a finite number/);
    const tells = readEvents(file).filter((e) => e.type === 'tell');
    expect(tells.map((e) => e.state)).toEqual(['complete', 'failed', 'failed', 'complete', 'complete']);
    expect(tells[1].error).toBe('CUDA out of memory (pretend)');
  });

  test('the median rule prunes a trial worse than the median of completed trials at the same step', async () => {
    // Trial k reports value (k+1)·step-independent level; later trials are worse or better by design.
    const levels = [3, 1, 2, 5, 0.5];
    const seen: Array<{ n: number; pruned: boolean }> = [];
    const s = new Study({ space, sampler: new RandomSampler(), pruner: { startupTrials: 3 } });
    await s.optimize(
      (_p, t) => {
        for (let step = 1; step <= 3; step++) {
          t.report(step, levels[t.number] + 1 / step);
          if (t.shouldPrune()) {
            seen.push({ n: t.number, pruned: true });
            throw new TrialPruned();
          }
        }
        seen.push({ n: t.number, pruned: false });
        return levels[t.number];
      },
      { trials: 5 },
    );
    // Median of completed levels {3,1,2} is 2: trial 3 (5) is pruned at step 1, trial 4 (0.5) is not.
    expect(seen).toEqual([
      { n: 0, pruned: false },
      { n: 1, pruned: false },
      { n: 2, pruned: false },
      { n: 3, pruned: true },
      { n: 4, pruned: false },
    ]);
    expect(s.trials[3].state).toBe('pruned');
    expect(s.trials[3].value).toBe(6); // its last reported value
    expect(s.best!.number).toBe(4);
  });

  test('reports in another quantity than the objective: the median rule uses their direction, and a pruned trial keeps no value', async () => {
    // The objective (say token F1) is maximised while trials report a loss, where lower is better.
    const losses = [3, 1, 2, 5, 0.5];
    const s = new Study({ space, sampler: new RandomSampler(), direction: 'maximize', pruner: { startupTrials: 3, intermediateDirection: 'minimize' } });
    await s.optimize(
      (_p, t) => {
        t.report(1, losses[t.number]);
        if (t.shouldPrune()) throw new TrialPruned();
        return 1 / losses[t.number];
      },
      { trials: 5 },
    );
    // Median loss of trials 0-2 is 2: trial 3 (loss 5) is pruned, trial 4 (loss 0.5) completes and is best.
    expect(s.trials.map((t) => t.state)).toEqual(['complete', 'complete', 'complete', 'pruned', 'complete']);
    expect(s.trials[3].value).toBeUndefined();
    expect(s.best!.number).toBe(4);
  });

  test('resuming a study file continues without repeating finished trials', async () => {
    const file = path.join(dir, 'resume.jsonl');
    const calls: string[] = [];
    const objective = (p: Record<string, unknown>) => {
      calls.push(JSON.stringify(p));
      return (p.x as number) ** 2;
    };
    await optimize(objective, space, { sampler: new RandomSampler(), trials: 4, seed: 9, path: file });
    await optimize(objective, space, { sampler: new RandomSampler(), trials: 7, seed: 9, path: file });
    expect(calls).toHaveLength(7);
    expect(new Set(calls).size).toBe(7);
    const whole = await optimize(objective, space, { sampler: new RandomSampler(), trials: 7, seed: 9 });
    expect(calls.slice(7)).toEqual(calls.slice(0, 7)); // same seed, same proposals as one uninterrupted study
    expect(whole.trials).toHaveLength(7);
  });

  test('a study file made for another space, sampler or seed is refused with the difference named', () => {
    const file = path.join(dir, 'mismatch.jsonl');
    new Study({ space, sampler: new RandomSampler(), seed: 1, path: file }).close();
    expect(() => new Study({ space: { x: float(-3, 3) }, sampler: new RandomSampler(), seed: 1, path: file })).toThrow(/created with space .* not .*use a new study file/);
    expect(() => new Study({ space, sampler: new RandomSampler(), seed: 2, path: file })).toThrow(/created with seed 1, not 2/);
    expect(() => new Study({ space, sampler: new RandomSampler(), seed: 1, direction: 'maximize', path: file })).toThrow(/direction "minimize", not "maximize"/);
  });

  test('a torn last line is dropped; a corrupt line in the middle is an error naming file:line', async () => {
    const file = path.join(dir, 'torn.jsonl');
    await optimize((p) => (p.x as number) ** 2, space, { sampler: new RandomSampler(), trials: 2, path: file });
    fs.appendFileSync(file, '{"type":"ask","number":2,"par');
    const s = new Study({ space, sampler: new RandomSampler(), path: file });
    expect(s.trials).toHaveLength(2);
    s.close();
    expect(fs.readFileSync(file, 'utf8').endsWith('}\n')).toBe(true);
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    lines[2] = '{oops';
    fs.writeFileSync(file, lines.join('\n'));
    expect(() => new Study({ space, sampler: new RandomSampler(), path: file })).toThrow(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3: not valid JSON`));
  });

  test('StudyStopped leaves the trial running; the next ask hands it out again with the same params', async () => {
    const file = path.join(dir, 'stopped.jsonl');
    const s = new Study({ space, sampler: new RandomSampler(), path: file });
    let first: unknown;
    await expect(
      s.optimize(
        (p) => {
          first = p;
          throw new StudyStopped();
        },
        { trials: 3 },
      ),
    ).rejects.toThrow(StudyStopped);
    s.close();
    const again = new Study({ space, sampler: new RandomSampler(), path: file });
    expect(again.trials[0].state).toBe('running');
    expect(again.ask()!.params).toEqual(first);
    again.close();
  });
});

describe('killing the process mid-trial', () => {
  beforeAll(() => {
    // The child runs the compiled library; rebuild it when the sources are newer than dist/.
    const src = path.join(ROOT, 'kernel/tune/study.ts');
    const out = path.join(ROOT, 'dist/kernel/tune/study.js');
    if (!fs.existsSync(out) || fs.statSync(out).mtimeMs < fs.statSync(src).mtimeMs) {
      execFileSync(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', path.join(ROOT, 'tsconfig.json')], { stdio: 'inherit' });
    }
  });

  test('loses nothing already written, and the resumed study reruns only the interrupted trial', async () => {
    const file = path.join(dir, 'killed.jsonl');
    const script = `
      const { optimize } = require(${JSON.stringify(path.join(ROOT, 'dist/kernel/tune/study.js'))});
      const { RandomSampler } = require(${JSON.stringify(path.join(ROOT, 'dist/kernel/tune/random.js'))});
      const { float, categorical } = require(${JSON.stringify(path.join(ROOT, 'dist/kernel/tune/space.js'))});
      const busy = (ms) => { const t = Date.now(); while (Date.now() - t < ms); };
      optimize((p) => { busy(120); return p.x * p.x; }, { x: float(-2, 2), c: categorical(['a', 'b']) },
        { sampler: new RandomSampler(), trials: 1000, seed: 5, path: ${JSON.stringify(file)} });
    `;
    const child = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
    // Kill once at least 4 trials have finished and the last event is an ask (mid-trial).
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        if (!fs.existsSync(file)) return;
        const ev = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
        const tells = ev.filter((l) => l.includes('"type":"tell"')).length;
        if (tells >= 4 && ev[ev.length - 1].includes('"type":"ask"')) {
          child.kill('SIGKILL');
          clearInterval(timer);
          resolve();
        }
      }, 10);
      child.on('exit', (code, signal) => {
        if (signal !== 'SIGKILL') {
          clearInterval(timer);
          reject(new Error(`child exited early: ${code} ${signal}`));
        }
      });
    });
    await new Promise((r) => child.on('close', r));
    const before = readEvents(file); // every line parses
    const told = before.filter((e) => e.type === 'tell');
    const asks = before.filter((e) => e.type === 'ask');
    expect(asks.length).toBe(told.length + 1);
    const interrupted = asks[asks.length - 1];

    const calls: Array<Record<string, unknown>> = [];
    const resumed = await optimize(
      (p) => {
        calls.push(p);
        return (p.x as number) ** 2;
      },
      { x: float(-2, 2), c: categorical(['a', 'b']) },
      { sampler: new RandomSampler(), trials: told.length + 3, seed: 5, path: file },
    );
    // Finished trials keep their values and are not rerun; the interrupted one is rerun with its params.
    expect(calls[0]).toEqual(interrupted.params);
    expect(calls).toHaveLength(3);
    for (const t of told) expect(resumed.trials[t.number].value).toBe(t.value);
    for (const c of calls.slice(1)) expect(told.some((t) => JSON.stringify(resumed.trials[t.number].params) === JSON.stringify(c))).toBe(false);
    expect(resumed.trials.every((t) => t.state === 'complete')).toBe(true);
  });
});
