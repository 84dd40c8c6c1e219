/**
 * Training search: a study over LoRA rank, alpha, learning rate, batch size, epochs and dropout, where
 * each trial is one run (runJob) in its own folder under the sweep folder:
 *
 *   <dir>/study.jsonl        the study (resumable)
 *   <dir>/trial-000/         a run folder: adapter, metrics.jsonl, summary.json, report.html
 *   <dir>/report.html        the study report
 *
 * Trials report validation loss at every evaluation, so the median rule can prune them. A trial
 * interrupted by Ctrl-C is resumed from its checkpoint when the sweep runs again.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import type { QAExample } from '../data/example';
import type { GPT2Model } from '../model/gpt2';
import type { Tokenizer } from '../tokenizer';
import { TrainingClient } from '../train/client';
import type { ProgressEvent } from '../train/finetune';
import { hasCheckpoint } from '../train/checkpoint';
import { evaluate, type EvalResult } from '../eval';
import { prepareResume, runPaths } from '../run';
import { writeFileAtomic } from '../io/atomic';
import { writeStudyReport } from '../display/studyReport';
import { type JobSummary, runJob } from '../run/job';
import { categorical, float, int, type Params, type Space } from './space';
import { Study, StudyStopped, TrialPruned, type TrialHandle } from './study';
import type { Direction, Sampler, TrialRecord } from './types';

export const SWEEP_OBJECTIVES = ['val-loss', 'perplexity', 'token-f1', 'l-score'] as const;
export type SweepObjective = (typeof SWEEP_OBJECTIVES)[number];

export const OBJECTIVE_DIRECTION: Record<SweepObjective, Direction> = {
  'val-loss': 'minimize',
  perplexity: 'minimize',
  'token-f1': 'maximize',
  'l-score': 'minimize',
};

/** The default search space; quick mode shrinks epochs so a trial takes seconds. */
export function sweepSpace(quick = false): Space {
  return {
    rank: int(2, 64, { log: true }),
    alpha: float(4, 64, { log: true }),
    learningRate: float(2e-4, 2e-2, { log: true }),
    batchSize: categorical([8, 16, 32]),
    epochs: quick ? int(1, 2) : int(4, 24),
    dropout: float(0, 0.3),
  };
}

/** Settings of a trial: the space's params over these fixed defaults. */
const FIXED = { rank: 8, alpha: 16, learningRate: 2e-3, batchSize: 16, epochs: 8, dropout: 0, warmupSteps: 10 };

export interface SweepOptions {
  model: GPT2Model;
  tokenizer: Tokenizer;
  modelDir: string;
  train: QAExample[];
  validation: QAExample[];
  /** Sweep folder (study.jsonl, trial-NNN/, report.html); an existing one is resumed. */
  dir: string;
  objective: SweepObjective;
  sampler: Sampler;
  trials: number;
  seed?: number;
  space?: Space;
  quick?: boolean;
  /** Median-rule pruning on intermediate validation loss (default on). */
  prune?: boolean;
  /** Validation evaluations per trial (the pruning checkpoints); default 4. */
  evalsPerTrial?: number;
  onTrialStart?: (t: TrialHandle) => void;
  onProgress?: (e: ProgressEvent) => void;
  onTrial?: (t: TrialRecord, study: Study) => void;
  /** Polled after every step; true stops the sweep, leaving the current trial resumable. */
  shouldStop?: () => boolean;
  log?: (line: string) => void;
}

/** The examples' count and a hash of their questions and answers: a resumed sweep must see the same data. */
function dataFingerprint(examples: QAExample[]): string {
  const hash = createHash('sha256');
  for (const ex of examples) hash.update(JSON.stringify([ex.question, ex.answer]));
  return `${examples.length} examples, sha256 ${hash.digest('hex').slice(0, 16)}`;
}

/** Objectives whose units the intermediate reports share (validation loss, or its exponential). */
const REPORTS_OBJECTIVE: Record<SweepObjective, boolean> = { 'val-loss': true, perplexity: true, 'token-f1': false, 'l-score': false };

/** The objective's value from a finished run's summary. */
export function objectiveValue(objective: SweepObjective, s: JobSummary): number {
  const v = s.metrics.validation?.finetuned;
  if (!v) throw new Error('the run has no validation metrics');
  switch (objective) {
    case 'val-loss':
      return v.loss;
    case 'perplexity':
      return v.perplexity;
    case 'token-f1':
      return v.tokenF1;
    case 'l-score':
      if (!s.l_score) throw new Error('the run has no L-score');
      return s.l_score.L;
  }
}

export async function sweep(o: SweepOptions): Promise<Study> {
  if (!SWEEP_OBJECTIVES.includes(o.objective)) throw new RangeError(`objective must be one of ${SWEEP_OBJECTIVES.join(', ')}, got ${JSON.stringify(o.objective)}`);
  if (o.train.length === 0 || o.validation.length === 0) throw new RangeError('a sweep needs training and validation examples');
  fs.mkdirSync(o.dir, { recursive: true });
  const log = o.log ?? (() => undefined);
  const study = new Study({
    space: o.space ?? sweepSpace(o.quick),
    sampler: o.sampler,
    direction: OBJECTIVE_DIRECTION[o.objective],
    seed: o.seed ?? 0,
    name: path.basename(path.resolve(o.dir)),
    path: path.join(o.dir, 'study.jsonl'),
    context: { objective: o.objective, train: dataFingerprint(o.train), validation: dataFingerprint(o.validation) },
    // Trials report validation loss, as perplexity when that is the objective (the same units);
    // for token F1 and the L-score it is another quantity, minimised whatever the objective's direction.
    pruner: o.prune === false ? undefined : { startupTrials: 3, warmupSteps: 1, ...(REPORTS_OBJECTIVE[o.objective] ? {} : { intermediateDirection: 'minimize' as const }) },
  });
  // The base model is evaluated once for all trials.
  o.model.setActiveAdapter(null);
  let base: Record<string, EvalResult> | undefined;
  const baseEval = () => (base ??= { validation: evaluate(new TrainingClient(o.model, o.tokenizer, 'none'), o.validation) });

  const objective = async (params: Params, trial: TrialHandle): Promise<number> => {
    const p = { ...FIXED, ...params } as typeof FIXED & Params;
    const run = runPaths(path.join(o.dir, `trial-${String(trial.number).padStart(3, '0')}`));
    fs.mkdirSync(run.dir, { recursive: true });
    const resume = hasCheckpoint(run.checkpoint);
    const intermediate = (valLoss: number) => (o.objective === 'perplexity' ? Math.exp(valLoss) : valLoss);
    if (resume) {
      // The study dropped the interrupted trial's reports; its checkpoint still has the evaluations.
      for (const e of prepareResume(run).evals) trial.report(e.step, intermediate(e.valLoss));
    }
    trial.setAttr('run', run.dir);
    o.onTrialStart?.(trial);
    const stepsPerEpoch = Math.ceil(o.train.length / p.batchSize);
    const totalSteps = stepsPerEpoch * p.epochs;
    const evalEvery = Math.max(1, Math.ceil(totalSteps / (o.evalsPerTrial ?? 4)));
    const adapterName = `trial-${trial.number}`;
    let pruned = false;
    let stopped = false;
    try {
      const { summary } = await runJob({
        run, model: o.model, tokenizer: o.tokenizer, modelDir: o.modelDir,
        title: `${study.name}: trial ${trial.number}`,
        train: o.train, validation: o.validation, evalSplits: { validation: o.validation },
        base: baseEval(), resume, log,
        training: {
          method: 'lora', adapterName,
          lora: { r: p.rank, alpha: p.alpha, dropout: p.dropout },
          epochs: p.epochs, batchSize: p.batchSize, learningRate: p.learningRate,
          warmupSteps: Math.min(p.warmupSteps, Math.floor(totalSteps / 10)), evalEvery, checkpointEvery: evalEvery,
          seed: study.seed + trial.number,
        },
        onProgress: (e) => {
          o.onProgress?.(e);
          if (e.kind === 'eval' && e.valLoss !== undefined) trial.report(e.step, intermediate(e.valLoss));
        },
        shouldStop: () => {
          if (o.shouldStop?.()) stopped = true;
          else if (trial.shouldPrune()) pruned = true;
          return stopped || pruned;
        },
      });
      if (stopped) throw new StudyStopped(`sweep stopped during trial ${trial.number}; run it again to resume`);
      if (pruned) throw new TrialPruned(`validation loss above the median of completed trials`);
      const value = objectiveValue(o.objective, summary);
      const v = summary.metrics.validation.finetuned;
      trial.setAttr('metrics', {
        valLoss: v.loss, perplexity: v.perplexity, tokenF1: v.tokenF1, exactMatch: v.exactMatch, rougeL: v.rougeL,
        lScore: summary.l_score?.L ?? NaN, steps: summary.steps, seconds: summary.seconds.training,
      });
      return value;
    } finally {
      o.model.removeAdapter(adapterName);
    }
  };
  try {
    await study.optimize(objective, { trials: o.trials, onTrial: o.onTrial });
  } finally {
    study.close();
    // Also when stopped: the ranking so far, next to the trial that will be resumed.
    writeSweepReport(study, o.dir, o.objective);
  }
  return study;
}

/** A trial's report, relative to the sweep folder; pruned, failed and running trials have none, so their folder. */
function reportOf(dir: string, t: TrialRecord): string | undefined {
  if (!t.attrs.run) return undefined;
  const report = path.join(t.attrs.run as string, 'report.html');
  return path.relative(dir, fs.existsSync(report) ? report : (t.attrs.run as string));
}

/** ranking.json and report.html in the sweep folder; each trial links to its run's own report. */
export function writeSweepReport(study: Study, dir: string, objective: SweepObjective): { ranking: string; report: string } {
  const ranking = path.join(dir, 'ranking.json');
  const rows = study.ranking().map((t, i) => ({ rank: i + 1, number: t.number, value: t.value, params: t.params, metrics: t.attrs.metrics, run: t.attrs.run }));
  writeFileAtomic(ranking, JSON.stringify({ objective, direction: study.direction, trials: study.trials.length, ranking: rows }, null, 2) + '\n');
  const report = writeStudyReport(
    { study, title: `Training sweep (${objective})`, objective, runHref: (t) => reportOf(dir, t) },
    path.join(dir, 'report.html'),
  );
  return { ranking, report };
}
