/**
 * Input judging: the count sketch, per-example gradients, influence and its dependence on ratings,
 * isolation, outlier ranking and input errors. Expectations come from exact arithmetic, from the
 * training client's own gradients, or from a tiny task built with one deliberately wrong label.
 */
import * as tf from '../kernel/backend/tf';
import { initBackend } from '../kernel/backend';
import type { QAExample } from '../kernel/data/example';
import { tokenizeExample } from '../kernel/data/tokenize';
import { GPT2Model } from '../kernel/model/gpt2';
import { makeLoraConfig } from '../kernel/lora/config';
import { TrainingClient } from '../kernel/train/client';
import { finetune } from '../kernel/train/finetune';
import {
  adapterSketch,
  type AdapterWeights,
  computeInfluence,
  CountSketch,
  exampleGradient,
  GradientCache,
  influenceFrom,
  questionSimilarity,
  sketchGradients,
  snapshotAdapter,
  targetWeight,
  withAdapterWeights,
} from '../kernel/chroma/influence';
import { isolationScores, misplacementFrom, rankOutliers, robustZ, scoreInputs, tracinCheckpoints, tracinSteps } from '../kernel/chroma/inputs';
import { byteTokenizer, maxAbsDiff, prng, qaBatch, tinyConfig } from './engine-helpers';

beforeAll(async () => {
  await initBackend('wasm');
});

const tok = byteTokenizer();
const cfg = tinyConfig({ n_positions: 64 });

const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

describe('count sketch', () => {
  const n = 20000;
  const rnd = prng(3);
  // Positive entries: without random signs the collisions would add a large bias.
  const x = Float64Array.from({ length: n }, () => rnd());
  const y = Float64Array.from({ length: n }, (_, i) => 0.5 * x[i] + rnd());
  const z = Float64Array.from({ length: n }, () => rnd() - 0.5);

  test('keeps inner products and norms to about |x||y|/sqrt(dim)', () => {
    const s = new CountSketch(n, 4096, 1);
    const [sx, sy, sz] = [s.sketch(x), s.sketch(y), s.sketch(z)];
    const tol = (a: Float64Array, b: Float64Array) => (4 * Math.sqrt(dot(a, a) * dot(b, b))) / Math.sqrt(4096);
    for (const [a, b, sa, sb] of [[x, y, sx, sy], [x, z, sx, sz], [y, z, sy, sz], [x, x, sx, sx]] as const) {
      expect(Math.abs(dot(sa, sb) - dot(a, b))).toBeLessThan(tol(a, b));
    }
    const cos = (a: ArrayLike<number>, b: ArrayLike<number>) => dot(a, b) / Math.sqrt(dot(a, a) * dot(b, b));
    expect(Math.abs(cos(sx, sy) - cos(x, y))).toBeLessThan(0.03);
  });

  test('is unbiased over seeds and linear', () => {
    let sum = 0;
    const seeds = 40;
    for (let seed = 0; seed < seeds; seed++) {
      const s = new CountSketch(n, 512, seed);
      sum += dot(s.sketch(x), s.sketch(z));
    }
    // The mean over seeds is much closer than one 512-number sketch's spread.
    const spread = Math.sqrt(dot(x, x) * dot(z, z)) / Math.sqrt(512);
    expect(Math.abs(sum / seeds - dot(x, z))).toBeLessThan((3 * spread) / Math.sqrt(seeds));
    const s = new CountSketch(n, 512, 7);
    const sum2 = s.sketch(Float64Array.from(x, (v, i) => v + 2 * z[i]));
    expect(maxAbsDiff(sum2, Float32Array.from(s.sketch(x), (v, i) => v + 2 * s.sketch(z)[i]))).toBeLessThan(1e-2);
    // accumulate at an offset equals sketching the zero-padded vector
    const part = new Float32Array(512);
    s.accumulate(z.subarray(100, 300), part, 100);
    const padded = new Float64Array(n);
    padded.set(z.subarray(100, 300), 100);
    expect(maxAbsDiff(part, s.sketch(padded))).toBeLessThan(1e-5);
  });

  test('rejects bad sizes', () => {
    expect(() => new CountSketch(0, 16)).toThrow(/inputDim/);
    expect(() => new CountSketch(10, 0)).toThrow(/dim/);
    expect(() => new CountSketch(10, 16).sketch(new Float32Array(9))).toThrow(/9 entries/);
    expect(() => new CountSketch(10, 16).accumulate(new Float32Array(5), new Float32Array(16), 6)).toThrow(/outside/);
  });
});

describe('per-example gradients', () => {
  test('equal the training client gradient on that one example, and sketch consistently', () => {
    const model = GPT2Model.random(cfg, 5);
    model.addAdapter('a', makeLoraConfig({ r: 4, alpha: 8, dropout: 0 }, cfg), 2);
    // B starts at zero (so A's gradient would be zero): give it values first.
    for (const l of model.activeAdapter!.layers.values()) tf.tidy(() => l.B.assign(tf.randomNormal(l.B.shape, 0, 0.05, 'float32', 11)));
    const ex: QAExample = { question: 'What colour is apple 3?', answer: 'red', source: { file: 'mem', line: 1 } };
    const client = new TrainingClient(model, tok, 'lora');
    const fb = client.forwardBackward(qaBatch(tok, [ex], 64));
    const expected = client.accumulatedGradients();
    client.clearGradients();
    const tokenized = tokenizeExample(tok, ex, 65);
    const g = exampleGradient(model, tokenized);
    expect(g.loss).toBeCloseTo(fb.loss, 5);
    expect([...g.grads.keys()].sort()).toEqual([...expected.keys()].sort());
    let scale = 0;
    for (const [name, e] of expected) {
      scale = Math.max(scale, maxAbsDiff(e.data, new Float32Array(e.data.length)));
      expect(maxAbsDiff(g.grads.get(name)!, e.data)).toBeLessThan(1e-5);
    }
    expect(scale).toBeGreaterThan(1e-4); // the comparison is not between zeros
    const sketch = adapterSketch(model, 256, 3);
    const flat = new Float32Array(sketch.inputDim);
    let off = 0;
    for (const [name] of model.trainableVariables('lora')) {
      flat.set(g.grads.get(name)!, off);
      off += g.grads.get(name)!.length;
    }
    const sk = sketchGradients(model, [tokenized], sketch);
    expect(maxAbsDiff(sk.sketches[0], sketch.sketch(flat))).toBeLessThan(1e-5);
    client.dispose();
    model.dispose();
  });

  test('withAdapterWeights runs on other weights and restores the adapter', () => {
    const model = GPT2Model.random(cfg, 6);
    model.addAdapter('a', makeLoraConfig({ r: 2, alpha: 2 }, cfg), 1);
    const before = snapshotAdapter(model);
    const other: AdapterWeights = new Map([...before].map(([k, v]) => [k, v.map(() => 0.01)]));
    const seen = withAdapterWeights(model, other, () => snapshotAdapter(model));
    for (const [k, v] of seen) expect(maxAbsDiff(v, other.get(k)!)).toBe(0);
    for (const [k, v] of snapshotAdapter(model)) expect(maxAbsDiff(v, before.get(k)!)).toBe(0);
    const missing: AdapterWeights = new Map([...before].slice(1));
    expect(() => withAdapterWeights(model, missing, () => 0)).toThrow(/no weights for/);
    model.dispose();
    const bare = GPT2Model.random(cfg, 6);
    expect(() => adapterSketch(bare)).toThrow(/active adapter/);
    bare.dispose();
  });
});

describe('influence and outliers on a tiny task with one wrong label', () => {
  const ex = (question: string, answer: string, line: number): QAExample => ({ question, answer, id: `r${line}`, source: { file: 'mem', line } });
  // Apples are red and skies blue; row 2 calls an apple blue.
  const train: QAExample[] = [
    ...[1, 2, 3, 4, 5, 6].map((k) => ex(`What colour is apple ${k}?`, k === 2 ? 'blue' : 'red', k)),
    ...[1, 2, 3, 4, 5, 6].map((k) => ex(`What colour is sky ${k}?`, 'blue', 6 + k)),
  ];
  const wrong = 1;
  const appleRef = { question: 'What colour is apple 9?', answer: 'red' };
  const skyRef = { question: 'What colour is sky 9?', answer: 'blue' };
  let model: GPT2Model;
  let checkpoints: AdapterWeights[] = [];
  const cache = new GradientCache();

  beforeAll(async () => {
    model = GPT2Model.random(cfg, 1);
    const tracin = tracinCheckpoints(model);
    checkpoints = tracin.checkpoints;
    const r = await finetune({
      model, tokenizer: tok, train, epochs: 30, batchSize: 4, learningRate: 1e-2, lora: { r: 4, alpha: 8 }, seed: 0,
      onProgress: tracin.onProgress,
    });
    r.client.dispose();
  });
  afterAll(() => model.dispose());

  test('the wrong label has negative influence on a correct reference and is the top outlier', () => {
    expect(checkpoints.length).toBe(3);
    const r = computeInfluence({ model, tokenizer: tok, train, references: [appleRef, skyRef], checkpoints, cache, sketchDim: 1024 });
    expect(r.influence[wrong]).toBeLessThan(0);
    const cleanApples = [0, 2, 3, 4, 5];
    for (const i of cleanApples) expect(r.influence[i]).toBeGreaterThan(r.influence[wrong] + 0.1);
    // Its gradient supports the sky answer, not the apple one; clean apples support the apple reference.
    expect(r.bestTarget[wrong]).toBe(1);
    for (const i of cleanApples) expect(r.bestTarget[i]).toBe(0);
    const scores = scoreInputs({ model, tokenizer: tok, train, references: [appleRef, skyRef], checkpoints, cache, sketchDim: 1024, topFraction: 0.1 });
    const ranked = rankOutliers(scores);
    expect(ranked[0].index).toBe(wrong);
    expect(ranked[0].outlier).toBe(true);
    expect(ranked[0].id).toBe('r2');
    expect(ranked[0].reasons.length).toBeGreaterThan(0);
    expect(ranked[0].reasons.join(' ')).toMatch(/harmful influence|misplaced answer/);
    expect(scores.filter((s) => s.outlier)).toHaveLength(Math.ceil(0.1 * train.length));
    for (const s of scores) {
      expect(s.quality).toBeGreaterThan(0);
      expect(s.quality).toBeLessThanOrEqual(1);
      expect(s.reasons.length > 0).toBe(s.outlier);
    }
    // Each target-based signal alone puts it first, on the bad side of its z-score.
    for (const only of ['influence', 'misplacement'] as const) {
      const w = { loss: 0, influence: 0, misplacement: 0, isolation: 0, [only]: 1 };
      const alone = rankOutliers(scoreInputs({ model, tokenizer: tok, train, references: [appleRef, skyRef], checkpoints, cache, sketchDim: 1024, weights: w }));
      expect(alone[0].index).toBe(wrong);
      expect(alone[0].z[only]).toBeGreaterThan(2);
    }
    expect(ranked[0].quality).toBeLessThan(Math.min(...scores.filter((s) => s.index !== wrong).map((s) => s.quality)));
  });

  test("a target's rating moves influence in the expected direction, from cached gradients", () => {
    const rated = (quality: number) => [{ question: appleRef.question, text: 'red', quality }];
    const size = () => cache.size;
    const good = computeInfluence({ model, tokenizer: tok, train, targets: rated(0.9), references: [skyRef], checkpoints, cache, sketchDim: 1024 });
    const cached = size();
    const bad = computeInfluence({ model, tokenizer: tok, train, targets: rated(0.1), references: [skyRef], checkpoints, cache, sketchDim: 1024 });
    expect(size()).toBe(cached); // re-rating needs no new gradients
    for (const i of [0, 2, 3, 4, 5]) expect(bad.influence[i]).toBeLessThan(good.influence[i]);
    expect(bad.influence[wrong]).toBeGreaterThan(good.influence[wrong]);
    // A rating of 0.5 is neutral: the output then changes nothing.
    const withNeutral = computeInfluence({ model, tokenizer: tok, train, targets: rated(0.5), references: [skyRef], checkpoints, cache, sketchDim: 1024 });
    const without = computeInfluence({ model, tokenizer: tok, train, references: [skyRef], checkpoints, cache, sketchDim: 1024 });
    expect(maxAbsDiff(withNeutral.influence, without.influence)).toBeLessThan(1e-6);
    // Only positively rated outputs can be what an example "supports".
    expect(computeInfluence({ model, tokenizer: tok, train, targets: rated(0), checkpoints, cache, sketchDim: 1024 }).bestTarget.every((t) => t === -1)).toBe(true);
  });

  test('isolation is highest for an input unlike the others', () => {
    const odd = ex('#### ~~~~ |||| ####?', '%%%% @@@@', 99);
    const scores = scoreInputs({ model, tokenizer: tok, train: [...train, odd], neighbours: 3 });
    const iso = scores.map((s) => s.isolation);
    expect(iso.indexOf(Math.max(...iso))).toBe(train.length);
    expect(scores[train.length].z.isolation).toBeGreaterThan(2);
    // Without targets only loss and isolation count.
    expect(scores.every((s) => s.influence === 0 && s.misplacement === 0 && s.supports === undefined)).toBe(true);
  });
});

describe('signals and combination', () => {
  test('isolationScores: a far vector is the most isolated; ties and single vectors', () => {
    const rnd = prng(9);
    const cluster = Array.from({ length: 12 }, () => Array.from({ length: 8 }, (_, j) => (j === 0 ? 1 : 0) + 0.1 * (rnd() - 0.5)));
    const far = Array.from({ length: 8 }, (_, j) => (j === 5 ? -3 : 0.2));
    const iso = isolationScores([...cluster, far], 3);
    expect(iso.indexOf(Math.max(...iso))).toBe(12);
    expect(isolationScores([[1, 2]])).toEqual([0]);
    // Measured around the mean: a direction every vector shares changes nothing.
    const shifted = isolationScores([...cluster, far].map((v) => v.map((x, j) => x + (j === 7 ? 50 : 0))), 3);
    expect(maxAbsDiff(shifted, iso)).toBeLessThan(1e-9);
    expect(() => isolationScores(cluster, 0)).toThrow(/neighbours/);
  });

  test('robustZ ignores the outlier it measures', () => {
    const z = robustZ([1, 2, 3, 4, 5, 100]);
    expect(z[5]).toBeGreaterThan(20);
    expect(Math.abs(z[2] + z[3])).toBeLessThan(1e-9); // symmetric about the median 3.5
    expect(robustZ([2, 2, 2])).toEqual([0, 0, 0]);
    expect(robustZ([1, 1, 1, 1, 5])[4]).toBeGreaterThan(0); // MAD 0: mean absolute deviation instead
    // A nearly constant signal: rounding-level differences stay small z-scores, not ~1e5.
    expect(Math.abs(robustZ([0, 0, 0, 0, 0, 0, 0, 3e-7])[7])).toBeLessThan(1e-3);
  });

  test('influenceFrom weighs targets by weight and question relevance', () => {
    const alignment = [Float32Array.from([0.8, -0.5])];
    expect(influenceFrom(alignment, [1, 1], null)[0]).toBeCloseTo(0.15, 6);
    expect(influenceFrom(alignment, [1, -1], null)[0]).toBeCloseTo(0.65, 6);
    // Relevance 1 and 0: only the first target counts.
    expect(influenceFrom(alignment, [1, 1], [Float32Array.from([1, 0])])[0]).toBeCloseTo(0.8, 6);
    expect(influenceFrom(alignment, [0, 0], null)[0]).toBe(0);
    const sim = questionSimilarity(['What colour is apple 3?'], ['What colour is apple 9?', 'Who built the bridge?', 'What colour is apple 3?']);
    expect(sim[0][0]).toBeGreaterThan(sim[0][1]);
    expect(sim[0][2]).toBeCloseTo(1, 5);
    expect(targetWeight(1)).toBe(1);
    expect(targetWeight(0)).toBe(-1);
    expect(targetWeight(0.5)).toBe(0);
    expect(() => targetWeight(1.2)).toThrow(/quality/);
  });

  test('misplacementFrom: high when the supported targets ask other questions', () => {
    // Example 0 aligns with target 0 (same question), example 1 with target 1 (another question).
    const alignment = [Float32Array.from([0.9, 0.1, 0.95]), Float32Array.from([0.1, 0.9, 0.95])];
    const similarity = [Float32Array.from([0.8, 0.1, 0.0]), Float32Array.from([0.8, 0.1, 0.0])];
    const [a, b] = misplacementFrom(alignment, similarity, [1, 1, -1]); // target 2 is rated badly: not "supported"
    expect(a).toBeLessThan(0.3);
    expect(b).toBeGreaterThan(0.8);
    expect(misplacementFrom(alignment, similarity, [-1, -1, 0])).toEqual([0, 0]);
    expect(() => misplacementFrom(alignment, similarity, [1, 1, 1], 0)).toThrow(/temperature/);
  });

  test('tracinSteps: three early steps within the run', () => {
    expect(tracinSteps(216)).toEqual([27, 54, 81]);
    expect(tracinSteps(2)).toEqual([1]);
    expect(() => tracinSteps(0)).toThrow(/totalSteps/);
  });
});

describe('bad input', () => {
  let model: GPT2Model;
  const one: QAExample[] = [{ question: 'q?', answer: 'a', source: { file: 'mem', line: 1 } }];
  beforeAll(() => {
    model = GPT2Model.random(cfg, 2);
    model.addAdapter('a', makeLoraConfig({ r: 2, alpha: 2 }, cfg), 0);
  });
  afterAll(() => model.dispose());

  test('clear errors', () => {
    expect(() => scoreInputs({ model, tokenizer: tok, train: [] })).toThrow(/train must hold at least one example/);
    for (const topFraction of [0, -0.1, 1.5, NaN]) expect(() => scoreInputs({ model, tokenizer: tok, train: one, topFraction })).toThrow(/topFraction must be in \(0, 1\]/);
    expect(() => scoreInputs({ model, tokenizer: tok, train: one, targets: [{ question: 'q?', text: 'a', quality: 2 }] })).toThrow(/quality must be in \[0, 1\]/);
    expect(() => scoreInputs({ model, tokenizer: tok, train: one, neighbours: 0 })).toThrow(/neighbours/);
    expect(() => scoreInputs({ model, tokenizer: tok, train: one, weights: { loss: -1 } })).toThrow(/weights.loss/);
    expect(() => computeInfluence({ model, tokenizer: tok, train: [] })).toThrow(/at least one example/);
  });

  test('a single example is scored without failing', () => {
    const [s] = scoreInputs({ model, tokenizer: tok, train: one, topFraction: 1 });
    expect(s.outlier).toBe(true);
    expect(Number.isFinite(s.loss)).toBe(true);
    expect(s.isolation).toBe(0);
  });
});
