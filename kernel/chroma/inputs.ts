/**
 * The quality of training inputs, and the outliers among them. Four signals per example, each turned
 * into a robust z-score (median and MAD over the training set) that is positive on the bad side:
 *
 * - misplacement: its answer is the one other questions should get. 1 - the similarity between its
 *   question and the questions of the targets its gradient supports, each target weighted by
 *   softmax(alignment / 0.05) over the positively weighted targets. Gradients of short answers are
 *   dominated by the answer, so a swapped answer aligns with the reference of the fact it came from,
 *   whose question is unlike its own;
 * - influence (./influence): low or negative when the targets asking the same question disagree with
 *   its answer, or it pushes towards poorly rated outputs;
 * - loss: mean NLL of its answer under the fine-tuned model (an example the model cannot fit);
 * - isolation: mean cosine distance from its embedding (mean-pooled hidden states of question and
 *   answer, tune/embedding) to its k nearest neighbours, after removing the mean embedding, which
 *   every text shares and which would put every cosine near 1.
 *
 *   score   = Σ_s weight_s · max(0, z_s) / Σ_s weight_s     (only the bad side counts)
 *   quality = exp(-score)                                     (1 when no signal is worse than typical)
 *
 * The default weights (SIGNAL_WEIGHTS) come from `bench outliers` (answers swapped between facts of
 * nyc-qa): misplacement found most swapped rows, influence helped a little, and loss and isolation
 * were close to chance there, so they count little by default but still give their reasons.
 * The top `topFraction` by score are flagged as outliers, each with the reasons that made it so.
 * Influence and misplacement need targets; without them only loss and isolation count.
 */
import * as tf from '../backend/tf';
import { type QAExample, formatCompletion, formatPrompt } from '../data/example';
import type { TokenizedExample } from '../data/tokenize';
import type { GPT2Model } from '../model/gpt2';
import type { Tokenizer } from '../tokenizer';
import { median } from '../stats';
import { dynamicBatch, type ProgressEvent, tokenizeAll } from '../train/finetune';
import { targetLogprobs } from '../train/loss';
import { cosineSimilarity, embedTexts } from '../tune/embedding';
import { type AdapterWeights, computeInfluence, type GradientCache, type QAPair, type RatedOutput, snapshotAdapter } from './influence';

export type Signal = 'loss' | 'influence' | 'misplacement' | 'isolation';
export const SIGNALS: readonly Signal[] = ['loss', 'influence', 'misplacement', 'isolation'];

/** Default weights of the signals in the score. */
export const SIGNAL_WEIGHTS: Readonly<Record<Signal, number>> = { loss: 0.1, influence: 0.25, misplacement: 1, isolation: 0.1 };

/** Softmax temperature over gradient alignments (cosines) in misplacement. */
export const MISPLACEMENT_TEMPERATURE = 0.05;

export interface InputScore {
  /** Position in the training list. */
  index: number;
  id?: string;
  question: string;
  answer: string;
  /** Mean NLL (nats per answer token) under the fine-tuned model; NaN when the context cuts off the whole answer. */
  loss: number;
  /** In [-1, 1]; 0 when there are no targets. */
  influence: number;
  /** In [0, 1]: 1 - question similarity to the targets it supports; 0 when no target is positively weighted. */
  misplacement: number;
  /** Mean cosine distance to the k nearest neighbours, in [0, 2]. */
  isolation: number;
  /** Robust z-score of each signal, positive on the bad side. */
  z: Record<Signal, number>;
  /** The target this example's gradient supports most: its question and answer (absent without targets). */
  supports?: { question: string; answer: string };
  /** In [0, 1]: exp(-score). */
  quality: number;
  /** Weighted mean of the bad-side z-scores; higher is worse. */
  score: number;
  outlier: boolean;
  /** Why it was flagged (empty unless outlier), each with its figure. */
  reasons: string[];
}

export interface ScoreInputsOptions {
  model: GPT2Model;
  tokenizer: Tokenizer;
  train: QAExample[];
  /** Rated outputs (a generated answer and its quality). */
  targets?: RatedOutput[];
  /** Reference answers, targets of quality 1. */
  references?: QAPair[];
  /** Adapter weights taken during training (TracIn); default: the active adapter. */
  checkpoints?: AdapterWeights[];
  /** Share of examples flagged as outliers, in (0, 1] (default 0.1). */
  topFraction?: number;
  /** Neighbours for isolation (default 5). */
  neighbours?: number;
  /** Signal weights in the score (default SIGNAL_WEIGHTS); 0 leaves a signal out. */
  weights?: Partial<Record<Signal, number>>;
  /** z-score from which a signal is given as a reason (default 2). */
  reasonZ?: number;
  /** Localise influence by question similarity (default true). */
  localise?: boolean;
  sketchDim?: number;
  seed?: number;
  batchSize?: number;
  cache?: GradientCache;
  onProgress?: (done: number, total: number) => void;
}

// ---- signals -----------------------------------------------------------------------------------------

/** Mean NLL of each example's answer tokens (prompt masked, as in training), in batches, without dropout. */
export function exampleLosses(model: GPT2Model, examples: TokenizedExample[], batchSize = 16): number[] {
  const out: number[] = [];
  for (let k = 0; k < examples.length; k += batchSize) {
    const batch = dynamicBatch(examples.slice(k, k + batchSize), model.config.n_positions);
    const lp = tf.tidy(() => {
      const { logits } = model.forward(tf.tensor2d(batch.inputIds, [batch.batchSize, batch.seqLen], 'int32'));
      return targetLogprobs(tf.reshape(logits, [-1, model.config.vocab_size]) as tf.Tensor2D, tf.tensor1d(batch.targets, 'int32'));
    });
    const data = lp.dataSync();
    lp.dispose();
    for (let r = 0; r < batch.batchSize; r++) {
      let nll = 0;
      let w = 0;
      for (let t = r * batch.seqLen; t < (r + 1) * batch.seqLen; t++) {
        nll -= batch.weights[t] * data[t];
        w += batch.weights[t];
      }
      out.push(w > 0 ? nll / w : NaN);
    }
  }
  return out;
}

/**
 * Mean cosine distance of each vector to its k nearest others, after subtracting the mean vector.
 * [n] numbers in [0, 2]; 0 for a single vector.
 */
export function isolationScores(vectors: ArrayLike<number>[], k = 5): number[] {
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`neighbours must be an integer >= 1, got ${k}`);
  const n = vectors.length;
  if (n < 2) return vectors.map(() => 0);
  const d = vectors[0].length;
  const mean = new Float64Array(d);
  for (const v of vectors) for (let j = 0; j < d; j++) mean[j] += v[j] / n;
  const centred = vectors.map((v) => Float64Array.from({ length: d }, (_, j) => v[j] - mean[j]));
  const kk = Math.min(k, n - 1);
  return centred.map((a, i) => {
    const sims = centred.filter((_, j) => j !== i).map((b) => cosineSimilarity(a, b));
    sims.sort((x, y) => y - x);
    return 1 - sims.slice(0, kk).reduce((s, x) => s + x, 0) / kk;
  });
}

/**
 * (x - median) / (1.4826·MAD): a z-score that a few outliers cannot mask. Falls back to the mean
 * absolute deviation when more than half the values are equal, and to 0 when all are. NaN stays NaN.
 */
export function robustZ(values: number[]): number[] {
  const finite = values.filter(Number.isFinite);
  if (finite.length === 0) return values.map(() => NaN);
  const m = median(finite);
  const dev = finite.map((x) => Math.abs(x - m));
  // The floor keeps a signal that is nearly constant (most values equal) from turning rounding-level
  // differences into enormous z-scores.
  const spread = 1.4826 * median(dev) || 1.2533 * (dev.reduce((a, b) => a + b, 0) / dev.length);
  const scale = Math.max(spread, 0.01 * (1 + Math.abs(m)));
  return values.map((x) => (!Number.isFinite(x) ? NaN : (x - m) / scale));
}

/**
 * [train] 1 - Σ_t p_it·similarity(i, t), p_i = softmax(alignment(i, ·) / temperature) over the targets
 * with positive weight: how unlike its own question are the questions whose answers an example teaches.
 * 0 for every example when no target has positive weight.
 */
export function misplacementFrom(alignment: Float32Array[], similarity: Float32Array[], weights: number[], temperature = MISPLACEMENT_TEMPERATURE): number[] {
  if (!(temperature > 0)) throw new RangeError(`temperature must be > 0, got ${temperature}`);
  const positive = weights.map((w, t) => (w > 0 ? t : -1)).filter((t) => t >= 0);
  return alignment.map((row, i) => {
    if (positive.length === 0) return 0;
    const top = Math.max(...positive.map((t) => row[t]));
    let z = 0;
    let sim = 0;
    for (const t of positive) {
      const e = Math.exp((row[t] - top) / temperature);
      z += e;
      sim += e * similarity[i][t];
    }
    return 1 - sim / z;
  });
}

// ---- scoring -----------------------------------------------------------------------------------------

const clip = (s: string, n = 48) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

function reasonText(signal: Signal, s: InputScore): string {
  const z = s.z[signal].toFixed(1);
  switch (signal) {
    case 'loss':
      return `high loss: ${s.loss.toFixed(2)} nats/token (z ${z})`;
    case 'influence':
      return `harmful influence: ${s.influence.toFixed(3)} (z ${z})`;
    case 'misplacement':
      return `misplaced answer: it teaches the answer to "${clip(s.supports?.question ?? '')}" (question similarity ${(1 - s.misplacement).toFixed(2)}, z ${z})`;
    case 'isolation':
      return `isolated: ${s.isolation.toFixed(3)} (z ${z})`;
  }
}

/** Quality, influence and outlier flags of every training example (see the module comment). */
export function scoreInputs(o: ScoreInputsOptions): InputScore[] {
  const { model, tokenizer, train } = o;
  if (!Array.isArray(train) || train.length === 0) throw new RangeError('scoreInputs: train must hold at least one example');
  const topFraction = o.topFraction ?? 0.1;
  if (typeof topFraction !== 'number' || !(topFraction > 0 && topFraction <= 1)) throw new RangeError(`topFraction must be in (0, 1], got ${topFraction}`);
  const neighbours = o.neighbours ?? 5;
  if (!Number.isInteger(neighbours) || neighbours < 1) throw new RangeError(`neighbours must be an integer >= 1, got ${neighbours}`);
  const weights: Record<Signal, number> = { ...SIGNAL_WEIGHTS, ...o.weights };
  for (const s of SIGNALS) if (!(weights[s] >= 0 && Number.isFinite(weights[s]))) throw new RangeError(`weights.${s} must be a finite number >= 0, got ${weights[s]}`);
  for (const t of o.targets ?? []) if (typeof t.quality !== 'number' || !(t.quality >= 0 && t.quality <= 1)) throw new RangeError(`target quality must be in [0, 1], got ${t.quality} (question "${clip(t.question)}")`);
  const reasonZ = o.reasonZ ?? 2;

  const loss = exampleLosses(model, tokenizeAll(tokenizer, train, model.config.n_positions), o.batchSize ?? 16);
  const embeddings = embedTexts(model, tokenizer, train.map((ex) => formatPrompt(ex.question) + formatCompletion(ex.answer)), { batchSize: o.batchSize ?? 16 });
  const isolation = isolationScores(embeddings, neighbours);

  const hasTargets = (o.targets?.length ?? 0) + (o.references?.length ?? 0) > 0;
  const inf = hasTargets
    ? computeInfluence({
        model, tokenizer, train, targets: o.targets, references: o.references, checkpoints: o.checkpoints, localise: o.localise,
        sketchDim: o.sketchDim, seed: o.seed, cache: o.cache, onProgress: o.onProgress,
      })
    : undefined;
  const targetQA: QAPair[] = [...(o.targets ?? []).map((t) => ({ question: t.question, answer: t.text })), ...(o.references ?? [])];
  const influence = inf ? inf.influence : train.map(() => 0);
  const supported = inf ? inf.bestTarget : train.map(() => -1);
  const misplacement = inf ? misplacementFrom(inf.alignment, inf.similarity, inf.weights) : train.map(() => 0);

  // Signals that cannot be measured (no targets, a single example) are left out of the score.
  const active: Record<Signal, boolean> = { loss: true, isolation: train.length > 1, influence: Boolean(inf), misplacement: supported.some((t) => t >= 0) };
  const z: Record<Signal, number[]> = {
    loss: robustZ(loss),
    influence: robustZ(influence).map((x) => -x),
    misplacement: robustZ(misplacement),
    isolation: robustZ(isolation),
  };
  const used = SIGNALS.filter((s) => active[s] && weights[s] > 0);
  const weightSum = used.reduce((a, s) => a + weights[s], 0);
  const scores: InputScore[] = train.map((ex, i) => {
    const zi = Object.fromEntries(SIGNALS.map((s) => [s, active[s] && Number.isFinite(z[s][i]) ? z[s][i] : 0])) as Record<Signal, number>;
    const score = weightSum > 0 ? used.reduce((a, s) => a + weights[s] * Math.max(0, zi[s]), 0) / weightSum : 0;
    const t = supported[i];
    return {
      index: i,
      ...(ex.id !== undefined ? { id: ex.id } : {}),
      question: ex.question,
      answer: ex.answer,
      loss: loss[i],
      influence: influence[i],
      misplacement: misplacement[i],
      isolation: isolation[i],
      z: zi,
      ...(t >= 0 ? { supports: targetQA[t] } : {}),
      quality: Math.exp(-score),
      score,
      outlier: false,
      reasons: [],
    };
  });
  const flagged = Math.ceil(topFraction * train.length);
  for (const s of rankOutliers(scores).slice(0, flagged)) {
    s.outlier = true;
    const largestFirst = (a: Signal, b: Signal) => weights[b] * s.z[b] - weights[a] * s.z[a];
    const strong = used.filter((k) => s.z[k] >= reasonZ).sort(largestFirst);
    // Flagged on the combination alone: name its largest part.
    const main = strong.length ? strong : used.filter((k) => s.z[k] > 0).sort(largestFirst).slice(0, 1);
    s.reasons = main.length ? main.map((k) => reasonText(k, s)) : ['no signal worse than typical (flagged only to fill the top fraction)'];
  }
  // An answer cut off entirely by the context has no loss: training never sees it, which is reason enough.
  for (const s of scores) {
    if (Number.isFinite(s.loss)) continue;
    s.outlier = true;
    s.reasons = [`its answer lies beyond the model's context of ${model.config.n_positions} tokens, so training never sees it`, ...(s.reasons[0]?.startsWith('no signal') ? [] : s.reasons)];
  }
  return scores;
}

/**
 * Steps at which to snapshot the adapter for TracIn: 1/8, 2/8 and 3/8 of the way through training.
 * Early gradients are large and point somewhere; late in training memorised examples have small, noisy
 * gradients (on nyc-qa with swapped answers and full references, influence alone found 0.68 of them
 * with these checkpoints and 0.55 with the final adapter alone, over three seeds).
 */
export function tracinSteps(totalSteps: number, count = 3): number[] {
  if (!Number.isInteger(totalSteps) || totalSteps < 1) throw new RangeError(`totalSteps must be an integer >= 1, got ${totalSteps}`);
  return [...new Set(Array.from({ length: count }, (_, k) => Math.max(1, Math.round(((k + 1) * totalSteps) / 8))))].filter((s) => s <= totalSteps);
}

/**
 * Adapter snapshots for TracIn, taken at tracinSteps of the run while it fine-tunes: call onProgress
 * from the trainer's. `steps` is known from the first step on.
 */
export function tracinCheckpoints(model: GPT2Model): { checkpoints: AdapterWeights[]; readonly steps: number[]; onProgress(e: ProgressEvent): void } {
  const checkpoints: AdapterWeights[] = [];
  let steps: number[] = [];
  return {
    checkpoints,
    get steps() {
      return steps;
    },
    onProgress(e) {
      if (e.kind !== 'step') return;
      if (steps.length === 0) steps = tracinSteps(e.totalSteps);
      if (steps.includes(e.step)) checkpoints.push(snapshotAdapter(model));
    },
  };
}

/** Scores sorted worst first (highest score; ties by index). Does not modify its argument. */
export function rankOutliers(scores: readonly InputScore[]): InputScore[] {
  return [...scores].sort((a, b) => b.score - a.score || a.index - b.index);
}
