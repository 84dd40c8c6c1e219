/**
 * One run end to end: evaluate the base model, fine-tune, evaluate again, and write the run folder
 * (adapter, metrics.jsonl, summary.json, answers.jsonl, report.html). The main job (nyc-qa) and
 * `chromatune finetune --data FILE` are both this function with different data.
 */
import * as path from 'path';
import { performance } from 'perf_hooks';
import type { QAExample } from '../data/example';
import type { GPT2Model } from '../model/gpt2';
import type { Tokenizer } from '../tokenizer';
import { saveAdapter } from '../lora/peft';
import { saveModel } from '../model/io';
import { TrainingClient } from '../train/client';
import { tokenizeExample } from '../data/tokenize';
import { finetune, type FinetuneConfig, type FinetuneResult, type ProgressEvent } from '../train/finetune';
import { evaluate, type EvalResult } from '../eval';
import { backendInfo, measureMatmulGflops } from '../backend';
import { parameterCount } from '../model/config';
import { type LScore, lScore } from '../tune/lscore';
import { writeFileAtomic } from '../io/atomic';
import { appendMetric, type RunPaths, startFresh, writeSummary } from './index';
import { renderRunReport } from '../display/report';

/**
 * Settings of the main job (`chromatune nyc`), chosen by validation token F1 on nyc-qa; named as the
 * CLI's options. The training bench reads them too, so it times the job as it runs.
 */
export const MAIN_JOB_DEFAULTS = {
  epochs: 25, batchSize: 16, lr: 4e-3, rank: 64, alpha: 64, dropout: 0.1, wordVectors: 0.3, wordBag: 0.1, answerMemory: 1,
  wordDropout: 0.4, rareWordDropout: 0.05, augmentProbability: 0.9, evalEvery: 50, warmup: 20, groupByLength: true,
  ema: 0.99, emaStart: 200,
};

export type SplitMetrics = Omit<EvalResult, 'answers'>;

export interface JobOptions {
  run: RunPaths;
  model: GPT2Model;
  tokenizer: Tokenizer;
  modelDir: string;
  title: string;
  train: QAExample[];
  validation: QAExample[];
  /** Splits evaluated before and after fine-tuning, e.g. validation, test, held_out_facts. */
  evalSplits: Record<string, QAExample[]>;
  training: Omit<FinetuneConfig, 'model' | 'tokenizer' | 'train' | 'validation' | 'checkpointDir' | 'onProgress'>;
  onProgress?: (e: ProgressEvent) => void;
  shouldStop?: () => boolean;
  resume?: boolean;
  log?: (line: string) => void;
  /** The base model's evaluation of evalSplits, when already known (a sweep evaluates it once). */
  base?: Record<string, EvalResult>;
  /** Target validation loss τ of the L-score; default half the base model's validation loss. */
  targetLoss?: number;
}

export interface JobSummary {
  title: string;
  run: string;
  model: string;
  backend: unknown;
  method: string;
  settings: Record<string, unknown>;
  train_examples: number;
  /** Training examples longer than the context, trained on with their answer's tail cut off. */
  truncated_train_examples: number;
  validation_examples: number;
  steps: number;
  interrupted: boolean;
  stopped_early: boolean;
  trainable_parameters: number;
  /** training includes the recorded step times before a resume; the others are this process's. */
  seconds: { base_eval: number; training: number; finetuned_eval: number; total: number };
  final_train_loss: number | null;
  best_val_loss: number | null;
  /** With early stopping, the step whose weights were kept when it was not the last one (the saved adapter or model is that step's). */
  restored_best_step: number | null;
  /** With ema, the step the average that the run ended on starts at; null without one. */
  averaged_from: number | null;
  metrics: Record<string, { base: SplitMetrics; finetuned: SplitMetrics }>;
  /** L-score on the validation split (or the first evaluated split); null for an interrupted run. */
  l_score: (LScore & { split: string }) | null;
  output: string;
}

const strip = ({ answers: _a, ...m }: EvalResult): SplitMetrics => m;

/** Counts the training examples that do not fit the context, and says so: training cuts them silently. */
function truncatedExamples(o: JobOptions): number {
  const window = o.model.config.n_positions + 1; // inputs plus the shifted target
  const long = o.train.filter((ex) => tokenizeExample(o.tokenizer, ex, window).truncated);
  if (long.length > 0) {
    const ex = long[0];
    const first = tokenizeExample(o.tokenizer, ex);
    o.log?.(
      `warning: ${long.length} of ${o.train.length} training examples are longer than ${window} tokens (the model's context of ${window - 1} and the token it predicts) and are cut from the end, ` +
        `so the tail of their answers is not learned; the first is ${ex.source.file}:${ex.source.line} (${first.ids.length} tokens)`,
    );
  }
  return long.length;
}

/** Answers with line breaks are trained whole but generated only up to the first break (the answer's end). */
function warnMultiLineAnswers(o: JobOptions): void {
  const rows = [...o.train, ...Object.values(o.evalSplits).flat()];
  const multi = [...new Set(rows)].filter((ex) => /[\r\n]/.test(ex.answer.trim()));
  if (multi.length === 0) return;
  const first = multi[0].source;
  o.log?.(
    `warning: ${multi.length} answer${multi.length === 1 ? ' spans' : 's span'} several lines; a generated answer ends at its first line break, ` +
      `so these are scored on their first line only (join their lines to train and score them whole); the first is ${first.file}:${first.line}`,
  );
}

export async function runJob(o: JobOptions): Promise<{ summary: JobSummary; result: FinetuneResult; answers: Record<string, { base: EvalResult; finetuned: EvalResult }> }> {
  const log = o.log ?? (() => undefined);
  const t0 = performance.now();
  const trainAnswers = o.train.map((ex) => ex.answer);
  const evalAll = (label: string) => {
    const client = new TrainingClient(o.model, o.tokenizer, 'none');
    const out: Record<string, EvalResult> = {};
    for (const [name, rows] of Object.entries(o.evalSplits)) {
      const t = performance.now();
      out[name] = evaluate(client, rows, { trainAnswers });
      log(`${label} on ${name} (${rows.length}): token F1 ${out[name].tokenF1.toFixed(3)}, perplexity ${out[name].perplexity.toFixed(2)} [${((performance.now() - t) / 1000).toFixed(1)} s]`);
    }
    return out;
  };
  if (!o.resume) startFresh(o.run);
  const truncated = truncatedExamples(o);
  warnMultiLineAnswers(o);
  o.model.setActiveAdapter(null);
  const base = o.base ?? evalAll('base model');
  const tBase = performance.now();
  const result = await finetune({
    ...o.training,
    model: o.model,
    tokenizer: o.tokenizer,
    train: o.train,
    validation: o.validation,
    checkpointDir: o.run.checkpoint,
    resume: o.resume,
    baseModelName: path.resolve(o.modelDir),
    shouldStop: o.shouldStop,
    onProgress: (e) => {
      o.onProgress?.(e);
      if (e.kind === 'step') appendMetric(o.run, { kind: 'train', step: e.step, epoch: e.epoch, loss: e.loss, ...(e.answerLoss !== undefined ? { answer_loss: e.answerLoss } : {}), lr: e.lr, tokens_per_s: e.tokensPerSecond });
      if (e.kind === 'eval') appendMetric(o.run, { kind: 'eval', step: e.step, val_loss: e.valLoss });
    },
  });
  const tTrain = performance.now();
  if (o.training.ema && !result.interrupted && result.averagedFrom === null) {
    log(`warning: ema starts at step ${o.training.ema.startStep ?? 1}, after the run's last (${result.steps}): the run ends on its last weights, not an average`);
  }
  const method = o.training.method ?? 'lora';
  const tuned = result.interrupted ? undefined : evalAll('fine-tuned');
  const tEnd = performance.now();
  if (!result.interrupted) {
    if (method === 'lora') saveAdapter(o.model.activeAdapter!, o.run.adapter, path.resolve(o.modelDir));
    else saveModel(o.model, o.tokenizer, o.run.model);
  }
  const answers: Record<string, { base: EvalResult; finetuned: EvalResult }> = {};
  const metrics: JobSummary['metrics'] = {};
  if (tuned) {
    for (const name of Object.keys(o.evalSplits)) {
      answers[name] = { base: base[name], finetuned: tuned[name] };
      metrics[name] = { base: strip(base[name]), finetuned: strip(tuned[name]) };
    }
  }
  const lSplit = 'validation' in metrics ? 'validation' : Object.keys(metrics)[0];
  // A resumed run also counts the training done before it (the checkpoint's step times).
  const trainingSeconds = (tTrain - tBase) / 1000 + result.history.filter((h) => h.step <= result.resumedFrom).reduce((n, h) => n + h.seconds, 0);
  const l_score = lSplit ? { split: lSplit, ...(await runLScore(o, result, metrics[lSplit], trainingSeconds)) } : null;
  const summary: JobSummary = {
    title: o.title,
    run: o.run.dir,
    model: path.resolve(o.modelDir),
    backend: backendInfo(),
    method,
    // The LoRA settings as resolved (defaults filled in), which is what the adapter was trained with.
    settings: { ...o.training, ...(method === 'lora' && o.model.activeAdapter ? { lora: o.model.activeAdapter.config } : {}) },
    train_examples: o.train.length,
    truncated_train_examples: truncated,
    validation_examples: o.validation.length,
    steps: result.steps,
    interrupted: result.interrupted,
    stopped_early: result.stoppedEarly,
    trainable_parameters: result.trainableParameters,
    seconds: { base_eval: (tBase - t0) / 1000, training: trainingSeconds, finetuned_eval: (tEnd - tTrain) / 1000, total: (tEnd - t0) / 1000 },
    final_train_loss: result.history.at(-1)?.loss ?? null,
    best_val_loss: result.bestValLoss,
    restored_best_step: result.restoredBestStep,
    averaged_from: result.averagedFrom,
    metrics,
    l_score,
    output: method === 'lora' ? o.run.adapter : o.run.model,
  };
  if (!result.interrupted) {
    writeSummary(o.run, summary as unknown as Record<string, unknown>);
    const lines = Object.entries(answers).flatMap(([split, r]) =>
      r.base.answers.map((b, i) => JSON.stringify({ split, id: b.id, question: b.question, reference: b.reference, base: b.answer, finetuned: r.finetuned.answers[i].answer, base_f1: b.tokenF1, finetuned_f1: r.finetuned.answers[i].tokenF1, finetuned_recited: r.finetuned.answers[i].recited })),
    );
    writeFileAtomic(path.join(o.run.dir, 'answers.jsonl'), lines.join('\n') + '\n');
    writeFileAtomic(path.join(o.run.dir, 'report.html'), renderRunReport(summary, result, answers));
  }
  return { summary, result, answers };
}

/** The L-score of a finished run (lscore.ts), with this machine's matmul speed measured now. */
async function runLScore(o: JobOptions, r: FinetuneResult, m: { base: SplitMetrics; finetuned: SplitMetrics }, trainingSeconds: number): Promise<LScore> {
  return lScore({
    perplexity: m.finetuned.perplexity,
    valCurve: r.evals.map((e) => [e.step / r.stepsPerEpoch, e.valLoss]),
    targetLoss: o.targetLoss ?? m.base.loss / 2,
    epochsTrained: r.steps / r.stepsPerEpoch,
    trainableParameters: r.trainableParameters,
    totalParameters: parameterCount(o.model.config),
    trainingSeconds,
    gflops: await measureMatmulGflops({ iters: 5 }),
  });
}

/** The metric table printed in the terminal. */
export function metricTable(summary: JobSummary): string {
  const rows = [['split', 'model', 'perplexity', 'exact match', 'token F1', 'ROUGE-L', 'recited']];
  for (const [split, m] of Object.entries(summary.metrics)) {
    for (const [label, r] of [['base', m.base], ['fine-tuned', m.finetuned]] as const) {
      rows.push([split, label, r.perplexity.toFixed(2), r.exactMatch.toFixed(3), r.tokenF1.toFixed(3), r.rougeL.toFixed(3), r.recited?.toFixed(3) ?? '-']);
    }
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const table = rows.map((r, i) => r.map((cell, c) => (c < 2 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ') + (i === 0 ? '\n' + widths.map((w) => '-'.repeat(w)).join('  ') : '')).join('\n');
  const legend = 'recited: share of answers that repeat the answer of another trained question; on facts never trained on, a measure of made-up answers';
  const l = summary.l_score;
  const head = `${table}\n${legend}`;
  return l ? `${head}\n\nL-score (${l.split}): ${l.L.toFixed(2)} = perplexity ${l.perplexity.toFixed(2)} × f(D) ${l.fD.toFixed(2)} × f(A) ${l.fA.toFixed(2)} × f(H) ${l.fH.toFixed(2)}` : head;
}
