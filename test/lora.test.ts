/**
 * LoRA adapters: identity at start, frozen base, merge/unmerge, PEFT folders, several adapters on one
 * base, configuration errors, per-group ranks and per-group learning rates.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '../kernel/backend/tf';
import { initBackend } from '../kernel/backend';
import { GPT2Model } from '../kernel/model/gpt2';
import { ConfigError } from '../kernel/model/config';
import { LoraAdapter } from '../kernel/lora/adapter';
import { type LoraConfigInput, makeLoraConfig } from '../kernel/lora/config';
import { rankPatternByGroup } from '../kernel/lora/groups';
import { loadAdapter, saveAdapter } from '../kernel/lora/peft';
import { readSafetensors } from '../kernel/model/safetensors';
import { TrainingClient } from '../kernel/train/client';
import { finetune } from '../kernel/train/finetune';
import {
  bitIdentical,
  byteTokenizer,
  logitsOf,
  matmul,
  maxAbsDiff,
  modelFromArrays,
  qaBatch,
  qaPairs,
  shapesOf,
  snapshot,
  someIds,
  tinyConfig,
  tmpDir,
  transpose,
} from './engine-helpers';

beforeAll(async () => {
  await initBackend('wasm');
});

const cfg = tinyConfig();
const tok = byteTokenizer();
const IDS = [someIds(12, 257, 1), someIds(12, 257, 2)];

/** Gives every B (and A) of the adapter random values so that the adapter changes the outputs. */
function randomize(adapter: LoraAdapter, seed: number, std = 0.2): void {
  let k = 0;
  for (const l of adapter.layers.values()) {
    l.B.assign(tf.tidy(() => tf.randomNormal(l.B.shape, 0, std, 'float32', seed * 1000 + k++)));
  }
}

/** Base weights with W + (alpha/r)·A·B folded in, computed in JS (float64) from the adapter's arrays. */
function foldedInJS(base: Map<string, Float32Array>, adapter: LoraAdapter): Map<string, Float32Array> {
  const out = new Map(base);
  for (const l of adapter.layers.values()) {
    const [n, r] = l.A.shape;
    const m = l.B.shape[1];
    const ab = matmul(l.A.dataSync(), l.B.dataSync(), n, r, m);
    const w = base.get(`${l.path}.weight`)!;
    out.set(`${l.path}.weight`, Float32Array.from(w, (v, i) => v + (adapter.config.alpha / r) * ab[i]));
  }
  return out;
}

describe('adapter basics', () => {
  let model: GPT2Model;
  beforeEach(() => {
    model = GPT2Model.random(cfg, 3);
  });
  afterEach(() => model.dispose());

  it('a fresh adapter (B = 0) leaves the logits unchanged', () => {
    const base = logitsOf(model, IDS);
    const a = model.addAdapter('a', makeLoraConfig({ r: 4, alpha: 8 }, cfg), 1);
    for (const l of a.layers.values()) {
      expect(Array.from(l.B.dataSync()).every((v) => v === 0)).toBe(true);
      expect(Array.from(l.A.dataSync()).some((v) => v !== 0)).toBe(true); // A is random, B zero
    }
    expect(maxAbsDiff(logitsOf(model, IDS), base)).toBeLessThanOrEqual(1e-6);
  });

  it('LoRA training leaves every base weight bit-identical and moves B (client and finetune)', async () => {
    const before = snapshot(model);
    const a = model.addAdapter('a', makeLoraConfig({ r: 4, alpha: 8, dropout: 0.1 }, cfg), 1);
    const client = new TrainingClient(model, tok, 'lora');
    const batch = qaBatch(tok, qaPairs(4));
    for (let i = 0; i < 3; i++) {
      client.forwardBackward(batch);
      client.optimStep({ learningRate: 1e-2, weightDecay: 0.1 });
    }
    for (const [name, w] of snapshot(model)) expect({ name, same: bitIdentical(w, before.get(name)!) }).toEqual({ name, same: true });
    for (const l of a.layers.values()) expect(Array.from(l.B.dataSync()).some((v) => v !== 0)).toBe(true);
    client.dispose();

    const r = await finetune({ model, tokenizer: tok, train: qaPairs(4), adapterName: 'ft', epochs: 2, batchSize: 2, learningRate: 1e-2, weightDecay: 0.1 });
    expect(r.steps).toBe(4);
    for (const [name, w] of snapshot(model)) expect({ name, same: bitIdentical(w, before.get(name)!) }).toEqual({ name, same: true });
    const ft = model.adapters.get('ft')!;
    expect([...ft.layers.values()].every((l) => Array.from(l.B.dataSync()).some((v) => v !== 0))).toBe(true);
    r.client.dispose();
  });

  it('merge folds scale·A·B into the weights (same logits), unmerge restores the base', () => {
    const before = snapshot(model);
    const a = model.addAdapter('a', makeLoraConfig({ r: 4, alpha: 8, targetModules: ['qkv', 'mlp_out'] }, cfg), 1);
    randomize(a, 5);
    const unmerged = logitsOf(model, IDS);
    const plain = GPT2Model.random(cfg, 3);
    expect(maxAbsDiff(unmerged, logitsOf(plain, IDS))).toBeGreaterThan(1e-3); // the adapter matters
    plain.dispose();
    model.mergeAdapter('a');
    expect(a.merged).toBe(true);
    // Merged weights equal W + (alpha/r)·A·B computed independently; untargeted weights are untouched.
    const expected = foldedInJS(before, a);
    for (const [name, w] of snapshot(model)) expect({ name, diff: maxAbsDiff(w, expected.get(name)!) < 1e-6 }).toEqual({ name, diff: true });
    expect(maxAbsDiff(model.param('transformer.h.0.attn.c_attn.weight').dataSync(), before.get('transformer.h.0.attn.c_attn.weight')!)).toBeGreaterThan(1e-3);
    expect(bitIdentical(snapshot(model).get('transformer.h.0.attn.c_proj.weight')!, before.get('transformer.h.0.attn.c_proj.weight')!)).toBe(true);
    const merged = logitsOf(model, IDS);
    expect(maxAbsDiff(merged, unmerged)).toBeLessThan(1e-5);
    expect(() => model.trainableVariables('lora')).toThrow(/merged/);
    expect(() => model.setActiveAdapter(null)).toThrow(/merged.*unmerge/);
    model.unmergeAdapter('a');
    for (const [name, w] of snapshot(model)) expect({ name, diff: maxAbsDiff(w, before.get(name)!) <= 1e-6 }).toEqual({ name, diff: true });
    expect(maxAbsDiff(logitsOf(model, IDS), unmerged)).toBeLessThan(1e-5);
    expect(() => model.unmergeAdapter('a')).toThrow(/not merged/);
  });

  it('two adapters on one base: each gives its own outputs, null gives the base', () => {
    const base = snapshot(model);
    const baseLogits = logitsOf(model, IDS);
    const a = model.addAdapter('a', makeLoraConfig({ r: 4, alpha: 8 }, cfg), 1);
    randomize(a, 1);
    const b = model.addAdapter('b', makeLoraConfig({ r: 2, alpha: 2, targetModules: ['mlp_in'] }, cfg), 2);
    randomize(b, 2, 0.5);
    // Expected outputs: plain models whose weights have each adapter folded in by JS.
    const refA = modelFromArrays(cfg, foldedInJS(base, a), shapesOf(model));
    const refB = modelFromArrays(cfg, foldedInJS(base, b), shapesOf(model));
    const wantA = logitsOf(refA, IDS);
    const wantB = logitsOf(refB, IDS);
    refA.dispose();
    refB.dispose();
    expect(maxAbsDiff(wantA, wantB)).toBeGreaterThan(1e-3);

    expect(model.activeAdapter?.name).toBe('b'); // the last added is active
    expect(maxAbsDiff(logitsOf(model, IDS), wantB)).toBeLessThan(1e-5);
    model.setActiveAdapter('a');
    expect(maxAbsDiff(logitsOf(model, IDS), wantA)).toBeLessThan(1e-5);
    model.setActiveAdapter(null);
    expect(Array.from(logitsOf(model, IDS))).toEqual(Array.from(baseLogits));
    model.setActiveAdapter('b');
    expect(maxAbsDiff(logitsOf(model, IDS), wantB)).toBeLessThan(1e-5);
    expect(() => model.setActiveAdapter('c')).toThrow(/no adapter "c".*a, b/);
    model.removeAdapter('b');
    expect(model.activeAdapter).toBeNull();
    expect(Array.from(logitsOf(model, IDS))).toEqual(Array.from(baseLogits));
  });
});

describe('PEFT adapter folders', () => {
  let dir: string;
  beforeEach(() => {
    dir = tmpDir('peft');
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('saves PEFT config and tensors ([r, in] / [out, r], transposed) and loads back the same outputs', () => {
    const model = GPT2Model.random(cfg, 4);
    const a = model.addAdapter('mine', makeLoraConfig({ r: 4, alpha: 12, dropout: 0.05, targetModules: ['qkv', 'attn_out', 'mlp_in', 'mlp_out'] }, cfg), 9);
    randomize(a, 9);
    const want = logitsOf(model, IDS);
    saveAdapter(a, dir, 'my/base-model');

    expect(fs.readdirSync(dir).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const conf = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8'));
    expect(conf).toMatchObject({
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      r: 4,
      lora_alpha: 12,
      lora_dropout: 0.05,
      fan_in_fan_out: true,
      base_model_name_or_path: 'my/base-model',
      bias: 'none',
      modules_to_save: null,
      use_rslora: false,
      use_dora: false,
    });
    expect([...conf.target_modules].sort()).toEqual(['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj']);

    const { tensors } = readSafetensors(path.join(dir, 'adapter_model.safetensors'));
    const d = cfg.n_embd;
    expect(tensors.size).toBe(2 * 4 * cfg.n_layer);
    for (let i = 0; i < cfg.n_layer; i++) {
      const key = (m: string, f: string) => `base_model.model.transformer.h.${i}.${m}.lora_${f}.weight`;
      expect(tensors.get(key('attn.c_attn', 'A'))!.shape).toEqual([4, d]);
      expect(tensors.get(key('attn.c_attn', 'B'))!.shape).toEqual([3 * d, 4]);
      expect(tensors.get(key('mlp.c_proj', 'A'))!.shape).toEqual([4, 4 * d]);
      expect(tensors.get(key('mlp.c_proj', 'B'))!.shape).toEqual([d, 4]);
    }
    // Stored A is the transpose of the in-memory A [in, r]; stored B the transpose of B [r, out].
    for (const l of a.layers.values()) {
      const [n, r] = l.A.shape;
      const m = l.B.shape[1];
      const sa = tensors.get(`base_model.model.${l.path}.lora_A.weight`)!.data;
      const sb = tensors.get(`base_model.model.${l.path}.lora_B.weight`)!.data;
      expect(Array.from(sa)).toEqual(Array.from(transpose(l.A.dataSync(), n, r)));
      expect(Array.from(sb)).toEqual(Array.from(transpose(l.B.dataSync(), r, m)));
    }

    const fresh = GPT2Model.random(cfg, 4);
    const loaded = loadAdapter(fresh, dir, 'loaded');
    expect(fresh.activeAdapter?.name).toBe('loaded');
    expect(loaded.config).toMatchObject({ r: 4, alpha: 12, dropout: 0.05 });
    expect(maxAbsDiff(logitsOf(fresh, IDS), want)).toBeLessThanOrEqual(1e-6);
    fresh.dispose();
    model.dispose();
  });

  it('a rank_pattern adapter round-trips, and a misshapen file is refused with names and shapes', () => {
    const model = GPT2Model.random(cfg, 4);
    const rankPattern = rankPatternByGroup(cfg, (depth, module) => (depth === 0 ? 2 : 3) + (module === 'mlp' ? 2 : 0));
    const a = model.addAdapter('rp', makeLoraConfig({ r: 8, alpha: 8, rankPattern }, cfg), 2);
    randomize(a, 3);
    const want = logitsOf(model, IDS);
    saveAdapter(a, dir, 'base');
    const conf = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8'));
    expect(conf.rank_pattern).toEqual(rankPattern);
    const fresh = GPT2Model.random(cfg, 4);
    loadAdapter(fresh, dir);
    expect(maxAbsDiff(logitsOf(fresh, IDS), want)).toBeLessThanOrEqual(1e-6);
    fresh.dispose();

    // The same folder claiming rank 8 everywhere no longer matches its tensors.
    fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({ ...conf, rank_pattern: {} }));
    const other = GPT2Model.random(cfg, 4);
    expect(() => loadAdapter(other, dir)).toThrow(/"base_model\.model\.transformer\.h\.0\.attn\.c_attn\.lora_A\.weight" has shape \[2, 32\], expected \[8, 32\]/);
    expect(other.adapters.size).toBe(0);
    other.dispose();
    model.dispose();
  });

  /** Saves an adapter on qkv, attn_out and mlp_out (r 4, alpha 8, scale 2) and returns its logits. */
  function savedAdapter(): { want: Float32Array; conf: Record<string, unknown> } {
    const model = GPT2Model.random(cfg, 4);
    const a = model.addAdapter('a', makeLoraConfig({ r: 4, alpha: 8, targetModules: ['qkv', 'attn_out', 'mlp_out'] }, cfg), 5);
    randomize(a, 5);
    const want = logitsOf(model, IDS);
    saveAdapter(a, dir, 'base');
    model.dispose();
    return { want, conf: JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8')) };
  }
  const rewrite = (conf: unknown) => fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify(conf));

  it("PEFT's bare target names select every module ending in them; use_rslora scales by alpha/sqrt(r)", () => {
    const { want, conf } = savedAdapter();
    // As PEFT writes GPT-2 configs: "c_proj" is attn.c_proj and mlp.c_proj. rsLoRA with alpha 4 at r 4 is scale 2, as saved.
    rewrite({ ...conf, target_modules: ['c_attn', 'c_proj'], lora_alpha: 4, use_rslora: true });
    const fresh = GPT2Model.random(cfg, 4);
    const loaded = loadAdapter(fresh, dir, 'rs');
    expect(loaded.config).toMatchObject({ r: 4, alpha: 4, useRslora: true, targetModules: ['attn.c_attn', 'attn.c_proj', 'mlp.c_proj'] });
    expect([...loaded.layers.values()].map((l) => l.scale)).toEqual(Array(3 * cfg.n_layer).fill(2));
    expect(maxAbsDiff(logitsOf(fresh, IDS), want)).toBeLessThanOrEqual(1e-6);

    // Saved again, the folder keeps rsLoRA and its alpha.
    const again = tmpDir('peft-again');
    saveAdapter(loaded, again, 'base');
    expect(JSON.parse(fs.readFileSync(path.join(again, 'adapter_config.json'), 'utf8'))).toMatchObject({ r: 4, lora_alpha: 4, use_rslora: true });
    fs.rmSync(again, { recursive: true, force: true });
    fresh.dispose();

    // alpha 8 under rsLoRA is scale 8/sqrt(4) = 4, not 8/4 = 2: the outputs change.
    rewrite({ ...conf, use_rslora: true });
    const scaled = GPT2Model.random(cfg, 4);
    const four = loadAdapter(scaled, dir);
    expect([...four.layers.values()].map((l) => l.scale)).toEqual(Array(3 * cfg.n_layer).fill(4));
    expect(maxAbsDiff(logitsOf(scaled, IDS), want)).toBeGreaterThan(1e-3);
    scaled.dispose();
  });

  it("a config without r or lora_alpha gets PEFT's defaults (8 and 8), not alpha = 2r", () => {
    const { conf } = savedAdapter();
    const { lora_alpha: _alpha, ...noAlpha } = conf;
    rewrite(noAlpha);
    const model = GPT2Model.random(cfg, 4);
    expect(loadAdapter(model, dir).config).toMatchObject({ r: 4, alpha: 8 });
    model.dispose();
    const { r: _r, lora_alpha: _a, ...neither } = conf;
    rewrite({ ...neither, rank_pattern: {} });
    const other = GPT2Model.random(cfg, 4);
    // r 8 no longer matches the rank-4 tensors, so the error shows the default was applied.
    expect(() => loadAdapter(other, dir)).toThrow(/"base_model\.model\.transformer\.h\.0\.attn\.c_attn\.lora_A\.weight" has shape \[4, 32\], expected \[8, 32\]/);
    other.dispose();
  });

  const VALID = 'qkv, attn_out, mlp_in, mlp_out, attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj, c_attn, c_proj, c_fc';
  const refused: Array<[string, (conf: Record<string, unknown>) => unknown, string]> = [
    ['DoRA', (c) => ({ ...c, use_dora: true }), 'use_dora must be false (DoRA adapters are not supported, only plain LoRA), got true'],
    ['bias "all"', (c) => ({ ...c, bias: 'all' }), 'bias must be "none" (trained biases are not supported, only the lora_A and lora_B factors), got "all"'],
    ['bias "lora_only"', (c) => ({ ...c, bias: 'lora_only' }), 'bias must be "none" (trained biases are not supported, only the lora_A and lora_B factors), got "lora_only"'],
    [
      'modules_to_save',
      (c) => ({ ...c, modules_to_save: ['lm_head'] }),
      'modules_to_save must be null or empty (fully trained modules are not supported, only the lora_A and lora_B factors), got ["lm_head"]',
    ],
    ['use_rslora not a boolean', (c) => ({ ...c, use_rslora: 'yes' }), 'use_rslora must be true or false, got "yes"'],
    [
      'target_modules as a regex string',
      (c) => ({ ...c, target_modules: '.*c_attn' }),
      `target_modules must be a list of module names (PEFT's regex form, a single string, is not supported), got ".*c_attn"`,
    ],
    ['an unknown target module', (c) => ({ ...c, target_modules: ['c_attn', 'c_projj'] }), `target_modules: unknown target module "c_projj"; valid: ${VALID}`],
    [
      'a target naming one layer',
      (c) => ({ ...c, target_modules: ['h.0.attn.c_attn'] }),
      `target_modules: unknown target module "h.0.attn.c_attn" (targets apply to every layer; a path naming a layer cannot be targeted, use "attn.c_attn"); valid: ${VALID}`,
    ],
    ['lora_alpha 0', (c) => ({ ...c, lora_alpha: 0 }), 'lora_alpha must be a finite number > 0, got 0'],
    ['not an object', () => [], 'must hold a JSON object, got []'],
  ];
  it.each(refused)('%s is refused, naming the file and the field', (_label, patch, message) => {
    const { conf } = savedAdapter();
    rewrite(patch(conf));
    const model = GPT2Model.random(cfg, 4);
    expect(() => loadAdapter(model, dir)).toThrow(new Error(`${path.join(dir, 'adapter_config.json')}: ${message}`));
    expect(model.adapters.size).toBe(0);
    model.dispose();
  });
});

describe('configuration', () => {
  const bad: Array<[string, LoraConfigInput, RegExp]> = [
    ['r = 0', { r: 0 }, /lora\.r must be an integer in \[1, 32\].*got 0/],
    ['r < 0', { r: -2 }, /lora\.r must be an integer in \[1, 32\].*got -2/],
    ['r not an integer', { r: 2.5 }, /lora\.r must be an integer in \[1, 32\].*got 2\.5/],
    ['r above the smaller dimension', { r: 33, targetModules: ['qkv'] }, /lora\.r must be an integer in \[1, 32\] for attn\.c_attn.*got 33/],
    ['r NaN', { r: NaN }, /lora\.r must be .*got NaN/],
    ['unknown target module', { targetModules: ['qkv', 'c_projj'] }, /lora\.targetModules: unknown target module "c_projj"; valid: .*attn\.c_attn/],
    ['a name on every object', { targetModules: ['constructor'] }, /lora\.targetModules: unknown target module "constructor"; valid: /],
    ['useRslora not a boolean', { useRslora: 1 as unknown as boolean }, /^lora\.useRslora must be true or false, got 1$/],
    ['no target module', { targetModules: [] }, /lora\.targetModules must name at least one/],
    ['alpha NaN', { r: 4, alpha: NaN }, /lora\.alpha must be a finite number > 0, got NaN/],
    ['alpha 0', { r: 4, alpha: 0 }, /lora\.alpha must be a finite number > 0, got 0/],
    ['alpha Infinity', { r: 4, alpha: Infinity }, /lora\.alpha must be a finite number > 0, got Infinity/],
    ['dropout NaN', { dropout: NaN }, /lora\.dropout must be in \[0, 1\), got NaN/],
    ['dropout 1', { dropout: 1 }, /lora\.dropout must be in \[0, 1\), got 1/],
    ['dropout < 0', { dropout: -0.1 }, /lora\.dropout must be in \[0, 1\), got -0\.1/],
    ['rank pattern out of range', { r: 4, rankPattern: { 'h.1.mlp.c_fc': 40 } }, /lora\.rankPattern \(transformer\.h\.1\.mlp\.c_fc\) must be an integer in \[1, 32\].*got 40/],
  ];
  it.each(bad)('%s is an error naming the field and range', (_label, input, message) => {
    let err: unknown;
    try {
      makeLoraConfig(input, cfg);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(message);
  });

  it('valid inputs: aliases, PEFT names, bare names, defaults', () => {
    const c = makeLoraConfig({ r: 32, targetModules: ['qkv', 'attn.c_proj', 'c_fc'] }, cfg);
    expect(c.targetModules).toEqual(['attn.c_attn', 'attn.c_proj', 'mlp.c_fc']);
    expect(c.alpha).toBe(64);
    // A bare name selects every module ending in it, as in PEFT; overlaps count once.
    expect(makeLoraConfig({ targetModules: ['c_proj'] }, cfg).targetModules).toEqual(['attn.c_proj', 'mlp.c_proj']);
    expect(makeLoraConfig({ targetModules: ['c_attn', 'c_proj', 'mlp_out', 'c_fc'] }, cfg).targetModules).toEqual(['attn.c_attn', 'attn.c_proj', 'mlp.c_proj', 'mlp.c_fc']);
    // The MLP's smaller dimension bounds its rank separately (n_embd 32 < 4·32).
    expect(() => makeLoraConfig({ r: 33, targetModules: ['mlp_in'] }, cfg)).toThrow(/\[1, 32\] for mlp\.c_fc/);
    const wide = tinyConfig({ n_embd: 48, n_head: 4 });
    expect(makeLoraConfig({ r: 48 }, wide).r).toBe(48);
  });

  it('alpha defaults to 2r (scale 2) whether or not r is given', () => {
    const pick = (input: LoraConfigInput) => {
      const c = makeLoraConfig(input, cfg);
      return [c.r, c.alpha];
    };
    expect([pick({}), pick({ r: 8 }), pick({ r: 4 }), pick({ r: 4, alpha: 3 })]).toEqual([[8, 16], [8, 16], [4, 8], [4, 3]]);
    const a = new LoraAdapter('a', makeLoraConfig({ r: 4 }, cfg), cfg, 0);
    expect(new Set([...a.layers.values()].map((l) => l.scale))).toEqual(new Set([2]));
    a.dispose();
  });

  it('useRslora scales each module by its alpha/sqrt(r), rank and alpha patterns included', () => {
    const c = makeLoraConfig({ r: 4, alpha: 8, useRslora: true, rankPattern: { 'h.1.mlp.c_fc': 16 }, alphaPattern: { 'h.0.attn.c_proj': 6 } }, cfg);
    expect(c.useRslora).toBe(true);
    const a = new LoraAdapter('a', c, cfg, 0);
    const scale = (p: string) => a.layers.get(`transformer.h.${p}`)!.scale;
    expect(scale('1.mlp.c_fc')).toBeCloseTo(8 / 4, 12);
    expect(scale('0.attn.c_proj')).toBeCloseTo(6 / 2, 12);
    expect(scale('0.attn.c_attn')).toBeCloseTo(8 / 2, 12);
    a.dispose();
    expect(makeLoraConfig({ r: 4, useRslora: false }, cfg)).not.toHaveProperty('useRslora');
  });
});

describe('per-group ranks and learning rates', () => {
  it('rankPatternByGroup gives each (depth, module) its own rank: A [in, r], B [r, out], scale alpha/r', () => {
    const model = GPT2Model.random(cfg, 1);
    const rankOf = (depth: number, module: 'attn' | 'mlp') => 1 + 2 * depth + (module === 'mlp' ? 1 : 0);
    const pattern = rankPatternByGroup(cfg, rankOf);
    const a = model.addAdapter('rp', makeLoraConfig({ r: 8, alpha: 6, rankPattern: pattern }, cfg), 1);
    expect(a.layers.size).toBe(4 * cfg.n_layer);
    const seen = new Set<number>();
    for (const l of a.layers.values()) {
      const m = /^transformer\.h\.(\d+)\.(attn|mlp)\.\w+$/.exec(l.path)!;
      const r = rankOf(Number(m[1]), m[2] as 'attn' | 'mlp');
      const [nIn, nOut] = model.param(`${l.path}.weight`).shape;
      expect({ path: l.path, A: l.A.shape, B: l.B.shape, r: l.r, scale: l.scale }).toEqual({ path: l.path, A: [nIn, r], B: [r, nOut], r, scale: 6 / r });
      seen.add(r);
    }
    expect([...seen].sort()).toEqual([1, 2, 3, 4]);
    model.dispose();
  });

  it('groupScales reach the optimizer: returned rates, step sizes, and scale 0 freezes a group', () => {
    const model = GPT2Model.random(cfg, 2);
    const a = model.addAdapter('g', makeLoraConfig({ r: 4, alpha: 8 }, cfg), 1);
    const client = new TrainingClient(model, tok, 'lora');
    const batch = qaBatch(tok, qaPairs(4));
    const lr = 1e-2;
    const groupScales = { 'h0.attn.A': 0, 'h0.attn.B': 0, 'h1.mlp.B': 3 };
    const copy = () => new Map(a.namedVariables().map(([n, v]) => [n, (v.dataSync() as Float32Array).slice()]));
    const start = copy();

    client.forwardBackward(batch);
    const r1 = client.optimStep({ learningRate: lr, groupScales });
    // Expected rate of every group, computed from the variable names.
    const want: Record<string, number> = {};
    for (const l of a.layers.values()) {
      const m = /h\.(\d+)\.(attn|mlp)/.exec(l.path)!;
      for (const f of ['A', 'B']) {
        const key = `h${m[1]}.${m[2]}.${f}`;
        want[key] = lr * ((groupScales as Record<string, number>)[key] ?? 1);
      }
    }
    expect(Object.keys(r1.groupLearningRates).sort()).toEqual(Object.keys(want).sort());
    for (const [k, v] of Object.entries(want)) expect(r1.groupLearningRates[k]).toBeCloseTo(v, 12);

    // Adam's first step moves each element by lr·g/(|g|+eps), i.e. by the group's rate where g is not tiny.
    const after1 = copy();
    for (const [name, before] of start) {
      if (!name.endsWith('lora_B')) continue; // A has no gradient while B = 0
      const m = /^transformer\.h\.(\d+)\.(attn|mlp)\.\w+\.lora_B$/.exec(name)!;
      const key = `h${m[1]}.${m[2]}.B`;
      let maxStep = 0;
      for (let i = 0; i < before.length; i++) maxStep = Math.max(maxStep, Math.abs(after1.get(name)![i] - before[i]));
      expect({ name, maxStep: Number(maxStep.toPrecision(3)) }).toEqual({ name, maxStep: Number(want[key].toPrecision(3)) });
    }

    client.forwardBackward(batch);
    client.optimStep({ learningRate: lr, groupScales });
    const after2 = copy();
    for (const [name, before] of start) {
      const frozen = name.startsWith('transformer.h.0.attn.');
      expect({ name, unchanged: bitIdentical(after2.get(name)!, before) }).toEqual({ name, unchanged: frozen });
    }
    client.dispose();
    model.dispose();
  });
});
