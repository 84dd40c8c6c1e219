/**
 * The answer memory beside the word bag: which answer each training row holds, what it reads at the
 * answer cue and its loss (against an independent computation), the identity at start, the adapter
 * folder, and training through it.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '../kernel/backend/tf';
import { initBackend } from '../kernel/backend';
import { GPT2Model } from '../kernel/model/gpt2';
import { ConfigError } from '../kernel/model/config';
import { makeLoraConfig } from '../kernel/lora/config';
import { ANSWER_KEYS, ANSWER_VALUES, type LoraAdapter } from '../kernel/lora/adapter';
import { ANSWER_TEMPERATURE, AnswerMemory, answersOf, READ_TEMPERATURE } from '../kernel/lora/memory';
import { assignAdapterWeights, loadAdapter } from '../kernel/lora/peft';
import { readQuestion, tokenPieces, vocabularyFor } from '../kernel/lora/words';
import { formatPrompt } from '../kernel/data/example';
import { tokenizeExample } from '../kernel/data/tokenize';
import { collate } from '../kernel/data/batch';
import { writeSafetensors } from '../kernel/model/safetensors';
import { finetune } from '../kernel/train/finetune';
import { byteTokenizer, logitsOf, maxAbsDiff, qaPairs, savedWordFile, tinyConfig, tmpDir } from './engine-helpers';

beforeAll(async () => {
  await initBackend('wasm');
});

const cfg = tinyConfig();
const tok = byteTokenizer();

/** Seeded values in [-1, 1). */
function noise(n: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return (s / 2147483648) * 2 - 1;
  });
}

/** The reference reading: per row of means, softmax over the keys of cos(mean, key) / τ, in float64. */
function reference(means: number[][], keys: number[][], temperature: number): number[][] {
  const unit = (v: number[]) => {
    const n = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
    return v.map((x) => (n === 0 ? 0 : x / n));
  };
  const ks = keys.map(unit);
  return means.map((m) => {
    const q = unit(m);
    const logits = ks.map((k) => k.reduce((s, x, i) => s + x * q[i], 0) / temperature);
    const top = Math.max(...logits);
    const e = logits.map((l) => Math.exp(l - top));
    const z = e.reduce((a, b) => a + b, 0);
    return e.map((x) => x / z);
  });
}

const weighted = (p: number[], values: number[][]): number[] => values[0].map((_, j) => p.reduce((s, pi, i) => s + pi * values[i][j], 0));

describe('the answers a memory keeps', () => {
  it('are the distinct completions in order of first appearance, and each collated row is labelled with its own', () => {
    const train = [...qaPairs(5), { question: 'Say 0?', answer: qaPairs(1)[0].answer }];
    const examples = train.map((e) => tokenizeExample(tok, e));
    const answers = answersOf(examples);
    expect(answers.map((a) => tok.decode(a))).toEqual(qaPairs(5).map((e) => ` ${e.answer}\n`));
    const memory = new AnswerMemory(answers, 8, 1, 0);
    // An unseen answer (a validation row) has no label; rows are padded to the longest.
    const rows = [...examples, tokenizeExample(tok, { question: 'What is 9?', answer: 'Unknown' })];
    const batch = collate(rows, Math.max(...rows.map((r) => r.ids.length)) - 1);
    expect(Array.from(memory.labels(batch))).toEqual([0, 1, 2, 3, 4, 0, -1]);
    memory.dispose();
  });

  it('refuses an empty or repeating list', () => {
    expect(() => new AnswerMemory([], 8, 1, 0)).toThrow('an answer memory needs at least one answer; the training examples hold none');
    expect(() => new AnswerMemory([[1, 2], [1, 2]], 8, 1, 0)).toThrow('answer memory: the answer list repeats an answer');
  });
});

describe('what the memory reads and its loss', () => {
  it('match an independent softmax of cosines over each temperature, its weighted values and cross-entropy', () => {
    const width = 6;
    const memory = new AnswerMemory([[1], [2], [3], [4]], width, 0.5, 0);
    const keys = [0, 1, 2, 3].map((i) => noise(width, 10 + i));
    const values = [0, 1, 2, 3].map((i) => noise(width, 20 + i));
    memory.keys.assign(tf.tensor2d(keys));
    memory.values.assign(tf.tensor2d(values));
    // The last question has no known word: a zero mean, read as the plain mean of the values.
    const means = [noise(width, 31), noise(width, 32).map((x) => x * 0.01), new Array(width).fill(0)];
    // The values are read at the sharper temperature, the classifier trained at the softer one.
    const sharp = reference(means, keys, READ_TEMPERATURE);
    expect(sharp[2].every((x) => Math.abs(x - 0.25) < 1e-7)).toBe(true);
    const read = tf.tidy(() => memory.read(tf.tensor2d(means))).arraySync() as number[][];
    for (const [r, row] of read.entries()) expect(maxAbsDiff(row, weighted(sharp[r], values))).toBeLessThan(1e-5);
    expect(READ_TEMPERATURE).toBeLessThan(ANSWER_TEMPERATURE);
    // Only labelled rows count; the loss is their mean cross-entropy times the weight.
    const p = reference(means, keys, ANSWER_TEMPERATURE);
    const labels = Int32Array.from([2, -1, 0]);
    const loss = tf.tidy(() => memory.loss(tf.tensor2d(means), labels)!).dataSync()[0];
    expect(loss).toBeCloseTo((0.5 * (-Math.log(p[0][2]) - Math.log(p[2][0]))) / 2, 5);
    expect(memory.loss(tf.tensor2d(means), Int32Array.from([-1, -1, -1]))).toBeNull();
    memory.dispose();
  });
});

describe('an answer memory on a model', () => {
  let dir: string;
  beforeEach(() => {
    dir = tmpDir('memory');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const train = qaPairs(6);
  const examples = train.map((e) => tokenizeExample(tok, e));
  const prompt = (q: string) => tok.encode(formatPrompt(q));

  /** An adapter with word vectors, a bag of RMS 2 and a memory over `train`'s answers. */
  function withMemory(model: GPT2Model, weight = 1): LoraAdapter {
    const vocabulary = { ...vocabularyFor(tok, examples.map((e) => e.ids)), answers: answersOf(examples) };
    return model.addAdapter('m', makeLoraConfig({ r: 2, wordVectors: 0.3, wordBag: 2, answerMemory: weight }, cfg), 0, vocabulary);
  }

  it('starts with zero values: a fresh adapter leaves the logits bit-identical', () => {
    const model = GPT2Model.random(cfg, 3);
    const ids = [prompt('What is 3?')];
    const base = logitsOf(model, ids);
    const a = withMemory(model);
    expect(a.words!.memory!.keys.shape).toEqual([6, cfg.n_embd]);
    expect(maxAbsDiff(logitsOf(model, ids), base)).toBe(0);
    model.dispose();
  });

  it('adds at the answer cue the sized bag mean plus what the memory reads from it, and nothing elsewhere', () => {
    const model = GPT2Model.random(cfg, 3);
    const w = withMemory(model).words!;
    const d = cfg.n_embd;
    const rows = (n: number, seed: number) => Array.from({ length: n }, (_, i) => noise(d, seed + i));
    const bag = rows(w.words.length, 100);
    const keys = rows(6, 300);
    const values = rows(6, 500);
    w.bag!.assign(tf.tensor2d(bag));
    w.memory!.keys.assign(tf.tensor2d(keys));
    w.memory!.values.assign(tf.tensor2d(values));
    const ids = prompt('What is 12 or 3?');
    const added = tf.tidy(() => w.embed(tf.tensor2d([ids], [1, ids.length], 'int32'))).arraySync() as number[][];
    // Independently: the question's known words, their IDF-weighted mean, sized to RMS 2, plus the memory's read.
    const { spans, cue, cueEnd } = readQuestion(tokenPieces(tok), ids);
    const found = spans.map((s) => w.words.indexOf(s.key)).filter((i) => i >= 0);
    const total = found.reduce((s, i) => s + w.idf![i], 0);
    const mean = bag[0].map((_, j) => found.reduce((s, i) => s + (w.idf![i] / total) * bag[i][j], 0));
    const rms = Math.sqrt(mean.reduce((s, x) => s + x * x, 0) / d + 1e-6);
    const memoryRead = weighted(reference([mean], keys, READ_TEMPERATURE)[0], values);
    const want = mean.map((x, j) => (2 * x) / rms + memoryRead[j]);
    for (let i = 0; i < ids.length; i++) {
      if (i >= cue && i < cueEnd) expect(maxAbsDiff(added[i], want)).toBeLessThan(1e-4);
      else expect(Math.max(...added[i].map(Math.abs))).toBe(0); // the word vectors are still zero
    }
    model.dispose();
  });

  it('is saved with its answers and weight, loads back to the same logits, and a file that lacks or changes them is refused', () => {
    const model = GPT2Model.random(cfg, 3);
    const a = withMemory(model, 0.7);
    const w = a.words!;
    for (const [v, seed] of [[w.bag!, 1], [w.memory!.keys, 2], [w.memory!.values, 3]] as const) v.assign(tf.tidy(() => tf.randomNormal(v.shape, 0, 0.5, 'float32', seed)));
    const ids = [prompt('What is 4?')];
    const { want, file, tensors, metadata } = savedWordFile(model, a, dir, ids);
    expect(Number(metadata.answer_memory)).toBe(0.7);
    expect(JSON.parse(metadata.answers)).toEqual(answersOf(examples));
    expect(maxAbsDiff(tensors.get('answer_values')!.data, w.memory!.values.dataSync())).toBe(0);
    const fresh = GPT2Model.random(cfg, 3);
    const loaded = loadAdapter(fresh, dir, 'loaded', tok);
    expect(loaded.config).toMatchObject({ wordBag: 2, answerMemory: 0.7 });
    expect(maxAbsDiff(logitsOf(fresh, ids), want)).toBe(0);
    fresh.removeAdapter('loaded');
    const rewrite = (drop: string[], meta: Record<string, string>) =>
      writeSafetensors(file, new Map([...tensors].filter(([k]) => !drop.includes(k)).map(([k, t]) => [k, { shape: t.shape, data: t.data as Float32Array }] as const)), meta);
    rewrite(['answer_keys'], metadata);
    expect(() => loadAdapter(fresh, dir, 'x', tok)).toThrow(`${file}: missing tensor "answer_keys" (expected shape [6, ${cfg.n_embd}])`);
    rewrite([], { ...metadata, answers: '[[1, 2], "x"]' });
    expect(() => loadAdapter(fresh, dir, 'x', tok)).toThrow(`${file}: metadata "answers" must be a JSON list of the answers' token ids`);
    rewrite([], { ...metadata, answer_memory: '0' });
    expect(() => loadAdapter(fresh, dir, 'x', tok)).toThrow(`${file}: metadata "answer_memory" must be a number > 0, got "0"`);
    const { answer_memory: _, ...unweighted } = metadata;
    rewrite([], unweighted);
    expect(() => loadAdapter(fresh, dir, 'x', tok)).toThrow(`${file}: holds tensor "answer_keys" but no metadata "answer_memory"`);
    const { bag_rms: __, ...bagless } = metadata;
    rewrite(['word_bag', 'bag_idf'], bagless);
    expect(() => loadAdapter(fresh, dir, 'x', tok)).toThrow(`${file}: holds an answer memory but no word bag (metadata "bag_rms"), which the memory is read from`);
    expect(fresh.adapters.size).toBe(0);
    // Other answers than the adapter's (read into the same adapter, as a resume does).
    const other = answersOf(examples).map((x, i) => (i === 4 ? [...x, 10] : x));
    rewrite([], { ...metadata, answers: JSON.stringify(other) });
    expect(() => assignAdapterWeights(a, dir)).toThrow(`${file}: its 6 answers are not the adapter's 6 (first difference at row 4); the training answers changed`);
    // A file without the memory, for an adapter that has one.
    rewrite(['answer_keys', 'answer_values'], unweighted);
    expect(() => assignAdapterWeights(a, dir)).toThrow(`${file}: missing the answer memory`);
    fresh.dispose();
    model.dispose();
  });

  it('trains: its loss is recorded beside the model\'s and falls, and its keys come to pick each training question\'s answer', async () => {
    // A context that holds the whole of every answer (one cut short would not be the answer it is).
    const model = GPT2Model.random(tinyConfig({ n_positions: 64 }), 1);
    const pairs = qaPairs(8);
    const r = await finetune({ model, tokenizer: tok, train: pairs, lora: { r: 4, alpha: 8, wordVectors: 0.5, wordBag: 2, answerMemory: 1 }, epochs: 30, batchSize: 4, learningRate: 2e-2, seed: 3 });
    const w = model.activeAdapter!.words!;
    const named = new Map(model.trainableVariables('lora'));
    expect(named.get(ANSWER_KEYS)).toBe(w.memory!.keys);
    expect(named.get(ANSWER_VALUES)).toBe(w.memory!.values);
    expect(w.memory!.answers.length).toBe(new Set(pairs.map((p) => p.answer)).size);
    const losses = r.history.map((h) => h.answerLoss!);
    expect(losses.every((x) => Number.isFinite(x))).toBe(true);
    expect(losses[0]).toBeGreaterThan(Math.log(w.memory!.answers.length) * 0.9); // near chance at the start
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(losses.slice(-4))).toBeLessThan(mean(losses.slice(0, 4)) / 4);
    // Each training question's bag mean now scores its own answer highest.
    const batch = collate(pairs.map((p) => tokenizeExample(tok, p)), 48);
    const after = tf.tidy(() => w.answerLoss(batch)!).dataSync()[0];
    expect(after).toBeLessThan(0.5);
    r.client.dispose();
    model.dispose();
  });

  it('needs a word bag, and a weight below zero is refused, naming the field', () => {
    expect(() => makeLoraConfig({ wordVectors: 0.3, answerMemory: 1 }, cfg)).toThrow(ConfigError);
    expect(() => makeLoraConfig({ wordVectors: 0.3, answerMemory: 1 }, cfg)).toThrow("lora.answerMemory (1) needs lora.wordBag > 0: the memory is read from the word bag's mean");
    expect(() => makeLoraConfig({ wordVectors: 0.3, wordBag: 2, answerMemory: -1 }, cfg)).toThrow('lora.answerMemory must be a finite number >= 0 (0: no answer memory), got -1');
    expect(makeLoraConfig({ wordVectors: 0.3, wordBag: 2, answerMemory: 0 }, cfg).answerMemory).toBeUndefined();
  });
});
