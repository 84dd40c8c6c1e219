/**
 * The low-level training loop, shaped like Tinker's training client: forwardBackward accumulates
 * gradients, optimStep applies them with AdamW, sample and computeLogprobs query the current weights.
 */
import * as tf from '../backend/tf';
import type { Batch } from '../data/batch';
import type { GPT2Model, TrainingMode } from '../model/gpt2';
import { arraysOf, type NamedArrays } from '../model/tensor';
import type { Tokenizer } from '../tokenizer';
import { generate, type SampleOptions, type SampleResult } from '../sample/generate';
import { AdamW, type AdamParams } from './adamw';
import { maskedNLL, targetLogprobs } from './loss';

export type LossFunction = 'cross_entropy';
/** Which target positions get a log-probability: all of them, or only those the loss weighs. */
export type LogprobPositions = 'all' | 'weighted';

export interface ForwardBackwardResult {
  /** Weighted mean negative log-likelihood of the batch's target tokens. */
  loss: number;
  /**
   * Log-probability of every target token, [batch * seq] row-major (padding included, weight 0). With
   * `logprobs: 'weighted'` only positions of weight > 0 are computed; the others are NaN.
   */
  logprobs: Float32Array;
  /** Sum of the loss weights, i.e. the number of supervised tokens. */
  weightSum: number;
  /** With an answer memory (lora/memory): its weighted cross-entropy on the batch's answers, trained beside `loss`. */
  answerLoss?: number;
}

export interface OptimStepResult {
  step: number;
  gradNorm: number;
  groupLearningRates: Record<string, number>;
}

export interface LogprobsResult {
  promptTokens: number[];
  completionTokens: number[];
  /** Log-probability of each completion token given everything before it. */
  logprobs: number[];
  total: number;
}

/** Log-probabilities computed at `rows` (all positions when undefined) as a [n] array, NaN elsewhere. */
function spreadLogprobs(computed: tf.Tensor, rows: number[] | undefined, n: number): Float32Array {
  const values = computed.dataSync() as Float32Array;
  if (!rows) return values;
  const lp = new Float32Array(n).fill(NaN);
  rows.forEach((r, i) => (lp[r] = values[i])); // no rows: the full-path values are dropped, all weight 0
  return lp;
}

export class TrainingClient {
  readonly optimizer = new AdamW();
  private accumulated = new Map<string, tf.Tensor>();
  private accumulatedCount = 0;

  constructor(
    readonly model: GPT2Model,
    readonly tokenizer: Tokenizer,
    /** 'none' serves sampling and evaluation only. */
    readonly mode: TrainingMode = 'lora',
  ) {
    model.trainableVariables(mode); // fails early when LoRA has no adapter
    model.setTrainingMode(mode);
  }

  private batchTensors(batch: Batch) {
    const { batchSize: b, seqLen: t } = batch;
    if (batch.inputIds.length !== b * t || batch.targets.length !== b * t || batch.weights.length !== b * t) {
      throw new RangeError(`batch arrays must have batchSize*seqLen = ${b * t} entries`);
    }
    return {
      ids: tf.tensor2d(batch.inputIds, [b, t], 'int32'),
      targets: tf.tensor1d(batch.targets, 'int32'),
      weights: tf.tensor1d(batch.weights, 'float32'),
      weightSum: batch.weights.reduce((a, w) => a + w, 0),
    };
  }

  private lossAndLogprobs(batch: Batch, training: boolean, seed: number, positions: LogprobPositions = 'all') {
    const { ids, targets, weights, weightSum } = this.batchTensors(batch);
    const { hidden } = this.model.hiddenStates(ids, { training, seed });
    let rows: number[] | undefined;
    if (positions === 'weighted') {
      rows = [];
      batch.weights.forEach((w, i) => w > 0 && rows!.push(i));
    }
    // A batch with no weighted position keeps the full path: its loss is then exactly 0 with zero
    // gradients (an empty gather gives the backend nothing well-defined to sum).
    if (!rows || rows.length === 0) {
      const lp = targetLogprobs(this.model.lmHead(hidden), targets);
      return { loss: maskedNLL(lp, weights, weightSum), logprobs: lp, weightSum, rows };
    }
    // The vocabulary projection and its softmax are the largest per-position cost; prompt and padding
    // positions (weight 0) add nothing to the loss or its gradient, so only weighted rows go through it.
    const at = tf.tensor1d(rows, 'int32');
    const lp = targetLogprobs(this.model.lmHead(tf.gather(hidden, at)), tf.gather(targets, at));
    return { loss: maskedNLL(lp, tf.gather(weights, at), weightSum), logprobs: lp, weightSum, rows };
  }

  /**
   * Loss and per-token log-probabilities, and gradients added to the accumulator. `logprobs: 'weighted'`
   * computes log-probabilities only where the loss has weight (same loss and gradients, less work).
   */
  forwardBackward(batch: Batch, lossFn: LossFunction = 'cross_entropy', opts: { seed?: number; logprobs?: LogprobPositions } = {}): ForwardBackwardResult {
    if (lossFn !== 'cross_entropy') throw new RangeError(`lossFn must be "cross_entropy", got "${lossFn}"`);
    const vars = this.model.trainableVariables(this.mode);
    const names = new Map(vars.map(([n, v]) => [v.name, n]));
    let logprobs!: tf.Tensor;
    let rows: number[] | undefined;
    let weightSum = 0;
    let parts: { loss: tf.Scalar; answer: tf.Scalar | null } | undefined;
    const { value, grads } = tf.variableGrads(() => {
      const r = this.lossAndLogprobs(batch, true, opts.seed ?? this.optimizer.step, opts.logprobs);
      logprobs = tf.keep(r.logprobs);
      rows = r.rows;
      weightSum = r.weightSum;
      // The answer memory's classifier is trained beside the language-model loss, on the same batch.
      const answer = this.mode === 'lora' ? this.model.activeAdapter?.words?.answerLoss(batch) : null;
      if (!answer) return r.loss;
      parts = { loss: tf.keep(r.loss), answer: tf.keep(answer) };
      return tf.add(r.loss, answer) as tf.Scalar;
    }, vars.map(([, v]) => v));
    for (const [vname, g] of Object.entries(grads)) {
      const name = names.get(vname)!;
      const prev = this.accumulated.get(name);
      if (prev) {
        this.accumulated.set(name, tf.add(prev, g));
        prev.dispose();
        g.dispose();
      } else this.accumulated.set(name, g);
    }
    this.accumulatedCount++;
    const loss = (parts?.loss ?? value).dataSync()[0];
    const answerLoss = parts?.answer?.dataSync()[0];
    tf.dispose([value, parts?.loss, parts?.answer].filter((t): t is tf.Scalar => t !== undefined && t !== null));
    const lp = spreadLogprobs(logprobs, rows, batch.weights.length);
    logprobs.dispose();
    return { loss, logprobs: lp, weightSum, ...(answerLoss !== undefined ? { answerLoss } : {}) };
  }

  /** Loss without gradients or dropout (evaluation); `logprobs` as in forwardBackward. */
  forward(batch: Batch, opts: { logprobs?: LogprobPositions } = {}): ForwardBackwardResult {
    const r = tf.tidy(() => {
      const o = this.lossAndLogprobs(batch, false, 0, opts.logprobs);
      return { loss: o.loss, logprobs: o.logprobs, weightSum: o.weightSum, rows: o.rows };
    });
    const out = { loss: r.loss.dataSync()[0], logprobs: spreadLogprobs(r.logprobs, r.rows, batch.weights.length), weightSum: r.weightSum };
    r.loss.dispose();
    r.logprobs.dispose();
    return out;
  }

  /** Applies the mean of the accumulated gradients and clears them. */
  optimStep(params: AdamParams): OptimStepResult {
    if (this.accumulatedCount === 0) throw new Error('optimStep: no gradients; call forwardBackward first');
    const scale = 1 / this.accumulatedCount;
    const grads = new Map<string, tf.Tensor>();
    for (const [name, g] of this.accumulated) grads.set(name, scale === 1 ? g : tf.mul(g, scale));
    try {
      const r = this.optimizer.apply(this.model.trainableVariables(this.mode), grads, params);
      return { step: this.optimizer.step, ...r };
    } finally {
      this.clearGradients();
      if (scale !== 1) grads.forEach((g) => g.dispose());
    }
  }

  /**
   * Copies of the gradients accumulated since the last optimStep (summed over forwardBackward calls;
   * optimStep applies their mean), by trainable-variable name. Read-only: for inspection and tests.
   */
  accumulatedGradients(): NamedArrays {
    return arraysOf([...this.accumulated]);
  }

  /** Number of forwardBackward calls whose gradients are accumulated. */
  get accumulatedSteps(): number {
    return this.accumulatedCount;
  }

  clearGradients(): void {
    this.accumulated.forEach((g) => g.dispose());
    this.accumulated.clear();
    this.accumulatedCount = 0;
  }

  sample(prompt: string, opts: SampleOptions = {}): SampleResult {
    return generate(this.model, this.tokenizer, prompt, opts);
  }

  computeLogprobs(prompt: string, completion: string): LogprobsResult {
    const promptTokens = this.tokenizer.encode(prompt);
    const completionTokens = this.tokenizer.encode(completion);
    const ids = [...promptTokens, ...completionTokens];
    if (promptTokens.length === 0) throw new RangeError('prompt must encode to at least one token');
    if (ids.length > this.model.config.n_positions) {
      throw new RangeError(`prompt + completion is ${ids.length} tokens; the model's context is ${this.model.config.n_positions}`);
    }
    const lp = tf.tidy(() => {
      const { logits } = this.model.forward(tf.tensor2d(ids.slice(0, -1), [1, ids.length - 1], 'int32'));
      const all = targetLogprobs(tf.reshape(logits, [-1, this.model.config.vocab_size]) as tf.Tensor2D, tf.tensor1d(ids.slice(1), 'int32'));
      return tf.slice(all, [promptTokens.length - 1], [completionTokens.length]);
    });
    const logprobs = Array.from(lp.dataSync());
    lp.dispose();
    return { promptTokens, completionTokens, logprobs, total: logprobs.reduce((a, b) => a + b, 0) };
  }

  dispose(): void {
    this.clearGradients();
    this.optimizer.dispose();
  }
}
