/**
 * GPT-2 model: an independent plain-JS forward pass, the key-value cache, wasm against cpu, and the
 * Hugging Face model folder (save, load, and the errors of broken files).
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '../kernel/backend/tf';
import { initBackend } from '../kernel/backend';
import { expectedTensors, type GPT2Config, makeConfig } from '../kernel/model/config';
import { disposeCache, GPT2Model, type KVCache } from '../kernel/model/gpt2';
import { loadModel, saveModel } from '../kernel/model/io';
import { makeLoraConfig } from '../kernel/lora/config';
import { readSafetensors, writeSafetensors } from '../kernel/model/safetensors';
import { generate } from '../kernel/sample/generate';
import { TrainingClient } from '../kernel/train/client';
import {
  byteTokenizer,
  logitsOf,
  maxAbsDiff,
  modelFromArrays,
  perturbedArrays,
  perturbedModel,
  shapesOf,
  snapshot,
  someIds,
  tinyConfig,
  tmpDir,
} from './engine-helpers';

beforeAll(async () => {
  await initBackend('wasm');
});

// ---- independent reference ---------------------------------------------------------------------

/**
 * GPT-2's forward pass for one sequence, nanoGPT-style loops over Float32Arrays in float64 arithmetic:
 * token + position embeddings; per block x += attn(ln_1(x)), x += mlp(ln_2(x)) with causal softmax
 * attention and tanh-GELU; ln_f; logits = x · wteᵀ (tied head). Weights in Conv1D [in, out] layout.
 */
function referenceLogits(cfg: GPT2Config, W: Map<string, Float32Array>, ids: number[]): Float64Array {
  const T = ids.length;
  const d = cfg.n_embd;
  const H = cfg.n_head;
  const hd = d / H;
  const V = cfg.vocab_size;
  const F = cfg.n_inner ?? 4 * d;
  const eps = cfg.layer_norm_epsilon;
  const w = (n: string) => {
    const t = W.get(n);
    if (!t) throw new Error(`reference: no ${n}`);
    return t;
  };
  const layerNorm = (x: Float64Array[], g: Float32Array, b: Float32Array) =>
    x.map((row) => {
      let mean = 0;
      for (const v of row) mean += v;
      mean /= row.length;
      let v2 = 0;
      for (const v of row) v2 += (v - mean) * (v - mean);
      v2 /= row.length;
      const inv = 1 / Math.sqrt(v2 + eps);
      return row.map((v, c) => (v - mean) * inv * g[c] + b[c]);
    });
  // Conv1D: y[o] = b[o] + sum_i x[i] * Wt[i * out + o]
  const conv1d = (x: Float64Array[], Wt: Float32Array, b: Float32Array, nIn: number, nOut: number) =>
    x.map((row) => {
      const y = new Float64Array(nOut);
      for (let o = 0; o < nOut; o++) y[o] = b[o];
      for (let i = 0; i < nIn; i++) for (let o = 0; o < nOut; o++) y[o] += row[i] * Wt[i * nOut + o];
      return y;
    });
  const gelu = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)));

  const wte = w('transformer.wte.weight');
  const wpe = w('transformer.wpe.weight');
  let x: Float64Array[] = ids.map((id, t) => {
    const row = new Float64Array(d);
    for (let c = 0; c < d; c++) row[c] = wte[id * d + c] + wpe[t * d + c];
    return row;
  });
  for (let l = 0; l < cfg.n_layer; l++) {
    const p = `transformer.h.${l}`;
    const a = layerNorm(x, w(`${p}.ln_1.weight`), w(`${p}.ln_1.bias`));
    const qkv = conv1d(a, w(`${p}.attn.c_attn.weight`), w(`${p}.attn.c_attn.bias`), d, 3 * d);
    const y = x.map(() => new Float64Array(d));
    for (let h = 0; h < H; h++) {
      for (let t = 0; t < T; t++) {
        const scores: number[] = [];
        for (let s = 0; s <= t; s++) {
          let dot = 0;
          for (let c = 0; c < hd; c++) dot += qkv[t][h * hd + c] * qkv[s][d + h * hd + c];
          scores.push(dot / Math.sqrt(hd));
        }
        const m = Math.max(...scores);
        const e = scores.map((sc) => Math.exp(sc - m));
        const z = e.reduce((u, v) => u + v, 0);
        for (let s = 0; s <= t; s++) for (let c = 0; c < hd; c++) y[t][h * hd + c] += (e[s] / z) * qkv[s][2 * d + h * hd + c];
      }
    }
    const att = conv1d(y, w(`${p}.attn.c_proj.weight`), w(`${p}.attn.c_proj.bias`), d, d);
    x = x.map((row, t) => row.map((v, c) => v + att[t][c]));
    const m2 = layerNorm(x, w(`${p}.ln_2.weight`), w(`${p}.ln_2.bias`));
    const hid = conv1d(m2, w(`${p}.mlp.c_fc.weight`), w(`${p}.mlp.c_fc.bias`), d, F).map((row) => row.map(gelu));
    const mlp = conv1d(hid, w(`${p}.mlp.c_proj.weight`), w(`${p}.mlp.c_proj.bias`), F, d);
    x = x.map((row, t) => row.map((v, c) => v + mlp[t][c]));
  }
  const xf = layerNorm(x, w('transformer.ln_f.weight'), w('transformer.ln_f.bias'));
  const logits = new Float64Array(T * V);
  for (let t = 0; t < T; t++) {
    for (let v = 0; v < V; v++) {
      let dot = 0;
      for (let c = 0; c < d; c++) dot += xf[t][c] * wte[v * d + c];
      logits[t * V + v] = dot;
    }
  }
  return logits;
}

describe('GPT-2 forward against a plain-JS reference', () => {
  it.each([
    ['1 layer', 1],
    ['2 layers', 2],
  ])('%s: same logits within 1e-4', (_label, nLayer) => {
    const cfg = makeConfig({ vocab_size: 20, n_positions: 8, n_embd: 16, n_layer: nLayer, n_head: 2 });
    const { arrays, shapes } = perturbedArrays(cfg, 11 + nLayer);
    const model = modelFromArrays(cfg, arrays, shapes);
    const rows = [
      [3, 17, 0, 5, 5, 19],
      [12, 1, 9, 9, 4, 2],
    ];
    const got = logitsOf(model, rows);
    const V = cfg.vocab_size;
    rows.forEach((ids, b) => {
      const ref = referenceLogits(cfg, arrays, ids);
      const row = got.subarray(b * ids.length * V, (b + 1) * ids.length * V);
      expect(maxAbsDiff(row, ref)).toBeLessThan(1e-4);
    });
    // The weights are large enough that the logits are far from trivial (the comparison has teeth).
    expect(Math.max(...Array.from(got).map(Math.abs))).toBeGreaterThan(1);
    model.dispose();
  });

  it('the reference notices a change of architecture (position embedding ignored -> different logits)', () => {
    const cfg = makeConfig({ vocab_size: 20, n_positions: 8, n_embd: 16, n_layer: 1, n_head: 2 });
    const { arrays, shapes } = perturbedArrays(cfg, 5);
    const model = modelFromArrays(cfg, arrays, shapes);
    const ids = [1, 2, 3, 4, 5, 6];
    const noPos = new Map(arrays);
    noPos.set('transformer.wpe.weight', new Float32Array(arrays.get('transformer.wpe.weight')!.length));
    expect(maxAbsDiff(logitsOf(model, [ids]), referenceLogits(cfg, noPos, ids))).toBeGreaterThan(1e-2);
    model.dispose();
  });
});

// ---- key-value cache -----------------------------------------------------------------------------

describe('key-value cache', () => {
  const cfg = tinyConfig();
  let model: GPT2Model;
  beforeAll(() => {
    model = perturbedModel(cfg, 21, 0.15);
  });
  afterAll(() => model.dispose());

  it('incremental forward with a cache gives the full-sequence logits at every position (batch of 2)', () => {
    const T = 12;
    const rows = [someIds(T, 257, 1), someIds(T, 257, 2)];
    const full = logitsOf(model, rows); // [2, T, V]
    const V = cfg.vocab_size;
    const before = tf.memory().numTensors;
    let cache: KVCache = GPT2Model.emptyCache();
    // A prompt chunk, a multi-token chunk on top of a cache (its own causal mask), then one token at a time.
    const chunks = [[0, 4], [4, 7], ...Array.from({ length: T - 7 }, (_, i) => [7 + i, 8 + i])];
    for (const [s, e] of chunks) {
      const past = cache;
      let next!: KVCache;
      const out = tf.tidy(() => {
        const o = model.forward(tf.tensor2d(rows.flatMap((r) => r.slice(s, e)), [2, e - s], 'int32'), { cache: past });
        next = o.cache!;
        for (const l of next.layers) {
          tf.keep(l.k);
          tf.keep(l.v);
        }
        return { logits: o.logits };
      });
      const logits = out.logits.dataSync() as Float32Array;
      for (let b = 0; b < 2; b++) {
        for (let t = s; t < e; t++) {
          const got = logits.subarray((b * (e - s) + (t - s)) * V, (b * (e - s) + (t - s) + 1) * V);
          const want = full.subarray((b * T + t) * V, (b * T + t + 1) * V);
          expect(maxAbsDiff(got, want)).toBeLessThan(1e-4);
        }
      }
      out.logits.dispose();
      disposeCache(past);
      cache = next;
      expect(cache.length).toBe(e);
      expect(cache.layers[0].k.shape).toEqual([2, cfg.n_head, e, cfg.n_embd / cfg.n_head]);
    }
    disposeCache(cache);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a cached forward past the context is refused', () => {
    tf.tidy(() => {
      const out = model.forward(tf.tensor2d(someIds(30, 257), [1, 30], 'int32'), { cache: GPT2Model.emptyCache() });
      expect(out.cache!.length).toBe(30);
      expect(() => model.forward(tf.tensor2d([1, 2, 3], [1, 3], 'int32'), { cache: out.cache })).toThrow(/33 tokens exceeds.*n_positions=32/);
      model.forward(tf.tensor2d([1, 2], [1, 2], 'int32'), { cache: out.cache }); // exactly full: fine
    });
  });

  it('greedy generation gives the same tokens (and logprobs) with and without the cache', () => {
    const tok = byteTokenizer();
    for (const [prompt, maxTokens] of [
      ['Question: hi\nAnswer:', 12],
      ['01234567890123456789', 40], // runs into the 32-token context
    ] as const) {
      const a = generate(model, tok, prompt, { temperature: 0, maxTokens, numSamples: 2, useCache: true });
      const b = generate(model, tok, prompt, { temperature: 0, maxTokens, numSamples: 2, useCache: false });
      for (let i = 0; i < 2; i++) {
        expect(a.samples[i].tokens).toEqual(b.samples[i].tokens);
        expect(a.samples[i].finishReason).toBe(b.samples[i].finishReason);
        expect(maxAbsDiff(a.samples[i].logprobs, b.samples[i].logprobs)).toBeLessThan(1e-4);
      }
      expect(a.samples[0].tokens.length).toBeGreaterThan(5);
      if (maxTokens === 40) {
        expect(a.samples[0].finishReason).toBe('context');
        // The last token is predicted from a full context: prompt + generated = n_positions + 1.
        expect(a.promptTokens.length + a.samples[0].tokens.length).toBe(cfg.n_positions + 1);
      }
    }
    // Sampling at temperature 1 with a seed is the same with and without the cache too.
    const c = generate(model, tok, 'abc', { temperature: 1, seed: 3, maxTokens: 10, useCache: true });
    const d = generate(model, tok, 'abc', { temperature: 1, seed: 3, maxTokens: 10, useCache: false });
    expect(c.samples[0].tokens).toEqual(d.samples[0].tokens);
  });
});

// ---- backends ------------------------------------------------------------------------------------

describe('wasm against cpu', () => {
  afterAll(async () => {
    await initBackend('wasm');
  });

  it('forward logits, loss and gradients agree within 1e-4', async () => {
    const cfg = tinyConfig();
    const rows = [someIds(16, 257, 3), someIds(16, 257, 4)];
    const batch = {
      inputIds: Int32Array.from(rows.flat()),
      targets: Int32Array.from(rows.flat().map((v) => (v * 7 + 1) % 257)),
      weights: Float32Array.from(rows.flat().map((_, i) => (i % 16 >= 4 ? 1 : 0))),
      batchSize: 2,
      seqLen: 16,
    };
    const run = () => {
      const client = new TrainingClient(model, byteTokenizer(), 'full');
      const fb = client.forwardBackward(batch);
      const grads = client.accumulatedGradients();
      client.dispose();
      // LoRA too (its products have other shapes), with A and B set from plain arrays.
      const a = model.addAdapter('a', makeLoraConfig({ r: 4, alpha: 8 }, cfg), 1);
      for (const l of a.layers.values()) {
        l.A.assign(tf.tensor2d(Float32Array.from({ length: l.A.size }, (_, i) => Math.sin(i + 1) * 0.2), l.A.shape));
        l.B.assign(tf.tensor2d(Float32Array.from({ length: l.B.size }, (_, i) => Math.cos(i + 1) * 0.2), l.B.shape));
      }
      const lora = new TrainingClient(model, byteTokenizer(), 'lora');
      const fbLora = lora.forwardBackward(batch);
      for (const [n, g] of lora.accumulatedGradients()) grads.set(n, g);
      lora.dispose();
      return { logits: logitsOf(model, rows), loss: fb.loss, loraLoss: fbLora.loss, grads };
    };

    const warn = jest.spyOn(console, 'warn').mockImplementation(() => undefined); // the cpu backend's "install tfjs-node" banner
    await initBackend('cpu');
    expect(tf.getBackend()).toBe('cpu');
    let model = GPT2Model.random(cfg, 4);
    const arrays = snapshot(model);
    const shapes = shapesOf(model);
    const onCpu = run();
    model.dispose();
    warn.mockRestore();

    await initBackend('wasm');
    expect(tf.getBackend()).toBe('wasm');
    model = modelFromArrays(cfg, arrays, shapes);
    const onWasm = run();
    model.dispose();

    expect(maxAbsDiff(onWasm.logits, onCpu.logits)).toBeLessThan(1e-4);
    expect(Math.abs(onWasm.loss - onCpu.loss)).toBeLessThan(1e-4);
    expect(Math.abs(onWasm.loraLoss - onCpu.loraLoss)).toBeLessThan(1e-4);
    expect(onCpu.grads.has('transformer.h.1.mlp.c_proj.lora_A')).toBe(true);
    expect([...onWasm.grads.keys()].sort()).toEqual([...onCpu.grads.keys()].sort());
    for (const [name, g] of onCpu.grads) expect(maxAbsDiff(onWasm.grads.get(name)!.data, g.data)).toBeLessThan(1e-4);
  });
});

// ---- model folders -------------------------------------------------------------------------------

describe('model folder (Hugging Face layout)', () => {
  const cfg = tinyConfig();
  let dir: string;
  beforeEach(() => {
    dir = tmpDir('model');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('save then load gives identical logits and GPT-2 names, shapes and keys', () => {
    const tok = byteTokenizer();
    const model = perturbedModel(cfg, 8, 0.1);
    const ids = [someIds(10, 257, 5)];
    const before = logitsOf(model, ids);
    saveModel(model, tok, dir);

    expect(fs.readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json']);
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    expect(config).toMatchObject({ model_type: 'gpt2', n_embd: 32, n_layer: 2, n_head: 4, n_positions: 32, vocab_size: 257 });
    expect(config.layer_norm_epsilon).toBeGreaterThan(0);

    const { tensors } = readSafetensors(path.join(dir, 'model.safetensors'));
    const d = cfg.n_embd;
    expect(tensors.get('transformer.h.0.attn.c_attn.weight')!.shape).toEqual([d, 3 * d]);
    expect(tensors.get('transformer.h.1.mlp.c_fc.weight')!.shape).toEqual([d, 4 * d]);
    expect(tensors.get('transformer.h.1.mlp.c_proj.weight')!.shape).toEqual([4 * d, d]);
    expect(tensors.get('transformer.wte.weight')!.shape).toEqual([257, d]);
    expect([...tensors.keys()].sort()).toEqual([...expectedTensors(cfg).keys()].sort());
    // The stored values are the model's own, element for element (no transposition on the way).
    const w = model.param('transformer.h.0.attn.c_attn.weight').dataSync();
    expect(Array.from(tensors.get('transformer.h.0.attn.c_attn.weight')!.data)).toEqual(Array.from(w));

    const loaded = loadModel(dir);
    expect(loaded.model.config).toMatchObject({ n_embd: 32, n_layer: 2, n_head: 4, n_positions: 32, vocab_size: 257 });
    expect(Array.from(logitsOf(loaded.model, ids))).toEqual(Array.from(before));
    expect(loaded.tokenizer.encode('Question: héllo\n')).toEqual(tok.encode('Question: héllo\n'));
    expect(loaded.tokenizer.eosId).toBe(tok.eosId);
    loaded.model.dispose();
    model.dispose();
  });

  /** A saved folder whose model.safetensors is replaced by `edit` of its tensors. */
  function brokenFolder(edit: (t: Map<string, { shape: number[]; data: Float32Array }>) => void) {
    const model = GPT2Model.random(cfg, 1);
    saveModel(model, byteTokenizer(), dir);
    model.dispose();
    const t = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [name, e] of readSafetensors(path.join(dir, 'model.safetensors')).tensors) t.set(name, { shape: e.shape, data: e.data as Float32Array });
    edit(t);
    writeSafetensors(path.join(dir, 'model.safetensors'), t);
  }

  it('a missing tensor is an error naming it and its expected shape', () => {
    brokenFolder((t) => t.delete('transformer.h.1.mlp.c_fc.bias'));
    expect(() => loadModel(dir)).toThrow(/missing tensor "transformer\.h\.1\.mlp\.c_fc\.bias".*\[128\]/);
  });

  it('a misshapen tensor is an error naming it, its shape and the expected shape', () => {
    brokenFolder((t) => {
      const w = t.get('transformer.h.0.attn.c_attn.weight')!;
      t.set('transformer.h.0.attn.c_attn.weight', { shape: [96, 32], data: w.data }); // [out, in]: PyTorch Linear layout
    });
    let msg = '';
    try {
      loadModel(dir);
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toMatch(/"transformer\.h\.0\.attn\.c_attn\.weight"/);
    expect(msg).toMatch(/\[96, 32\]/);
    expect(msg).toMatch(/expected \[32, 96\]/);
  });

  it('an unexpected tensor is refused, lm_head.weight and attention buffers are ignored', () => {
    brokenFolder((t) => {
      t.set('lm_head.weight', { shape: [257, 32], data: new Float32Array(257 * 32) });
      t.set('transformer.h.0.attn.bias', { shape: [1], data: new Float32Array(1) });
    });
    const { model } = loadModel(dir);
    model.dispose();
    brokenFolder((t) => t.set('transformer.h.0.mlp.extra', { shape: [1], data: new Float32Array(1) }));
    expect(() => loadModel(dir)).toThrow(/unexpected tensors.*transformer\.h\.0\.mlp\.extra/);
  });
});
