/**
 * Training and sampling throughput of the engine, with the pure-JS cpu backend and (when Debian's
 * python3-torch is installed) PyTorch on the CPU as same-run peers. Prints one JSON object.
 *
 * Model FLOPs per token (for MFU): full fine-tuning 6N + 12·L·T·d (forward 2N, backward 4N, plus
 * attention); LoRA 4N + 8·L·T·d (no weight gradients for the frozen base; the adapters' own FLOPs are
 * small and not counted). N counts the matmul weights, the tied output head included.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import { performance } from 'perf_hooks';
import * as tf from '../kernel/backend/tf';
import { type BackendChoice, initBackend, measureMatmulGflops } from '../kernel/backend';
import { loadBlas } from '../kernel/backend/blas';
import { median } from '../kernel/stats';
import type { Batch } from '../kernel/data/batch';
import { type GPT2Config, makeConfig } from '../kernel/model/config';
import { GPT2Model } from '../kernel/model/gpt2';
import { PRESETS } from '../kernel/model/presets';
import { makeLoraConfig } from '../kernel/lora/config';
import { vocabularyFor } from '../kernel/lora/words';
import { answersOf } from '../kernel/lora/memory';
import { generateFromTokens } from '../kernel/sample/generate';
import { TrainingClient } from '../kernel/train/client';
import { byteLevelTokenizerJSON, Tokenizer } from '../kernel/tokenizer';
import { projectPath } from '../kernel/paths';
import { buildWordnetCorpus } from '../kernel/pretrain/corpus';
import { trainBaseTokenizer } from '../kernel/pretrain/tokenizer';
import { epochBatches } from '../kernel/data/batch';
import { MAIN_JOB_DEFAULTS } from '../kernel/run/job';
import { loadExamples } from '../kernel/data/load';
import { loadModel } from '../kernel/model/io';
import { dynamicBatch, tokenizeAll } from '../kernel/train/finetune';
import { WeightAverage } from '../kernel/train/average';

export interface BenchCase {
  config: GPT2Config;
  batch: number;
  context: number;
}

export const BENCH_CASES: Record<'a' | 'b', BenchCase> = {
  a: { config: makeConfig({ ...PRESETS.tiny }), batch: 16, context: 64 },
  b: { config: makeConfig({ ...PRESETS.base }), batch: 8, context: 128 },
};

export interface CaseFigures {
  lora_train_tokens_per_s: number;
  full_train_tokens_per_s: number;
  /**
   * Thread scaling, only when OpenBLAS runs on more than one thread: LoRA training on one thread and
   * then again on all of them, timed back to back after the other figures (both warm).
   */
  lora_threads?: { one: number; all: number };
  sample_tokens_per_s_cache: number;
  sample_tokens_per_s_nocache: number;
  /** Greedy sampling from ASCII text with the UTF-8 guard, and the same without it. */
  sample_tokens_per_s_text_utf8_guard: number;
  sample_tokens_per_s_text_no_guard: number;
  lora_mfu: number;
  full_mfu: number;
}

export interface BenchOptions {
  seconds?: number;
  cases?: Array<'a' | 'b'>;
  backends?: BackendChoice[];
  /** Run bench/torch_peer.py as a peer when python3-torch is present. */
  torch?: boolean;
  /** Time one epoch of the main job's training step on nyc-qa (default true; about a minute). */
  mainJob?: boolean;
}

function matmulParams(c: GPT2Config): number {
  return c.n_layer * 12 * c.n_embd * c.n_embd + c.vocab_size * c.n_embd;
}

export function flopsPerToken(c: GPT2Config, context: number, method: 'lora' | 'full'): number {
  const n = matmulParams(c);
  const att = c.n_layer * context * c.n_embd;
  return method === 'full' ? 6 * n + 12 * att : 4 * n + 8 * att;
}

/** A batch of random tokens with loss on the second half of each row (like a prompt/answer split). */
function randomBatch(c: BenchCase, seed: number): Batch {
  const n = c.batch * c.context;
  const rng = (i: number) => (Math.imul(i + 1, 2654435761) ^ seed) >>> 0;
  const inputIds = Int32Array.from({ length: n }, (_, i) => rng(i) % c.config.vocab_size);
  const targets = Int32Array.from({ length: n }, (_, i) => rng(i + n) % c.config.vocab_size);
  const weights = Float32Array.from({ length: n }, (_, i) => (i % c.context >= c.context / 2 ? 1 : 0));
  return { inputIds, targets, weights, batchSize: c.batch, seqLen: c.context };
}

/** A tokenizer whose ids cover the vocabulary: bytes for (a), the embedded base model's for (b). */
function tokenizerFor(vocab: number): Tokenizer {
  if (vocab <= 256) return Tokenizer.fromJSON(byteLevelTokenizerJSON({}));
  const file = projectPath('models', 'chromatune-base', 'tokenizer.json');
  const tok = fs.existsSync(file) ? Tokenizer.fromFile(file) : Tokenizer.fromJSON(trainBaseTokenizer(buildWordnetCorpus({ maxDocuments: 40000 }).train, vocab));
  if (tok.vocabSize !== vocab) throw new Error(`bench: tokenizer has ${tok.vocabSize} tokens, the model ${vocab}`);
  return tok;
}

/** Median tokens/s over timed steps after one warm-up step, for at least `seconds` (and 2 steps). */
function timeTraining(model: GPT2Model, tok: Tokenizer, c: BenchCase, method: 'lora' | 'full', seconds: number): number {
  if (method === 'lora') model.addAdapter('bench', makeLoraConfig({ r: 8, alpha: 16 }, model.config), 1);
  else model.setActiveAdapter(null);
  const client = new TrainingClient(model, tok, method);
  const batch = randomBatch(c, 7);
  const step = () => {
    client.forwardBackward(batch);
    client.optimStep({ learningRate: 1e-4 });
  };
  step();
  const rates: number[] = [];
  const start = performance.now();
  while (rates.length < 2 || performance.now() - start < seconds * 1000) {
    const t0 = performance.now();
    step();
    rates.push((c.batch * c.context) / ((performance.now() - t0) / 1000));
  }
  client.dispose();
  if (method === 'lora') model.removeAdapter('bench');
  return median(rates);
}

/**
 * Greedy sampling of 48 tokens after a 16-token prompt with a LoRA adapter attached and unmerged, as the
 * PyTorch peer samples its LoRA model. The prompt is given as token ids: decoded to text, ids of lone
 * bytes above 127 would come back as other tokens and lengthen it. Those ids are not UTF-8, so nothing
 * restricts the tokens, as in the peer. With `wellFormed` set, the prompt is ASCII text instead, and the
 * UTF-8 guard is on or off: the guard's cost, measured against itself.
 */
function timeSampling(model: GPT2Model, tok: Tokenizer, useCache: boolean, seconds: number, wellFormed?: boolean): number {
  const prompt = Array.from({ length: 16 }, (_, i) => (i * 7 + 65) % (wellFormed === undefined ? model.config.vocab_size - 1 : 128));
  const sample = () => generateFromTokens(model, tok, prompt, { temperature: 0, maxTokens: 48, useCache, wellFormed });
  sample(); // warm-up, untimed
  const rates: number[] = [];
  const start = performance.now();
  while (rates.length < 2 || performance.now() - start < seconds * 1000) {
    const t0 = performance.now();
    const r = sample();
    rates.push(r.samples[0].tokens.length / ((performance.now() - t0) / 1000));
  }
  return median(rates);
}

/** Runs `f` with OpenBLAS on one thread, then restores `threads`: the thread-scaling peer. */
function timeOnOneThread(f: () => number, threads: number): number {
  const blas = loadBlas().addon!;
  blas.threads(1);
  try {
    return f();
  } finally {
    blas.threads(threads);
  }
}

async function benchBackend(backend: BackendChoice, cases: Array<'a' | 'b'>, seconds: number) {
  const info = await initBackend(backend);
  // Peak: the best of a d=128-sized and a larger product (small products understate a BLAS).
  const matmul = await measureMatmulGflops();
  const out: Record<string, CaseFigures> = {};
  for (const name of cases) {
    const c = BENCH_CASES[name];
    const tok = tokenizerFor(c.config.vocab_size);
    const model = GPT2Model.random(c.config, 1);
    const lora = timeTraining(model, tok, c, 'lora', seconds);
    const full = timeTraining(model, tok, c, 'full', seconds);
    const threads =
      info.matmulThreads && info.matmulThreads > 1
        ? { one: timeOnOneThread(() => timeTraining(model, tok, c, 'lora', seconds), info.matmulThreads), all: timeTraining(model, tok, c, 'lora', seconds) }
        : undefined;
    model.addAdapter('sample', makeLoraConfig({ r: 8, alpha: 16 }, c.config), 0);
    model.setTrainingMode('none');
    out[name] = {
      lora_train_tokens_per_s: lora,
      ...(threads ? { lora_threads: threads } : {}),
      full_train_tokens_per_s: full,
      sample_tokens_per_s_cache: timeSampling(model, tok, true, seconds / 2),
      sample_tokens_per_s_nocache: timeSampling(model, tok, false, seconds / 2),
      sample_tokens_per_s_text_utf8_guard: timeSampling(model, tok, true, seconds / 2, true),
      sample_tokens_per_s_text_no_guard: timeSampling(model, tok, true, seconds / 2, false),
      lora_mfu: (lora * flopsPerToken(c.config, c.context, 'lora')) / (matmul * 1e9),
      full_mfu: (full * flopsPerToken(c.config, c.context, 'full')) / (matmul * 1e9),
    };
    model.dispose();
  }
  return { backend: info, matmul_gflops: matmul, cases: out };
}

/**
 * The main job's training step on real data: the embedded base model with a rank-64 adapter (the main
 * job's settings) trains one epoch of nyc-qa's training questions, batch 16. Seven variants, each over
 * every example once, in the same run: every position through the vocabulary projection in shuffled
 * batches (the plain path), only the weighted (answer) positions, those in batches grouped by length,
 * that with the weights' moving average updated after every step, that with word vectors beside the
 * adapter, that with their word bag as well, and that with an answer memory read from the bag (what the
 * main job does). Figures are examples per second, after an untimed warm-up batch.
 */
function timeMainJobEpoch(): Record<string, number> | undefined {
  const dir = projectPath('models', 'chromatune-base');
  const data = projectPath('datasets', 'nyc-qa', 'train.jsonl');
  if (!fs.existsSync(dir) || !fs.existsSync(data)) return undefined;
  const { model, tokenizer } = loadModel(dir);
  const d = MAIN_JOB_DEFAULTS;
  model.addAdapter('bench', makeLoraConfig({ r: d.rank, alpha: d.alpha, dropout: d.dropout }, model.config), 0);
  let client = new TrainingClient(model, tokenizer, 'lora');
  const context = model.config.n_positions;
  const train = tokenizeAll(tokenizer, loadExamples(data), context);
  const plain = epochBatches(train.length, d.batchSize, 0, 0);
  const grouped = epochBatches(train.length, d.batchSize, 0, 0, train.map((e) => e.ids.length));
  /** Examples per second over one epoch in `batches`, and the padded tokens it fed. */
  const epoch = (batches: number[][], logprobs: 'all' | 'weighted', average?: WeightAverage) => {
    const run = (b: number[]) => {
      const batch = dynamicBatch(b.map((i) => train[i]), context);
      client.forwardBackward(batch, 'cross_entropy', { seed: 1, logprobs });
      client.optimStep({ learningRate: 1e-4 });
      average?.update();
      return batch.inputIds.length;
    };
    run(batches[0]); // warm-up, untimed
    let padded = 0;
    const t0 = performance.now();
    for (const b of batches) padded += run(b);
    return { rate: train.length / ((performance.now() - t0) / 1000), padded };
  };
  const all = epoch(plain, 'all');
  const weighted = epoch(plain, 'weighted');
  const groupedRun = epoch(grouped, 'weighted');
  // The main job also folds the weights into their moving average after every step.
  const averageOf = (run: (a: WeightAverage) => ReturnType<typeof epoch>) => {
    const average = new WeightAverage(model.trainableVariables('lora'), d.ema);
    const r = run(average);
    average.dispose();
    return r;
  };
  const averaged = averageOf((a) => epoch(grouped, 'weighted', a));
  // The main job's adapter adds a vector per word of the training questions, a word bag and an answer memory.
  const vocabulary = { ...vocabularyFor(tokenizer, train.map((e) => e.ids)), answers: answersOf(train) };
  const withAdapter = (lora: { wordVectors: number; wordBag?: number; answerMemory?: number }) => {
    client.dispose();
    model.removeAdapter('bench');
    model.addAdapter('bench', makeLoraConfig({ r: d.rank, alpha: d.alpha, dropout: d.dropout, ...lora }, model.config), 0, vocabulary);
    client = new TrainingClient(model, tokenizer, 'lora');
    return averageOf((a) => epoch(grouped, 'weighted', a));
  };
  const withWords = withAdapter({ wordVectors: d.wordVectors });
  const withBag = withAdapter({ wordVectors: d.wordVectors, wordBag: d.wordBag });
  const withMemory = withAdapter({ wordVectors: d.wordVectors, wordBag: d.wordBag, answerMemory: d.answerMemory });
  client.dispose();
  model.dispose();
  return {
    examples: train.length,
    examples_per_s_all_positions: all.rate,
    examples_per_s_weighted: weighted.rate,
    examples_per_s_weighted_grouped: groupedRun.rate,
    examples_per_s_weighted_grouped_averaged: averaged.rate,
    examples_per_s_weighted_grouped_averaged_word_vectors: withWords.rate,
    examples_per_s_weighted_grouped_averaged_word_vectors_bag: withBag.rate,
    examples_per_s_weighted_grouped_averaged_word_vectors_bag_memory: withMemory.rate,
    words: vocabulary.words.length,
    answers: vocabulary.answers.length,
    padded_tokens_shuffled: weighted.padded,
    padded_tokens_grouped: groupedRun.padded,
  };
}

/** Runs bench/torch_peer.py on `threads` threads; undefined when python3-torch is not installed. */
function torchPeer(cases: Array<'a' | 'b'>, seconds: number, threads: number): Record<string, unknown> | undefined {
  const script = projectPath('bench', 'torch_peer.py');
  const python = '/usr/bin/python3';
  if (!fs.existsSync(script) || !fs.existsSync(python)) return undefined;
  try {
    execFileSync(python, ['-c', 'import torch'], { stdio: 'ignore' });
  } catch {
    return undefined;
  }
  const b = PRESETS.base;
  const args = [script, '--json', '--threads', String(threads), '--seconds', String(seconds), '--configs', cases.join(','),
    '--n-layer', String(b.n_layer), '--n-embd', String(b.n_embd), '--n-head', String(b.n_head),
    '--context', String(BENCH_CASES.b.context), '--vocab', String(b.vocab_size), '--batch', String(BENCH_CASES.b.batch)];
  return JSON.parse(execFileSync(python, args, { encoding: 'utf8', maxBuffer: 1 << 20 }));
}

export async function runTrainBench(opts: BenchOptions = {}) {
  const seconds = opts.seconds ?? 4;
  const cases = opts.cases ?? ['a', 'b'];
  const backends = opts.backends ?? ['wasm', 'cpu'];
  const results: Record<string, Awaited<ReturnType<typeof benchBackend>>> = {};
  for (const b of backends) results[b] = await benchBackend(b, cases, b === 'cpu' ? Math.min(seconds, 3) : seconds);
  const [main, peer] = backends;
  // The peer gets the thread count of the main backend's matrix products (CHROMATUNE_THREADS).
  const info = results[main].backend;
  const torch = opts.torch === false ? undefined : torchPeer(cases, seconds, info.matmulThreads ?? info.threads);
  // The peer's backend is the active one after the loop: the main-job epoch runs on the main backend.
  if (opts.mainJob !== false && peer) await initBackend(main);
  const mainJob = opts.mainJob === false ? undefined : timeMainJobEpoch();
  const ratios: Record<string, Record<string, number>> = {};
  if (mainJob) {
    ratios.main_job = {
      weighted_vs_all_positions: mainJob.examples_per_s_weighted / mainJob.examples_per_s_all_positions,
      grouped_vs_shuffled: mainJob.examples_per_s_weighted_grouped / mainJob.examples_per_s_weighted,
      main_job_vs_plain: mainJob.examples_per_s_weighted_grouped_averaged_word_vectors_bag_memory / mainJob.examples_per_s_all_positions,
      averaged_vs_not: mainJob.examples_per_s_weighted_grouped_averaged / mainJob.examples_per_s_weighted_grouped,
      word_vectors_vs_not: mainJob.examples_per_s_weighted_grouped_averaged_word_vectors / mainJob.examples_per_s_weighted_grouped_averaged,
      word_bag_vs_not: mainJob.examples_per_s_weighted_grouped_averaged_word_vectors_bag / mainJob.examples_per_s_weighted_grouped_averaged_word_vectors,
      answer_memory_vs_not: mainJob.examples_per_s_weighted_grouped_averaged_word_vectors_bag_memory / mainJob.examples_per_s_weighted_grouped_averaged_word_vectors_bag,
    };
  }
  for (const name of cases) {
    const m = results[main].cases[name];
    const r: Record<string, number> = {};
    if (peer) {
      const p = results[peer].cases[name];
      r[`lora_train_vs_${peer}`] = m.lora_train_tokens_per_s / p.lora_train_tokens_per_s;
      r[`full_train_vs_${peer}`] = m.full_train_tokens_per_s / p.full_train_tokens_per_s;
    }
    const t = (torch?.configs as Record<string, Record<string, number>> | undefined)?.[name];
    if (t) {
      r.lora_train_vs_torch = m.lora_train_tokens_per_s / t.lora_train_tokens_per_s;
      r.full_train_vs_torch = m.full_train_tokens_per_s / t.full_train_tokens_per_s;
      r.sample_cache_vs_torch = m.sample_tokens_per_s_cache / t.sample_tokens_per_s_cache;
    }
    r.sample_cache_speedup = m.sample_tokens_per_s_cache / m.sample_tokens_per_s_nocache;
    r.sample_utf8_guard_vs_none = m.sample_tokens_per_s_text_utf8_guard / m.sample_tokens_per_s_text_no_guard;
    if (m.lora_threads) r.lora_train_threads_vs_1 = m.lora_threads.all / m.lora_threads.one;
    ratios[name] = r;
  }
  return {
    date: new Date().toISOString(),
    cases: Object.fromEntries(cases.map((n) => [n, { ...BENCH_CASES[n].config, batch: BENCH_CASES[n].batch, context: BENCH_CASES[n].context }])),
    lora: { r: 8, alpha: 16, targets: 'all four linear layers' },
    results,
    torch: torch ?? 'python3-torch not installed (apt-get install python3-torch)',
    ...(mainJob ? { main_job_epoch: { backend: tf.getBackend(), ...mainJob } } : {}),
    ratios,
    tensors_alive: tf.memory().numTensors,
  };
}
