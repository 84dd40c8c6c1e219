/**
 * Autoregressive generation with an optional key-value cache. Each of the numSamples continuations has
 * its own seeded generator, so sample i is the same whatever numSamples is. With a byte-level
 * tokenizer every sample is well-formed UTF-8 (see utf8.ts).
 */
import * as tf from '../backend/tf';
import { disposeCache, GPT2Model, type KVCache } from '../model/gpt2';
import type { Tokenizer } from '../tokenizer';
import { makeRng, sampleToken, type SamplingParams, validateSamplingParams } from './sampler';
import { Utf8Guard } from './utf8';

export interface SampleOptions extends SamplingParams {
  maxTokens?: number;
  /** Generation ends when the completion contains any of these; the stop string is cut off. */
  stop?: string[];
  numSamples?: number;
  seed?: number;
  /** Use the key-value cache (default true); false recomputes the whole sequence each step. */
  useCache?: boolean;
  /** Keep the text well-formed UTF-8 with a byte-level tokenizer (default true); false lets any token follow. */
  wellFormed?: boolean;
  /** Sampling parameters per generated token (e.g. from ChromaTune's decoding nodes); overrides the fixed ones. */
  paramsAt?: (step: number, maxTokens: number, logits: Float32Array) => SamplingParams;
}

export type FinishReason = 'stop' | 'eos' | 'length' | 'context';

export interface Sample {
  text: string;
  tokens: number[];
  /** Log-probability of each generated token under the model (temperature 1). */
  logprobs: number[];
  finishReason: FinishReason;
}

export interface SampleResult {
  promptTokens: number[];
  samples: Sample[];
}

function checkCount(field: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) throw new RangeError(`${field} must be an integer >= ${min}, got ${v}`);
}

/** log softmax of one row, at the chosen index. */
function logprobAt(row: Float32Array, index: number): number {
  let max = -Infinity;
  for (const x of row) if (x > max) max = x;
  let sum = 0;
  for (const x of row) sum += Math.exp(x - max);
  return row[index] - max - Math.log(sum);
}

export function generate(model: GPT2Model, tokenizer: Tokenizer, prompt: string, opts: SampleOptions = {}): SampleResult {
  return generateFromTokens(model, tokenizer, tokenizer.encode(prompt), opts);
}

/** As generate, from a prompt already tokenized (ids need not decode to text and back, e.g. in a benchmark). */
export function generateFromTokens(model: GPT2Model, tokenizer: Tokenizer, promptTokens: number[], opts: SampleOptions = {}): SampleResult {
  const n = opts.numSamples ?? 1;
  checkCount('numSamples', n, 1);
  const rngs = Array.from({ length: n }, (_, i) => makeRng(`${opts.seed ?? 0}:${i}`));
  return { promptTokens, samples: generateRows(model, tokenizer, Array.from({ length: n }, () => promptTokens), rngs, opts) };
}

/**
 * One sample for each of several prompts. Prompts of equal token length run together as one batch
 * (no padding, so no attention mask is needed): evaluating hundreds of questions this way is several
 * times faster than one by one. Prompt i samples with the seed `${seed}:p${i}`.
 */
export function generateMany(model: GPT2Model, tokenizer: Tokenizer, prompts: string[], opts: Omit<SampleOptions, 'numSamples'> = {}): Sample[] {
  const tokens = prompts.map((p) => tokenizer.encode(p));
  const groups = new Map<number, number[]>();
  tokens.forEach((t, i) => groups.set(t.length, [...(groups.get(t.length) ?? []), i]));
  const out = new Array<Sample>(prompts.length);
  const maxBatch = 32;
  for (const idx of groups.values()) {
    for (let k = 0; k < idx.length; k += maxBatch) {
      const part = idx.slice(k, k + maxBatch);
      const rows = generateRows(model, tokenizer, part.map((i) => tokens[i]), part.map((i) => makeRng(`${opts.seed ?? 0}:p${i}`)), opts);
      part.forEach((i, j) => (out[i] = rows[j]));
    }
  }
  return out;
}

/** Decodes one continuation per row; every row's prompt has the same number of tokens. */
function generateRows(model: GPT2Model, tokenizer: Tokenizer, prompts: number[][], rngs: Array<() => number>, opts: SampleOptions): Sample[] {
  validateSamplingParams(opts);
  const maxTokens = opts.maxTokens ?? 64;
  checkCount('maxTokens', maxTokens, 1);
  const n = prompts.length;
  const stops = (opts.stop ?? []).filter((s) => s.length > 0);
  const promptLength = prompts[0].length;
  if (promptLength === 0) throw new RangeError('prompt must encode to at least one token');
  if (prompts.some((p) => p.length !== promptLength)) throw new Error('generateRows: prompts must have equal token lengths');
  const ctx = model.config.n_positions;
  if (promptLength >= ctx) throw new RangeError(`prompt has ${promptLength} tokens; the model's context is ${ctx}`);
  const vocab = model.config.vocab_size;
  const eos = tokenizer.eosId;
  const samples: Sample[] = Array.from({ length: n }, () => ({ text: '', tokens: [], logprobs: [], finishReason: 'length' as FinishReason }));
  const done = new Array<boolean>(n).fill(false);
  const useCache = opts.useCache ?? true;
  let cache: KVCache | undefined = useCache ? GPT2Model.emptyCache() : undefined;
  const seqs = prompts.map((p) => [...p]);
  // A prompt given as ids that are not UTF-8 text (a benchmark's) leaves its row unguarded.
  const guard = opts.wellFormed === false ? undefined : Utf8Guard.of(tokenizer, vocab);
  const utf8 = prompts.map((p) => guard?.stateAfter(p) ?? 0);
  let feed = seqs.map((s) => s.slice()); // tokens to run next: the whole prompt first

  try {
    for (let step = 0; step < maxTokens; step++) {
      const t = feed[0].length;
      const logits = tf.tidy(() => {
        const ids = tf.tensor2d(feed.flat(), [n, t], 'int32');
        const out = model.forward(ids, { cache });
        if (cache) {
          const old = cache;
          cache = out.cache;
          for (const l of cache!.layers) {
            tf.keep(l.k);
            tf.keep(l.v);
          }
          if (old.length > 0) disposeCache(old);
        }
        return tf.reshape(tf.slice(out.logits, [0, t - 1, 0], [n, 1, vocab]), [n, vocab]);
      });
      const rows = logits.dataSync() as Float32Array;
      logits.dispose();
      for (let i = 0; i < n; i++) {
        // Finished rows are fed their last token again so that the batch stays rectangular.
        if (done[i]) {
          seqs[i].push(seqs[i][seqs[i].length - 1]);
          continue;
        }
        const row = rows.subarray(i * vocab, (i + 1) * vocab);
        const allowed = guard ? guard.mask(row, utf8[i]) : row;
        const token = sampleToken(allowed, opts.paramsAt ? opts.paramsAt(step, maxTokens, row) : opts, rngs[i]);
        if (guard) utf8[i] = guard.advance(utf8[i], token);
        seqs[i].push(token);
        const s = samples[i];
        if (eos !== undefined && token === eos) {
          done[i] = true;
          s.finishReason = 'eos';
          continue;
        }
        s.tokens.push(token);
        s.logprobs.push(logprobAt(row, token));
        if (stops.length === 0) continue;
        s.text = tokenizer.decode(s.tokens);
        const hit = stops.map((st) => s.text.indexOf(st)).filter((k) => k >= 0);
        if (hit.length) {
          s.text = s.text.slice(0, Math.min(...hit));
          done[i] = true;
          s.finishReason = 'stop';
        }
      }
      if (done.every(Boolean)) break;
      if (seqs[0].length > ctx) {
        for (let i = 0; i < n; i++) if (!done[i]) samples[i].finishReason = 'context';
        break;
      }
      feed = useCache ? seqs.map((s) => [s[s.length - 1]]) : seqs.map((s) => s.slice());
    }
  } finally {
    disposeCache(cache);
  }
  // Without stop strings nothing was decoded along the way.
  if (stops.length === 0) for (const s of samples) s.text = tokenizer.decode(s.tokens);
  return samples;
}
