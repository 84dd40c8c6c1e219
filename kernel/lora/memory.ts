/**
 * Answer memory: one key and one value vector per distinct answer of the training examples, read from
 * the word bag (lora/words). A question's IDF-weighted bag mean is matched by cosine to every key; the
 * softmax of those cosines over a temperature weighs the values, and their weighted sum is added, beside
 * the bag, to the input embedding of the prompt's answer cue. Training adds to the language-model loss a
 * cross-entropy on the example's answer, its index among the distinct training answers, so the keys learn
 * a bag-of-words classifier over the trained answers and each value the vector the model answers from.
 *
 * Why: matched by cosine to its fact's training questions, a reworded question's bag mean finds the fact
 * for about two thirds of nyc-qa's test questions, while the transformer, given the mean itself, answered
 * about half of them right; it maps each training question's mean to its answer and does not carry that
 * over to a mean nearby. The memory hands it one vector per answer, the same for every wording that the
 * classifier matches to it. The values start at zero, so a fresh adapter leaves the outputs unchanged.
 *
 * Two temperatures: the classifier is trained at a softer one, which generalises better to reworded
 * questions, and the values are read at a sharper one, so that the model gets the chosen answer's value
 * rather than a blend of its neighbours' (docs/main-job.md measures both).
 *
 * Written here because no library fits: PEFT has no such module. It is a key-value memory layer (as in
 * product-key memories) whose query is the question's bag of words and whose slots are the answers.
 */
import * as tf from '../backend/tf';
import type { Batch } from '../data/batch';
import { variableFrom } from '../model/tensor';

/** Temperature of the classifier's cosines in its loss: two keys one cosine apart weigh e^10 to one. */
export const ANSWER_TEMPERATURE = 0.1;
/** Temperature of the cosines where the values are read: half the classifier's, e^20 to one. */
export const READ_TEMPERATURE = 0.05;
/**
 * Keys are compared by direction only; a small start (standard deviation 0.05 per element) lets Adam's
 * steps, about the learning rate per element, turn them within the run.
 */
const KEY_INIT_STD = 0.05;
/** Keeps a zero mean (a question with no known word) at a zero query, whose softmax is uniform. */
const NORM_EPSILON = 1e-12;

/** A training example's answer as trained: its completion's token ids (after any truncation). */
export type AnswerIds = number[];

/** The distinct completions of tokenized examples, in order of first appearance. */
export function answersOf(examples: Iterable<{ ids: ArrayLike<number>; promptLength: number }>): AnswerIds[] {
  const seen = new Map<string, AnswerIds>();
  for (const { ids, promptLength } of examples) {
    const answer = Array.prototype.slice.call(ids, promptLength) as number[];
    const key = answer.join();
    if (answer.length > 0 && !seen.has(key)) seen.set(key, answer);
  }
  return [...seen.values()];
}

/** Per row of [b, width], the row scaled to unit length (a zero row stays zero). */
function unitRows(x: tf.Tensor2D): tf.Tensor2D {
  return tf.div(x, tf.sqrt(tf.add(tf.sum(tf.square(x), 1, true), NORM_EPSILON)));
}

export class AnswerMemory {
  /** [answers, n_embd], compared by cosine with a question's bag mean. */
  readonly keys: tf.Variable<tf.Rank.R2>;
  /** [answers, n_embd], zero at the start; their softmax-weighted sum is added at the answer cue. */
  readonly values: tf.Variable<tf.Rank.R2>;
  private readonly index: Map<string, number>;

  constructor(
    readonly answers: AnswerIds[],
    width: number,
    /** Weight of the answer cross-entropy beside the language-model loss. */
    readonly weight: number,
    seed: number,
  ) {
    if (answers.length === 0) throw new Error('an answer memory needs at least one answer; the training examples hold none');
    this.index = new Map(answers.map((a, i) => [a.join(), i]));
    if (this.index.size !== answers.length) throw new Error('answer memory: the answer list repeats an answer');
    this.keys = variableFrom(tf.randomNormal([answers.length, width], 0, KEY_INIT_STD, 'float32', seed * 7919 + 104729) as tf.Tensor2D, true);
    this.values = variableFrom(tf.zeros([answers.length, width]) as tf.Tensor2D, true);
  }

  /** [b, answers]: the cosine of each bag mean of means [b, n_embd] with each key, over the classifier's temperature. */
  logits(means: tf.Tensor2D): tf.Tensor2D {
    return tf.div(tf.matMul(unitRows(means), unitRows(this.keys), false, true), ANSWER_TEMPERATURE);
  }

  /** [b, n_embd]: the values weighted by the softmax of the cosines of means [b, n_embd] over the read temperature. */
  read(means: tf.Tensor2D): tf.Tensor2D {
    return tf.matMul(tf.softmax(tf.mul(this.logits(means), ANSWER_TEMPERATURE / READ_TEMPERATURE)), this.values);
  }

  /**
   * Per row of a batch, the index of the answer that its weighted targets (the completion, as collate
   * lays it out) spell; −1 where they spell no training answer, e.g. a validation example's.
   */
  labels(batch: Pick<Batch, 'targets' | 'weights' | 'batchSize' | 'seqLen'>): Int32Array {
    const { targets, weights, batchSize, seqLen } = batch;
    return Int32Array.from({ length: batchSize }, (_, r) => {
      const answer: number[] = [];
      for (let i = r * seqLen; i < (r + 1) * seqLen; i++) if (weights[i] > 0) answer.push(targets[i]);
      return this.index.get(answer.join()) ?? -1;
    });
  }

  /** weight × the mean cross-entropy of the labelled rows' answers (labels ≥ 0) under the logits of means [b, n_embd]; null with none labelled. */
  loss(means: tf.Tensor2D, labels: Int32Array): tf.Scalar | null {
    const rows = [...labels.keys()].filter((r) => labels[r] >= 0);
    if (rows.length === 0) return null;
    // Each labelled row's log-probability of its answer, picked from the flattened [b, answers] (tf.oneHot
    // refuses a single answer).
    const picks = rows.map((r) => r * this.answers.length + labels[r]);
    const logp = tf.gather(tf.reshape(tf.logSoftmax(this.logits(means)), [-1]), tf.tensor1d(picks, 'int32'));
    return tf.mul(tf.neg(tf.mean(logp)), this.weight) as tf.Scalar;
  }

  dispose(): void {
    this.keys.dispose();
    this.values.dispose();
  }
}
