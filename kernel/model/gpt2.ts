/**
 * GPT-2 in TensorFlow.js, readable in one sitting (after nanoGPT's model.py): pre-LN blocks, learned
 * positions, GELU (tanh approximation), causal self-attention, output head tied to the token embedding.
 * Weights keep Hugging Face's names and Conv1D [in, out] layout so that loading and saving is a rename-free
 * copy. LoRA adapters attach to the linear layers without touching the base weights.
 */
import * as tf from '../backend/tf';
import { type GPT2Config, expectedTensors } from './config';
import { LoraAdapter } from '../lora/adapter';
import { dropoutFor, type LoraConfig } from '../lora/config';
import type { Vocabulary } from '../lora/words';
import { gelu, layerNorm, linear, type LoraTerm } from './ops';
import type { NamedArrays } from './tensor';

/** Cached keys and values of one layer: [batch, heads, length, headDim]. */
export interface LayerCache {
  k: tf.Tensor4D;
  v: tf.Tensor4D;
}

/** A key-value cache for incremental decoding; `length` tokens are cached. */
export interface KVCache {
  layers: LayerCache[];
  length: number;
}

export interface ForwardOptions {
  /** Enables LoRA dropout. */
  training?: boolean;
  /** Seed of this forward pass's dropout masks (deterministic training). */
  seed?: number;
  /** Past keys/values; the new tokens take positions cache.length, cache.length+1, ... */
  cache?: KVCache;
}

export interface ForwardResult {
  logits: tf.Tensor3D; // [batch, seq, vocab]
  /** Final hidden states after ln_f: [batch, seq, n_embd]. */
  hidden: tf.Tensor3D;
  /** Cache including the new tokens (only when a cache was passed in). */
  cache?: KVCache;
}

export type TrainingMode = 'lora' | 'full' | 'none';

export class GPT2Model {
  readonly params = new Map<string, tf.Variable>();
  readonly adapters = new Map<string, LoraAdapter>();
  private active: string | null = null;

  constructor(
    readonly config: GPT2Config,
    weights: Map<string, tf.Tensor>,
  ) {
    for (const name of expectedTensors(config).keys()) {
      const t = weights.get(name);
      if (!t) throw new Error(`missing tensor "${name}"`);
      this.params.set(name, tf.variable(t, false)); // shares t's data; the caller disposes t
    }
  }

  /** GPT-2's initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer), LN at identity. */
  static random(config: GPT2Config, seed = 0): GPT2Model {
    const weights = new Map<string, tf.Tensor>();
    let k = 0;
    for (const [name, shape] of expectedTensors(config)) {
      k++;
      if (/ln_\w+\.weight$/.test(name)) weights.set(name, tf.ones(shape));
      else if (name.endsWith('.bias')) weights.set(name, tf.zeros(shape));
      else {
        const std = name.endsWith('c_proj.weight') ? 0.02 / Math.sqrt(2 * config.n_layer) : 0.02;
        weights.set(name, tf.randomNormal(shape, 0, std, 'float32', seed * 100003 + k));
      }
    }
    const model = new GPT2Model(config, weights);
    for (const t of weights.values()) t.dispose();
    return model;
  }

  param(name: string): tf.Variable {
    const p = this.params.get(name);
    if (!p) throw new Error(`no parameter "${name}"`);
    return p;
  }

  // ---- adapters ----------------------------------------------------------------------------------

  /** Attaches a fresh adapter (B = 0, word vectors 0) and makes it active. */
  addAdapter(name: string, config: LoraConfig, seed = 0, vocabulary?: Vocabulary): LoraAdapter {
    if (this.adapters.has(name)) throw new Error(`adapter "${name}" already exists; remove it first`);
    const adapter = new LoraAdapter(name, config, this.config, seed, vocabulary);
    this.adapters.set(name, adapter);
    this.active = name;
    return adapter;
  }

  /** Attaches an adapter built elsewhere (e.g. loaded from PEFT files). */
  attachAdapter(adapter: LoraAdapter): void {
    if (this.adapters.has(adapter.name)) throw new Error(`adapter "${adapter.name}" already exists; remove it first`);
    this.adapters.set(adapter.name, adapter);
    this.active = adapter.name;
  }

  /** Switches the active adapter; null runs the bare base model. */
  setActiveAdapter(name: string | null): void {
    if (name !== null && !this.adapters.has(name)) {
      throw new Error(`no adapter "${name}"; loaded: ${[...this.adapters.keys()].join(', ') || '(none)'}`);
    }
    const merged = [...this.adapters.values()].find((a) => a.merged);
    if (merged && merged.name !== name) throw new Error(`adapter "${merged.name}" is merged; unmerge it before switching`);
    this.active = name;
  }

  get activeAdapter(): LoraAdapter | null {
    return this.active === null ? null : (this.adapters.get(this.active) ?? null);
  }

  removeAdapter(name: string): void {
    const a = this.adapters.get(name);
    if (!a) return;
    if (a.merged) this.unmergeAdapter(name);
    a.dispose();
    this.adapters.delete(name);
    if (this.active === name) this.active = null;
  }

  /** Folds scale·A·B into the base weights; the forward pass then skips the adapter. */
  mergeAdapter(name = this.active ?? ''): void {
    this.foldAdapter(name, +1);
  }

  unmergeAdapter(name = this.active ?? ''): void {
    this.foldAdapter(name, -1);
  }

  private foldAdapter(name: string, sign: 1 | -1): void {
    const a = this.adapters.get(name);
    if (!a) throw new Error(`no adapter "${name}"`);
    if (name !== this.active) throw new Error(`adapter "${name}" is not the active one ("${this.active}"); setActiveAdapter("${name}") first`);
    if (a.merged === (sign === 1)) throw new Error(`adapter "${name}" is ${a.merged ? 'already' : 'not'} merged`);
    for (const l of a.layers.values()) {
      const w = this.param(`${l.path}.weight`);
      tf.tidy(() => w.assign(tf.add(w, tf.mul(tf.matMul(l.A, l.B), sign * l.scale))));
    }
    a.merged = sign === 1;
  }

  // ---- training modes ----------------------------------------------------------------------------

  /** Named trainable tensors for a mode: the active adapter's A/B for LoRA, every base weight for full. */
  trainableVariables(mode: TrainingMode): Array<[string, tf.Variable]> {
    if (mode === 'none') return [];
    if (mode === 'full') return [...this.params.entries()];
    const a = this.activeAdapter;
    if (!a) throw new Error('LoRA training needs an active adapter: call addAdapter() first');
    if (a.merged) throw new Error(`adapter "${a.name}" is merged; unmerge it before training`);
    return a.namedVariables();
  }

  /** Base weights are frozen except in full fine-tuning (tf only differentiates trainable variables). */
  setTrainingMode(mode: TrainingMode): void {
    for (const p of this.params.values()) p.trainable = mode === 'full';
  }

  /** Base weights as named arrays (copies), the shape model.safetensors and checkpoints take. */
  weightArrays(): NamedArrays {
    const out: NamedArrays = new Map();
    for (const [name, v] of this.params) out.set(name, { shape: v.shape, data: v.dataSync() as Float32Array });
    return out;
  }

  parameterCount(): number {
    let n = 0;
    for (const p of this.params.values()) n += p.size;
    return n;
  }

  // ---- forward -----------------------------------------------------------------------------------

  /** Linear layer in Conv1D layout, plus the active adapter's low-rank update. x: [N, in] -> [N, out]. */
  private linear(x: tf.Tensor2D, path: string, opts: ForwardOptions, salt: number): tf.Tensor2D {
    const a = this.activeAdapter;
    const layer = a && !a.merged ? a.layers.get(path) : undefined;
    let lora: LoraTerm | undefined;
    if (a && layer) {
      const rate = opts.training ? dropoutFor(a.config, path) : 0;
      const input = rate > 0 ? (tf.dropout(x, rate, undefined, (opts.seed ?? 0) * 1009 + salt) as tf.Tensor2D) : x;
      lora = { A: layer.A, B: layer.B, scale: layer.scale, input };
    }
    return linear(x, this.param(`${path}.weight`), this.param(`${path}.bias`), lora);
  }

  private layerNorm(x: tf.Tensor2D, prefix: string): tf.Tensor2D {
    return layerNorm(x, this.param(`${prefix}.weight`), this.param(`${prefix}.bias`), this.config.layer_norm_epsilon);
  }

  /** Additive causal mask [q, k] for queries at positions offset..offset+q-1. */
  private causalMask(q: number, k: number, offset: number): tf.Tensor2D {
    const m = new Float32Array(q * k);
    for (let i = 0; i < q; i++) for (let j = 0; j < k; j++) if (j > i + offset) m[i * k + j] = -1e9;
    return tf.tensor2d(m, [q, k]);
  }

  private attention(x: tf.Tensor2D, b: number, t: number, layer: number, opts: ForwardOptions, past?: LayerCache) {
    const { n_embd: d, n_head: h } = this.config;
    const hd = d / h;
    const qkv = this.linear(x, `transformer.h.${layer}.attn.c_attn`, opts, layer * 4);
    const heads = (part: tf.Tensor) => tf.transpose(tf.reshape(part, [b, t, h, hd]), [0, 2, 1, 3]) as tf.Tensor4D;
    const [q, kNew, vNew] = tf.split(qkv, 3, 1).map(heads);
    const k = past ? (tf.concat([past.k, kNew], 2) as tf.Tensor4D) : kNew;
    const v = past ? (tf.concat([past.v, vNew], 2) as tf.Tensor4D) : vNew;
    const offset = past ? past.k.shape[2] : 0;
    const scores = tf.add(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(hd)), this.causalMask(t, offset + t, offset));
    const y = tf.matMul(tf.softmax(scores), v); // [b, h, t, hd]
    const merged = tf.reshape(tf.transpose(y, [0, 2, 1, 3]), [b * t, d]) as tf.Tensor2D;
    return { out: this.linear(merged, `transformer.h.${layer}.attn.c_proj`, opts, layer * 4 + 1), cache: { k, v } };
  }

  /**
   * ids: [batch, seq] int32. Returns logits [batch, seq, vocab]. Call inside tf.tidy (or dispose the
   * results); a returned cache must be disposed by the caller with disposeCache.
   */
  forward(ids: tf.Tensor2D, opts: ForwardOptions = {}): ForwardResult {
    const [b, t] = ids.shape;
    const { hidden, cache } = this.hiddenStates(ids, opts);
    return {
      logits: tf.reshape(this.lmHead(hidden), [b, t, this.config.vocab_size]) as tf.Tensor3D,
      hidden: tf.reshape(hidden, [b, t, this.config.n_embd]) as tf.Tensor3D,
      cache,
    };
  }

  /** Logits of final hidden states through the tied embedding: [n, n_embd] -> [n, vocab]. */
  lmHead(hidden: tf.Tensor2D): tf.Tensor2D {
    return tf.matMul(hidden, this.param('transformer.wte.weight') as tf.Tensor2D, false, true);
  }

  /**
   * The transformer without the LM head: final hidden states after ln_f, [batch*seq, n_embd]. Training
   * applies lmHead only at positions the loss weighs, which skips most of the vocabulary projection.
   */
  hiddenStates(ids: tf.Tensor2D, opts: ForwardOptions = {}): { hidden: tf.Tensor2D; cache?: KVCache } {
    const [b, t] = ids.shape;
    const cfg = this.config;
    const offset = opts.cache?.length ?? 0;
    if (offset + t > cfg.n_positions) {
      throw new Error(`sequence of ${offset + t} tokens exceeds the model's context (n_positions=${cfg.n_positions})`);
    }
    const d = cfg.n_embd;
    const tok = tf.gather(this.param('transformer.wte.weight'), tf.reshape(ids, [b * t]));
    const pos = tf.slice(this.param('transformer.wpe.weight'), [offset, 0], [t, d]);
    let x = tf.reshape(tf.add(tf.reshape(tok, [b, t, d]), pos), [b * t, d]) as tf.Tensor2D;
    // Word vectors stand on the question's tokens, which a forward pass from position 0 holds; later
    // decoding steps hold answer tokens only. Not folded by merging: they are no weight's update.
    const words = this.activeAdapter?.words;
    if (words && offset === 0) x = tf.add(x, words.embed(ids));
    const caches: LayerCache[] = [];
    for (let i = 0; i < cfg.n_layer; i++) {
      const p = `transformer.h.${i}`;
      const att = this.attention(this.layerNorm(x, `${p}.ln_1`), b, t, i, opts, opts.cache?.layers[i]);
      caches.push(att.cache);
      x = tf.add(x, att.out);
      const hMid = gelu(this.linear(this.layerNorm(x, `${p}.ln_2`), `${p}.mlp.c_fc`, opts, i * 4 + 2));
      x = tf.add(x, this.linear(hMid, `${p}.mlp.c_proj`, opts, i * 4 + 3));
    }
    return {
      hidden: this.layerNorm(x, 'transformer.ln_f'),
      cache: opts.cache ? { layers: caches, length: offset + t } : undefined,
    };
  }

  /** An empty cache to start incremental decoding. */
  static emptyCache(): KVCache {
    return { layers: [], length: 0 };
  }

  dispose(): void {
    for (const a of this.adapters.values()) a.dispose();
    this.adapters.clear();
    for (const p of this.params.values()) p.dispose();
    this.params.clear();
  }
}

export function disposeCache(cache: KVCache | undefined): void {
  for (const l of cache?.layers ?? []) {
    l.k.dispose();
    l.v.dispose();
  }
}

