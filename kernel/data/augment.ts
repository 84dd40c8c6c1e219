/**
 * Question augmentation for fine-tuning. A small model trained on one phrasing per fact learns that
 * exact word sequence and fails on a rephrased question; dropping random question words each epoch
 * (the deletion operation of EDA, Wei & Zou 2019) makes every content word predictive of the answer
 * on its own, so a paraphrase that shares some of them still retrieves the fact. Answers are never
 * changed. Hand-written: a few lines over a seeded PRNG, no library needed.
 */
import seedrandom from 'seedrandom';

export interface AugmentConfig {
  /** Probability that a question word is dropped, in [0, 1). */
  wordDropout: number;
  /** Fraction of examples augmented each epoch; the rest keep their question (default 0.75). */
  probability?: number;
}

export type ResolvedAugment = Required<AugmentConfig>;

export function resolveAugment(a: AugmentConfig): ResolvedAugment {
  const r = { wordDropout: a.wordDropout, probability: a.probability ?? 0.75 };
  if (typeof r.wordDropout !== 'number' || !(r.wordDropout >= 0 && r.wordDropout < 1)) throw new RangeError(`augment.wordDropout must be in [0, 1), got ${a.wordDropout}`);
  if (typeof r.probability !== 'number' || !(r.probability >= 0 && r.probability <= 1)) throw new RangeError(`augment.probability must be in [0, 1], got ${a.probability}`);
  return r;
}

/**
 * The question as seen by training for this (seed, epoch, example): deterministic, so a resumed run sees
 * the same variants. Words are whitespace-separated; the final punctuation is kept and at least one word
 * survives.
 */
export function augmentQuestion(question: string, a: ResolvedAugment, key: string): string {
  const rng = seedrandom(`augment:${key}`);
  if (a.wordDropout === 0 || rng() >= a.probability) return question;
  const m = /^(.*?)([?.!]*)$/s.exec(question.trim())!;
  const words = m[1].split(/\s+/).filter(Boolean);
  if (words.length < 2) return question;
  let kept = words.filter(() => rng() >= a.wordDropout);
  if (kept.length === 0) kept = [words[Math.floor(rng() * words.length)]];
  return kept.join(' ') + m[2];
}
