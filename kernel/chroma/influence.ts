/**
 * TracIn-style influence of training examples on rated outputs, measured through the LoRA adapter: the
 * only weights fine-tuning changes, so the only ones through which a training example can have acted.
 *
 * A training step on example z moves the adapter by -lr·∇L(z), which changes the loss of an output z'
 * by about -lr·∇L(z)·∇L(z'). A positive gradient product therefore means "training on z made z' more
 * likely". Each rated output is a target with weight 2·quality - 1 (quality 1: +1, quality 0: -1, 0.5 is
 * neutral); reference answers are targets of quality 1. So an example pushing the model towards poorly
 * rated outputs, or away from the references, gets negative influence, and re-rating an output changes
 * every example's influence at once.
 *
 *   alignment(i, t) = cos(g_i - ḡ, g_t - ḡ), averaged over checkpoints
 *   influence(i)    = Σ_t w_t · r_it · alignment(i, t) / Σ_t |w_t| · r_it,   in [-1, 1]
 *
 * Cosine, not the raw product: late in training the gradients of memorised examples are tiny, and the
 * raw product would rank examples by gradient norm (i.e. by loss) rather than by direction. ḡ, the mean
 * training gradient, is removed first: every example teaches the answer format, and that shared part
 * would otherwise make every example look helpful to every target. Given adapter checkpoints taken
 * during training (TracIn), alignments are averaged over them with equal weights; otherwise the
 * current adapter is used.
 *
 * r_it is the relevance of target t to example i: the squared similarity of their questions. Gradients
 * of short answers are dominated by the answer tokens (on nyc-qa an example and a reference with the
 * same answer align at about 0.8 whatever their questions), so a plain sum over all targets mostly
 * says whether an example's answer appears among the targets, and drowns what matters (whether the
 * targets asking the same question agree with its answer) in hundreds of unrelated ones. r_it = 1
 * for every pair (localise: false) gives TracIn's plain average. Question similarity is TF-IDF cosine
 * over normalised words: the small model's own hidden states place paraphrases poorly (on nyc-qa the
 * nearest question by mean-pooled hidden state is the same fact's for 14% of training questions, by
 * TF-IDF for 58%). Squaring favours close paraphrases over questions that share a word or two.
 *
 * Per-example gradients have as many numbers as the adapter (half a million for rank 32 on the base
 * model), so each is reduced to a count sketch of a few thousand numbers that keeps inner products in
 * expectation. The sketch is written here: no maintained JavaScript library offers one, and it is a
 * dozen lines.
 */
import * as tf from '../backend/tf';
import { collate } from '../data/batch';
import { tokenizeExample, type TokenizedExample } from '../data/tokenize';
import { answerTokens } from '../eval/metrics';
import type { GPT2Model } from '../model/gpt2';
import type { Tokenizer } from '../tokenizer';
import { maskedNLL, targetLogprobs } from '../train/loss';

/** A generated answer to a question and how good a person (or a metric) found it, in [0, 1]. */
export interface RatedOutput {
  question: string;
  /** The generated answer (the completion after "Answer:"). */
  text: string;
  quality: number;
}

/** A question with its answer: a training example or a reference. */
export interface QAPair {
  question: string;
  answer: string;
}

/** Values of the active adapter's variables, by parameter name (lora/adapter namedVariables). */
export type AdapterWeights = Map<string, Float32Array>;

// ---- count sketch ------------------------------------------------------------------------------------

/** murmur3's 32-bit finaliser: a cheap, well-mixed integer hash. */
function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Count sketch R^n -> R^dim: coordinate j is added, with sign s(j) = ±1, to bucket h(j), both from a
 * seeded hash. E[<Sx, Sy>] = <x, y>, with a standard deviation of about |x|·|y| / sqrt(dim).
 */
export class CountSketch {
  /** [inputDim] bucket of each input coordinate. */
  private readonly buckets: Uint32Array;
  /** [inputDim] ±1. */
  private readonly signs: Float32Array;

  constructor(
    readonly inputDim: number,
    readonly dim = 4096,
    readonly seed = 0,
  ) {
    if (!Number.isInteger(inputDim) || inputDim < 1) throw new RangeError(`CountSketch: inputDim must be an integer >= 1, got ${inputDim}`);
    if (!Number.isInteger(dim) || dim < 1) throw new RangeError(`CountSketch: dim must be an integer >= 1, got ${dim}`);
    this.buckets = new Uint32Array(inputDim);
    this.signs = new Float32Array(inputDim);
    const s1 = mix32(seed * 2 + 1);
    const s2 = mix32(seed * 2 + 2);
    for (let j = 0; j < inputDim; j++) {
      this.buckets[j] = mix32(Math.imul(j, 0x9e3779b1) ^ s1) % dim;
      this.signs[j] = mix32(Math.imul(j, 0x85ebca77) ^ s2) & 1 ? 1 : -1;
    }
  }

  /** Adds the sketch of x, placed at input coordinates offset..offset+x.length-1, into out. */
  accumulate(x: ArrayLike<number>, out: Float32Array, offset = 0): Float32Array {
    if (offset < 0 || offset + x.length > this.inputDim) throw new RangeError(`CountSketch: coordinates ${offset}..${offset + x.length - 1} outside [0, ${this.inputDim})`);
    if (out.length !== this.dim) throw new RangeError(`CountSketch: output has ${out.length} entries, expected ${this.dim}`);
    const { buckets, signs } = this;
    for (let j = 0; j < x.length; j++) out[buckets[offset + j]] += signs[offset + j] * x[j];
    return out;
  }

  sketch(x: ArrayLike<number>): Float32Array {
    if (x.length !== this.inputDim) throw new RangeError(`CountSketch: input has ${x.length} entries, expected ${this.inputDim}`);
    return this.accumulate(x, new Float32Array(this.dim));
  }
}

// ---- adapter weights ---------------------------------------------------------------------------------

function adapterVariables(model: GPT2Model): Array<[string, tf.Variable]> {
  return model.trainableVariables('lora'); // throws when no adapter is active
}

/** Copies of the active adapter's weights (e.g. taken from a progress callback during fine-tuning). */
export function snapshotAdapter(model: GPT2Model): AdapterWeights {
  return new Map(adapterVariables(model).map(([name, v]) => [name, (v.dataSync() as Float32Array).slice()]));
}

/** Runs fn with the active adapter set to `weights`, then restores the adapter's own weights. */
export function withAdapterWeights<T>(model: GPT2Model, weights: AdapterWeights, fn: () => T): T {
  const vars = adapterVariables(model);
  for (const [name, v] of vars) {
    const w = weights.get(name);
    if (!w) throw new Error(`adapter checkpoint has no weights for "${name}"`);
    if (w.length !== v.size) throw new Error(`adapter checkpoint: "${name}" has ${w.length} values, the adapter ${v.size}`);
  }
  const saved = snapshotAdapter(model);
  const assign = (src: AdapterWeights) => {
    for (const [name, v] of vars) tf.tidy(() => v.assign(tf.tensor(src.get(name)!, v.shape, 'float32')));
  };
  assign(weights);
  try {
    return fn();
  } finally {
    assign(saved);
  }
}

// ---- per-example gradients ---------------------------------------------------------------------------

export interface ExampleGradient {
  /** Mean negative log-likelihood of the completion tokens (the training loss of this one example). */
  loss: number;
  /** Gradient of that loss w.r.t. each adapter variable, by parameter name, row-major. */
  grads: Map<string, Float32Array>;
}

/**
 * Gradient of one example's loss (completion tokens only, no dropout) w.r.t. the active adapter.
 * One example per backward pass: tf.js has no per-example gradients of a batch, and the layers sum
 * their weight gradients over all rows. An example with no completion tokens has loss NaN and zero
 * gradient.
 */
export function exampleGradient(model: GPT2Model, ex: TokenizedExample): ExampleGradient {
  const vars = adapterVariables(model);
  const t = Math.max(1, Math.min(model.config.n_positions, ex.ids.length - 1));
  const batch = collate([ex], t);
  const weightSum = batch.weights.reduce((a, w) => a + w, 0);
  if (weightSum === 0) return { loss: NaN, grads: new Map(vars.map(([n, v]) => [n, new Float32Array(v.size)])) };
  const names = new Map(vars.map(([n, v]) => [v.name, n]));
  const { value, grads } = tf.variableGrads(() => {
    const ids = tf.tensor2d(batch.inputIds, [1, t], 'int32');
    const { logits } = model.forward(ids, { training: false });
    const lp = targetLogprobs(tf.reshape(logits, [-1, model.config.vocab_size]) as tf.Tensor2D, tf.tensor1d(batch.targets, 'int32'));
    return maskedNLL(lp, tf.tensor1d(batch.weights, 'float32'), weightSum);
  }, vars.map(([, v]) => v));
  const out = new Map<string, Float32Array>();
  for (const [vname, g] of Object.entries(grads)) {
    out.set(names.get(vname)!, (g.dataSync() as Float32Array).slice());
    g.dispose();
  }
  const loss = value.dataSync()[0];
  value.dispose();
  return { loss, grads: out };
}

/** A count sketch matching the active adapter's size (its variables laid end to end in a fixed order). */
export function adapterSketch(model: GPT2Model, dim = 4096, seed = 0): CountSketch {
  return new CountSketch(adapterVariables(model).reduce((n, [, v]) => n + v.size, 0), dim, seed);
}

export interface SketchedGradients {
  /** [examples] sketches of dim numbers each. */
  sketches: Float32Array[];
  /** [examples] loss of each example (as in exampleGradient). */
  losses: number[];
}

/** Sketched per-example gradients of many examples under the current adapter weights. */
export function sketchGradients(model: GPT2Model, examples: TokenizedExample[], sketch: CountSketch, onEach?: () => void): SketchedGradients {
  const layout = adapterVariables(model).map(([name, v]) => ({ name, size: v.size }));
  const total = layout.reduce((n, l) => n + l.size, 0);
  if (total !== sketch.inputDim) throw new RangeError(`sketch expects ${sketch.inputDim} gradient entries, the adapter has ${total}`);
  const sketches: Float32Array[] = [];
  const losses: number[] = [];
  for (const ex of examples) {
    const { loss, grads } = exampleGradient(model, ex);
    const s = new Float32Array(sketch.dim);
    let offset = 0;
    for (const l of layout) {
      sketch.accumulate(grads.get(l.name)!, s, offset);
      offset += l.size;
    }
    sketches.push(s);
    losses.push(loss);
    onEach?.();
  }
  return { sketches, losses };
}

/**
 * Sketched gradients by (checkpoint weights, sketch, example), so that scoring again (after a person
 * re-rates outputs, or with other targets) only computes the gradients it has not seen.
 */
export class GradientCache {
  private readonly entries = new Map<string, { sketch: Float32Array; loss: number }>();

  get size(): number {
    return this.entries.size;
  }

  /** Sketches of `examples` under the current adapter weights, identified by `weightsKey`. */
  sketches(model: GPT2Model, examples: TokenizedExample[], sketch: CountSketch, weightsKey: string, onEach?: () => void): SketchedGradients {
    const keys = examples.map((ex) => `${weightsKey}|${sketch.dim}:${sketch.seed}|${ex.ids.join(',')}|${ex.weights.join('')}`);
    // First occurrence of every key not yet cached.
    const missing = new Map<string, number>();
    keys.forEach((k, i) => {
      if (!this.entries.has(k) && !missing.has(k)) missing.set(k, i);
    });
    const fresh = sketchGradients(model, [...missing.values()].map((i) => examples[i]), sketch, onEach);
    [...missing.keys()].forEach((k, j) => this.entries.set(k, { sketch: fresh.sketches[j], loss: fresh.losses[j] }));
    for (let i = missing.size; i < examples.length; i++) onEach?.();
    return { sketches: keys.map((k) => this.entries.get(k)!.sketch), losses: keys.map((k) => this.entries.get(k)!.loss) };
  }

  clear(): void {
    this.entries.clear();
  }
}

/** A cheap fingerprint of adapter weights (FNV-1a over the float bits), to key cached gradients. */
export function weightsFingerprint(weights: AdapterWeights): string {
  let h = 0x811c9dc5;
  for (const [name, w] of [...weights].sort(([a], [b]) => (a < b ? -1 : 1))) {
    for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
    const bits = new Uint32Array(w.buffer, w.byteOffset, w.length);
    for (let i = 0; i < bits.length; i++) h = Math.imul(h ^ bits[i], 0x01000193);
  }
  return (h >>> 0).toString(16);
}

// ---- influence ---------------------------------------------------------------------------------------

/** Weight of a rated output as a target: 2·quality - 1, so a rating of 0.5 is neutral. */
export function targetWeight(quality: number): number {
  if (typeof quality !== 'number' || !(quality >= 0 && quality <= 1)) throw new RangeError(`quality must be a number in [0, 1], got ${quality}`);
  return 2 * quality - 1;
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let j = 0; j < a.length; j++) s += a[j] * b[j];
  return s;
}

/** Rows minus `mean` (when given), scaled to unit length; zero rows stay zero. */
function unitRows(rows: Float32Array[], mean?: Float32Array): Float32Array[] {
  return rows.map((r) => {
    const u = mean ? r.map((x, j) => x - mean[j]) : r.slice();
    const n = Math.sqrt(dot(u, u));
    if (n > 0) for (let j = 0; j < u.length; j++) u[j] /= n;
    return u;
  });
}

function meanRow(rows: Float32Array[]): Float32Array {
  const m = new Float32Array(rows[0]?.length ?? 0);
  for (const r of rows) for (let j = 0; j < m.length; j++) m[j] += r[j] / rows.length;
  return m;
}

/** [train][targets] cos(g_i - ḡ, g_t - ḡ) of sketched gradients, ḡ the mean training gradient (center = false: ḡ = 0). */
export function alignmentMatrix(train: Float32Array[], targets: Float32Array[], center = true): Float32Array[] {
  const mean = center && train.length > 1 ? meanRow(train) : undefined;
  const t = unitRows(targets, mean);
  return unitRows(train, mean).map((g) => Float32Array.from(t, (u) => dot(g, u)));
}

/**
 * [a][b] TF-IDF cosine similarity of two lists of questions over normalised words (lower case, no
 * punctuation or articles); document frequencies come from both lists together.
 */
export function questionSimilarity(a: readonly string[], b: readonly string[]): Float32Array[] {
  const docs = [...a, ...b].map(answerTokens);
  const df = new Map<string, number>();
  for (const d of docs) for (const w of new Set(d)) df.set(w, (df.get(w) ?? 0) + 1);
  const vectors = docs.map((d) => {
    const v = new Map<string, number>();
    for (const w of d) v.set(w, (v.get(w) ?? 0) + Math.log(docs.length / df.get(w)!));
    const n = Math.sqrt([...v.values()].reduce((s, x) => s + x * x, 0));
    if (n > 0) v.forEach((x, w) => v.set(w, x / n));
    return v;
  });
  const va = vectors.slice(0, a.length);
  const vb = vectors.slice(a.length);
  return va.map((x) =>
    Float32Array.from(vb, (y) => {
      let s = 0;
      x.forEach((xv, w) => (s += xv * (y.get(w) ?? 0)));
      return Math.min(1, s);
    }),
  );
}

/**
 * influence(i) = Σ_t w_t·r_it·alignment(i, t) / Σ_t |w_t|·r_it; relevance null means r = 1. An example
 * with no relevant weighted target gets 0.
 */
export function influenceFrom(alignment: Float32Array[], weights: number[], relevance: Float32Array[] | null): number[] {
  return alignment.map((row, i) => {
    if (row.length !== weights.length) throw new RangeError(`influence: ${row.length} alignments but ${weights.length} weights`);
    let num = 0;
    let den = 0;
    for (let t = 0; t < row.length; t++) {
      const r = relevance ? relevance[i][t] ** 2 : 1;
      num += weights[t] * r * row[t];
      den += Math.abs(weights[t]) * r;
    }
    return den > 0 ? num / den : 0;
  });
}

export interface InfluenceOptions {
  model: GPT2Model;
  tokenizer: Tokenizer;
  train: QAPair[];
  /** Rated outputs: weight 2·quality - 1. */
  targets?: RatedOutput[];
  /** Reference answers: targets of quality 1. */
  references?: QAPair[];
  /** Adapter weights during training (TracIn); default: the active adapter as it is. */
  checkpoints?: AdapterWeights[];
  /** Weigh targets by the similarity of their question to the example's (default true; see the module comment). */
  localise?: boolean;
  /** Remove the mean training gradient before comparing directions (default true). */
  center?: boolean;
  /** Sketch size (default 4096). */
  sketchDim?: number;
  seed?: number;
  /** Reuses gradients computed by earlier calls with the same checkpoints. */
  cache?: GradientCache;
  /** Called after each example's gradient: (done, total) over all checkpoints. */
  onProgress?: (done: number, total: number) => void;
}

export interface InfluenceResult {
  /** [train] influence, in [-1, 1]. */
  influence: number[];
  /** [train][targets] gradient alignment averaged over checkpoints; targets are the rated outputs, then the references. */
  alignment: Float32Array[];
  /** [train][targets] similarity of the questions (TF-IDF cosine), the relevance when localised. */
  similarity: Float32Array[];
  localised: boolean;
  /** [targets] weight of each target. */
  weights: number[];
  /** [train] the positively weighted target each example aligns with most, -1 when there is none. */
  bestTarget: number[];
  /** [checkpoints][train] each training example's loss at each checkpoint. */
  losses: number[][];
}

/** Influence of every training example on the rated outputs and references (see the module comment). */
export function computeInfluence(o: InfluenceOptions): InfluenceResult {
  const { model, tokenizer } = o;
  if (o.train.length === 0) throw new RangeError('influence: train must hold at least one example');
  const context = model.config.n_positions + 1;
  const tokenize = (ex: QAPair) => tokenizeExample(tokenizer, ex, context);
  const rated = o.targets ?? [];
  const references = o.references ?? [];
  const weights = [...rated.map((r) => targetWeight(r.quality)), ...references.map(() => 1)];
  const targetPairs: QAPair[] = [...rated.map((r) => ({ question: r.question, answer: r.text })), ...references];
  const train = o.train.map(tokenize);
  const targets = targetPairs.map(tokenize);
  const sketch = adapterSketch(model, o.sketchDim ?? 4096, o.seed ?? 0);
  const cache = o.cache ?? new GradientCache();
  const checkpoints = o.checkpoints?.length ? o.checkpoints : [snapshotAdapter(model)];
  const total = checkpoints.length * (train.length + targets.length);
  let done = 0;
  const tick = () => o.onProgress?.(++done, total);
  const alignment = train.map(() => new Float32Array(targets.length));
  const losses: number[][] = [];
  for (const ck of checkpoints) {
    const key = weightsFingerprint(ck);
    withAdapterWeights(model, ck, () => {
      const g = cache.sketches(model, train, sketch, key, tick);
      const t = cache.sketches(model, targets, sketch, key, tick);
      losses.push(g.losses);
      alignmentMatrix(g.sketches, t.sketches, o.center ?? true).forEach((row, i) => {
        for (let j = 0; j < row.length; j++) alignment[i][j] += row[j] / checkpoints.length;
      });
    });
  }
  const similarity = questionSimilarity(o.train.map((e) => e.question), targetPairs.map((e) => e.question));
  const localised = o.localise ?? true;
  const bestTarget = alignment.map((row) => {
    let best = -1;
    for (let t = 0; t < row.length; t++) if (weights[t] > 0 && (best < 0 || row[t] > row[best])) best = t;
    return best;
  });
  return { influence: influenceFrom(alignment, weights, localised ? similarity : null), alignment, similarity, localised, weights, bestTarget, losses };
}
