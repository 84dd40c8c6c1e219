/**
 * A study: ask/tell over a search space, persisted as JSONL so that a crash loses nothing already
 * written and a resumed study does not repeat finished trials. In the spirit of Optuna's ask/tell:
 * the study knows nothing of the objective.
 *
 * Study file (one JSON object per line, appended and fsynced as events happen):
 *   {"type":"study","version":1,"name","direction","space","sampler":{"name","options"},"seed","pruner","created"}
 *   {"type":"ask","number","params","startedAt"}
 *   {"type":"report","number","step","value"}
 *   {"type":"tell","number","state","value"?,"error"?,"attrs","finishedAt"}
 */
import * as fs from 'fs';
import * as path from 'path';
import { median } from '../stats';
import { makeRng } from '../sample/sampler';
import { type Params, type Space, SpaceError, validateSpace } from './space';
import type { Direction, Sampler, TrialRecord, TrialState } from './types';
import { studyBundle } from '../display/bundles';
import type { MimeBundle } from '../display/mime';
import { differingKeys } from '../io/differingKeys';

export const STUDY_FILE_VERSION = 1;

export class StudyFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StudyFileError';
  }
}

/** Thrown by an objective (after trial.shouldPrune()) to stop an unpromising trial early. */
export class TrialPruned extends Error {
  constructor(message = 'pruned') {
    super(message);
    this.name = 'TrialPruned';
  }
}

/**
 * Thrown by an objective to stop the whole study at once (e.g. Ctrl-C): the trial is not told, so
 * it stays running in the study file and is run again, with the same params, on resume.
 */
export class StudyStopped extends Error {
  constructor(message = 'study stopped') {
    super(message);
    this.name = 'StudyStopped';
  }
}

/**
 * The median rule: prune a trial whose intermediate value at a step is worse than the median of the
 * completed trials' values at that step. Needs `startupTrials` completed trials before it prunes,
 * and never prunes before `warmupSteps`.
 */
export interface PrunerOptions {
  startupTrials?: number;
  warmupSteps?: number;
  /**
   * Set when trials report a different quantity than the objective, with that quantity's direction
   * (a training sweep reports validation loss while it maximises token F1). The median rule then
   * compares in this direction, and a pruned trial keeps no value: its last report is in other units.
   */
  intermediateDirection?: Direction;
}

export interface StudyOptions {
  space: Space;
  sampler: Sampler;
  direction?: Direction;
  seed?: number;
  name?: string;
  /** JSONL file to persist to; an existing file is resumed. Omit for an in-memory study. */
  path?: string;
  /** Median-rule pruning of trials that report intermediate values; omit to never prune. */
  pruner?: PrunerOptions;
  /**
   * What the values mean and are measured on (say the objective's name and a fingerprint of the data).
   * Stored in the study file; resuming with a different context is refused, since old and new values
   * would not be comparable.
   */
  context?: Record<string, unknown>;
}

export interface TrialHandle {
  readonly number: number;
  readonly params: Params;
  /** Record an intermediate value (e.g. validation loss at a step). */
  report(step: number, value: number): void;
  /** True when the median rule says to stop: throw new TrialPruned() from the objective. */
  shouldPrune(): boolean;
  /** Attach data to the trial record (run folder, metrics, responses). */
  setAttr(key: string, value: unknown): void;
}

export type TellResult =
  | number
  | { state: 'complete'; value: number }
  | { state: 'failed'; error: string }
  | { state: 'pruned'; value?: number };

interface StudyHeader {
  type: 'study';
  version: number;
  name: string;
  direction: Direction;
  space: Space;
  sampler: { name: string; options: Record<string, unknown> };
  seed: number;
  pruner: PrunerOptions | null;
  context?: Record<string, unknown>;
  created: string;
}

const DIRECTIONS: Direction[] = ['minimize', 'maximize'];

export class Study {
  readonly space: Space;
  readonly sampler: Sampler;
  readonly direction: Direction;
  readonly seed: number;
  readonly context?: Record<string, unknown>;
  readonly name: string;
  readonly path?: string;
  readonly pruner: (Required<Omit<PrunerOptions, 'intermediateDirection'>> & Pick<PrunerOptions, 'intermediateDirection'>) | null;
  private readonly records: TrialRecord[] = [];
  private fd = -1;

  constructor(o: StudyOptions) {
    validateSpace(o.space);
    const direction = o.direction ?? 'minimize';
    if (!DIRECTIONS.includes(direction)) throw new SpaceError(`direction must be one of ${DIRECTIONS.join(', ')}, got ${JSON.stringify(direction)}`);
    this.space = o.space;
    this.sampler = o.sampler;
    this.direction = direction;
    this.seed = o.seed ?? 0;
    this.context = o.context;
    this.name = o.name ?? (o.path ? path.basename(o.path, '.jsonl') : 'study');
    this.path = o.path;
    this.pruner = o.pruner
      ? { startupTrials: o.pruner.startupTrials ?? 3, warmupSteps: o.pruner.warmupSteps ?? 0, ...(o.pruner.intermediateDirection ? { intermediateDirection: o.pruner.intermediateDirection } : {}) }
      : null;
    if (o.path) this.openFile(o.path);
  }

  /** All trials in number order (copies are not made: treat as read-only). */
  get trials(): readonly TrialRecord[] {
    return this.records;
  }

  /** The best complete trial, or undefined when none has completed. */
  get best(): TrialRecord | undefined {
    let best: TrialRecord | undefined;
    for (const t of this.records) {
      if (t.state !== 'complete' || t.value === undefined) continue;
      if (!best || this.better(t.value, best.value!)) best = t;
    }
    return best;
  }

  /** Complete trials, best first. */
  ranking(): TrialRecord[] {
    const sign = this.direction === 'minimize' ? 1 : -1;
    return this.records.filter((t) => t.state === 'complete').sort((a, b) => sign * (a.value! - b.value!) || a.number - b.number);
  }

  /** Trials that finished (complete, failed or pruned). */
  get finished(): number {
    return this.records.filter((t) => t.state !== 'running').length;
  }

  better(a: number, b: number): boolean {
    return this.direction === 'minimize' ? a < b : a > b;
  }

  /**
   * Start a trial. A trial left running by a crashed process is handed out again first, with the same
   * params; otherwise the sampler proposes new ones. Returns null when the sampler is exhausted.
   */
  ask(): TrialHandle | null {
    const orphan = this.records.find((t) => t.state === 'running' && !this.live.has(t.number));
    let rec: TrialRecord;
    if (orphan) {
      orphan.intermediate = [];
      orphan.attrs = {};
      orphan.startedAt = new Date().toISOString();
      rec = orphan;
    } else {
      const number = this.records.length;
      const params = this.sampler.sample({
        space: this.space,
        direction: this.direction,
        trials: this.records,
        number,
        rng: makeRng(`${this.seed}:${number}`),
      });
      if (params === null) return null;
      rec = { number, params, state: 'running', intermediate: [], attrs: {}, startedAt: new Date().toISOString() };
      this.records.push(rec);
    }
    this.live.add(rec.number);
    this.write({ type: 'ask', number: rec.number, params: rec.params, startedAt: rec.startedAt });
    return this.handle(rec);
  }

  /** Finish a trial: a number completes it; NaN or an infinite value records a failed trial. */
  tell(number: number, result: TellResult): TrialRecord {
    const rec = this.records[number];
    if (!rec) throw new RangeError(`no trial ${number} in study "${this.name}" (it has ${this.records.length})`);
    if (rec.state !== 'running') throw new RangeError(`trial ${number} already finished (${rec.state})`);
    const r: Exclude<TellResult, number> = typeof result === 'number' ? { state: 'complete', value: result } : result;
    let state: TrialState = r.state;
    let value: number | undefined;
    let error: string | undefined;
    if (r.state === 'complete') {
      if (typeof r.value !== 'number' || !Number.isFinite(r.value)) {
        state = 'failed';
        error = `objective returned ${typeof r.value === 'number' ? String(r.value) : JSON.stringify(r.value)}, not a finite number`;
      } else value = r.value;
    } else if (r.state === 'failed') error = r.error;
    else value = r.value ?? (this.pruner?.intermediateDirection ? undefined : rec.intermediate[rec.intermediate.length - 1]?.[1]);
    rec.state = state;
    rec.value = value;
    rec.error = error;
    rec.finishedAt = new Date().toISOString();
    this.live.delete(number);
    this.write({ type: 'tell', number, state, value, error, attrs: rec.attrs, finishedAt: rec.finishedAt });
    return rec;
  }

  /** Median rule over completed trials' intermediate values at (or before) `step`. */
  shouldPrune(number: number): boolean {
    const rec = this.records[number];
    if (!this.pruner || !rec || rec.intermediate.length === 0) return false;
    const [step, value] = rec.intermediate[rec.intermediate.length - 1];
    if (step < this.pruner.warmupSteps) return false;
    const others: number[] = [];
    for (const t of this.records) {
      if (t.state !== 'complete' || t.number === number) continue;
      // The other trial's latest value reported at or before this step.
      let v: number | undefined;
      for (const [s, x] of t.intermediate) if (s <= step) v = x;
      if (v !== undefined) others.push(v);
    }
    if (others.length < this.pruner.startupTrials) return false;
    const direction = this.pruner.intermediateDirection ?? this.direction;
    return direction === 'minimize' ? median(others) < value : median(others) > value;
  }

  /**
   * Run trials until `trials` have finished in total (a resumed study counts what its file holds).
   * A throwing objective, or one returning NaN, records a failed trial and the study goes on.
   */
  async optimize(
    objective: (params: Params, trial: TrialHandle) => number | Promise<number>,
    o: { trials: number; onTrial?: (t: TrialRecord, study: Study) => void },
  ): Promise<Study> {
    if (!Number.isInteger(o.trials) || o.trials < 1) throw new RangeError(`trials must be an integer >= 1, got ${o.trials}`);
    while (this.finished < o.trials) {
      const trial = this.ask();
      if (!trial) break;
      let result: TellResult;
      try {
        result = await objective(trial.params, trial);
      } catch (e) {
        if (e instanceof StudyStopped) {
          this.live.delete(trial.number);
          throw e;
        }
        result = e instanceof TrialPruned ? { state: 'pruned' } : { state: 'failed', error: e instanceof Error ? e.message : String(e) };
      }
      const rec = this.tell(trial.number, result);
      o.onTrial?.(rec, this);
    }
    return this;
  }

  /** The notebook view: a ranking table and the best trial. */
  toMimeBundle(): MimeBundle {
    return studyBundle(this);
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }

  /** Trial numbers asked by this process and not yet told (others still running are orphans of a crash). */
  private readonly live = new Set<number>();

  private handle(rec: TrialRecord): TrialHandle {
    return {
      number: rec.number,
      params: rec.params,
      report: (step: number, value: number) => {
        if (!Number.isFinite(step) || !Number.isFinite(value)) throw new RangeError(`report(step, value) needs finite numbers, got (${step}, ${value})`);
        rec.intermediate.push([step, value]);
        this.write({ type: 'report', number: rec.number, step, value });
      },
      shouldPrune: () => this.shouldPrune(rec.number),
      setAttr: (key: string, value: unknown) => {
        rec.attrs[key] = value;
      },
    };
  }

  private header(): StudyHeader {
    return {
      type: 'study',
      version: STUDY_FILE_VERSION,
      name: this.name,
      direction: this.direction,
      space: this.space,
      sampler: { name: this.sampler.name, options: this.sampler.options },
      seed: this.seed,
      pruner: this.pruner,
      ...(this.context ? { context: this.context } : {}),
      created: new Date().toISOString(),
    };
  }

  /** One line per event, fsynced: a kill between events loses nothing already written. */
  private write(event: object): void {
    if (this.fd < 0) return;
    fs.writeSync(this.fd, JSON.stringify(event) + '\n');
    fs.fsyncSync(this.fd);
  }

  private openFile(file: string): void {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    if (fs.existsSync(file) && fs.statSync(file).size > 0) this.replay(file);
    this.fd = fs.openSync(file, 'a');
    if (this.records.length === 0 && fs.fstatSync(this.fd).size === 0) this.write(this.header());
  }

  /** Rebuild the trials from the file, checking it was made for the same search. */
  private replay(file: string): void {
    let text = fs.readFileSync(file, 'utf8');
    if (!text.endsWith('\n')) {
      // The process died in the middle of a write: drop the torn last line, which no reader has used.
      const cut = text.lastIndexOf('\n') + 1;
      fs.truncateSync(file, cut);
      text = text.slice(0, cut);
    }
    const lines = text.split('\n').slice(0, -1);
    const parse = (i: number): Record<string, unknown> => {
      try {
        return JSON.parse(lines[i]);
      } catch (e) {
        throw new StudyFileError(`${file}:${i + 1}: not valid JSON (${(e as Error).message})`);
      }
    };
    if (lines.length === 0) return;
    const h = parse(0) as unknown as StudyHeader;
    if (h.type !== 'study') throw new StudyFileError(`${file}:1: expected the study header {"type":"study",...}, got type ${JSON.stringify(h.type)}`);
    if (h.version !== STUDY_FILE_VERSION) throw new StudyFileError(`${file}:1: study file version ${h.version}; this ChromaTune reads version ${STUDY_FILE_VERSION}`);
    const mismatch = (field: string, was: unknown, now: unknown) =>
      new StudyFileError(`${file}: the study was created with ${field} ${JSON.stringify(was)}, not ${JSON.stringify(now)}; resume with the same settings or use a new study file`);
    if (JSON.stringify(h.space) !== JSON.stringify(this.space)) throw mismatch('space', h.space, this.space);
    if (h.direction !== this.direction) throw mismatch('direction', h.direction, this.direction);
    if (h.sampler?.name !== this.sampler.name || JSON.stringify(h.sampler.options) !== JSON.stringify(this.sampler.options)) {
      throw mismatch('sampler', h.sampler, { name: this.sampler.name, options: this.sampler.options });
    }
    if (h.seed !== this.seed) throw mismatch('seed', h.seed, this.seed);
    // Files written before contexts were stored have none to compare.
    if (h.context) {
      const [k] = differingKeys(h.context, this.context ?? {});
      if (k !== undefined) throw mismatch(k, h.context[k], this.context?.[k]);
    }
    for (let i = 1; i < lines.length; i++) {
      const e = parse(i);
      const n = e.number as number;
      const where = `${file}:${i + 1}`;
      if (e.type === 'ask') {
        if (n === this.records.length) {
          this.records.push({ number: n, params: e.params as Params, state: 'running', intermediate: [], attrs: {}, startedAt: e.startedAt as string });
        } else if (this.records[n]?.state === 'running') {
          this.records[n].intermediate = []; // a crashed trial asked again
        } else throw new StudyFileError(`${where}: ask for trial ${n} out of order (the study has ${this.records.length} trials)`);
      } else if (e.type === 'report') {
        const rec = this.records[n];
        if (!rec) throw new StudyFileError(`${where}: report for unknown trial ${n}`);
        rec.intermediate.push([e.step as number, e.value as number]);
      } else if (e.type === 'tell') {
        const rec = this.records[n];
        if (!rec) throw new StudyFileError(`${where}: tell for unknown trial ${n}`);
        rec.state = e.state as TrialState;
        rec.value = e.value as number | undefined;
        rec.error = e.error as string | undefined;
        rec.attrs = (e.attrs as Record<string, unknown>) ?? {};
        rec.finishedAt = e.finishedAt as string;
      } else throw new StudyFileError(`${where}: unknown event type ${JSON.stringify(e.type)}; valid: ask, report, tell`);
    }
  }
}

/** Optuna-style one call: a study over `space`, run until `trials` have finished. */
export async function optimize(
  objective: (params: Params, trial: TrialHandle) => number | Promise<number>,
  space: Space,
  o: Omit<StudyOptions, 'space'> & { trials: number; onTrial?: (t: TrialRecord, study: Study) => void },
): Promise<Study> {
  const study = new Study({ ...o, space });
  try {
    return await study.optimize(objective, o);
  } finally {
    study.close();
  }
}
