/**
 * Shared fixtures for the engine tests (model, lora, train, memorize): tiny configurations, the
 * byte-level tokenizer, weight snapshots and plain-JS numerics used as independent references.
 * Not a test file itself (jest only runs *.test.ts).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '../kernel/backend/tf';
import { expectedTensors, type GPT2Config, makeConfig } from '../kernel/model/config';
import { GPT2Model } from '../kernel/model/gpt2';
import { byteLevelTokenizerJSON, Tokenizer } from '../kernel/tokenizer';
import type { QAExample } from '../kernel/data/example';
import { type Batch, collate } from '../kernel/data/batch';
import { tokenizeExample } from '../kernel/data/tokenize';
import type { LoraAdapter } from '../kernel/lora/adapter';
import { saveAdapter, WORD_VECTORS_FILE } from '../kernel/lora/peft';
import { readSafetensors } from '../kernel/model/safetensors';

export function byteTokenizer(): Tokenizer {
  return Tokenizer.fromJSON(byteLevelTokenizerJSON({ specialTokens: ['<|endoftext|>'] }));
}

export function tinyConfig(over: Partial<GPT2Config> = {}): GPT2Config {
  return makeConfig({ vocab_size: 257, n_positions: 32, n_embd: 32, n_layer: 2, n_head: 4, ...over });
}

/** Copies of every base weight (dataSync may hand out the backend's own buffer on cpu). */
export function snapshot(model: GPT2Model): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [name, v] of model.params) out.set(name, (v.dataSync() as Float32Array).slice());
  return out;
}

/** A model built from plain arrays (e.g. a snapshot taken on another backend). */
export function modelFromArrays(cfg: GPT2Config, arrays: Map<string, Float32Array>, shapes: Map<string, number[]>): GPT2Model {
  const weights = new Map<string, tf.Tensor>();
  for (const [name, data] of arrays) weights.set(name, tf.tensor(data, shapes.get(name)!, 'float32'));
  const m = new GPT2Model(cfg, weights);
  weights.forEach((t) => t.dispose());
  return m;
}

export function shapesOf(model: GPT2Model): Map<string, number[]> {
  return new Map([...model.params].map(([n, v]) => [n, v.shape.slice()]));
}

/** Logits [b, t, vocab] of `ids` (rows of equal length), flattened, with no cache and no dropout. */
export function logitsOf(model: GPT2Model, ids: number[][]): Float32Array {
  const out = tf.tidy(() => model.forward(tf.tensor2d(ids.flat(), [ids.length, ids[0].length], 'int32')).logits);
  const data = (out.dataSync() as Float32Array).slice();
  out.dispose();
  return data;
}

/** log softmax of one row in float64. */
export function logSoftmax(row: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) max = Math.max(max, row[i]);
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(row.length);
  for (let i = 0; i < row.length; i++) out[i] = row[i] - lse;
  return out;
}

export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

/** True when every element is the same float32 bit pattern. */
export function bitIdentical(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return false;
  return true;
}

/** Row-major transpose of a [rows, cols] matrix. */
export function transpose(data: ArrayLike<number>, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = data[i * cols + j];
  return out;
}

/** Row-major [n, k] x [k, m] in float64, returned as float64. */
export function matmul(a: ArrayLike<number>, b: ArrayLike<number>, n: number, k: number, m: number): Float64Array {
  const out = new Float64Array(n * m);
  for (let i = 0; i < n; i++) {
    for (let p = 0; p < k; p++) {
      const x = a[i * k + p];
      if (x === 0) continue;
      for (let j = 0; j < m; j++) out[i * m + j] += x * b[p * m + j];
    }
  }
  return out;
}

export function tmpDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `chromatune-${prefix}-`));
}

/** Every file name below `dir` (relative), recursively. */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(path.join(d, e.name), r);
      else out.push(r);
    }
  };
  walk(dir, '');
  return out.sort();
}

const COLOURS = ['red', 'blue', 'green', 'gold'];

/** n distinct question/answer pairs (the smoke test's set). */
export function qaPairs(n: number, offset = 0): QAExample[] {
  return Array.from({ length: n }, (_, k) => {
    const i = k + offset;
    return { question: `What is ${i}?`, answer: `It is ${COLOURS[i % 4]} ${i * 7}`, source: { file: 'mem', line: k + 1 } };
  });
}

/** Distinct integer ids in [0, vocab), deterministic. */
export function someIds(n: number, vocab: number, salt = 0): number[] {
  return Array.from({ length: n }, (_, i) => (i * 37 + 11 + salt * 101) % vocab);
}

/** mulberry32: a tiny seeded PRNG in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Plain-JS weights for `cfg` with every tensor non-trivial (layer norms away from identity, biases
 * non-zero, matrices with std `std`), so that a mistake in any part of the forward pass shows.
 */
export function perturbedArrays(cfg: GPT2Config, seed: number, std = 0.3): { arrays: Map<string, Float32Array>; shapes: Map<string, number[]> } {
  const rnd = prng(seed);
  const normal = () => Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd());
  const arrays = new Map<string, Float32Array>();
  const shapes = new Map<string, number[]>();
  for (const [name, shape] of expectedTensors(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      if (/ln_\w+\.weight$/.test(name)) data[i] = 1 + 0.2 * normal();
      else if (name.endsWith('.bias')) data[i] = 0.1 * normal();
      else data[i] = std * normal();
    }
    arrays.set(name, data);
    shapes.set(name, shape);
  }
  return { arrays, shapes };
}

export function perturbedModel(cfg: GPT2Config, seed: number, std = 0.3): GPT2Model {
  const { arrays, shapes } = perturbedArrays(cfg, seed, std);
  return modelFromArrays(cfg, arrays, shapes);
}

/** A training batch of question/answer examples, padded to the longest (prompt weight 0, answer 1). */
export function qaBatch(tok: Tokenizer, examples: QAExample[], context = 32): Batch {
  const tokenized = examples.map((ex) => tokenizeExample(tok, ex, context + 1));
  const longest = Math.max(...tokenized.map((e) => e.ids.length));
  return collate(tokenized, Math.min(context, longest - 1));
}

/**
 * Whether `bytes` begin well-formed UTF-8, an unfinished last character allowed: the WHATWG decoder,
 * fatal and streaming, as an independent reference for the sampler's UTF-8 guard.
 */
export function utf8Prefix(bytes: number[]): boolean {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bytes), { stream: true });
    return true;
  } catch {
    return false;
  }
}

/** Saves `adapter` into `dir` and reads back its word_vectors.safetensors, with the logits of `ids` that a reload must give. */
export function savedWordFile(model: GPT2Model, adapter: LoraAdapter, dir: string, ids: number[][]) {
  const want = logitsOf(model, ids);
  saveAdapter(adapter, dir, 'base');
  const file = path.join(dir, WORD_VECTORS_FILE);
  return { want, file, ...readSafetensors(file) };
}
