/**
 * Training: the loss and its gradient, AdamW, schedules, determinism, checkpoints and resume,
 * divergence, configuration errors, sampling and log-probabilities. Every expectation is computed
 * independently (plain JS from the model's logits, finite differences, formulas).
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '../kernel/backend/tf';
import { initBackend } from '../kernel/backend';
import type { Batch } from '../kernel/data/batch';
import { makeConfig } from '../kernel/model/config';
import { GPT2Model } from '../kernel/model/gpt2';
import { makeLoraConfig } from '../kernel/lora/config';
import { loadAdapter } from '../kernel/lora/peft';
import { ANSWER_VALUES, WORD_BAG, WORD_VECTORS } from '../kernel/lora/adapter';
import { AdamW } from '../kernel/train/adamw';
import { checkpointStep, hasCheckpoint, loadCheckpoint, STATE_FILE } from '../kernel/train/checkpoint';
import { TrainingClient } from '../kernel/train/client';
import { evaluateLoss, type FinetuneConfig, type FinetuneResult, finetune, tokenizeAll, TrainingDivergedError } from '../kernel/train/finetune';
import { learningRateAt, type Schedule } from '../kernel/train/schedule';
import { generate, generateFromTokens } from '../kernel/sample/generate';
import {
  argmax,
  bitIdentical,
  byteTokenizer,
  listFiles,
  logitsOf,
  logSoftmax,
  maxAbsDiff,
  modelFromArrays,
  perturbedArrays,
  perturbedModel,
  qaBatch,
  qaPairs,
  tinyConfig,
  tmpDir,
  utf8Prefix,
} from './engine-helpers';

beforeAll(async () => {
  await initBackend('wasm');
});

const cfg = tinyConfig({ n_positions: 64 }); // room for a whole question/answer example (about 45 tokens)
const tok = byteTokenizer();

/** Rows of a batch's input ids. */
const rowsOf = (b: Batch) => Array.from({ length: b.batchSize }, (_, r) => Array.from(b.inputIds.subarray(r * b.seqLen, (r + 1) * b.seqLen)));

/** Per-target log-probabilities from the model's logits, in JS. */
function jsLogprobs(model: GPT2Model, b: Batch): Float64Array {
  const logits = logitsOf(model, rowsOf(b));
  const V = model.config.vocab_size;
  const out = new Float64Array(b.batchSize * b.seqLen);
  for (let i = 0; i < out.length; i++) out[i] = logSoftmax(logits.subarray(i * V, (i + 1) * V))[b.targets[i]];
  return out;
}

function jsLoss(lp: ArrayLike<number>, w: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < lp.length; i++) {
    num += w[i] * lp[i];
    den += w[i];
  }
  return -num / den;
}

// ---- loss -------------------------------------------------------------------------------------

describe('forwardBackward', () => {
  let model: GPT2Model;
  let client: TrainingClient;
  beforeAll(() => {
    model = perturbedModel(cfg, 2, 0.1);
    client = new TrainingClient(model, tok, 'full');
  });
  afterAll(() => {
    client.dispose();
    model.dispose();
  });

  it('returns per-token logprobs of the model and loss = -sum(w·lp)/sum(w)', () => {
    const batch = qaBatch(tok, qaPairs(3));
    expect(batch.weights.some((w) => w === 0) && batch.weights.some((w) => w === 1)).toBe(true);
    const want = jsLogprobs(model, batch);
    const fb = client.forwardBackward(batch);
    client.clearGradients();
    expect(fb.logprobs.length).toBe(batch.batchSize * batch.seqLen);
    expect(maxAbsDiff(fb.logprobs, want)).toBeLessThan(1e-4);
    expect(Math.abs(fb.loss - jsLoss(want, batch.weights))).toBeLessThan(1e-5);
    expect(fb.weightSum).toBe(batch.weights.reduce((a, b) => a + b, 0));
    // The evaluation path (no gradients) gives the same numbers.
    const ev = client.forward(batch);
    expect(Math.abs(ev.loss - fb.loss)).toBeLessThan(1e-6);
  });

  it('prompt targets (weight 0) do not affect the loss; answer targets do', () => {
    const batch = qaBatch(tok, qaPairs(2));
    const base = client.forward(batch).loss;
    const promptPos = batch.weights.findIndex((w, i) => w === 0 && i % batch.seqLen < 5);
    const answerPos = batch.weights.findIndex((w) => w === 1);
    const promptChanged = { ...batch, targets: batch.targets.slice() };
    promptChanged.targets[promptPos] = (promptChanged.targets[promptPos] + 1) % 257;
    const fbPrompt = client.forwardBackward(promptChanged);
    client.clearGradients();
    expect(fbPrompt.loss).toBe(base);
    // ...although that position's log-probability did change (the target was read).
    expect(Math.abs(fbPrompt.logprobs[promptPos] - client.forward(batch).logprobs[promptPos])).toBeGreaterThan(1e-4);
    const answerChanged = { ...batch, targets: batch.targets.slice() };
    answerChanged.targets[answerPos] = (answerChanged.targets[answerPos] + 1) % 257;
    expect(Math.abs(client.forward(answerChanged).loss - base)).toBeGreaterThan(1e-4);
  });

  it("logprobs: 'weighted' gives the same loss and gradients, with log-probabilities only where weighted", () => {
    const batch = qaBatch(tok, qaPairs(3, 11));
    const all = client.forwardBackward(batch);
    const gAll = client.accumulatedGradients();
    client.clearGradients();
    const weighted = client.forwardBackward(batch, 'cross_entropy', { logprobs: 'weighted' });
    const gWeighted = client.accumulatedGradients();
    client.clearGradients();
    expect(Math.abs(weighted.loss - all.loss)).toBeLessThan(1e-6);
    expect(weighted.weightSum).toBe(all.weightSum);
    expect(gWeighted.size).toBe(gAll.size);
    // The tied embedding gets gradient through the input lookup and through the head.
    for (const [name, g] of gAll) expect(maxAbsDiff(gWeighted.get(name)!.data, g.data)).toBeLessThan(1e-5);
    batch.weights.forEach((w, i) => {
      if (w > 0) expect(Math.abs(weighted.logprobs[i] - all.logprobs[i])).toBeLessThan(1e-5);
      else expect(weighted.logprobs[i]).toBeNaN();
    });
    // A batch with nothing to learn (every answer cut off) has loss 0 and zero gradients.
    const none = client.forwardBackward({ ...batch, weights: new Float32Array(batch.weights.length) }, 'cross_entropy', { logprobs: 'weighted' });
    const gNone = client.accumulatedGradients();
    client.clearGradients();
    expect(Math.abs(none.loss)).toBe(0);
    expect(none.logprobs.every((x) => Number.isNaN(x))).toBe(true);
    for (const [, g] of gNone) expect(g.data.every((x) => x === 0)).toBe(true);
  });

  it('accumulates the sum of gradients over calls and optimStep clears them', () => {
    const b1 = qaBatch(tok, qaPairs(2));
    const b2 = qaBatch(tok, qaPairs(2, 5));
    client.forwardBackward(b1);
    const g1 = client.accumulatedGradients();
    client.clearGradients();
    client.forwardBackward(b2);
    const g2 = client.accumulatedGradients();
    client.forwardBackward(b1);
    expect(client.accumulatedSteps).toBe(2);
    const sum = client.accumulatedGradients();
    for (const name of ['transformer.wte.weight', 'transformer.h.1.mlp.c_fc.weight', 'transformer.ln_f.bias']) {
      const want = Float64Array.from(g1.get(name)!.data, (v, i) => v + g2.get(name)!.data[i]);
      expect(maxAbsDiff(sum.get(name)!.data, want)).toBeLessThan(1e-6);
    }
    client.clearGradients();
    expect(client.accumulatedGradients().size).toBe(0);
    expect(() => client.optimStep({ learningRate: 1e-3 })).toThrow(/no gradients/);
  });
});

// ---- gradient check (cpu) --------------------------------------------------------------------------

describe('gradient check against central finite differences (cpu backend)', () => {
  beforeAll(async () => {
    const warn = jest.spyOn(console, 'warn').mockImplementation(() => undefined); // the cpu backend's banner
    await initBackend('cpu');
    tf.tidy(() => tf.zeros([1]).dataSync());
    warn.mockRestore();
  });
  afterAll(async () => {
    await initBackend('wasm');
  });

  const small = makeConfig({ vocab_size: 40, n_positions: 12, n_embd: 16, n_layer: 2, n_head: 2 });
  const batch: Batch = {
    inputIds: Int32Array.from({ length: 16 }, (_, i) => (i * 13 + 5) % 40),
    targets: Int32Array.from({ length: 16 }, (_, i) => (i * 29 + 7) % 40),
    weights: Float32Array.from({ length: 16 }, (_, i) => (i % 8 >= 3 ? 1 : 0)),
    batchSize: 2,
    seqLen: 8,
  };

  /** Central difference of the loss at index `idx` of variable `v`, step eps. */
  function finiteDifference(client: TrainingClient, v: tf.Variable, idx: number, eps: number): number {
    const data = (v.dataSync() as Float32Array).slice();
    const orig = data[idx];
    const at = (x: number) => {
      data[idx] = x;
      tf.tidy(() => v.assign(tf.tensor(data, v.shape)));
      return client.forward(batch).loss;
    };
    const lp = at(orig + eps);
    const lm = at(orig - eps);
    at(orig);
    return (lp - lm) / (2 * eps);
  }

  function check(client: TrainingClient, names: string[]) {
    expect(tf.getBackend()).toBe('cpu');
    client.forwardBackward(batch);
    const grads = client.accumulatedGradients();
    client.clearGradients();
    const vars = new Map(client.model.trainableVariables(client.mode));
    let checked = 0;
    for (const name of names) {
      const g = grads.get(name)!.data;
      // The largest component and one more with a sizeable gradient.
      const order = Array.from(g.keys()).sort((a, b) => Math.abs(g[b]) - Math.abs(g[a]));
      for (const idx of [order[0], order[Math.floor(order.length / 8)]]) {
        if (Math.abs(g[idx]) < 1e-3) continue;
        const fd = finiteDifference(client, vars.get(name)!, idx, 1e-2);
        expect({ name, idx, ok: Math.abs(fd - g[idx]) <= 5e-2 * Math.abs(g[idx]) + 2e-4, g: g[idx], fd }).toMatchObject({ name, idx, ok: true });
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(names.length);
  }

  it('full fine-tuning: embeddings, norms, attention, MLP', () => {
    const model = perturbedModel(small, 7, 0.2);
    const client = new TrainingClient(model, tok, 'full');
    check(client, [
      'transformer.wte.weight',
      'transformer.wpe.weight',
      'transformer.h.0.ln_1.weight',
      'transformer.h.0.attn.c_attn.weight',
      'transformer.h.0.attn.c_attn.bias',
      'transformer.h.1.attn.c_proj.weight',
      'transformer.h.1.mlp.c_fc.weight',
      'transformer.h.1.mlp.c_proj.bias',
      'transformer.ln_f.weight',
      'transformer.ln_f.bias',
    ]);
    client.dispose();
    model.dispose();
  });

  it('optimStep writes neither into the arrays a model was built from nor into clones of its weights', () => {
    // On cpu, dataSync hands out the backend's own buffer, which tf.tensor(array) and clone() share.
    const { arrays, shapes } = perturbedArrays(small, 3, 0.1);
    const copies = new Map([...arrays].map(([n, a]) => [n, a.slice()]));
    const model = modelFromArrays(small, arrays, shapes);
    const w = model.param('transformer.h.0.mlp.c_fc.weight');
    const clone = w.clone();
    const before = (w.dataSync() as Float32Array).slice();
    const client = new TrainingClient(model, tok, 'full');
    client.forwardBackward(batch);
    client.optimStep({ learningRate: 1e-2 });
    expect(maxAbsDiff(w.dataSync(), before)).toBeGreaterThan(1e-3); // the weight moved...
    expect(maxAbsDiff(clone.dataSync(), before)).toBe(0); // ...the clone did not
    for (const [n, a] of arrays) expect({ n, same: maxAbsDiff(a, copies.get(n)!) }).toEqual({ n, same: 0 });
    clone.dispose();
    client.dispose();
    model.dispose();
  });

  it('LoRA: A and B of every target module', () => {
    const model = perturbedModel(small, 8, 0.2);
    const a = model.addAdapter('a', makeLoraConfig({ r: 2, alpha: 4 }, small), 1);
    for (const l of a.layers.values()) tf.tidy(() => l.B.assign(tf.randomNormal(l.B.shape, 0, 0.3, 'float32', 3))); // A gets a gradient only when B != 0
    const client = new TrainingClient(model, tok, 'lora');
    check(client, a.namedVariables().map(([n]) => n).filter((n) => n.includes('.h.1.') || n.includes('c_attn')));
    client.dispose();
    model.dispose();
  });
});

// ---- AdamW ----------------------------------------------------------------------------------------

describe('AdamW', () => {
  /** Independent AdamW (PyTorch's formulation; decay on matrices only, as documented). */
  function jsAdamW(p: Float64Array, grads: number[][], o: { lr: number; b1: number; b2: number; eps: number; wd: number; decay: boolean; clip?: number; norms?: number[] }) {
    const m = new Float64Array(p.length);
    const v = new Float64Array(p.length);
    grads.forEach((g0, k) => {
      const t = k + 1;
      const norm = o.norms ? o.norms[k] : 0;
      const c = o.clip && norm > o.clip ? o.clip / (norm + 1e-6) : 1;
      for (let i = 0; i < p.length; i++) {
        const g = g0[i] * c;
        m[i] = o.b1 * m[i] + (1 - o.b1) * g;
        v[i] = o.b2 * v[i] + (1 - o.b2) * g * g;
        const mh = m[i] / (1 - o.b1 ** t);
        const vh = v[i] / (1 - o.b2 ** t);
        if (o.decay) p[i] *= 1 - o.lr * o.wd;
        p[i] -= (o.lr * mh) / (Math.sqrt(vh) + o.eps);
      }
    });
    return p;
  }

  const W0 = [0.5, -0.25, 0.125, 1, -1, 0.3];
  const b0 = [0.1, -0.2, 0.3];
  const gW = [
    [0.1, -0.2, 0.05, 0.4, -0.01, 0.3],
    [-0.3, 0.1, 0.02, 0.4, 0.2, -0.1],
    [0.2, 0.2, -0.5, -0.1, 0.05, 0.0],
  ];
  const gb = [
    [1, -2, 0.5],
    [0.3, 0.2, -0.1],
    [-1, 0.4, 0.2],
  ];

  it('three steps with bias correction and decoupled weight decay match a JS AdamW', () => {
    const opt = new AdamW();
    const W = tf.variable(tf.tensor2d(W0, [2, 3]));
    const b = tf.variable(tf.tensor1d(b0));
    const hp = { learningRate: 0.01, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1 };
    for (let k = 0; k < 3; k++) {
      const grads = new Map<string, tf.Tensor>([
        ['transformer.h.0.attn.c_attn.weight', tf.tensor2d(gW[k], [2, 3])],
        ['transformer.h.0.attn.c_attn.bias', tf.tensor1d(gb[k])],
      ]);
      const r = opt.apply([['transformer.h.0.attn.c_attn.weight', W], ['transformer.h.0.attn.c_attn.bias', b]], grads, hp);
      grads.forEach((g) => g.dispose());
      const norm = Math.sqrt([...gW[k], ...gb[k]].reduce((s, x) => s + x * x, 0));
      expect(Math.abs(r.gradNorm - norm)).toBeLessThan(1e-6);
      expect(opt.step).toBe(k + 1);
      const o = { lr: 0.01, b1: 0.8, b2: 0.95, eps: 1e-6, wd: 0.1 };
      const wantW = jsAdamW(Float64Array.from(W0), gW.slice(0, k + 1), { ...o, decay: true });
      const wantB = jsAdamW(Float64Array.from(b0), gb.slice(0, k + 1), { ...o, decay: false });
      expect(maxAbsDiff(W.dataSync(), wantW)).toBeLessThan(1e-6);
      expect(maxAbsDiff(b.dataSync(), wantB)).toBeLessThan(1e-6);
    }
    // Without weight decay the matrix would be elsewhere: the decay is really applied.
    const noDecay = jsAdamW(Float64Array.from(W0), gW, { lr: 0.01, b1: 0.8, b2: 0.95, eps: 1e-6, wd: 0, decay: false });
    expect(maxAbsDiff(W.dataSync(), noDecay)).toBeGreaterThan(1e-4);
    W.dispose();
    b.dispose();
    opt.dispose();
  });

  it('clips the global gradient norm before the moments', () => {
    const opt = new AdamW();
    const W = tf.variable(tf.tensor2d(W0, [2, 3]));
    const b = tf.variable(tf.tensor1d(b0));
    const norms: number[] = [];
    for (let k = 0; k < 3; k++) {
      const grads = new Map<string, tf.Tensor>([
        ['w.weight', tf.tensor2d(gW[k], [2, 3])],
        ['w.bias', tf.tensor1d(gb[k])],
      ]);
      norms.push(opt.apply([['w.weight', W], ['w.bias', b]], grads, { learningRate: 0.05, eps: 1e-3, gradClipNorm: 0.5 }).gradNorm);
      grads.forEach((g) => g.dispose());
    }
    const o = { lr: 0.05, b1: 0.9, b2: 0.999, eps: 1e-3, wd: 0, decay: false, clip: 0.5 };
    // Split W and b: the clip factor is shared (global norm), so the two halves are independent otherwise.
    expect(maxAbsDiff(W.dataSync(), jsAdamW(Float64Array.from(W0), gW, { ...o, norms }))).toBeLessThan(1e-6);
    expect(maxAbsDiff(b.dataSync(), jsAdamW(Float64Array.from(b0), gb, { ...o, norms }))).toBeLessThan(1e-6);
    // Unclipped, the result differs (eps 1e-3 makes Adam sensitive to the gradient's scale).
    expect(maxAbsDiff(b.dataSync(), jsAdamW(Float64Array.from(b0), gb, { ...o, clip: undefined }))).toBeGreaterThan(1e-5);
    W.dispose();
    b.dispose();
    opt.dispose();
  });

  it('optimStep applies the mean of the accumulated gradients', () => {
    const model = GPT2Model.random(cfg, 5);
    const client = new TrainingClient(model, tok, 'full');
    const name = 'transformer.h.1.mlp.c_fc.weight';
    const w0 = Float64Array.from(model.param(name).dataSync());
    client.forwardBackward(qaBatch(tok, qaPairs(2)));
    client.forwardBackward(qaBatch(tok, qaPairs(2, 7)));
    const sum = client.accumulatedGradients().get(name)!.data;
    const mean = Array.from(sum, (g) => g / 2);
    client.optimStep({ learningRate: 0.01, eps: 1e-3, weightDecay: 0.05 });
    const want = jsAdamW(w0, [mean], { lr: 0.01, b1: 0.9, b2: 0.999, eps: 1e-3, wd: 0.05, decay: true });
    expect(maxAbsDiff(model.param(name).dataSync(), want)).toBeLessThan(1e-6);
    const wrong = jsAdamW(Float64Array.from(w0), [Array.from(sum)], { lr: 0.01, b1: 0.9, b2: 0.999, eps: 1e-3, wd: 0.05, decay: true });
    expect(maxAbsDiff(want, wrong)).toBeGreaterThan(1e-6); // the check can tell mean from sum
    client.dispose();
    model.dispose();
  });
});

// ---- schedule -----------------------------------------------------------------------------------

describe('learningRateAt', () => {
  const base: Schedule = { kind: 'cosine', peak: 1e-3, warmupSteps: 10, totalSteps: 110, minLrRatio: 0.1 };
  const close = (a: number, b: number) => expect(Math.abs(a - b)).toBeLessThan(1e-12);

  it('linear warmup to the peak', () => {
    close(learningRateAt(base, 0), 1e-4);
    close(learningRateAt(base, 4), 5e-4);
    close(learningRateAt(base, 9), 1e-3);
  });

  it('cosine decay from the peak to minLrRatio·peak', () => {
    close(learningRateAt(base, 10), 1e-3);
    close(learningRateAt(base, 60), 0.55e-3); // halfway: (peak + floor) / 2
    close(learningRateAt(base, 35), 1e-4 + 9e-4 * 0.5 * (1 + Math.cos(Math.PI / 4)));
    close(learningRateAt(base, 110), 1e-4);
    close(learningRateAt(base, 500), 1e-4); // past the end: stays at the floor
    for (let s = 10; s < 110; s++) expect(learningRateAt(base, s + 1)).toBeLessThanOrEqual(learningRateAt(base, s));
  });

  it('linear decay and constant', () => {
    const lin = { ...base, kind: 'linear' as const };
    close(learningRateAt(lin, 10), 1e-3);
    close(learningRateAt(lin, 35), 1e-3 - 0.25 * 9e-4);
    close(learningRateAt(lin, 60), 0.55e-3);
    close(learningRateAt(lin, 110), 1e-4);
    const con = { ...base, kind: 'constant' as const };
    close(learningRateAt(con, 3), 4e-4);
    close(learningRateAt(con, 50), 1e-3);
    close(learningRateAt({ ...base, warmupSteps: 0, minLrRatio: 0 }, 0), 1e-3);
  });
});

// ---- finetune: determinism, resume, divergence, configuration ---------------------------------------

/** A fine-tune (LoRA with dropout unless overridden) of a fresh copy of the same base (seed 1). */
function tinyRun(over: Partial<FinetuneConfig> = {}) {
  const model = GPT2Model.random(cfg, 1);
  const c: FinetuneConfig = {
    model,
    tokenizer: tok,
    train: qaPairs(8),
    lora: { r: 4, alpha: 8, dropout: 0.1 },
    epochs: 2,
    batchSize: 3,
    learningRate: 1e-2,
    seed: 7,
    ...over,
  };
  return { model, promise: finetune(c) };
}

/** The LoRA weights of `m` now, as float64 copies. */
const adapterWeights = (m: GPT2Model): Float64Array[] => m.trainableVariables('lora').map(([, v]) => Float64Array.from(v.dataSync()));

describe('finetune', () => {
  let dir: string;
  beforeEach(() => {
    dir = tmpDir('train');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('is deterministic for a seed (LoRA with dropout) and differs for another seed', async () => {
    const runs = [];
    for (const over of [{}, {}, { seed: 8 }, { lora: { r: 4, alpha: 8, dropout: 0 } }]) {
      const { model, promise } = tinyRun(over);
      const r = await promise;
      runs.push(r.history.map((h) => h.loss));
      r.client.dispose();
      model.dispose();
    }
    expect(runs[0].length).toBe(6);
    expect(maxAbsDiff(runs[0], runs[1])).toBeLessThanOrEqual(1e-6);
    expect(maxAbsDiff(runs[0], runs[2])).toBeGreaterThan(1e-4);
    expect(maxAbsDiff(runs[0], runs[3])).toBeGreaterThan(1e-6); // dropout is on (and seeded), not ignored
  });

  it('question augmentation changes what is trained, and a resume with other augmentation is refused', async () => {
    const plain = tinyRun({ train: qaPairs(12, 100) });
    const aug = tinyRun({ train: qaPairs(12, 100), augment: { wordDropout: 0.5, probability: 1 } });
    const [a, b] = [await plain.promise, await aug.promise];
    const [la, lb] = [a.history.map((h) => h.loss), b.history.map((h) => h.loss)];
    expect(maxAbsDiff(la, lb)).toBeGreaterThan(1e-4);
    for (const r of [a, b]) r.client.dispose();
    for (const m of [plain.model, aug.model]) m.dispose();
    const ck = path.join(dir, 'ck');
    await tinyRun({ train: qaPairs(12, 100), augment: { wordDropout: 0.5 }, checkpointDir: ck, maxSteps: 2 }).promise;
    await expect(tinyRun({ train: qaPairs(12, 100), augment: { wordDropout: 0.2 }, checkpointDir: ck, maxSteps: 2, resume: true }).promise).rejects.toThrow(/cannot resume, augment was/);
    await expect(tinyRun({ train: qaPairs(12, 100), augment: { wordDropout: 0.5, rareWordDropout: 0.1 }, checkpointDir: ck, maxSteps: 2, resume: true }).promise).rejects.toThrow(/cannot resume, augment was/);
  });

  /** Checks, at every checkpoint event, that the folder holds exactly one whole checkpoint of that step. */
  function watchCheckpoints(ckpt: string, files: string[], seen: number[]) {
    return (step: number) => {
      seen.push(step);
      expect(listFiles(ckpt)).toEqual(files);
      expect(JSON.parse(fs.readFileSync(path.join(ckpt, STATE_FILE), 'utf8')).step).toBe(step);
      expect(fs.readdirSync(path.dirname(ckpt))).toEqual([path.basename(ckpt)]); // no temp or backup folders beside it
    };
  }

  const LORA_FILES = ['adapter_config.json', 'adapter_model.safetensors', 'optimizer.safetensors', STATE_FILE];
  it.each([
    ['lora', 'lora', 8, 3, LORA_FILES.sort(), {}],
    ['lora with word vectors, a word bag and an answer memory', 'lora', 8, 3, [...LORA_FILES, 'word_vectors.safetensors'].sort(), { lora: { r: 4, alpha: 8, dropout: 0.1, wordVectors: 0.5, wordBag: 2, answerMemory: 1 } }],
    ['full', 'full', 4, 2, ['model.safetensors', 'optimizer.safetensors', STATE_FILE].sort(), {}],
  ] as const)('%s: an interrupted run resumed from its checkpoint continues exactly like an uninterrupted one', async (_label, method, N, k, files, over) => {
    // The LoRA run also augments its questions and groups them by length: a resumed run must see the same batches.
    const augment = method === 'lora' ? { augment: { wordDropout: 0.3 }, groupByLength: true } : {};
    const common: Partial<FinetuneConfig> = { method, epochs: 2, batchSize: 4, train: qaPairs(method === 'lora' ? 16 : 8), checkpointEvery: k, warmupSteps: 2, weightDecay: 0.01, ...augment, ...over };
    // Uninterrupted.
    const seenA: number[] = [];
    const ckA = path.join(dir, 'a', 'ckpt');
    const onA = watchCheckpoints(ckA, [...files], seenA);
    const a = tinyRun({ ...common, checkpointDir: ckA, onProgress: (e) => e.kind === 'checkpoint' && onA(e.step) });
    const ra = await a.promise;
    expect(ra.steps).toBe(N);
    const expectedSaves = Array.from({ length: Math.floor(N / k) }, (_, i) => (i + 1) * k);
    if (N % k !== 0) expectedSaves.push(N);
    expect(seenA).toEqual(expectedSaves);
    const lossesA = ra.history.map((h) => h.loss);
    const finalA = ra.client.model.trainableVariables(method).map(([n, v]) => [n, (v.dataSync() as Float32Array).slice()] as const);
    // Word vectors, the bag and the memory's values start at zero: they must have moved for their restoring to be tested.
    for (const name of [WORD_VECTORS, WORD_BAG, ANSWER_VALUES]) {
      const words = finalA.find(([n]) => n === name);
      expect(words !== undefined).toBe('lora' in over);
      if (words) expect(Math.max(...words[1].map(Math.abs))).toBeGreaterThan(1e-3);
    }

    // Interrupted right after the checkpoint of step k (an exception out of the progress callback).
    const ckB = path.join(dir, 'b', 'ckpt');
    const first: number[] = [];
    const b1 = tinyRun({
      ...common,
      checkpointDir: ckB,
      onProgress: (e) => {
        if (e.kind === 'step') first.push(e.loss!);
        if (e.kind === 'checkpoint' && e.step === k) throw new Error('interrupted');
      },
    });
    await expect(b1.promise).rejects.toThrow('interrupted');
    b1.model.dispose();
    expect(first.length).toBe(k);
    expect(listFiles(ckB)).toEqual([...files]);

    // A new model and finetune call resume from the folder.
    const seenB: number[] = [];
    const onB = watchCheckpoints(ckB, [...files], seenB);
    const b2 = tinyRun({ ...common, checkpointDir: ckB, resume: true, onProgress: (e) => e.kind === 'checkpoint' && onB(e.step) });
    const rb = await b2.promise;
    expect(rb.resumedFrom).toBe(k);
    expect(rb.steps).toBe(N);
    expect(seenB).toEqual(expectedSaves.filter((s) => s > k));
    const lossesB = [...first, ...rb.history.slice(k).map((h) => h.loss)];
    expect(lossesB.length).toBe(N);
    expect(maxAbsDiff(lossesB, lossesA)).toBeLessThanOrEqual(1e-6);
    expect(maxAbsDiff(rb.history.slice(0, k).map((h) => h.loss), first)).toBe(0); // history carried in the checkpoint
    const finalB = new Map(rb.client.model.trainableVariables(method));
    for (const [n, w] of finalA) expect(maxAbsDiff(finalB.get(n)!.dataSync(), w)).toBeLessThanOrEqual(1e-6);
    expect(listFiles(dir).filter((f) => /tmp|old/.test(f))).toEqual([]);

    // Resuming with different settings is refused, naming the setting.
    const c = tinyRun({ ...common, learningRate: 5e-3, checkpointDir: ckB, resume: true });
    await expect(c.promise).rejects.toThrow(/cannot resume, learningRate was 0\.01 and is now 0\.005/);
    for (const r of [ra, rb]) r.client.dispose();
    for (const m of [a.model, b2.model, c.model]) m.dispose();
  });

  it('a checkpoint that fails half-way through writing leaves the previous one whole', async () => {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const nodeFs = require('fs') as typeof import('fs'); // the module object itself, which the library calls into
    const realOpenSync = nodeFs.openSync;
    const realWriteSync = nodeFs.writeSync;
    const fdPaths = new Map<number, string>();
    let armed = false;
    let failed = 0;
    // Record which file each descriptor writes, and fail the optimizer file's second write: by then the
    // new adapter files of the step-3 checkpoint are complete, so only an atomic swap of the whole
    // folder keeps the step-2 checkpoint consistent.
    const openSpy = jest.spyOn(nodeFs, 'openSync').mockImplementation(((...args: unknown[]) => {
      const fd = (realOpenSync as (...a: unknown[]) => number)(...args);
      fdPaths.set(fd, String(args[0]));
      return fd;
    }) as typeof nodeFs.openSync);
    let optimizerWrites = 0;
    const writeSpy = jest.spyOn(nodeFs, 'writeSync').mockImplementation(((...args: unknown[]) => {
      if (armed && /optimizer\.safetensors/.test(fdPaths.get(args[0] as number) ?? '') && ++optimizerWrites === 2) {
        failed++;
        throw new Error('ENOSPC: no space left on device (simulated)');
      }
      return (realWriteSync as (...a: unknown[]) => number)(...args);
    }) as typeof nodeFs.writeSync);
    const ckpt = path.join(dir, 'ckpt');
    const atStep2 = new Map<string, Buffer>();
    const { model, promise } = tinyRun({
      checkpointDir: ckpt,
      checkpointEvery: 1,
      onProgress: (e) => {
        if (e.kind === 'checkpoint' && e.step === 2) {
          for (const f of listFiles(ckpt)) atStep2.set(f, fs.readFileSync(path.join(ckpt, f)));
          armed = true; // the step-3 checkpoint fails while writing
        }
      },
    });
    try {
      await expect(promise).rejects.toThrow(/ENOSPC/);
    } finally {
      openSpy.mockRestore();
      writeSpy.mockRestore();
    }
    expect(failed).toBe(1);
    expect(listFiles(dir)).toEqual(['ckpt/adapter_config.json', 'ckpt/adapter_model.safetensors', 'ckpt/optimizer.safetensors', `ckpt/${STATE_FILE}`]);
    for (const [f, bytes] of atStep2) expect({ f, same: fs.readFileSync(path.join(ckpt, f)).equals(bytes) }).toEqual({ f, same: true });
    const state = JSON.parse(fs.readFileSync(path.join(ckpt, STATE_FILE), 'utf8'));
    expect(state.step).toBe(2);
    const fresh = GPT2Model.random(cfg, 1);
    fresh.addAdapter('x', makeLoraConfig({ r: 4, alpha: 8, dropout: 0.1 }, cfg), 0);
    const client = new TrainingClient(fresh, tok, 'lora');
    expect(loadCheckpoint(ckpt, client, state.fingerprint).step).toBe(2);
    client.dispose();
    fresh.dispose();
    model.dispose();
  });

  it('a run that stopped early stays stopped when resumed; one interrupted before the stop resumes to the same stop', async () => {
    // minDelta 100 cannot be met: the first evaluation sets the best, the second triggers the stop (patience 1).
    const common: Partial<FinetuneConfig> = { validation: qaPairs(3, 50), evalEvery: 1, earlyStopping: { patience: 1, minDelta: 100 } };
    const outcome = (r: FinetuneResult) => ({
      steps: r.steps, totalSteps: r.totalSteps, stoppedEarly: r.stoppedEarly, interrupted: r.interrupted,
      evalSteps: r.evals.map((e) => e.step), bestStep: r.bestStep, historySteps: r.history.map((h) => h.step),
    });
    const ckA = path.join(dir, 'a');
    const a = tinyRun({ ...common, checkpointDir: ckA });
    const ra = await a.promise;
    expect(outcome(ra)).toEqual({ steps: 2, totalSteps: 6, stoppedEarly: true, interrupted: false, evalSteps: [1, 2], bestStep: 1, historySteps: [1, 2] });
    expect(checkpointStep(ckA)).toBe(2);

    // Resumed with the same settings: no step, no new checkpoint, the same result.
    const events: string[] = [];
    const b = tinyRun({ ...common, checkpointDir: ckA, resume: true, onProgress: (e) => events.push(`${e.kind}@${e.step}`) });
    const rb = await b.promise;
    expect(rb.resumedFrom).toBe(2);
    expect(events).toEqual(['done@2']);
    expect(outcome(rb)).toEqual(outcome(ra));
    expect({ history: rb.history, evals: rb.evals, best: rb.bestValLoss }).toEqual({ history: ra.history, evals: ra.evals, best: ra.bestValLoss });

    // Interrupted after step 1 (before the stop), then resumed: it stops where the uninterrupted run did.
    const ckC = path.join(dir, 'c');
    const c1 = tinyRun({ ...common, checkpointDir: ckC, shouldStop: () => true });
    const rc1 = await c1.promise;
    expect({ steps: rc1.steps, interrupted: rc1.interrupted, stoppedEarly: rc1.stoppedEarly }).toEqual({ steps: 1, interrupted: true, stoppedEarly: false });
    const c2 = tinyRun({ ...common, checkpointDir: ckC, resume: true });
    const rc2 = await c2.promise;
    expect(rc2.resumedFrom).toBe(1);
    expect(outcome(rc2)).toEqual(outcome(ra));
    expect(maxAbsDiff(rc2.history.map((h) => h.loss), ra.history.map((h) => h.loss))).toBeLessThanOrEqual(1e-6);
    expect(maxAbsDiff(rc2.evals.map((e) => e.valLoss), ra.evals.map((e) => e.valLoss))).toBeLessThanOrEqual(1e-6);
    for (const r of [ra, rb, rc1, rc2]) r.client.dispose();
    for (const m of [a.model, b.model, c1.model, c2.model]) m.dispose();
  });

  it('with early stopping the run ends on the weights of its best validation loss, also after a resume', async () => {
    const common: Partial<FinetuneConfig> = { validation: qaPairs(3, 50), evalEvery: 1, earlyStopping: { patience: 1, minDelta: 100 } };
    let atStep1: Float64Array[] = [];
    const ck = path.join(dir, 'best');
    const model = GPT2Model.random(cfg, 1); // given, so the step callback can read it while tinyRun is still starting
    const a = tinyRun({ ...common, model, checkpointDir: ck, onProgress: (e) => void (e.kind === 'step' && e.step === 1 && (atStep1 = adapterWeights(model))) });
    const ra = await a.promise;
    expect([ra.steps, ra.bestStep, ra.restoredBestStep]).toEqual([2, 1, 1]);
    const atEnd = adapterWeights(model);
    expect(atEnd).toEqual(atStep1);
    // Independently: the model as it ends scores the best validation loss, not the last one.
    const client = new TrainingClient(model, tok, 'none');
    expect(evaluateLoss(client, tokenizeAll(tok, qaPairs(3, 50), cfg.n_positions), 3)).toBeCloseTo(ra.bestValLoss!, 5);
    expect(ra.evals[1].valLoss).not.toBeCloseTo(ra.bestValLoss!, 5);
    expect(fs.existsSync(path.join(ck, 'best.safetensors'))).toBe(true);
    // A resume of the stopped run loads the checkpoint, which holds the best weights already.
    const b = tinyRun({ ...common, checkpointDir: ck, resume: true });
    const rb = await b.promise;
    expect(rb.restoredBestStep).toBe(1);
    expect(adapterWeights(b.model)).toEqual(atStep1);
    for (const r of [ra, rb]) r.client.dispose();
    client.dispose();
    for (const m of [model, a.model, b.model]) m.dispose();
  });

  it('with ema the run ends on the moving average of its weights, computed here in float64; a resume continues the average exactly', async () => {
    const ema = { decay: 0.8, startStep: 3 };
    const validation = qaPairs(3, 50);
    // The weights after each update, as the step event sees them (before the run averages them).
    const seen: Float64Array[][] = [];
    const model = GPT2Model.random(cfg, 1);
    const a = tinyRun({ model, ema, validation, onProgress: (e) => void (e.kind === 'step' && seen.push(adapterWeights(model))) });
    const ra = await a.promise;
    expect([seen.length, ra.averagedFrom]).toEqual([6, 3]);
    const expected = seen[2].map((w, i) => {
      const avg = Float64Array.from(w); // starts at step 3
      for (const later of seen.slice(3)) for (let k = 0; k < avg.length; k++) avg[k] = 0.8 * avg[k] + 0.2 * later[i][k];
      return avg;
    });
    const atEnd = adapterWeights(model);
    for (let i = 0; i < atEnd.length; i++) expect(maxAbsDiff(atEnd[i], expected[i])).toBeLessThan(1e-6);
    expect(maxAbsDiff(atEnd[0], seen[5][0])).toBeGreaterThan(1e-4); // not the last step's weights
    // The last evaluation is of the weights the run ends on.
    const client = new TrainingClient(model, tok, 'none');
    expect(evaluateLoss(client, tokenizeAll(tok, validation, cfg.n_positions), 3)).toBeCloseTo(ra.evals.at(-1)!.valLoss, 5);

    // Interrupted after step 4 (inside the average), then resumed: the same weights as the run straight through.
    const ck = path.join(dir, 'ema');
    let steps = 0;
    const b1 = tinyRun({ ema, validation, checkpointDir: ck, shouldStop: () => ++steps === 4 });
    const rb1 = await b1.promise;
    expect([rb1.steps, rb1.interrupted]).toEqual([4, true]);
    expect(fs.existsSync(path.join(ck, 'average.safetensors'))).toBe(true);
    const b2 = tinyRun({ ema, validation, checkpointDir: ck, resume: true });
    const rb2 = await b2.promise;
    expect(rb2.resumedFrom).toBe(4);
    const resumed = adapterWeights(b2.model);
    for (let i = 0; i < atEnd.length; i++) expect(maxAbsDiff(resumed[i], atEnd[i])).toBeLessThanOrEqual(1e-7);
    // Another decay is another run: refused, naming the setting.
    await expect(tinyRun({ ema: { decay: 0.9, startStep: 3 }, checkpointDir: ck, resume: true }).promise).rejects.toThrow(/cannot resume, ema was/);
    for (const r of [ra, rb1, rb2]) r.client.dispose();
    client.dispose();
    for (const m of [model, a.model, b1.model, b2.model]) m.dispose();
  });

  it('ema settings are checked (a decay outside (0, 1), ema with early stopping); a start past the last step averages nothing', async () => {
    await expect(tinyRun({ ema: { decay: 1 } }).promise).rejects.toThrow('ema.decay must be in (0, 1), got 1');
    await expect(tinyRun({ ema: { decay: 0.9, startStep: 0 } }).promise).rejects.toThrow('ema.startStep must be an integer >= 1, got 0');
    // A start past the run's last update: no average, the run ends on its last weights and says so.
    let last: Float64Array[] = [];
    const model = GPT2Model.random(cfg, 1);
    const late = await tinyRun({ model, ema: { decay: 0.9, startStep: 7 }, onProgress: (e) => void (e.kind === 'step' && (last = adapterWeights(model))) }).promise;
    expect([late.steps, late.averagedFrom]).toEqual([6, null]);
    expect(adapterWeights(model)).toEqual(last);
    late.client.dispose();
    model.dispose();
    await expect(tinyRun({ ema: { decay: 0.9 }, validation: qaPairs(3, 50), earlyStopping: { patience: 1 } }).promise).rejects.toThrow(/earlyStopping and ema cannot be combined/);
  });

  it('a resume with other AdamW betas or eps, group scales, early stopping or evaluation cadence is refused, naming the setting', async () => {
    const resumeFrom = async (ck: string, over: Partial<FinetuneConfig>) => {
      const { model, promise } = tinyRun({ checkpointDir: ck, maxSteps: 1, ...over, resume: true });
      try {
        return await promise;
      } finally {
        model.dispose();
      }
    };
    const refused = (ck: string, over: Partial<FinetuneConfig>, message: RegExp) => expect(resumeFrom(ck, over)).rejects.toThrow(message);
    const save = async (ck: string, over: Partial<FinetuneConfig>) => {
      const { model, promise } = tinyRun({ checkpointDir: ck, maxSteps: 1, ...over });
      (await promise).client.dispose();
      model.dispose();
    };

    // Default settings write the fingerprint older versions wrote, so their checkpoints still resume.
    const plain = path.join(dir, 'plain');
    await save(plain, {});
    const oldKeys = ['method', 'seed', 'batchSize', 'epochs', 'learningRate', 'schedule', 'maxSteps', 'warmupSteps', 'minLrRatio', 'weightDecay', 'gradClipNorm', 'lora', 'trainExamples', 'trainTokens'];
    expect(Object.keys(JSON.parse(fs.readFileSync(path.join(plain, STATE_FILE), 'utf8')).fingerprint)).toEqual(oldKeys);
    await refused(plain, { beta1: 0.8 }, /cannot resume, beta1 was unset and is now 0\.8;/);
    await refused(plain, { beta2: 0.99 }, /cannot resume, beta2 was unset and is now 0\.99;/);
    await refused(plain, { eps: 1e-6 }, /cannot resume, eps was unset and is now 0\.000001;/);
    await refused(plain, { groupScales: { 'h1.mlp.B': 2 } }, /cannot resume, groupScales was unset and is now \{"h1\.mlp\.B":2\};/);
    await refused(plain, { validation: qaPairs(2, 50), earlyStopping: { patience: 2 } }, /cannot resume, earlyStopping was unset and is now \{"patience":2,"minDelta":0\};/);
    // Settings equal to the defaults are the same run.
    const same = await resumeFrom(plain, { beta1: 0.9, beta2: 0.999, eps: 1e-8, groupScales: { 'h0.attn.A': 1 }, evalEvery: 1, validation: qaPairs(2, 50) });
    expect(same.resumedFrom).toBe(1);
    same.client.dispose();

    // Set when saved and unset (or changed) now.
    const tuned = path.join(dir, 'tuned');
    await save(tuned, { beta2: 0.99, groupScales: { 'h1.mlp.B': 2, 'h0.attn.A': 0.5 } });
    await refused(tuned, { groupScales: { 'h1.mlp.B': 2, 'h0.attn.A': 0.5 } }, /cannot resume, beta2 was 0\.99 and is now unset;/);
    await refused(tuned, { beta2: 0.99 }, /cannot resume, groupScales was \{"h0\.attn\.A":0\.5,"h1\.mlp\.B":2\} and is now unset;/);
    await refused(tuned, { beta2: 0.99, groupScales: { 'h1.mlp.B': 3, 'h0.attn.A': 0.5 } }, /groupScales was \{"h0\.attn\.A":0\.5,"h1\.mlp\.B":2\} and is now \{"h0\.attn\.A":0\.5,"h1\.mlp\.B":3\};/);
    // Key order and scale-1 entries do not change the run.
    const reordered = await resumeFrom(tuned, { beta2: 0.99, groupScales: { 'h0.attn.A': 0.5, 'h0.mlp.B': 1, 'h1.mlp.B': 2 } });
    expect(reordered.resumedFrom).toBe(1);
    reordered.client.dispose();

    const stopping = path.join(dir, 'stopping');
    const es: Partial<FinetuneConfig> = { validation: qaPairs(2, 50), evalEvery: 2, earlyStopping: { patience: 3 } };
    await save(stopping, es);
    await refused(stopping, { ...es, earlyStopping: { patience: 4 } }, /cannot resume, earlyStopping was \{"patience":3,"minDelta":0\} and is now \{"patience":4,"minDelta":0\};/);
    await refused(stopping, { ...es, earlyStopping: { patience: 3, minDelta: 0.1 } }, /earlyStopping was \{"patience":3,"minDelta":0\} and is now \{"patience":3,"minDelta":0\.1\};/);
    await refused(stopping, { ...es, evalEvery: 1 }, /cannot resume, evalEvery was 2 and is now 1;/);
    await refused(stopping, { ...es, earlyStopping: undefined }, /cannot resume, earlyStopping was \{"patience":3,"minDelta":0\} and is now unset;/);
    await refused(stopping, { ...es, validation: qaPairs(3, 50) }, /cannot resume, validationExamples was 2 and is now 3;/);
  });

  it('groupScales keys must name groups of the trained parameters; the error lists the valid ones', async () => {
    const validKeysIn = (message: string) => /; valid keys: (.*)$/.exec(message)![1].split(', ').sort();
    const errorOf = async (over: Partial<FinetuneConfig>) => {
      let err: unknown;
      await finetune({ model: over.model!, tokenizer: tok, train: qaPairs(4), ...over }).catch((e) => (err = e));
      expect(err).toBeInstanceOf(RangeError);
      return (err as Error).message;
    };
    const fresh = async (over: Partial<FinetuneConfig>) => {
      const model = GPT2Model.random(cfg, 1);
      const message = await errorOf({ model, ...over });
      expect(model.adapters.size).toBe(0);
      model.dispose();
      return message;
    };
    const perLayer = (parts: string[]) => [0, 1].flatMap((d) => parts.map((p) => `h${d}.${p}`));
    // LoRA on every target: A and B of attention and MLP per layer.
    let m = await fresh({ groupScales: { 'h0.attn.A': 2, 'h0.attn.a': 2, 'h9.mlp.B': 1 } });
    expect(m).toMatch(/^groupScales has unknown keys "h0\.attn\.a", "h9\.mlp\.B"; valid keys: /);
    expect(validKeysIn(m)).toEqual(perLayer(['attn.A', 'attn.B', 'mlp.A', 'mlp.B']).sort());
    // LoRA on attention only: MLP keys name nothing trained.
    m = await fresh({ lora: { r: 4, targetModules: ['qkv'] }, groupScales: { 'h0.mlp.A': 2 } });
    expect(m).toMatch(/^groupScales has unknown key "h0\.mlp\.A"; valid keys: /);
    expect(validKeysIn(m)).toEqual(perLayer(['attn.A', 'attn.B']).sort());
    // Full fine-tuning: whole weights (W) of embeddings, norms, attention and MLP.
    m = await fresh({ method: 'full', groupScales: { 'h0.attn.A': 2 } });
    expect(m).toMatch(/^groupScales has unknown key "h0\.attn\.A"; valid keys: /);
    expect(validKeysIn(m)).toEqual(['embed.W', 'norm.W', ...perLayer(['attn.W', 'mlp.W', 'norm.W'])].sort());

    // A refused run leaves an existing model's adapters and active adapter as they were.
    const model = GPT2Model.random(cfg, 1);
    model.addAdapter('keep', makeLoraConfig({ r: 4 }, cfg), 0);
    await errorOf({ model, adapterName: 'other', groupScales: { 'h0.attn.a': 2 } });
    expect({ adapters: [...model.adapters.keys()], active: model.activeAdapter?.name }).toEqual({ adapters: ['keep'], active: 'keep' });

    // The optimizer itself refuses before changing anything.
    const client = new TrainingClient(model, tok, 'lora');
    const before = model.activeAdapter!.namedVariables().map(([, v]) => (v.dataSync() as Float32Array).slice());
    client.forwardBackward(qaBatch(tok, qaPairs(2)));
    expect(() => client.optimStep({ learningRate: 1e-2, groupScales: { 'h1.attn.b': 0 } })).toThrow(/^groupScales has unknown key "h1\.attn\.b"; valid keys: h0\.attn\.A, h0\.attn\.B, h0\.mlp\.A, h0\.mlp\.B, h1\.attn\.A, h1\.attn\.B, h1\.mlp\.A, h1\.mlp\.B$/);
    expect(client.optimizer.step).toBe(0);
    model.activeAdapter!.namedVariables().forEach(([n, v], i) => expect({ n, same: bitIdentical(v.dataSync() as Float32Array, before[i]) }).toEqual({ n, same: true }));
    client.dispose();
    model.dispose();
  });

  it('a checkpoint left as a backup by a crash between the two renames of its replacement is restored and resumed', async () => {
    const ck = path.join(dir, 'ck');
    const { model, promise } = tinyRun({ checkpointDir: ck, checkpointEvery: 1, shouldStop: () => true });
    const r1 = await promise;
    expect(r1.steps).toBe(1);
    r1.client.dispose();
    model.dispose();
    const files = listFiles(ck);
    // The state such a crash leaves: no folder, the checkpoint in a backup named after the dead writer.
    const deadPid = spawnSync(process.execPath, ['-e', '']).pid;
    const orphan = path.join(dir, `.ck.old-${deadPid}-0123456789ab`);
    fs.renameSync(ck, orphan);
    expect(fs.existsSync(ck)).toBe(false);

    const { model: m2, promise: p2 } = tinyRun({ checkpointDir: ck, checkpointEvery: 1, resume: true });
    const r2 = await p2;
    expect(r2.resumedFrom).toBe(1);
    expect(r2.steps).toBe(6);
    expect(checkpointStep(ck)).toBe(6);
    expect(fs.readdirSync(dir)).toEqual(['ck']); // restored, then retired by the next save
    expect(listFiles(ck)).toEqual(files);
    r2.client.dispose();
    m2.dispose();
  });

  it('restoring a backup: the newest of a dead writer, never one of a live writer, and only when the folder is missing', () => {
    const deadPid = spawnSync(process.execPath, ['-e', '']).pid;
    const ck = path.join(dir, 'ck');
    const backup = (name: string, step: number, secondsAgo: number) => {
      const d = path.join(dir, name);
      fs.mkdirSync(d);
      fs.writeFileSync(path.join(d, STATE_FILE), JSON.stringify({ step }));
      const t = Date.now() / 1000 - secondsAgo;
      fs.utimesSync(d, t, t);
    };
    // A live process other than this one (the test runner's parent) is between its renames: left alone.
    backup(`.ck.old-${process.ppid}-aaaaaaaaaaaa`, 9, 0);
    expect(hasCheckpoint(ck)).toBe(false);
    expect(fs.readdirSync(dir).sort()).toEqual([`.ck.old-${process.ppid}-aaaaaaaaaaaa`]);
    // Of two dead writers' backups the newer one comes back; a name that is not a backup of `ck` is ignored.
    backup(`.ck.old-${deadPid}-bbbbbbbbbbbb`, 4, 60);
    backup(`.ck.old-${deadPid}-cccccccccccc`, 5, 30);
    backup(`.ck.old-x.old-${deadPid}-dddddddddddd`, 7, 0);
    expect(hasCheckpoint(ck)).toBe(true);
    expect(checkpointStep(ck)).toBe(5);
    expect(fs.readdirSync(dir).sort()).toEqual([`.ck.old-${deadPid}-bbbbbbbbbbbb`, `.ck.old-${process.ppid}-aaaaaaaaaaaa`, `.ck.old-x.old-${deadPid}-dddddddddddd`, 'ck'].sort());
    // With the folder present, backups stay where they are.
    expect(hasCheckpoint(ck)).toBe(true);
    expect(fs.readdirSync(dir).length).toBe(4);
  });

  it('a learning rate so large that the loss becomes NaN throws TrainingDivergedError', async () => {
    for (const method of ['lora', 'full'] as const) {
      const { model, promise } = tinyRun({ method, learningRate: 1e30, gradClipNorm: 0 });
      await expect(promise).rejects.toThrow(TrainingDivergedError);
      await expect(promise).rejects.toThrow(/loss became NaN at step \d+ .*learningRate/);
      model.dispose();
    }
  });

  it('a finite loss with a NaN gradient (saturated GELU) is divergence too', async () => {
    // Pre-activations of -1e20 make GELU's forward exactly 0 (finite loss) while x² overflows in its
    // gradient; AdamW then refuses the step, and finetune must report divergence, not a bare error.
    const { model, promise } = tinyRun({
      method: 'full',
      onProgress: (e) => {
        if (e.kind === 'step' && e.step === 2) {
          const b = model.param('transformer.h.0.mlp.c_fc.bias');
          tf.tidy(() => b.assign(tf.fill(b.shape, -1e20)));
        }
      },
    });
    await expect(promise).rejects.toThrow(TrainingDivergedError);
    await expect(promise).rejects.toThrow(/gradient norm became (NaN|Infinity) \(loss [\d.]+\) at step 3 /);
    model.dispose();
  });

  it('after divergence the checkpoint folder still holds the last good checkpoint, loadable', async () => {
    const ckpt = path.join(dir, 'ckpt');
    let goodB: Float32Array | undefined;
    const { model, promise } = tinyRun({
      checkpointDir: ckpt,
      checkpointEvery: 1,
      onProgress: (e) => {
        if (e.kind === 'checkpoint' && e.step === 3) {
          const B = model.activeAdapter!.layers.get('transformer.h.0.attn.c_attn')!.B;
          goodB = (B.dataSync() as Float32Array).slice();
          tf.tidy(() => B.assign(tf.fill(B.shape, NaN))); // the weights go bad after the step-3 checkpoint
        }
      },
    });
    let err: unknown;
    await promise.catch((e) => (err = e));
    expect(err).toBeInstanceOf(TrainingDivergedError);
    expect((err as Error).message).toMatch(/loss became NaN at step 4 .*last good checkpoint is kept in/);
    const state = JSON.parse(fs.readFileSync(path.join(ckpt, STATE_FILE), 'utf8'));
    expect(state.step).toBe(3);
    expect(state.step).toBeLessThan(4);
    expect(listFiles(dir)).toEqual(['ckpt/adapter_config.json', 'ckpt/adapter_model.safetensors', 'ckpt/optimizer.safetensors', `ckpt/${STATE_FILE}`]);
    // Loadable as a PEFT adapter and as a training checkpoint, with the good (finite) weights.
    const fresh = GPT2Model.random(cfg, 1);
    const loaded = loadAdapter(fresh, ckpt, 'good');
    const B = loaded.layers.get('transformer.h.0.attn.c_attn')!.B.dataSync();
    expect(maxAbsDiff(B, goodB!)).toBe(0);
    expect(Array.from(B).some((v) => v !== 0)).toBe(true);
    const client = new TrainingClient(fresh, tok, 'lora');
    const st = loadCheckpoint(ckpt, client, state.fingerprint);
    expect(st.step).toBe(3);
    expect(client.optimizer.step).toBe(3);
    expect(Number.isFinite(client.forward(qaBatch(tok, qaPairs(2))).loss)).toBe(true);
    client.dispose();
    fresh.dispose();
    model.dispose();
  });

  it.each([
    ['batchSize 0', { batchSize: 0 }, /batchSize must be an integer >= 1, got 0/],
    ['learningRate 0', { learningRate: 0 }, /learningRate must be a finite number > 0, got 0/],
    ['learningRate negative', { learningRate: -1e-3 }, /learningRate must be a finite number > 0, got -0\.001/],
    ['learningRate NaN', { learningRate: NaN }, /learningRate must be a finite number > 0, got NaN/],
    ['epochs 0', { epochs: 0 }, /epochs must be an integer >= 1, got 0/],
    ['schedule bogus', { schedule: 'bogus' as never }, /schedule must be one of cosine, linear, constant, got "bogus"/],
    ['lora r 0', { lora: { r: 0 } }, /lora\.r must be an integer in \[1, 32\]/],
    ['no examples', { train: [] }, /train must hold at least one example/],
    ['groupScales misspelled key', { groupScales: { 'h0.attn.a': 2 } }, /^groupScales has unknown key "h0\.attn\.a"; valid keys: h0\.attn\.A, h0\.attn\.B, h0\.mlp\.A, h0\.mlp\.B, h1\.attn\.A, h1\.attn\.B, h1\.mlp\.A, h1\.mlp\.B$/],
  ] as Array<[string, Partial<FinetuneConfig>, RegExp]>)('bad configuration: %s names the field', async (_label, over, message) => {
    const { model, promise } = tinyRun(over);
    await expect(promise).rejects.toThrow(message);
    expect(model.adapters.size).toBe(0); // nothing was attached or trained
    model.dispose();
  });
});

// ---- sampling and log-probabilities ----------------------------------------------------------------

describe('generate', () => {
  let random: GPT2Model;
  let trained: GPT2Model;
  const prompt = 'Question: What is 3?\nAnswer:';
  beforeAll(async () => {
    random = GPT2Model.random(cfg, 9);
    // A briefly trained model, so that greedy outputs are ASCII text with structure.
    trained = GPT2Model.random(cfg, 10);
    const r = await finetune({ model: trained, tokenizer: tok, train: qaPairs(8), method: 'full', epochs: 30, batchSize: 8, learningRate: 1e-2 });
    r.client.dispose();
  });
  afterAll(() => {
    random.dispose();
    trained.dispose();
  });

  it('from token ids: the same samples as from the text they encode; ids that are not text stay as given', () => {
    const ids = tok.encode(prompt);
    for (const temperature of [0, 1]) {
      expect(generateFromTokens(trained, tok, ids, { temperature, maxTokens: 6, seed: 4 })).toEqual(generate(trained, tok, prompt, { temperature, maxTokens: 6, seed: 4 }));
    }
    const bytes = Array.from({ length: 16 }, (_, i) => 128 + i); // lone bytes: decoding them would not give them back
    const r = generateFromTokens(random, tok, bytes, { temperature: 0, maxTokens: 3 });
    expect(r.promptTokens).toEqual(bytes);
    expect(tok.encode(tok.decode(bytes))).not.toEqual(bytes);
  });

  const bytesOf = (ids: number[]) => ids.flatMap((id) => (id < 256 ? [id] : [...Buffer.from(tok.decode([id]))]));

  it('temperature 0 is greedy: each token is the argmax of the logits among the tokens that keep the text UTF-8', () => {
    let excluded = 0; // steps whose unrestricted argmax would have broken the text
    // The text prompt, and the prompt followed by the first byte of a three-byte character (U+20AC: E2 82 AC).
    const cases = [random, trained].flatMap((model) => [tok.encode(prompt), [...tok.encode(prompt), 0xe2]].map((ids) => ({ model, ids })));
    for (const { model, ids } of cases) {
      const s = generateFromTokens(model, tok, ids, { temperature: 0, maxTokens: 24 }).samples[0];
      const seq = [...ids];
      s.tokens.forEach((token, i) => {
        const row = logitsOf(model, [seq]).subarray((seq.length - 1) * 257, seq.length * 257);
        const allowed = Float32Array.from(row, (x, id) => (utf8Prefix(bytesOf([...seq, id])) ? x : -Infinity));
        if (argmax(row) !== argmax(allowed)) excluded++;
        expect(token).toBe(argmax(allowed));
        expect(Math.abs(s.logprobs[i] - logSoftmax(row)[token])).toBeLessThan(1e-4); // the model's own probability
        seq.push(token);
      });
      if (s.finishReason === 'eos') {
        expect(argmax(logitsOf(model, [seq]).subarray((seq.length - 1) * 257))).toBe(tok.eosId);
      } else expect(s.tokens.length).toBe(24);
      expect(s.text).toBe(tok.decode(s.tokens));
    }
    expect(excluded).toBeGreaterThan(0); // the random model's choices were really restricted
  });

  it('samples are well-formed UTF-8 even from a random model over single bytes; a prompt that is not UTF-8, or wellFormed: false, is not restricted', () => {
    const { samples } = generate(random, tok, prompt, { temperature: 2, seed: 3, maxTokens: 48, numSamples: 6 });
    expect(samples.map((s) => s.finishReason)).toContain('eos');
    const high = samples.flatMap((s) => s.tokens).filter((t) => t >= 128 && t < 256).length;
    expect(high).toBeGreaterThan(20); // multi-byte characters were written, not avoided
    for (const s of samples) {
      expect(utf8Prefix(bytesOf(s.tokens))).toBe(true);
      if (s.finishReason === 'eos') expect(() => new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bytesOf(s.tokens)))).not.toThrow(); // no character left unfinished
    }
    // After a lone continuation byte nothing can make the text valid, and wellFormed: false turns the
    // guard off: either way the choice is the plain argmax.
    for (const [ids, wellFormed] of [[[...tok.encode(prompt), 0x80], undefined], [[...tok.encode(prompt), 0xe2], false]] as const) {
      const g = generateFromTokens(random, tok, [...ids], { temperature: 0, maxTokens: 4, wellFormed }).samples[0];
      const seq = [...ids];
      for (const token of g.tokens) {
        expect(token).toBe(argmax(logitsOf(random, [seq]).subarray((seq.length - 1) * 257, seq.length * 257)));
        seq.push(token);
      }
    }
  });

  it('a seed reproduces samples at temperature 1 and another seed differs', () => {
    const a = generate(random, tok, prompt, { temperature: 1, seed: 1, maxTokens: 12 }).samples[0];
    const b = generate(random, tok, prompt, { temperature: 1, seed: 1, maxTokens: 12 }).samples[0];
    const c = generate(random, tok, prompt, { temperature: 1, seed: 2, maxTokens: 12 }).samples[0];
    expect(b.tokens).toEqual(a.tokens);
    expect(c.tokens).not.toEqual(a.tokens);
    const greedy = generate(random, tok, prompt, { temperature: 0, maxTokens: 12 }).samples[0];
    expect(a.tokens).not.toEqual(greedy.tokens); // really sampled
  });

  it('stop strings end generation and are cut off (earliest of several)', () => {
    const full = generate(trained, tok, prompt, { temperature: 0, maxTokens: 20 }).samples[0];
    const T = full.text;
    expect(T).toMatch(/^ It is [\x20-\x7e]*\n[\x20-\x7e\n]*$/); // printable ASCII, so every prefix decodes to a prefix of T
    // Streaming semantics: generation ends at the first length L at which some stop string is in the
    // text; the text is cut at the earliest stop string found in that prefix.
    const expectedCut = (stops: string[]) => {
      for (let L = 1; L <= T.length; L++) {
        const found = stops.map((st) => T.slice(0, L).indexOf(st)).filter((i) => i >= 0);
        if (found.length) return Math.min(...found);
      }
      throw new Error('no stop string in T');
    };
    const cases = [
      ['\n'],
      [T.slice(8, 10)],
      [T.slice(9, 11), T.slice(4, 6)],
      ['\u0000never', '\n'],
      [T.slice(6, 8), T.slice(2, 8)], // both complete at the same token: the earlier one wins
      [T.slice(2, 10), T.slice(6, 8)], // the shorter one completes first
    ];
    expect(expectedCut(cases[4])).toBe(2);
    expect(expectedCut(cases[5])).toBe(6);
    for (const stops of cases) {
      const cut = expectedCut(stops);
      const s = generate(trained, tok, prompt, { temperature: 0, maxTokens: 20, stop: stops }).samples[0];
      expect({ stops, text: s.text }).toEqual({ stops, text: T.slice(0, cut) });
      expect(s.finishReason).toBe('stop');
      expect(s.tokens.length).toBeLessThan(full.tokens.length);
      expect(s.tokens).toEqual(full.tokens.slice(0, s.tokens.length)); // generation ended at the stop
      expect(stops.some((st) => tok.decode(s.tokens).indexOf(st) === cut)).toBe(true);
    }
  });

  it('numSamples gives that many samples; sample 0 is the same with 1 and 3', () => {
    const one = generate(random, tok, prompt, { temperature: 1, seed: 4, maxTokens: 8, numSamples: 1 });
    const three = generate(random, tok, prompt, { temperature: 1, seed: 4, maxTokens: 8, numSamples: 3 });
    expect(one.samples.length).toBe(1);
    expect(three.samples.length).toBe(3);
    expect(three.samples[0].tokens).toEqual(one.samples[0].tokens);
    expect(three.samples[0].text).toBe(one.samples[0].text);
    expect(three.samples[1].tokens).not.toEqual(three.samples[0].tokens);
    expect(three.samples[2].tokens).not.toEqual(three.samples[1].tokens);
    const noCache = generate(random, tok, prompt, { temperature: 1, seed: 4, maxTokens: 8, numSamples: 3, useCache: false });
    expect(noCache.samples.map((s) => s.tokens)).toEqual(three.samples.map((s) => s.tokens));
  });

  it('computeLogprobs equals the sum of per-token logprobs from the forward logits', () => {
    const client = new TrainingClient(trained, tok, 'full');
    for (const [p, completion] of [
      [prompt, ' It is gold 21\n'],
      ['Question: What is 5?\nAnswer:', ' nonsense!'],
    ]) {
      const r = client.computeLogprobs(p, completion);
      const ids = [...tok.encode(p), ...tok.encode(completion)];
      const P = tok.encode(p).length;
      const logits = logitsOf(trained, [ids.slice(0, -1)]);
      const want: number[] = [];
      for (let pos = P - 1; pos < ids.length - 1; pos++) want.push(logSoftmax(logits.subarray(pos * 257, (pos + 1) * 257))[ids[pos + 1]]);
      expect(r.completionTokens).toEqual(tok.encode(completion));
      expect(r.logprobs.length).toBe(want.length);
      expect(maxAbsDiff(r.logprobs, want)).toBeLessThan(1e-4);
      expect(Math.abs(r.total - want.reduce((a, b) => a + b, 0))).toBeLessThan(1e-3);
    }
    client.dispose();
  });
});
