/**
 * Question augmentation for fine-tuning. A small model trained on one phrasing per fact learns that
 * exact word sequence and fails on a rephrased question; dropping random question words each epoch
 * (the deletion operation of EDA, Wei & Zou 2019) makes every content word predictive of the answer
 * on its own, so a paraphrase that shares some of them still retrieves the fact. Dropping common words
 * more often than rare ones (`rareWordDropout`) goes further: a rephrased question keeps the names
 * that identify its fact ("SoHo", "Rikers Island") and changes the frame words ("which", "borough"),
 * so the model learns to key on the names. Answers are never changed. Hand-written: a few lines over a
 * seeded PRNG, no library needed.
 */
import seedrandom from 'seedrandom';

export interface AugmentConfig {
  /** Probability that a question word is dropped, in [0, 1); with `rareWordDropout`, that of the most common word. */
  wordDropout: number;
  /**
   * Drop probability of a word found in only one training question, in [0, wordDropout]. Words in
   * between get a probability interpolated on the logarithm of the number of training questions that
   * hold them. Default: wordDropout (every word alike).
   */
  rareWordDropout?: number;
  /** Fraction of examples augmented each epoch; the rest keep their question (default 0.75). */
  probability?: number;
}

/** Resolved settings; rareWordDropout only when it differs from wordDropout (so uniform dropout has one form). */
export interface ResolvedAugment {
  wordDropout: number;
  probability: number;
  rareWordDropout?: number;
}

export function resolveAugment(a: AugmentConfig): ResolvedAugment {
  const r: ResolvedAugment = { wordDropout: a.wordDropout, probability: a.probability ?? 0.75 };
  if (typeof r.wordDropout !== 'number' || !(r.wordDropout >= 0 && r.wordDropout < 1)) throw new RangeError(`augment.wordDropout must be in [0, 1), got ${a.wordDropout}`);
  if (typeof r.probability !== 'number' || !(r.probability >= 0 && r.probability <= 1)) throw new RangeError(`augment.probability must be in [0, 1], got ${a.probability}`);
  if (a.rareWordDropout !== undefined) {
    if (typeof a.rareWordDropout !== 'number' || !(a.rareWordDropout >= 0 && a.rareWordDropout <= r.wordDropout)) {
      throw new RangeError(`augment.rareWordDropout must be in [0, wordDropout = ${r.wordDropout}], got ${a.rareWordDropout}`);
    }
    if (a.rareWordDropout !== r.wordDropout) r.rareWordDropout = a.rareWordDropout;
  }
  return r;
}

/** How many training questions hold each word (case and punctuation ignored). */
export interface WordFrequencies {
  questions: Map<string, number>;
  /** The largest count. */
  max: number;
}

const wordKey = (w: string): string => w.toLowerCase().replace(/[^\p{L}\p{N}]/gu, '');
const splitQuestion = (question: string) => {
  const m = /^(.*?)([?.!]*)$/s.exec(question.trim())!;
  return { words: m[1].split(/\s+/).filter(Boolean), end: m[2] };
};

export function wordFrequencies(questions: string[]): WordFrequencies {
  const counts = new Map<string, number>();
  let max = 1;
  for (const q of questions) {
    for (const k of new Set(splitQuestion(q).words.map(wordKey))) {
      if (!k) continue;
      const n = (counts.get(k) ?? 0) + 1;
      counts.set(k, n);
      max = Math.max(max, n);
    }
  }
  return { questions: counts, max };
}

/** Drop probability of one word: wordDropout, or with rareWordDropout the log-frequency interpolation. */
function dropProbability(word: string, a: ResolvedAugment, freq?: WordFrequencies): number {
  if (a.rareWordDropout === undefined) return a.wordDropout;
  if (!freq) throw new Error('augment.rareWordDropout needs the training questions\' word frequencies');
  const n = freq.questions.get(wordKey(word)) ?? 1;
  const t = freq.max > 1 ? Math.log(n) / Math.log(freq.max) : 0;
  return a.rareWordDropout + (a.wordDropout - a.rareWordDropout) * Math.min(1, t);
}

/**
 * The question as seen by training for this (seed, epoch, example): deterministic, so a resumed run sees
 * the same variants. Words are whitespace-separated; the final punctuation is kept and at least one word
 * survives. `freq` (from wordFrequencies over the training questions) is needed with rareWordDropout.
 */
export function augmentQuestion(question: string, a: ResolvedAugment, key: string, freq?: WordFrequencies): string {
  const rng = seedrandom(`augment:${key}`);
  if (a.wordDropout === 0 || rng() >= a.probability) return question;
  const { words, end } = splitQuestion(question);
  if (words.length < 2) return question;
  let kept = words.filter((w) => rng() >= dropProbability(w, a, freq));
  if (kept.length === 0) kept = [words[Math.floor(rng() * words.length)]];
  return kept.join(' ') + end;
}
