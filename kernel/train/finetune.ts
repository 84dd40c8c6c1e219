/**
 * The high-level loop built on TrainingClient: epochs of shuffled batches, warmup plus decay, clipping,
 * periodic validation with early stopping, progress callbacks, atomic checkpoints and exact resume.
 * Every random choice (batch order, dropout masks) is a function of (seed, step), so the same seed gives
 * the same losses and a resumed run continues exactly as an uninterrupted one.
 */
import { performance } from 'perf_hooks';
import { collate, epochBatches, type Batch } from '../data/batch';
import type { QAExample } from '../data/example';
import { tokenizeExample, type TokenizedExample } from '../data/tokenize';
import { type AugmentConfig, augmentQuestion, resolveAugment, wordFrequencies } from '../data/augment';
import type { GPT2Model } from '../model/gpt2';
import type { Tokenizer } from '../tokenizer';
import { type LoraConfigInput, makeLoraConfig } from '../lora/config';
import { vocabularyFor } from '../lora/words';
import { answersOf } from '../lora/memory';
import { ADAM_DEFAULTS, checkGroupScaleKeys, NonFiniteGradientError, validateAdamParams } from './adamw';
import { TrainingClient } from './client';
import { AVERAGE_FILE, type EvalRecord, hasCheckpoint, loadAverageWeights, loadBestWeights, loadCheckpoint, saveCheckpoint, type StepRecord, type TrainerState } from './checkpoint';
import { arraysOf, type NamedArrays } from '../model/tensor';
import * as tf from '../backend/tf';
import { learningRateAt, SCHEDULES, type ScheduleKind } from './schedule';
import { WeightAverage } from './average';

export interface FinetuneConfig {
  model: GPT2Model;
  tokenizer: Tokenizer;
  /** Question/answer pairs (prompt masked), or already tokenized sequences with their loss weights (pretraining). */
  train: Array<QAExample | TokenizedExample>;
  validation?: Array<QAExample | TokenizedExample>;
  /** LoRA (default) or full fine-tuning, for comparison. */
  method?: 'lora' | 'full';
  lora?: LoraConfigInput;
  /** Name of the adapter to create (LoRA). An existing active adapter of that name is trained further. */
  adapterName?: string;
  epochs?: number;
  batchSize?: number;
  /** Stop after this many updates even if epochs remain. */
  maxSteps?: number;
  learningRate?: number;
  schedule?: ScheduleKind;
  warmupSteps?: number;
  /** Floor of the decay as a fraction of the peak learning rate. */
  minLrRatio?: number;
  weightDecay?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  gradClipNorm?: number;
  /** Question augmentation of question/answer examples (word dropout), fresh every epoch. */
  augment?: AugmentConfig;
  /** Batches of examples of similar length (less padding, faster steps); still shuffled every epoch. */
  groupByLength?: boolean;
  /** Learning-rate multipliers per parameter group (lora/groups keys, e.g. "h0.attn.A"). */
  groupScales?: Record<string, number>;
  /** Evaluate validation loss every N updates (0: only at the end). */
  evalEvery?: number;
  /** Stop when validation loss has not improved by minDelta for `patience` evaluations. */
  earlyStopping?: { patience: number; minDelta?: number };
  /**
   * Exponential moving average of the trainable weights (Polyak averaging, as timm's ModelEmaV2 or
   * torch's AveragedModel): from update `startStep` on, average = decay · average + (1 − decay) · weights
   * after every update, and the run ends on the average. It smooths the noise of the last updates.
   * A run shorter than startStep has no average and ends on its last weights (result.averagedFrom null).
   */
  ema?: { decay: number; startStep?: number };
  seed?: number;
  checkpointDir?: string;
  /** Save a checkpoint every N updates (and at the end). Default: at every evaluation. */
  checkpointEvery?: number;
  /** Continue from checkpointDir when it holds a checkpoint. */
  resume?: boolean;
  /** Name written to adapter_config.json's base_model_name_or_path. */
  baseModelName?: string;
  onProgress?: (e: ProgressEvent) => void;
  /** Polled after every step (e.g. Ctrl-C or a time budget): true saves a checkpoint and returns. */
  shouldStop?: () => boolean;
}

export interface ProgressEvent {
  kind: 'step' | 'eval' | 'checkpoint' | 'done';
  step: number;
  totalSteps: number;
  epoch: number;
  loss?: number;
  /** With an answer memory: its weighted cross-entropy on the step's batch. */
  answerLoss?: number;
  lr?: number;
  valLoss?: number;
  tokensPerSecond: number;
  elapsedSeconds: number;
  etaSeconds: number;
}

export interface FinetuneResult {
  client: TrainingClient;
  steps: number;
  totalSteps: number;
  /** Updates per pass over the training data. */
  stepsPerEpoch: number;
  history: StepRecord[];
  evals: EvalRecord[];
  bestValLoss: number | null;
  bestStep: number | null;
  stoppedEarly: boolean;
  /** With early stopping: the step whose weights the run ended on, when they are not the last step's. */
  restoredBestStep: number | null;
  /** shouldStop() asked to stop; the checkpoint (if any) holds the state to resume from. */
  interrupted: boolean;
  /** With ema: the update the average of the final weights starts at; null when the run had none. */
  averagedFrom: number | null;
  resumedFrom: number;
  trainableParameters: number;
  seconds: number;
}

export class TrainingDivergedError extends Error {
  override name = 'TrainingDivergedError';
}

function checkInt(field: string, v: number, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new RangeError(`${field} must be an integer >= ${min}, got ${v}`);
  return v;
}

function checkRange(field: string, v: number, ok: (x: number) => boolean, range: string): number {
  if (typeof v !== 'number' || Number.isNaN(v) || !ok(v)) throw new RangeError(`${field} must be ${range}, got ${v}`);
  return v;
}

/** Validated settings with defaults filled; every error names the field and its valid range. */
export function resolveFinetuneConfig(c: FinetuneConfig) {
  const method = c.method ?? 'lora';
  if (method !== 'lora' && method !== 'full') throw new RangeError(`method must be "lora" or "full", got "${method}"`);
  const s = {
    method,
    epochs: checkInt('epochs', c.epochs ?? 3, 1),
    batchSize: checkInt('batchSize', c.batchSize ?? 8, 1),
    maxSteps: c.maxSteps === undefined ? undefined : checkInt('maxSteps', c.maxSteps, 1),
    learningRate: checkRange('learningRate', c.learningRate ?? (method === 'lora' ? 2e-3 : 2e-4), (x) => x > 0 && Number.isFinite(x), 'a finite number > 0'),
    schedule: c.schedule ?? 'cosine',
    warmupSteps: checkInt('warmupSteps', c.warmupSteps ?? 0, 0),
    minLrRatio: checkRange('minLrRatio', c.minLrRatio ?? 0.1, (x) => x >= 0 && x <= 1, 'in [0, 1]'),
    weightDecay: c.weightDecay ?? ADAM_DEFAULTS.weightDecay,
    beta1: c.beta1 ?? ADAM_DEFAULTS.beta1,
    beta2: c.beta2 ?? ADAM_DEFAULTS.beta2,
    eps: c.eps ?? ADAM_DEFAULTS.eps,
    gradClipNorm: c.gradClipNorm ?? 1,
    groupScales: c.groupScales,
    evalEvery: checkInt('evalEvery', c.evalEvery ?? 0, 0),
    patience: c.earlyStopping ? checkInt('earlyStopping.patience', c.earlyStopping.patience, 1) : 0,
    minDelta: c.earlyStopping ? checkRange('earlyStopping.minDelta', c.earlyStopping.minDelta ?? 0, (x) => x >= 0, '>= 0') : 0,
    ema: c.ema ? { decay: checkRange('ema.decay', c.ema.decay, (x) => x > 0 && x < 1, 'in (0, 1)'), startStep: checkInt('ema.startStep', c.ema.startStep ?? 1, 1) } : undefined,
    seed: checkInt('seed', c.seed ?? 0, 0),
    checkpointEvery: checkInt('checkpointEvery', c.checkpointEvery ?? c.evalEvery ?? 0, 0),
    augment: c.augment ? resolveAugment(c.augment) : undefined,
    groupByLength: c.groupByLength ?? false,
  };
  // Word dropout 0 is no augmentation: one representation of "off" for the fingerprint and the batches.
  if (s.augment?.wordDropout === 0) s.augment = undefined;
  if (!SCHEDULES.includes(s.schedule)) throw new RangeError(`schedule must be one of ${SCHEDULES.join(', ')}, got "${s.schedule}"`);
  validateAdamParams({ learningRate: s.learningRate, beta1: s.beta1, beta2: s.beta2, eps: s.eps, weightDecay: s.weightDecay, gradClipNorm: s.gradClipNorm, groupScales: s.groupScales });
  if (c.train.length === 0) throw new RangeError('train must hold at least one example');
  if (s.patience > 0 && !c.validation?.length) throw new RangeError('earlyStopping needs a validation set');
  if (s.patience > 0 && s.ema) throw new RangeError('earlyStopping and ema cannot be combined: one ends on the weights of the best validation loss, the other on the average; choose one');
  return s;
}

/** Weighted mean loss over examples, in batches, without dropout. */
export function evaluateLoss(client: TrainingClient, examples: TokenizedExample[], batchSize: number): number {
  let lossSum = 0;
  let weightSum = 0;
  for (let i = 0; i < examples.length; i += batchSize) {
    const r = client.forward(dynamicBatch(examples.slice(i, i + batchSize), client.model.config.n_positions), { logprobs: 'weighted' });
    lossSum += r.loss * r.weightSum;
    weightSum += r.weightSum;
  }
  return weightSum > 0 ? lossSum / weightSum : NaN;
}

/** Pads to the longest example of the batch (not the full context): shorter batches, same loss. */
export function dynamicBatch(examples: TokenizedExample[], context: number): Batch {
  const longest = Math.max(...examples.map((e) => e.ids.length));
  return collate(examples, Math.max(1, Math.min(context, longest - 1)));
}

export function tokenizeAll(tokenizer: Tokenizer, examples: Array<QAExample | TokenizedExample>, context: number): TokenizedExample[] {
  return examples.map((ex) => ('ids' in ex ? ex : tokenizeExample(tokenizer, ex, context + 1)));
}

/** groupScales as they act: scale-1 entries dropped (the default), keys sorted; undefined when none is left. */
function scaledGroups(groupScales: Record<string, number> | undefined): Record<string, number> | undefined {
  const entries = Object.entries(groupScales ?? {})
    .filter(([, x]) => x !== 1)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return entries.length > 0 ? Object.fromEntries(entries) : undefined;
}

export async function finetune(c: FinetuneConfig): Promise<FinetuneResult> {
  const s = resolveFinetuneConfig(c);
  const { model, tokenizer } = c;
  const context = model.config.n_positions;
  const wasActive = model.activeAdapter?.name ?? null;
  let created: string | null = null;
  const train = tokenizeAll(tokenizer, c.train, context);
  if (s.method === 'lora') {
    const name = c.adapterName ?? 'default';
    if (model.adapters.has(name)) model.setActiveAdapter(name);
    else {
      const lora = makeLoraConfig(c.lora ?? {}, model.config);
      // A fresh adapter's word vectors are those of the training questions, its answer memory's answers theirs.
      const vocabulary = lora.wordVectors ? { ...vocabularyFor(tokenizer, train.map((e) => e.ids)), ...(lora.answerMemory ? { answers: answersOf(train) } : {}) } : undefined;
      created = model.addAdapter(name, lora, s.seed, vocabulary).name;
    }
  } else model.setActiveAdapter(null);
  try {
    checkGroupScaleKeys(s.groupScales, model.trainableVariables(s.method).map(([name]) => name));
  } catch (e) {
    // A refused run leaves the model as it found it.
    if (created) model.removeAdapter(created);
    model.setActiveAdapter(wasActive);
    throw e;
  }
  const client = new TrainingClient(model, tokenizer, s.method);
  const validation = tokenizeAll(tokenizer, c.validation ?? [], context);
  const stepsPerEpoch = Math.ceil(train.length / s.batchSize);
  const totalSteps = Math.min(s.epochs * stepsPerEpoch, s.maxSteps ?? Infinity);
  const groupScales = scaledGroups(s.groupScales);
  const fingerprint = {
    method: s.method,
    seed: s.seed,
    batchSize: s.batchSize,
    epochs: s.epochs,
    learningRate: s.learningRate,
    schedule: s.schedule,
    maxSteps: s.maxSteps ?? null,
    warmupSteps: s.warmupSteps,
    minLrRatio: s.minLrRatio,
    weightDecay: s.weightDecay,
    gradClipNorm: s.gradClipNorm,
    lora: s.method === 'lora' ? model.activeAdapter?.config ?? null : null,
    trainExamples: train.length,
    trainTokens: train.reduce((n, e) => n + e.ids.length, 0),
    // The rest only when set (or not the default), so checkpoints written before they were part of the
    // fingerprint still resume.
    ...(s.augment ? { augment: s.augment } : {}),
    ...(s.beta1 !== ADAM_DEFAULTS.beta1 ? { beta1: s.beta1 } : {}),
    ...(s.beta2 !== ADAM_DEFAULTS.beta2 ? { beta2: s.beta2 } : {}),
    ...(s.eps !== ADAM_DEFAULTS.eps ? { eps: s.eps } : {}),
    ...(groupScales ? { groupScales } : {}),
    ...(s.groupByLength ? { groupByLength: true } : {}),
    ...(s.ema ? { ema: s.ema } : {}),
    // The evaluation cadence changes the training only through early stopping; alone it would refuse
    // older checkpoints of runs that evaluate periodically (the CLI's main job does).
    // With early stopping the validation set decides where training ends, so it is part of the run too.
    ...(s.patience > 0
      ? { earlyStopping: { patience: s.patience, minDelta: s.minDelta }, evalEvery: s.evalEvery, validationExamples: validation.length, validationTokens: validation.reduce((n, e) => n + e.ids.length, 0) }
      : {}),
  };
  const freq = s.augment?.rareWordDropout !== undefined ? wordFrequencies(c.train.flatMap((e) => ('question' in e ? [e.question] : []))) : undefined;
  /** Example i as trained in this epoch: its question augmented when asked (pretraining sequences never are). */
  const trainExample = (i: number, epoch: number): TokenizedExample => {
    const raw = c.train[i];
    if (!s.augment || 'ids' in raw) return train[i];
    const question = augmentQuestion(raw.question, s.augment, `${s.seed}:${epoch}:${i}`, freq);
    return question === raw.question ? train[i] : tokenizeExample(tokenizer, { question, answer: raw.answer }, context + 1);
  };
  /** One epoch's batches (example indices) and its examples, each augmented once for the epoch. */
  let epochCache: { epoch: number; batches: number[][]; example: (i: number) => TokenizedExample } | undefined;
  const epochOf = (epoch: number) => {
    if (epochCache?.epoch === epoch) return epochCache;
    const examples = new Map<number, TokenizedExample>();
    const example = (i: number) => examples.get(i) ?? examples.set(i, trainExample(i, epoch)).get(i)!;
    const lengths = s.groupByLength ? Array.from({ length: train.length }, (_, i) => example(i).ids.length) : undefined;
    const batches = epochBatches(train.length, s.batchSize, epoch, s.seed, lengths);
    epochCache = { epoch, batches, example };
    return epochCache;
  };
  let state: TrainerState = { version: 1, step: 0, history: [], evals: [], bestValLoss: null, bestStep: null, evalsWithoutImprovement: 0, fingerprint };
  if (c.resume && c.checkpointDir && hasCheckpoint(c.checkpointDir)) state = loadCheckpoint(c.checkpointDir, client, fingerprint);
  const resumedFrom = state.step;
  const schedule = { kind: s.schedule, peak: s.learningRate, warmupSteps: s.warmupSteps, totalSteps, minLrRatio: s.minLrRatio };
  const baseModel = c.baseModelName ?? 'chromatune-base';
  const start = performance.now();
  let tokensThisRun = 0;
  // A checkpoint saved when early stopping triggered already holds the triggering count: a resume stops at once, as the run did.
  let stoppedEarly = s.patience > 0 && state.evalsWithoutImprovement >= s.patience;
  let interrupted = false;
  const emit = (e: Omit<ProgressEvent, 'totalSteps' | 'tokensPerSecond' | 'elapsedSeconds' | 'etaSeconds'>) => {
    const elapsed = (performance.now() - start) / 1000;
    const done = state.step - resumedFrom;
    c.onProgress?.({
      ...e,
      totalSteps,
      tokensPerSecond: elapsed > 0 ? tokensThisRun / elapsed : 0,
      elapsedSeconds: elapsed,
      etaSeconds: done > 0 ? (elapsed / done) * (totalSteps - state.step) : NaN,
    });
  };
  // With early stopping the run ends on the weights of its best validation loss (as load_best_model_at_end
  // does in transformers), so the saved adapter or model is the one the reported best loss belongs to.
  const trainable = model.trainableVariables(s.method);
  let best: NamedArrays | undefined = s.patience > 0 && c.checkpointDir && resumedFrom > 0 ? loadBestWeights(c.checkpointDir) : undefined;
  const snapshot = (): NamedArrays => arraysOf(trainable);
  // A resumed run that had stopped early was saved with its best weights already in place.
  let restoredBestStep: number | null = stoppedEarly && state.bestStep !== state.step ? state.bestStep : null;
  const restoreBest = () => {
    if (!best || state.bestStep === state.step) return;
    for (const [name, v] of trainable) tf.tidy(() => v.assign(tf.tensor(best!.get(name)!.data, v.shape)));
    restoredBestStep = state.bestStep;
  };
  // The running average of the trainable weights (ema); a resumed run inside it continues the saved one.
  let average: WeightAverage | undefined;
  if (s.ema && c.checkpointDir && resumedFrom >= s.ema.startStep) {
    const saved = loadAverageWeights(c.checkpointDir);
    if (!saved) throw new Error(`${c.checkpointDir}: the checkpoint has no averaged weights (${AVERAGE_FILE}) for its ema setting; start the run afresh`);
    average = new WeightAverage(trainable, s.ema.decay, saved);
  }
  const updateAverage = () => {
    if (!s.ema || state.step < s.ema.startStep) return;
    if (average) average.update();
    else average = new WeightAverage(trainable, s.ema.decay);
  };
  const checkpoint = () => {
    if (!c.checkpointDir) return;
    saveCheckpoint(c.checkpointDir, client, state, baseModel, { best, average: average?.arrays() });
    emit({ kind: 'checkpoint', step: state.step, epoch: Math.floor((state.step - 1) / stepsPerEpoch) });
  };

  while (state.step < totalSteps && !stoppedEarly) {
    const step = state.step;
    const epoch = Math.floor(step / stepsPerEpoch);
    const { batches, example } = epochOf(epoch);
    const batch = dynamicBatch(batches[step % stepsPerEpoch].map(example), context);
    const t0 = performance.now();
    const fb = client.forwardBackward(batch, 'cross_entropy', { seed: s.seed * 1_000_003 + step, logprobs: 'weighted' });
    const diverged = (what: string) => {
      client.clearGradients();
      const kept = c.checkpointDir && hasCheckpoint(c.checkpointDir) ? `; the last good checkpoint is kept in ${c.checkpointDir}` : '';
      return new TrainingDivergedError(
        `${what} at step ${step + 1} (epoch ${epoch + 1}); training stopped before updating the weights${kept}. ` +
          'Lower learningRate (or gradClipNorm).',
      );
    };
    if (!Number.isFinite(fb.loss)) throw diverged(`loss became ${fb.loss}`);
    const lr = learningRateAt(schedule, step);
    let opt: ReturnType<TrainingClient['optimStep']>;
    try {
      opt = client.optimStep({ learningRate: lr, beta1: s.beta1, beta2: s.beta2, eps: s.eps, weightDecay: s.weightDecay, gradClipNorm: s.gradClipNorm, groupScales: s.groupScales });
    } catch (e) {
      // A finite loss can still have an infinite or NaN gradient (e.g. an overflowing weight).
      if (e instanceof NonFiniteGradientError) throw diverged(`gradient norm became ${e.gradNorm} (loss ${fb.loss})`);
      throw e;
    }
    const tokens = batch.batchSize * batch.seqLen;
    tokensThisRun += tokens;
    state.step = step + 1;
    const answer = fb.answerLoss !== undefined ? { answerLoss: fb.answerLoss } : {};
    state.history.push({ step: state.step, epoch, loss: fb.loss, ...answer, lr, gradNorm: opt.gradNorm, tokens, seconds: (performance.now() - t0) / 1000 });
    emit({ kind: 'step', step: state.step, epoch, loss: fb.loss, ...answer, lr });
    updateAverage();

    const last = state.step === totalSteps;
    // The run ends on the average: the last evaluation and checkpoint are of the weights it leaves.
    if (last) average?.assignToVariables();
    if (validation.length && ((s.evalEvery > 0 && state.step % s.evalEvery === 0) || last)) {
      const valLoss = evaluateLoss(client, validation, s.batchSize);
      state.evals.push({ step: state.step, valLoss });
      if (state.bestValLoss === null || valLoss < state.bestValLoss - s.minDelta) {
        state.bestValLoss = valLoss;
        state.bestStep = state.step;
        state.evalsWithoutImprovement = 0;
        if (s.patience > 0) best = snapshot();
      } else state.evalsWithoutImprovement++;
      emit({ kind: 'eval', step: state.step, epoch, valLoss });
      if (s.patience > 0 && state.evalsWithoutImprovement >= s.patience) stoppedEarly = true;
    }
    // Let the event loop breathe (progress displays, Ctrl-C) between steps.
    await new Promise<void>((r) => setImmediate(r));
    interrupted = !last && !stoppedEarly && (c.shouldStop?.() ?? false);
    if (s.patience > 0 && (last || stoppedEarly)) restoreBest();
    if ((s.checkpointEvery > 0 && state.step % s.checkpointEvery === 0) || last || stoppedEarly || interrupted) checkpoint();
    if (interrupted) break;
  }
  emit({ kind: 'done', step: state.step, epoch: Math.floor((state.step - 1) / stepsPerEpoch) });
  average?.dispose();
  return {
    client,
    steps: state.step,
    totalSteps,
    stepsPerEpoch,
    history: state.history,
    evals: state.evals,
    bestValLoss: state.bestValLoss,
    bestStep: state.bestStep,
    stoppedEarly,
    restoredBestStep,
    interrupted,
    averagedFrom: s.ema && state.step >= s.ema.startStep ? s.ema.startStep : null,
    resumedFrom,
    trainableParameters: trainable.reduce((n, [, v]) => n + v.size, 0),
    seconds: (performance.now() - start) / 1000,
  };
}

