/**
 * Answer-quality metrics, as in SQuAD's evaluation script: answers are normalised (lower case, no
 * punctuation, no articles, single spaces) before exact match, token F1 and ROUGE-L are computed.
 */

/** Lower case, punctuation removed, articles a/an/the dropped, whitespace collapsed. */
export function normalizeAnswer(s: string): string {
  return s
    .toLowerCase()
    .normalize('NFKC')
    .replace(/[\p{P}\p{S}]/gu, ' ')
    .replace(/\b(a|an|the)\b/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
}

export const answerTokens = (s: string): string[] => {
  const n = normalizeAnswer(s);
  return n ? n.split(' ') : [];
};

export function exactMatch(prediction: string, reference: string): number {
  return normalizeAnswer(prediction) === normalizeAnswer(reference) ? 1 : 0;
}

/**
 * 1 when the prediction is, after normalisation, one of `known` (the training answers) but not the
 * reference: the model recites an answer it was taught for another question. On questions about facts
 * never trained on, the share of such answers measures hallucination.
 */
export function recited(prediction: string, reference: string, known: ReadonlySet<string>): number {
  const p = normalizeAnswer(prediction);
  return p !== normalizeAnswer(reference) && known.has(p) ? 1 : 0;
}

/** Harmonic mean of token precision and recall, counting repeated tokens (a bag of words). */
export function tokenF1(prediction: string, reference: string): number {
  const p = answerTokens(prediction);
  const r = answerTokens(reference);
  if (p.length === 0 || r.length === 0) return p.length === r.length ? 1 : 0;
  const counts = new Map<string, number>();
  for (const t of r) counts.set(t, (counts.get(t) ?? 0) + 1);
  let common = 0;
  for (const t of p) {
    const c = counts.get(t) ?? 0;
    if (c > 0) {
      common++;
      counts.set(t, c - 1);
    }
  }
  if (common === 0) return 0;
  const precision = common / p.length;
  const recall = common / r.length;
  return (2 * precision * recall) / (precision + recall);
}

/** Length of the longest common subsequence of two token lists (dynamic programming, two rows). */
export function lcsLength(a: string[], b: string[]): number {
  let prev = new Array<number>(b.length + 1).fill(0);
  for (let i = 1; i <= a.length; i++) {
    const cur = new Array<number>(b.length + 1).fill(0);
    for (let j = 1; j <= b.length; j++) cur[j] = a[i - 1] === b[j - 1] ? prev[j - 1] + 1 : Math.max(prev[j], cur[j - 1]);
    prev = cur;
  }
  return prev[b.length];
}

/** ROUGE-L F-measure (beta = 1) over normalised tokens. */
export function rougeL(prediction: string, reference: string): number {
  const p = answerTokens(prediction);
  const r = answerTokens(reference);
  if (p.length === 0 || r.length === 0) return p.length === r.length ? 1 : 0;
  const lcs = lcsLength(p, r);
  if (lcs === 0) return 0;
  const precision = lcs / p.length;
  const recall = lcs / r.length;
  return (2 * precision * recall) / (precision + recall);
}

export interface AnswerScores {
  exactMatch: number;
  tokenF1: number;
  rougeL: number;
}

export function scoreAnswer(prediction: string, reference: string): AnswerScores {
  return { exactMatch: exactMatch(prediction, reference), tokenF1: tokenF1(prediction, reference), rougeL: rougeL(prediction, reference) };
}

export function meanScores(scores: AnswerScores[]): AnswerScores {
  const n = Math.max(1, scores.length);
  const sum = (k: keyof AnswerScores) => scores.reduce((a, s) => a + s[k], 0) / n;
  return { exactMatch: sum('exactMatch'), tokenF1: sum('tokenF1'), rougeL: sum('rougeL') };
}
