/**
 * Decoding optimisation: templates and their errors, mean-pooled embeddings, scoring, and a small
 * grid study on a tiny model that stores every response and ranks the combinations.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '../kernel/backend/tf';
import { initBackend } from '../kernel/backend';
import { GPT2Model } from '../kernel/model/gpt2';
import { makeLoraConfig } from '../kernel/lora/config';
import { cosineSimilarity, embedText, embedTexts } from '../kernel/tune/embedding';
import { gridSize } from '../kernel/tune/grid';
import {
  type DecodeConfig,
  DecodeConfigError,
  decodeSpace,
  desiredFor,
  fillTemplate,
  loadDecodeConfig,
  renderPrompt,
  resolveDecodeConfig,
  runDecode,
  scoreResponse,
  type StoredResponse,
} from '../kernel/tune/decode';
import { byteTokenizer, perturbedModel, tinyConfig, tmpDir } from './engine-helpers';

let model: GPT2Model;
const tok = byteTokenizer();

beforeAll(async () => {
  await initBackend('wasm');
  model = perturbedModel(tinyConfig({ n_positions: 48 }), 7, 0.1);
});
afterAll(() => model.dispose());

/** A small valid configuration; `over` replaces fields. */
const config = (over: Partial<DecodeConfig> = {}): DecodeConfig => ({
  template: 'Q: {{city}}?\nA:',
  vars: [{ city: 'NYC', borough: 'Queens' }, { city: 'LA' }],
  desired: 'big {{city}}',
  space: { temperature: { low: 0, high: 1 }, topP: 1, topK: 0 },
  samplesPerCombination: 2,
  maxTokens: 4,
  stop: [],
  interval: 0.5,
  ...over,
});

describe('templates', () => {
  it('fills placeholders, with or without spaces, and allows unused vars', () => {
    expect(fillTemplate('Hi {{name}}, {{ name }} of {{place}}', { name: 'Ann', place: 'Queens', unused: 'x' })).toBe('Hi Ann, Ann of Queens');
    expect(fillTemplate('no placeholders', {})).toBe('no placeholders');
    expect(fillTemplate('{{a}}', { a: '$& literal' })).toBe('$& literal');
  });

  it('a missing variable names the placeholder and the template', () => {
    expect(() => fillTemplate('Where is {{landmark}}?', { borough: 'Bronx' })).toThrow(/\{\{landmark\}\}.*"landmark".*vars given: borough/);
    expect(() => fillTemplate('Where is {{landmark}}?', {})).toThrow(/template "Where is \{\{landmark\}\}\?"/);
    expect(() => resolveDecodeConfig(config({ vars: [{ city: 'NYC' }, { town: 'LA' }] }))).toThrow(/prompts\[1\]: template "Q: \{\{city\}\}\?\\nA:" uses \{\{city\}\}/);
  });

  it('a malformed placeholder or a var name no placeholder can use is an error, not literal text for the model', () => {
    expect(() => fillTemplate('Where is {{landmark}?', { landmark: 'x' })).toThrow('template "Where is {{landmark}?" has a "{{" that is not part of a {{name}} placeholder');
    expect(() => fillTemplate('Hi {{first name}}', { 'first name': 'Ada' })).toThrow('has a "{{" that is not part of a {{name}} placeholder');
    expect(() => resolveDecodeConfig(config({ vars: [{ 'first name': 'Ada' }, { city: 'LA' }] }))).toThrow('"first name" cannot be a placeholder name (no spaces or braces), e.g. "first_name"');
  });

  it('fills the desired output, prompt variants and system prompts from each prompt\'s vars', () => {
    const c = resolveDecodeConfig(config({ systemPrompts: ['', 'You know {{city}}.'], promptVariants: ['Tell me about {{city}}:'] }));
    expect(c.prompts).toHaveLength(2);
    expect(desiredFor(c, 0)).toBe('big NYC');
    expect(renderPrompt(c, 1, 0, 0)).toBe('Q: LA?\nA:');
    expect(renderPrompt(c, 1, 1, 1)).toBe('You know LA.\nTell me about LA:');
    const space = decodeSpace(c);
    expect(space.promptVariant).toEqual({ kind: 'categorical', choices: [0, 1] });
    expect(space.systemPrompt).toEqual({ kind: 'categorical', choices: [0, 1] });
    expect(gridSize(space, 0.5)).toBe(3 * 2 * 2);
    expect(() => resolveDecodeConfig(config({ desired: '{{county}}' }))).toThrow(/desired for prompts\[0\].*\{\{county\}\}/);
    expect(() => resolveDecodeConfig(config({ promptVariants: ['{{borough}} now'] }))).toThrow(/promptVariants\[0\] for prompts\[1\].*\{\{borough\}\}/);
  });
});

describe('bad input', () => {
  const bad: Array<[string, unknown, RegExp]> = [
    ['empty prompts', { prompts: [], desired: 'x' }, /prompts is empty/],
    ['no prompts', { desired: 'x' }, /no prompts/],
    ['N < 1', config({ samplesPerCombination: 0 }), /samplesPerCombination must be an integer >= 1, got 0/],
    ['negative temperature', config({ space: { temperature: { low: -0.5, high: 1 } } }), /space\.temperature\.low .*numbers >= 0.*-0\.5/],
    ['topP above 1', config({ space: { topP: { low: 0.5, high: 1.5 } } }), /space\.topP\.high .*\(0, 1\].*1\.5/],
    ['topP of 0', config({ space: { topP: [0, 0.5] } }), /space\.topP\[0\] .*\(0, 1\]/],
    ['inverted range', config({ space: { temperature: { low: 1, high: 0.5 } } }), /space\.temperature: low 1 > high 0\.5/],
    ['fractional topK', config({ space: { topK: 2.5 } }), /space\.topK .*integers >= 0/],
    ['unknown objective', config({ objective: 'bleu' as never }), /objective must be one of cosine, tokenF1, rougeL, combined/],
    ['unknown sampler', config({ sampler: 'annealing' }), /sampler must be one of grid, random, bayes, tpe, pso/],
    ['no desired output', { ...config(), desired: '' }, /desired must not be empty/],
    ['a typo in a field', { ...config(), samples: 3 }, /unknown field "samples".*samplesPerCombination/],
  ];
  it.each(bad)('%s', (_, raw, message) => {
    expect(() => resolveDecodeConfig(raw)).toThrow(DecodeConfigError);
    expect(() => resolveDecodeConfig(raw)).toThrow(message);
  });

  it('a config file names itself in errors; flags override its fields', () => {
    const dir = tmpDir('decode-cfg');
    const file = path.join(dir, 'c.json');
    fs.writeFileSync(file, JSON.stringify(config()));
    expect(loadDecodeConfig(file, { samplesPerCombination: 5, trials: undefined }).samplesPerCombination).toBe(5);
    // A bad value from the file names the file; a bad override names the override instead.
    fs.writeFileSync(file, JSON.stringify(config({ samplesPerCombination: 0 })));
    expect(() => loadDecodeConfig(file)).toThrow(`${file}: samplesPerCombination`);
    fs.writeFileSync(file, JSON.stringify(config()));
    expect(() => loadDecodeConfig(file, { samplesPerCombination: 0 }, { samplesPerCombination: '--samples' })).toThrow(`--samples (overrides ${file}): samplesPerCombination`);
    expect(() => loadDecodeConfig(file, { interval: 7 })).toThrow(`interval (overrides ${file}): interval`);
    fs.writeFileSync(file, '{ not json');
    expect(() => loadDecodeConfig(file)).toThrow(/invalid JSON/);
  });
});

describe('embeddings', () => {
  it('are the mean over token positions of the final hidden states', () => {
    const text = 'Queens, NYC';
    const ids = tok.encode(text);
    const hidden = tf.tidy(() => model.forward(tf.tensor2d(ids, [1, ids.length], 'int32')).hidden);
    const h = hidden.arraySync()[0];
    hidden.dispose();
    const d = model.config.n_embd;
    const byHand = Array.from({ length: d }, (_, j) => h.reduce((s, row) => s + row[j], 0) / ids.length);
    // Batched with a shorter and a longer text: padding must not leak into the mean.
    const [, vec] = embedTexts(model, tok, ['hi', text, 'a much longer text than the others'], { batchSize: 3 });
    expect(vec).toHaveLength(d);
    for (let j = 0; j < d; j++) expect(Math.abs(vec[j] - byHand[j])).toBeLessThan(1e-4);
    const alone = embedText(model, tok, 'hi');
    const batched = embedTexts(model, tok, ['a much longer text than the others', 'hi'], { batchSize: 2 })[1];
    for (let j = 0; j < d; j++) expect(Math.abs(alone[j] - batched[j])).toBeLessThan(1e-4);
  });

  it('cosine of identical texts is 1; an empty text resembles nothing', () => {
    const [a, b, empty] = embedTexts(model, tok, ['Staten Island', 'Staten Island', '']);
    expect(cosineSimilarity(a, b)).toBeCloseTo(1, 6);
    expect(cosineSimilarity(a, a)).toBeCloseTo(1, 6);
    expect(cosineSimilarity(a, empty)).toBe(0);
    expect(cosineSimilarity([1, 0], [0, 2])).toBe(0);
    expect(cosineSimilarity([1, 2], [-2, -4])).toBeCloseTo(-1, 12);
  });

  it('no tensors leak', () => {
    const before = tf.memory().numTensors;
    embedTexts(model, tok, ['one', 'two words', 'three more words'], { batchSize: 2 });
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('scoring', () => {
  it('a response equal to the desired output scores 1', () => {
    const s = scoreResponse('Kings County', 'Kings County', 1);
    expect(s).toMatchObject({ tokenF1: 1, rougeL: 1, exactMatch: 1, combined: 1 });
    expect(scoreResponse('Queens', 'Kings County', 0).tokenF1).toBe(0);
  });
});

describe('runDecode', () => {
  it('a grid over temperature at 0.5 visits 0, 0.5, 1 and stores every response', async () => {
    const out = tmpDir('decode-run');
    const c = resolveDecodeConfig(config());
    const seen: number[] = [];
    const r = await runDecode({ model, tokenizer: tok, config: c, out, onTrial: (p) => seen.push(p.done) });
    const temps = r.study.trials.map((t) => t.params.temperature).sort();
    expect(temps).toEqual([0, 0.5, 1]);
    expect(r.study.trials.map((t) => t.state)).toEqual(['complete', 'complete', 'complete']);
    expect(r.total).toBe(3);
    expect(seen).toEqual([1, 2, 3]);

    // combinations × prompts × samples, in the trials' attrs and in responses.jsonl.
    const stored = r.study.trials.flatMap((t) => t.attrs.responses as StoredResponse[]);
    expect(stored).toHaveLength(3 * 2 * 2);
    for (const t of r.study.trials) {
      const rs = t.attrs.responses as StoredResponse[];
      expect(rs.map((x) => [x.promptIndex, x.sample])).toEqual([[0, 0], [0, 1], [1, 0], [1, 1]]);
      expect(rs[0].prompt).toBe('Q: NYC?\nA:');
      expect(rs[2].desired).toBe('big LA');
      expect(Object.keys(rs[0].scores).sort()).toEqual(['combined', 'cosine', 'exactMatch', 'rougeL', 'tokenF1']);
      expect(rs[0].score).toBe(rs[0].scores.combined);
      const metrics = t.attrs.metrics as Record<string, number>;
      expect(t.value).toBeCloseTo(rs.reduce((s, x) => s + x.score, 0) / rs.length, 12);
      expect(metrics.combined).toBe(t.value);
    }
    const lines = fs.readFileSync(path.join(out, 'responses.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(12);
    expect(lines[0]).toMatchObject({ trial: 0, params: r.study.trials[0].params, promptIndex: 0, sample: 0 });

    // Ranked best first, in the result and in ranking.json.
    const values = r.ranking.map((e) => e.value);
    expect(values).toEqual([...values].sort((a, b) => b - a));
    expect(r.best?.value).toBe(r.study.best?.value);
    const file = JSON.parse(fs.readFileSync(path.join(out, 'ranking.json'), 'utf8'));
    expect(file.ranking.map((e: { trial: number }) => e.trial)).toEqual(r.ranking.map((e) => e.trial));
    expect(fs.existsSync(path.join(out, 'study.jsonl'))).toBe(true);
    expect(fs.existsSync(path.join(out, 'report.html'))).toBe(true);

    // Greedy decoding (temperature 0) gives the same text for every sample of a prompt.
    const greedy = r.study.trials.find((t) => t.params.temperature === 0)!.attrs.responses as StoredResponse[];
    expect(greedy[0].text).toBe(greedy[1].text);

    // Running again resumes: nothing is repeated, nothing is lost.
    const again = await runDecode({ model, tokenizer: tok, config: c, out });
    expect(again.study.trials).toHaveLength(3);
    expect(fs.readFileSync(path.join(out, 'responses.jsonl'), 'utf8').trim().split('\n')).toHaveLength(12);
    expect(again.ranking.map((e) => e.trial)).toEqual(r.ranking.map((e) => e.trial));
    // Another configuration in the same folder is refused.
    await expect(runDecode({ model, tokenizer: tok, config: resolveDecodeConfig(config({ samplesPerCombination: 3 })), out })).rejects.toThrow(/another configuration .*; these fields differ: samplesPerCombination;/);
    // So is another model, or the same model with an adapter: their responses would not compare.
    const other = GPT2Model.random(model.config, 99);
    await expect(runDecode({ model: other, tokenizer: tok, config: c, out })).rejects.toThrow(/created with model "sha256 [0-9a-f]{16}", not "sha256 [0-9a-f]{16}"/);
    model.addAdapter('probe', makeLoraConfig({ r: 2 }, model.config), 0);
    try {
      await expect(runDecode({ model, tokenizer: tok, config: c, out })).rejects.toThrow(/created with adapter null, not "sha256 [0-9a-f]{16}"/);
    } finally {
      model.removeAdapter('probe');
    }
    other.dispose();
  });

  it('any sampler by name runs the requested number of trials', async () => {
    const c = resolveDecodeConfig(config({ sampler: 'random', trials: 2, samplesPerCombination: 1, space: { temperature: { low: 0.5, high: 1 }, topP: { low: 0.8, high: 1 }, topK: [0, 5] } }));
    const r = await runDecode({ model, tokenizer: tok, config: c });
    expect(r.study.trials.map((t) => t.state)).toEqual(['complete', 'complete']);
    for (const t of r.study.trials) {
      expect(t.params.temperature).toBeGreaterThanOrEqual(0.5);
      expect([0, 5]).toContain(t.params.topK);
      expect(t.attrs.responses).toHaveLength(2);
    }
  });

  it('a prompt longer than the context is refused before any trial', async () => {
    const c = resolveDecodeConfig(config({ template: 'x'.repeat(60) + '{{city}}' }));
    await expect(runDecode({ model, tokenizer: tok, config: c })).rejects.toThrow(/prompts\[0\].*tokens; it must have 1 to 47/);
  });
});
