/**
 * Word vectors beside a LoRA adapter, and their word bag: which tokens make a word and the answer cue,
 * the identity at start, the same vectors in training and in decoding, the adapter folder's extra file,
 * and training through them.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '../kernel/backend/tf';
import { initBackend } from '../kernel/backend';
import { GPT2Model } from '../kernel/model/gpt2';
import { ConfigError } from '../kernel/model/config';
import { makeLoraConfig } from '../kernel/lora/config';
import { type LoraAdapter, WORD_BAG, WORD_VECTORS } from '../kernel/lora/adapter';
import { assignAdapterWeights, loadAdapter } from '../kernel/lora/peft';
import { readQuestion, tokenPieces, vocabularyFor, vocabularyOf, type WordVectors, wordSpans } from '../kernel/lora/words';
import { loadModel } from '../kernel/model/io';
import { loadExamples } from '../kernel/data/load';
import { formatPrompt } from '../kernel/data/example';
import { writeSafetensors } from '../kernel/model/safetensors';
import type { NamedArrays } from '../kernel/model/tensor';
import { finetune } from '../kernel/train/finetune';
import { Tokenizer } from '../kernel/tokenizer';
import { projectPath } from '../kernel/paths';
import { bitIdentical, byteTokenizer, logitsOf, maxAbsDiff, qaPairs, savedWordFile, tinyConfig, tmpDir } from './engine-helpers';

beforeAll(async () => {
  await initBackend('wasm');
});

const cfg = tinyConfig();
const tok = byteTokenizer();

/** The reference reading: runs of letters and digits, in lower case. */
const wordsOf = (text: string): string[] => (text.match(/[\p{L}\p{N}]+/gu) ?? []).map((w) => w.toLowerCase());

/** An adapter on `model` with vectors (and a bag) for the words of `questions` (byte tokenizer), filled with seeded noise. */
function withNoisyWords(model: GPT2Model, questions: string[], scale: number, bagScale = 0): { adapter: LoraAdapter; words: WordVectors } {
  const vocabulary = vocabularyFor(tok, questions.map((q) => tok.encode(formatPrompt(q))));
  const adapter = model.addAdapter('w', makeLoraConfig({ r: 2, wordVectors: scale, wordBag: bagScale }, cfg), 0, vocabulary);
  const w = adapter.words!;
  w.table.assign(tf.tidy(() => tf.randomNormal(w.table.shape, 0, 0.5, 'float32', 11)));
  w.bag?.assign(tf.tidy(() => tf.randomNormal(w.bag!.shape, 0, 0.5, 'float32', 12)));
  return { adapter, words: w };
}

/** Logits of `ids` decoded as generation does: the first `promptLen` tokens in one pass, then one at a time on the cache. */
function stepwiseLogits(model: GPT2Model, ids: number[], promptLen: number): Float32Array {
  const v = model.config.vocab_size;
  return tf.tidy(() => {
    let cache = GPT2Model.emptyCache();
    const out: tf.Tensor[] = [];
    const first = model.forward(tf.tensor2d([ids.slice(0, promptLen)], [1, promptLen], 'int32'), { cache });
    out.push(first.logits.reshape([promptLen, v]));
    cache = first.cache!;
    for (let p = promptLen; p < ids.length; p++) {
      const r = model.forward(tf.tensor2d([[ids[p]]], [1, 1], 'int32'), { cache });
      out.push(r.logits.reshape([1, v]));
      cache = r.cache!;
    }
    return tf.concat(out, 0);
  }).dataSync() as Float32Array;
}

describe('which tokens make a word', () => {
  const QUESTIONS = [
    "Which architect designed the original Twin Towers' plaza?",
    'Where is the Café Müller, in Bedford-Stuyvesant or the Bronx?',
    "What's the B52 bus's route since 1,904 or 2019?",
    "Who called it the 'Big Apple'?",
    "Was O'Neill's play first staged in 1916? Don't guess.",
    'Is Flushing Meadows–Corona Park in Queens?',
  ];

  it.each([
    ['a byte tokenizer (one token per byte)', () => tok],
    ['the embedded model\'s BPE tokenizer', () => Tokenizer.fromFile(projectPath('models', 'chromatune-base'))],
  ])('%s: the words of a prompt are its question\'s words, and their tokens spell them', (_name, make) => {
    const t = make();
    const pieces = tokenPieces(t);
    for (const q of QUESTIONS) {
      const ids = t.encode(`${formatPrompt(q)} The answer`);
      const spans = wordSpans(pieces, ids);
      // The answer after the newline has no words; "Question" of the template has one.
      expect(spans.map((s) => s.key)).toEqual(wordsOf(`Question: ${q}`));
      // A word's tokens spell it, with at most punctuation or a space around it.
      for (const s of spans) expect(wordsOf(t.decode(ids.slice(s.start, s.end)))).toContain(s.key);
      // The answer cue: the newline that ends the question through the ":" of "Answer:", before the answer.
      const { cue, cueEnd } = readQuestion(pieces, ids);
      expect(`Question: ${q}`.startsWith(t.decode(ids.slice(0, cue)))).toBe(true);
      expect(t.decode(ids.slice(cue, cueEnd))).toMatch(/\nAnswer:$/);
      expect(t.decode(ids.slice(0, cueEnd))).toBe(formatPrompt(q));
    }
  });

  it('a prompt with no ":" after its newline has the newline alone as its cue, and one with no newline none', () => {
    const pieces = tokenPieces(tok);
    const ids = tok.encode('Question: Is 12?\nFar away');
    const { cue, cueEnd } = readQuestion(pieces, ids);
    expect(tok.decode(ids.slice(cue, cueEnd))).toBe('\n');
    expect(readQuestion(pieces, tok.encode('Question: Is 12?'))).toMatchObject({ cue: -1, cueEnd: -1 });
  });

  it('on every nyc-qa training question with the embedded tokenizer, and the vocabulary counts them', () => {
    const t = Tokenizer.fromFile(projectPath('models', 'chromatune-base'));
    const pieces = tokenPieces(t);
    const questions = loadExamples(projectPath('datasets', 'nyc-qa', 'train.jsonl')).map((e) => e.question);
    const sequences = questions.map((q) => t.encode(formatPrompt(q)));
    for (const [i, q] of questions.entries()) expect(wordSpans(pieces, sequences[i]).map((s) => s.key)).toEqual(wordsOf(`Question: ${q}`));
    const counts = new Map<string, number>();
    for (const q of questions) for (const w of wordsOf(`Question: ${q}`)) counts.set(w, (counts.get(w) ?? 0) + 1);
    const { words: vocab, idf } = vocabularyOf(pieces, sequences);
    expect(new Set(vocab)).toEqual(new Set(counts.keys()));
    expect(vocab[0]).toBe('question'); // once per prompt, the commonest
    for (let i = 1; i < vocab.length; i++) expect(counts.get(vocab[i - 1])!).toBeGreaterThanOrEqual(counts.get(vocab[i])!);
    // The bag's weights: smoothed inverse document frequency, as scikit-learn's TfidfVectorizer computes it.
    const n = questions.length;
    for (const [i, w] of vocab.entries()) {
      const df = questions.filter((q) => wordsOf(`Question: ${q}`).includes(w)).length;
      expect(idf[i]).toBeCloseTo(Math.log((1 + n) / (1 + df)) + 1, 5);
    }
    expect(idf[0]).toBeCloseTo(1, 6); // "question" is in every prompt
  });
});

describe('word vectors on a model', () => {
  let dir: string;
  beforeEach(() => {
    dir = tmpDir('words');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const prompt = (q: string) => tok.encode(formatPrompt(q));

  it('start at zero: a fresh adapter with word vectors leaves the logits bit-identical', () => {
    const model = GPT2Model.random(cfg, 3);
    const ids = [prompt('Where is 12?').slice(0, 14)];
    const base = logitsOf(model, ids);
    const vocabulary = { pieces: tokenPieces(tok), words: ['where', 'is', '12'] };
    const config = makeLoraConfig({ r: 2, wordVectors: 0.3, wordBag: 3 }, cfg);
    expect(() => model.addAdapter('w', config, 0, vocabulary)).toThrow("a word bag needs each word's inverse document frequency: 0 given for 3 words");
    model.addAdapter('w', config, 0, { ...vocabulary, idf: Float32Array.of(1, 1.5, 2) });
    expect(model.activeAdapter!.words!.bag).toBeDefined();
    expect(bitIdentical(logitsOf(model, ids), base)).toBe(true);
    model.dispose();
  });

  it('stand on the question\'s tokens only: a changed vector moves the logits from its word on, and decoding adds the same vectors as one pass', () => {
    const model = GPT2Model.random(cfg, 3);
    const { words } = withNoisyWords(model, ['Is 12?'], 1);
    const ids = tok.encode(`${formatPrompt('Is 12?')} Far`);
    const before = logitsOf(model, [ids]);
    // The word "is" is the second word ("question", "is", "12"); its tokens start at its span.
    const span = wordSpans(tokenPieces(tok), ids).find((s) => s.key === 'is')!;
    const row = words.words.indexOf('is');
    // (Not a constant: layer norm would take that away.)
    const change = tf.tidy(() => tf.mul(tf.oneHot(tf.tensor1d([row], 'int32'), words.words.length).reshape([-1, 1]), tf.randomNormal([1, cfg.n_embd], 0, 1, 'float32', 5)));
    words.table.assign(tf.tidy(() => tf.add(words.table, change)));
    change.dispose();
    const after = logitsOf(model, [ids]);
    const v = cfg.vocab_size;
    const moved = (pos: number) => maxAbsDiff(before.subarray(pos * v, (pos + 1) * v), after.subarray(pos * v, (pos + 1) * v));
    for (let p = 0; p < span.start; p++) expect(moved(p)).toBe(0);
    for (let p = span.start; p < ids.length; p++) expect(moved(p)).toBeGreaterThan(1e-4);

    // Decoding: the prompt in one pass, then the answer's tokens one at a time on the cache.
    expect(maxAbsDiff(stepwiseLogits(model, ids, prompt('Is 12?').length), after)).toBeLessThanOrEqual(1e-4);
    model.dispose();
  });

  it('the word bag adds, at the answer cue only, the IDF-weighted mean of the question\'s bag vectors scaled to RMS its scale', () => {
    const model = GPT2Model.random(cfg, 3);
    const { words } = withNoisyWords(model, ['Is 12 far?', 'Where is 7?'], 0.3, 2);
    // "far", "where" and "7" are no word of this question; "is" stands twice.
    const ids = tok.encode(`${formatPrompt('Is 12 is?')} Far`);
    const added = tf.tidy(() => words.embed(tf.tensor2d([ids], [1, ids.length], 'int32')).arraySync());
    const table = words.table.arraySync();
    const bag = words.bag!.arraySync();
    const known = wordsOf('Question: Is 12 is?').filter((w) => words.words.includes(w));
    expect(known).toEqual(['question', 'is', '12', 'is']);
    // The weights are the words' IDF over the adapter's two training questions ("is" in both, "12" in one).
    const idfOf = (w: string) => Math.log(3 / (1 + ['Is 12 far?', 'Where is 7?'].filter((q) => wordsOf(`Question: ${q}`).includes(w)).length)) + 1;
    expect(Array.from(words.idf!)).toEqual(words.words.map((w) => Math.fround(idfOf(w))));
    const total = known.reduce((sum, w) => sum + idfOf(w), 0);
    const weighted = bag[0].map((_, j) => known.reduce((sum, w) => sum + idfOf(w) * bag[words.words.indexOf(w)][j], 0) / total);
    const rms = Math.sqrt(weighted.reduce((sum, x) => sum + x * x, 0) / weighted.length + 1e-6);
    const mean = weighted.map((x) => (2 * x) / rms);
    const spans = wordSpans(tokenPieces(tok), ids);
    const cue = ids.length - ' Far'.length - '\nAnswer:'.length;
    for (let p = 0; p < ids.length; p++) {
      const word = spans.find((s) => p >= s.start && p < s.end && words.words.includes(s.key));
      const want = p >= cue && p < cue + '\nAnswer:'.length ? mean : word ? table[words.words.indexOf(word.key)].map((x) => 0.3 * x) : mean.map(() => 0);
      expect(maxAbsDiff(Float32Array.from(added[p]), Float32Array.from(want))).toBeLessThanOrEqual(1e-5);
    }
    // In a model: a changed bag vector moves the logits from the cue on, and decoding adds it in the prompt's pass.
    const before = logitsOf(model, [ids]);
    const row = words.words.indexOf('12');
    words.bag!.assign(tf.tidy(() => tf.add(words.bag!, tf.mul(tf.oneHot(tf.tensor1d([row], 'int32'), words.words.length).reshape([-1, 1]), tf.randomNormal([1, cfg.n_embd], 0, 1, 'float32', 6)))));
    const after = logitsOf(model, [ids]);
    const v = cfg.vocab_size;
    const moved = (pos: number) => maxAbsDiff(before.subarray(pos * v, (pos + 1) * v), after.subarray(pos * v, (pos + 1) * v));
    for (let p = 0; p < cue; p++) expect(moved(p)).toBe(0);
    for (let p = cue; p < ids.length; p++) expect(moved(p)).toBeGreaterThan(1e-4);
    expect(maxAbsDiff(stepwiseLogits(model, ids, prompt('Is 12 is?').length), after)).toBeLessThanOrEqual(1e-4);
    model.dispose();
  });

  it('are saved beside the PEFT files and load back, with the tokenizer, to the same logits', () => {
    const model = GPT2Model.random(cfg, 3);
    const questions = ['Where is 12?', 'What is 7?'];
    const { adapter: a, words } = withNoisyWords(model, questions, 0.7);
    const ids = [prompt('What is 12?')];
    const { want, file, tensors, metadata } = savedWordFile(model, a, dir, ids);
    expect(JSON.parse(metadata.words)).toEqual(words.words);
    expect(Number(metadata.scale)).toBe(0.7);
    expect(tensors.get('word_vectors')!.shape).toEqual([words.words.length, cfg.n_embd]);
    expect(maxAbsDiff(tensors.get('word_vectors')!.data, words.table.dataSync())).toBe(0);
    // PEFT's own config is unchanged by them.
    expect(Object.keys(JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8')))).not.toContain('word_vectors');

    const fresh = GPT2Model.random(cfg, 3);
    expect(() => loadAdapter(fresh, dir)).toThrow(`${file}: the adapter has word vectors; loading it needs the base model's tokenizer`);
    const loaded = loadAdapter(fresh, dir, 'loaded', tok);
    expect(loaded.config.wordVectors).toBe(0.7);
    expect(maxAbsDiff(logitsOf(fresh, ids), want)).toBe(0);
    fresh.removeAdapter('loaded');

    // A file whose rows do not match its word list is refused, naming the file, the tensor and both shapes.
    writeSafetensors(file, new Map([['word_vectors', { shape: [2, cfg.n_embd], data: new Float32Array(2 * cfg.n_embd) }]]), metadata);
    expect(() => loadAdapter(fresh, dir, 'x', tok)).toThrow(`${file}: tensor "word_vectors" has shape [2, ${cfg.n_embd}], expected [${words.words.length}, ${cfg.n_embd}]`);
    const vectors = tensors.get('word_vectors')!;
    writeSafetensors(file, new Map([['word_vectors', { shape: vectors.shape, data: vectors.data as Float32Array }]]), { ...metadata, words: '"where"' });
    expect(() => loadAdapter(fresh, dir, 'x', tok)).toThrow(`${file}: metadata "words" must be a JSON list of the words`);
    expect(fresh.adapters.size).toBe(0);
    fresh.dispose();
    model.dispose();
  });

  it('with a word bag: saved as "word_bag" with its words\' weights and size, loaded back to the same logits; a file lacking them is refused', () => {
    const model = GPT2Model.random(cfg, 3);
    const { adapter: a, words } = withNoisyWords(model, ['Where is 12?', 'What is 7?'], 0.7, 2.5);
    const ids = [prompt('What is 12?')];
    const { want, file, tensors, metadata } = savedWordFile(model, a, dir, ids);
    expect(Number(metadata.bag_rms)).toBe(2.5);
    expect(Array.from(tensors.get('bag_idf')!.data)).toEqual(Array.from(words.idf!));
    expect(maxAbsDiff(tensors.get('word_bag')!.data, words.bag!.dataSync())).toBe(0);
    const fresh = GPT2Model.random(cfg, 3);
    const loaded = loadAdapter(fresh, dir, 'loaded', tok);
    expect(loaded.config).toMatchObject({ wordVectors: 0.7, wordBag: 2.5 });
    expect(maxAbsDiff(logitsOf(fresh, ids), want)).toBe(0);
    fresh.removeAdapter('loaded');
    const n = words.words.length;
    const without = (name: string, extra: NamedArrays = new Map()) =>
      writeSafetensors(file, new Map([...[...tensors].filter(([k]) => k !== name).map(([k, t]) => [k, { shape: t.shape, data: t.data as Float32Array }] as const), ...extra]), metadata);
    without('word_bag');
    expect(() => loadAdapter(fresh, dir, 'x', tok)).toThrow(`${file}: missing tensor "word_bag" (expected shape [${n}, ${cfg.n_embd}])`);
    without('bag_idf');
    expect(() => loadAdapter(fresh, dir, 'x', tok)).toThrow(`${file}: missing tensor "bag_idf" (expected shape [${n}])`);
    without('bag_idf', new Map([['bag_idf', { shape: [n], data: new Float32Array(n) }]]));
    expect(() => loadAdapter(fresh, dir, 'x', tok)).toThrow(`${file}: tensor "bag_idf" must hold numbers > 0, one weight per word`);
    // A bag with no size (as the plain-mean bag, which kept a scale in "bag_scale", was saved).
    const { bag_rms: _, ...unsized } = metadata;
    writeSafetensors(file, new Map([...tensors].map(([k, t]) => [k, { shape: t.shape, data: t.data as Float32Array }] as const)), { ...unsized, bag_scale: '3' });
    expect(() => loadAdapter(fresh, dir, 'x', tok)).toThrow(`${file}: holds tensor "word_bag" but no metadata "bag_rms" (the size of what the bag adds)`);
    expect(fresh.adapters.size).toBe(0);
    // Weights other than those the training questions give (read into the same adapter, as a resume does).
    without('bag_idf', new Map([['bag_idf', { shape: [n], data: words.idf!.map((x, i) => (i === 1 ? x + 1 : x)) }]]));
    expect(() => assignAdapterWeights(a, dir)).toThrow(`${file}: tensor "bag_idf" differs from the adapter's weight of "${words.words[1]}" (row 1); the training questions changed`);
    fresh.dispose();
    model.dispose();
  });

  it('train with the adapter: exactly the training questions\' words have vectors, and those move', async () => {
    const model = GPT2Model.random(cfg, 1);
    const train = qaPairs(8);
    const r = await finetune({ model, tokenizer: tok, train, lora: { r: 4, alpha: 8, wordVectors: 0.5, wordBag: 2 }, epochs: 2, batchSize: 4, learningRate: 1e-2, seed: 3 });
    const words = model.activeAdapter!.words!;
    expect(new Set(words.words)).toEqual(new Set(train.flatMap((e) => wordsOf(`Question: ${e.question}`))));
    const named = new Map(model.trainableVariables('lora'));
    expect(named.get(WORD_VECTORS)).toBe(words.table);
    expect(named.get(WORD_BAG)).toBe(words.bag);
    for (const table of [words.table, words.bag!]) for (const row of table.arraySync()) expect(Math.max(...row.map(Math.abs))).toBeGreaterThan(1e-4);
    r.client.dispose();
    model.dispose();
  });

  it('a scale below zero is refused, naming the field', () => {
    expect(() => makeLoraConfig({ wordVectors: -1 }, cfg)).toThrow(ConfigError);
    expect(() => makeLoraConfig({ wordVectors: -1 }, cfg)).toThrow('lora.wordVectors must be a finite number >= 0 (0: no word vectors), got -1');
    expect(makeLoraConfig({ wordVectors: 0 }, cfg).wordVectors).toBeUndefined();
    expect(() => makeLoraConfig({ wordVectors: 0.3, wordBag: -2 }, cfg)).toThrow('lora.wordBag must be a finite number >= 0 (0: no word bag), got -2');
    expect(() => makeLoraConfig({ wordBag: 3 }, cfg)).toThrow("lora.wordBag (3) needs lora.wordVectors > 0: the bag keeps a vector for each of the word vectors' words");
    expect(makeLoraConfig({ wordVectors: 0.3, wordBag: 0 }, cfg).wordBag).toBeUndefined();
  });

  it('the embedded model keeps its outputs with a fresh word-vector adapter', () => {
    const { model, tokenizer } = loadModel(projectPath('models', 'chromatune-base'));
    const ids = [tokenizer.encode(formatPrompt('Which bridge links Brooklyn and Manhattan?'))];
    const base = logitsOf(model, ids);
    model.addAdapter('w', makeLoraConfig({ r: 4, wordVectors: 0.3 }, model.config), 0, vocabularyFor(tokenizer, ids));
    expect(bitIdentical(logitsOf(model, ids), base)).toBe(true);
    model.dispose();
  });
});
