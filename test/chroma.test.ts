/**
 * ChromaTune's parts: parameter nodes (trilinear sub-weights reaching the optimizer, ranks and
 * dropout reaching the adapter, decoding schedules), the colour scale, and quality fields.
 */
import { initBackend } from '../kernel/backend';
import { GPT2Model } from '../kernel/model/gpt2';
import { makeLoraConfig } from '../kernel/lora/config';
import { finetune } from '../kernel/train/finetune';
import { colourScale, colourToQuality, qualityColour } from '../kernel/chroma/colour';
import { fitField } from '../kernel/chroma/field';
import { blend, checkPosition, cornerSubWeights, decodingSettings, multiplierAt, normalisedEntropy, trainingSettings, trilinearWeights, type Vec3 } from '../kernel/chroma/node';
import { byteTokenizer, prng, qaPairs, tinyConfig } from './engine-helpers';
import chroma from 'chroma-js';

describe('parameter nodes', () => {
  test('trilinear weights: a partition of unity that is 1 on the corner a node sits on', () => {
    const rnd = prng(1);
    for (let i = 0; i < 20; i++) {
      const p: Vec3 = [rnd(), rnd(), rnd()];
      const w = trilinearWeights(p);
      expect(w.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
      // Corner 5 = (x=1, y=0, z=1): weight p_x·(1-p_y)·p_z.
      expect(w[5]).toBeCloseTo(p[0] * (1 - p[1]) * p[2], 12);
      // Blending corner values that are linear in the coordinates reproduces the point (trilinear exactness).
      const xs = Array.from({ length: 8 }, (_, c) => (c & 1) * 2 + ((c >> 1) & 1) * 3 - ((c >> 2) & 1));
      expect(blend(xs, p)).toBeCloseTo(2 * p[0] + 3 * p[1] - p[2], 12);
    }
    expect(trilinearWeights([1, 1, 0])).toEqual([0, 0, 0, 1, 0, 0, 0, 0]);
    expect(cornerSubWeights([0.5, 0.5, 0.5])).toEqual(Array(8).fill(1));
    expect(() => checkPosition('rank', [0.5, 2, 0])).toThrow(/node "rank": position must be \[x, y, z\] with each in \[0, 1\]/);
  });

  test('the learning-rate node sets per-group learning rates that reach the optimizer', async () => {
    await initBackend('wasm');
    const cfg = tinyConfig({ n_layer: 2 });
    const tok = byteTokenizer();
    const train = qaPairs(8);
    const lr = 1e-2;
    // Late layers, MLP, factor B favoured.
    const p: Vec3 = [0.9, 0.8, 0.7];
    const ts = trainingSettings({ learningRate: p }, cfg);
    const expected = (d: number, m: number, f: number) => lr * 8 * [d, m, f].reduce((s, q, a) => s * (q * p[a] + (1 - q) * (1 - p[a])), 1);
    expect(ts.groupScales['h1.mlp.B'] * lr).toBeCloseTo(expected(1, 1, 1), 12);
    expect(ts.groupScales['h0.attn.A'] * lr).toBeCloseTo(expected(0, 0, 0), 12);

    const model = GPT2Model.random(cfg, 2);
    const adapter = model.addAdapter('node', makeLoraConfig({ r: 4, alpha: 4 }, cfg), 3);
    model.setActiveAdapter('node');
    const before = new Map([...adapter.layers].flatMap(([path, l]) => [[`${path}.A`, l.A.dataSync().slice()], [`${path}.B`, l.B.dataSync().slice()]]));
    await finetune({ model, tokenizer: tok, train, adapterName: 'node', learningRate: lr, groupScales: ts.groupScales, maxSteps: 1, batchSize: 8, schedule: 'constant', warmupSteps: 0, gradClipNorm: 0, weightDecay: 0 });
    // Adam's first step moves every weight with a gradient by lr_group·g/(|g|+eps) ≈ lr_group.
    for (const [path, l] of adapter.layers) {
      const d = Number(/\.h\.(\d+)\./.exec(path)![1]);
      const m = path.includes('.mlp.') ? 1 : 0;
      for (const [f, t] of [[0, l.A], [1, l.B]] as const) {
        const now = t.dataSync();
        const old = before.get(`${path}.${f ? 'B' : 'A'}`)!;
        let maxStep = 0;
        for (let i = 0; i < now.length; i++) maxStep = Math.max(maxStep, Math.abs(now[i] - old[i]));
        if (f === 0 && maxStep === 0) continue; // A gets no gradient while B is still zero
        expect(maxStep / expected(d, m, f)).toBeCloseTo(1, 2);
      }
    }
    model.dispose();
  });

  test('rank, alpha and dropout nodes give per-module patterns the adapter accepts', () => {
    const cfg = tinyConfig({ n_layer: 2, n_embd: 64 });
    const low = trainingSettings({ rank: [0.5, 0.5, 0] }, cfg).lora;
    const high = trainingSettings({ rank: [0.5, 0.5, 1] }, cfg).lora;
    expect(Object.values(low.rankPattern).every((r) => r === 2)).toBe(true);
    expect(Object.values(high.rankPattern).every((r) => r === 64)).toBe(true);
    // Toward late MLP: the last layer's MLP gets the larger rank.
    const tilted = trainingSettings({ rank: [1, 1, 0.6] }, cfg).lora;
    expect(tilted.rankPattern['h.1.mlp.c_fc']).toBeGreaterThan(tilted.rankPattern['h.0.attn.c_attn']);
    const model = GPT2Model.random(cfg, 1);
    const adapter = model.addAdapter('t', makeLoraConfig(tilted, cfg), 0);
    expect(adapter.layers.get('transformer.h.1.mlp.c_fc')!.r).toBe(tilted.rankPattern['h.1.mlp.c_fc']);
    const drop = trainingSettings({ dropout: [0, 0, 1] }, cfg).lora;
    // At the (first layer, attention) edge all of the level's weight lands there: 0.3·4, capped at 0.9.
    expect(drop.dropoutPattern['h.0.attn.c_attn']).toBeCloseTo(Math.min(0.9, 0.3 * 4), 12);
    expect(drop.dropoutPattern['h.1.mlp.c_fc']).toBe(0);
    model.dispose();
  });

  test('decoding nodes: level, ramp over the answer, and entropy adaptivity', () => {
    const flat = decodingSettings({ temperature: [0.5, 0.5, 0.5], topP: [1, 0.5, 0.5] });
    const logits = new Float32Array([2, 1, 0, -1]);
    expect(flat.paramsAt(0, 10, logits)).toEqual({ temperature: 0.75, topP: 1 });
    expect(flat.paramsAt(9, 10, logits)).toEqual({ temperature: 0.75, topP: 1 });
    const rising = decodingSettings({ temperature: [0.5, 1, 0.5] });
    expect(rising.paramsAt(9, 10, logits).temperature).toBeCloseTo(0.75 * 4, 12);
    // Uniform logits have entropy 1: "looser when unsure" doubles the temperature there.
    expect(normalisedEntropy(new Float32Array(16))).toBeCloseTo(1, 12);
    const adaptive = decodingSettings({ temperature: [0.5, 0.5, 1] });
    expect(adaptive.paramsAt(0, 10, new Float32Array(16)).temperature).toBeCloseTo(1.5, 12);
    expect(adaptive.paramsAt(0, 10, new Float32Array([50, 0, 0, 0])).temperature).toBeCloseTo(0.375, 3);
  });
});

describe('colour scale', () => {
  test('perceptual: lightness rises monotonically from poor to good, and colours invert to qualities', () => {
    let last = -Infinity;
    for (let i = 0; i <= 50; i++) {
      const q = i / 50;
      const l = chroma(qualityColour(q)).lab()[0];
      expect(l).toBeGreaterThan(last);
      last = l;
      expect(Math.abs(colourToQuality(qualityColour(q)) - q)).toBeLessThanOrEqual(1 / 256);
    }
    expect(colourToQuality('yellow')).toBeGreaterThan(0.9);
    expect(colourToQuality('rgb(68, 1, 84)')).toBeLessThan(0.02);
    expect(() => colourToQuality('not-a-colour')).toThrow(/not a colour: "not-a-colour"/);
    const s = colourScale();
    expect(s.stops[0]).toEqual([0, qualityColour(0)]);
    expect(s.stops.at(-1)).toEqual([1, qualityColour(1)]);
  });
});

describe('quality field', () => {
  test('fits the runs, points toward improvement, and is surer near runs than far away', () => {
    const rnd = prng(4);
    const truth = (p: Vec3) => 0.2 + 0.6 * p[0] * (0.5 + 0.5 * p[1]);
    const pts: Vec3[] = Array.from({ length: 16 }, () => [rnd(), rnd(), rnd()] as Vec3);
    const at: Vec3 = [0.4, 0.6, 0.5];
    const f = fitField(pts, pts.map(truth), at);
    expect(Math.abs(f.value.mean - truth(at))).toBeLessThan(0.05);
    // Independent gradient of the truth at `at`: (0.6(0.5+0.5y), 0.3x, 0).
    const g = [0.6 * (0.5 + 0.5 * at[1]), 0.3 * at[0], 0];
    const gn = Math.hypot(...g);
    const cos = f.improvement.reduce((s, v, i) => s + (v * g[i]) / gn, 0);
    expect(cos).toBeGreaterThan(0.9);
    expect(f.samples).toHaveLength(125);
    const near = fitField(pts, pts.map(truth), pts[0]).value.sd;
    const far = fitField(pts.slice(0, 3), pts.slice(0, 3).map(truth), [1, 1, 1]).value.sd;
    expect(near).toBeLessThan(far);
    expect(fitField([], [], at).value).toMatchObject({ mean: 0.5, sd: 0.5 });
    expect(() => fitField([at], [1.5], at)).toThrow(/quality of run 0 must be in \[0, 1\], got 1.5/);
  });
});
