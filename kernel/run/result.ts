/**
 * A run for notebooks: `await fineTuneRun({ train, validation, lora: { r: 8 } })` is the job behind
 * `chromatune finetune` (runJob: base evaluation, fine-tuning, evaluation, run folder) with a live
 * progress display instead of a terminal bar, and it returns a RunResult, which shows itself as the
 * run's summary table when it is a cell's last value.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Dataset } from '../data/dataset';
import type { QAExample } from '../data/example';
import { splitValidation } from '../data/batch';
import { fmtNum, runBundle, themedBlock } from '../display/bundles';
import { escapeHtml as e } from '../display/html';
import { liveProgress } from '../display/liveProgress';
import type { Displayable, MimeBundle } from '../display/mime';
import type { EvalResult } from '../eval';
import { loadModel } from '../model/io';
import type { GPT2Model } from '../model/gpt2';
import { projectPath } from '../paths';
import type { Tokenizer } from '../tokenizer';
import type { FinetuneConfig, FinetuneResult } from '../train/finetune';
import { createRunDir, prepareResume, runPaths } from './index';
import { type JobSummary, runJob, type SplitMetrics } from './job';

/** Examples as a plain list or a Dataset (openDataset). */
export type Examples = QAExample[] | Dataset;

const examplesOf = (x: Examples): QAExample[] => (Array.isArray(x) ? x : x.examples);

type SplitAnswers = Record<string, { base: EvalResult; finetuned: EvalResult }>;

/** The split shown when none is named: validation, else the first evaluated. */
const defaultSplit = (bySplit: object): string => ('validation' in bySplit ? 'validation' : Object.keys(bySplit)[0]);

export class RunResult implements Displayable {
  constructor(
    readonly summary: JobSummary,
    readonly result: FinetuneResult,
    /** Every evaluated question per split, answered by the base and the fine-tuned model. */
    readonly answers: SplitAnswers,
    readonly model: GPT2Model,
    readonly tokenizer: Tokenizer,
  ) {}

  /** The run folder (adapter/ or model/, metrics.jsonl, summary.json, answers.jsonl, report.html). */
  get dir(): string {
    return this.summary.run;
  }

  /** The self-contained HTML report of the run. */
  get report(): string {
    return path.join(this.dir, 'report.html');
  }

  /** The PEFT adapter folder (LoRA) or the full model folder. */
  get output(): string {
    return this.summary.output;
  }

  /** Training throughput: tokens per second of step time (evaluations excluded). */
  get tokensPerSecond(): number {
    const h = this.result.history;
    const seconds = h.reduce((s, r) => s + r.seconds, 0);
    return seconds > 0 ? h.reduce((s, r) => s + r.tokens, 0) / seconds : NaN;
  }

  /** Base and fine-tuned metrics of one split (default validation, else the first evaluated). */
  metrics(split?: string): { base: SplitMetrics; finetuned: SplitMetrics } {
    const name = split ?? defaultSplit(this.summary.metrics);
    const m = this.summary.metrics[name];
    if (!m) throw new RangeError(`no split "${name}" in this run; evaluated: ${Object.keys(this.summary.metrics).join(', ') || '(none: the run was interrupted)'}`);
    return m;
  }

  /** The base model's evaluation, to pass as `base` to a later run on the same splits (saves re-evaluating it). */
  get baseEval(): Record<string, EvalResult> {
    return Object.fromEntries(Object.entries(this.answers).map(([k, v]) => [k, v.base]));
  }

  /** The first n answers of a split side by side: question, reference, base and fine-tuned answers with their token F1. */
  sampleAnswers(split?: string, n = 8): Displayable {
    const name = split ?? defaultSplit(this.answers);
    const r = this.answers[name];
    if (!r) throw new RangeError(`no answers for split "${name}"; evaluated: ${Object.keys(this.answers).join(', ') || '(none)'}`);
    const rows = r.finetuned.answers.slice(0, n).map((a, i) => ({ question: a.question, reference: a.reference, base: r.base.answers[i].answer, baseF1: r.base.answers[i].tokenF1, tuned: a.answer, tunedF1: a.tokenF1 }));
    return {
      toMimeBundle(): MimeBundle {
        const body = rows
          .map((x) => `<tr><td>${e(x.question)}</td><td>${e(x.reference)}</td><td>${e(x.base)}</td><td class="num">${fmtNum(x.baseF1, 2)}</td><td>${e(x.tuned)}</td><td class="num">${fmtNum(x.tunedF1, 2)}</td></tr>`)
          .join('');
        const html = themedBlock(
          'ct-answers',
          '.R.R td{max-width:260px;white-space:pre-wrap;word-break:break-word}',
          `<div class="ct-title">Answers on ${e(name)}</div><div class="ct-sub">first ${rows.length} of ${r.finetuned.answers.length} · greedy decoding · F1 is token F1 against the reference</div>` +
            `<table><thead><tr><th>question</th><th>reference</th><th>base</th><th class="num">F1</th><th>fine-tuned</th><th class="num">F1</th></tr></thead><tbody>${body}</tbody></table>`,
        );
        const text = rows.map((x) => `Q: ${x.question}\n   reference:  ${x.reference}\n   base:       ${x.base}\n   fine-tuned: ${x.tuned}`).join('\n');
        return { 'text/html': html, 'text/plain': text };
      },
    };
  }

  toMimeBundle(): MimeBundle {
    return runBundle(this.summary);
  }
}

/** Training settings (as finetune takes them) plus where the data, the model and the run folder come from. */
export interface FineTuneRunOptions extends Omit<FinetuneConfig, 'model' | 'tokenizer' | 'train' | 'validation' | 'checkpointDir' | 'onProgress' | 'resume' | 'baseModelName' | 'shouldStop'> {
  train: Examples;
  /** Default: `validationFraction` of train, split off with the seed. */
  validation?: Examples;
  validationFraction?: number;
  /** Splits evaluated before and after fine-tuning (default: the validation split). */
  evalSplits?: Record<string, Examples>;
  /**
   * The model to fine-tune (default: a fresh copy of `modelDir`). LoRA leaves its base weights alone;
   * full fine-tuning changes them, so give full fine-tuning a model of its own.
   */
  model?: GPT2Model;
  tokenizer?: Tokenizer;
  /** The base model's folder (default the embedded models/chromatune-base). */
  modelDir?: string;
  title?: string;
  /** The run folder (default: a new timestamped folder under runsDir). */
  out?: string;
  /** Continue the interrupted run in `out` from its checkpoint (the same settings and data are required). */
  resume?: boolean;
  /** Parent of new run folders (default runs/). */
  runsDir?: string;
  /** The live progress display (default on). */
  progress?: boolean;
  /** The base model's evaluation of evalSplits when already known (another RunResult on the same splits). */
  base?: Record<string, EvalResult> | RunResult;
  /** Target validation loss τ of the L-score (default half the base model's validation loss). */
  targetLoss?: number;
  log?: (line: string) => void;
  /** Polled after every step: true stops training (the run is then interrupted, with a checkpoint). */
  shouldStop?: () => boolean;
}

/** Fine-tunes with a live progress display and returns the run; see FineTuneRunOptions. */
export async function fineTuneRun(o: FineTuneRunOptions): Promise<RunResult> {
  const {
    train: trainIn, validation: validationIn, validationFraction, evalSplits: splitsIn, model: modelIn, tokenizer: tokenizerIn, modelDir: dirIn,
    title: titleIn, out, resume, runsDir, progress, base, targetLoss, log, shouldStop, ...training
  } = o;
  if ((modelIn === undefined) !== (tokenizerIn === undefined)) throw new RangeError('give model and tokenizer together, or neither (then modelDir is loaded)');
  const modelDir = dirIn ?? projectPath('models', 'chromatune-base');
  const { model, tokenizer } = modelIn && tokenizerIn ? { model: modelIn, tokenizer: tokenizerIn } : loadModel(modelDir);
  let train = examplesOf(trainIn);
  let validation: QAExample[];
  if (validationIn !== undefined) validation = examplesOf(validationIn);
  else ({ train, validation } = splitValidation(train, validationFraction ?? 0.1, training.seed ?? 0, 'train'));
  if (validation.length === 0) throw new RangeError('fineTuneRun: validation is empty; give validation examples, or leave it out to split them off train');
  const evalSplits = splitsIn ? Object.fromEntries(Object.entries(splitsIn).map(([k, v]) => [k, examplesOf(v)])) : { validation };
  if (resume && !out) throw new RangeError('fineTuneRun: resume needs out, the folder of the run to continue');
  const run = out ? runPaths(out) : createRunDir(runsDir ?? 'runs');
  fs.mkdirSync(run.dir, { recursive: true });
  if (resume) prepareResume(run);
  const method = training.method ?? 'lora';
  const title = titleIn ?? `${method === 'lora' ? 'LoRA' : 'Full'} fine-tuning on ${train.length} examples`;
  // A fresh adapter per run, so that a second run on the same model does not train the first one's further.
  const adapterName = training.adapterName ?? path.basename(run.dir);
  const live = progress === false ? null : liveProgress(title);
  try {
    const { summary, result, answers } = await runJob({
      run, model, tokenizer, modelDir, title, train, validation, evalSplits, log, shouldStop, targetLoss, resume,
      base: base instanceof RunResult ? base.baseEval : base,
      training: { ...training, adapterName },
      onProgress: live ? (ev) => live.onProgress(ev) : undefined,
    });
    const r = new RunResult(summary, result, answers, model, tokenizer);
    if (live) {
      const m = summary.metrics[defaultSplit(summary.metrics)];
      live.done(
        summary.interrupted
          ? `at step ${summary.steps}; continue with the same options plus out: '${run.dir}', resume: true`
          : {
              'validation loss': m ? `${fmtNum(m.base.loss)} → ${fmtNum(m.finetuned.loss)}` : undefined,
              'token F1': m ? `${fmtNum(m.base.tokenF1, 3)} → ${fmtNum(m.finetuned.tokenF1, 3)}` : undefined,
              'tokens/s': Math.round(r.tokensPerSecond),
              'run folder': run.dir,
            },
        summary.interrupted ? 'interrupted' : 'finished',
      );
    }
    return r;
  } catch (err) {
    live?.done((err as Error).message, 'failed');
    throw err;
  }
}
