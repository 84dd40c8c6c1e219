/**
 * Sentence embeddings from the model itself: the mean of the final hidden states (after ln_f) over a
 * text's tokens. No second model is needed to compare a response with the desired output.
 *
 * Texts run in batches, right-padded to the longest in the batch. Attention is causal, so padding
 * after a text cannot change its hidden states, and the mean is taken over the text's own tokens only.
 */
import * as tf from '../backend/tf';
import type { GPT2Model } from '../model/gpt2';
import type { Tokenizer } from '../tokenizer';

export interface EmbedOptions {
  /** Texts per forward pass (default 16). */
  batchSize?: number;
}

/**
 * One vector of n_embd numbers per text. A text longer than the context is cut to its first
 * n_positions tokens; an empty text (no tokens) embeds as the zero vector.
 */
export function embedTexts(model: GPT2Model, tokenizer: Tokenizer, texts: readonly string[], o: EmbedOptions = {}): Float32Array[] {
  const batchSize = o.batchSize ?? 16;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be an integer >= 1, got ${batchSize}`);
  const d = model.config.n_embd;
  const ctx = model.config.n_positions;
  const tokens = texts.map((t) => tokenizer.encode(t).slice(0, ctx));
  const out: Float32Array[] = texts.map(() => new Float32Array(d));
  // Similar lengths share a batch, so little compute goes to padding.
  const order = tokens.map((_, i) => i).filter((i) => tokens[i].length > 0);
  order.sort((a, b) => tokens[a].length - tokens[b].length);
  for (let k = 0; k < order.length; k += batchSize) {
    const part = order.slice(k, k + batchSize);
    const t = Math.max(...part.map((i) => tokens[i].length));
    const ids = part.flatMap((i) => [...tokens[i], ...new Array<number>(t - tokens[i].length).fill(0)]);
    const mask = part.flatMap((i) => Array.from({ length: t }, (_, j) => (j < tokens[i].length ? 1 : 0)));
    const pooled = tf.tidy(() => {
      const { hidden } = model.forward(tf.tensor2d(ids, [part.length, t], 'int32'));
      const m = tf.tensor3d(mask, [part.length, t, 1]);
      const lengths = tf.tensor2d(part.map((i) => tokens[i].length), [part.length, 1]);
      return tf.div(tf.sum(tf.mul(hidden, m), 1), lengths);
    });
    const data = pooled.dataSync() as Float32Array;
    part.forEach((i, j) => out[i].set(data.subarray(j * d, (j + 1) * d)));
    pooled.dispose();
  }
  return out;
}

export function embedText(model: GPT2Model, tokenizer: Tokenizer, text: string): Float32Array {
  return embedTexts(model, tokenizer, [text])[0];
}

/** Cosine similarity in float64; 0 when either vector is all zeros (an empty text resembles nothing). */
export function cosineSimilarity(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`cosineSimilarity: vectors of length ${a.length} and ${b.length}`);
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  if (na === 0 || nb === 0) return 0;
  return Math.max(-1, Math.min(1, dot / Math.sqrt(na * nb)));
}

/**
 * Remembers embeddings by text: the desired outputs are embedded once per study, and repeated
 * responses (greedy decoding repeats itself) cost nothing.
 */
export class EmbeddingCache {
  private readonly cache = new Map<string, Float32Array>();
  constructor(
    readonly model: GPT2Model,
    readonly tokenizer: Tokenizer,
    readonly options: EmbedOptions = {},
  ) {}

  embed(texts: readonly string[]): Float32Array[] {
    const missing = [...new Set(texts.filter((t) => !this.cache.has(t)))];
    if (missing.length) embedTexts(this.model, this.tokenizer, missing, this.options).forEach((v, i) => this.cache.set(missing[i], v));
    return texts.map((t) => this.cache.get(t)!);
  }
}
