/** Question/answer -> token ids and per-token loss weights (0 on the prompt, 1 on the completion). */
import { formatCompletion, formatPrompt } from './example';

/** The minimal tokenizer this module needs (the BPE tokenizer satisfies it). */
export interface TextEncoder {
  encode(text: string): number[];
}

export interface TokenizedExample {
  ids: number[];
  /** Same length as ids: 0 for prompt tokens, 1 for completion tokens. */
  weights: number[];
  /** Number of prompt tokens at the start of ids (after any truncation). */
  promptLength: number;
  /** Set when the example was cut to maxTokens. */
  truncated?: boolean;
}

/**
 * Encode prompt and completion separately and concatenate, so the weight boundary falls exactly between
 * them (encoding the joined text could merge tokens across the boundary). For GPT-2's BPE this matches
 * the joint encoding anyway, since its pre-tokenizer splits before the completion's leading space.
 * Longer than maxTokens: cut from the end, so the answer's tail goes first.
 */
export function tokenizeExample(tok: TextEncoder, ex: { question: string; answer: string }, maxTokens?: number): TokenizedExample {
  if (maxTokens !== undefined && (!Number.isInteger(maxTokens) || maxTokens < 1)) throw new Error(`maxTokens must be a positive integer, got ${maxTokens}`);
  const prompt = tok.encode(formatPrompt(ex.question));
  const completion = tok.encode(formatCompletion(ex.answer));
  const ids = [...prompt, ...completion];
  const weights = [...prompt.map(() => 0), ...completion.map(() => 1)];
  if (maxTokens !== undefined && ids.length > maxTokens) {
    return { ids: ids.slice(0, maxTokens), weights: weights.slice(0, maxTokens), promptLength: Math.min(prompt.length, maxTokens), truncated: true };
  }
  return { ids, weights, promptLength: prompt.length };
}
