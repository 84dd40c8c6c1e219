/**
 * The L-score against its definition, and a training sweep on a tiny model: one run folder per trial,
 * the study's values equal to what the runs measured, the learning rate reaching the optimizer, and
 * a stopped sweep resumed from the interrupted trial's checkpoint.
 */
import * as fs from 'fs';
import * as path from 'path';
import { initBackend } from '../kernel/backend';
import { GPT2Model } from '../kernel/model/gpt2';
import { parameterCount } from '../kernel/model/config';
import { epochsToTarget, lScore, REFERENCE_EPOCHS, REFERENCE_GFLOPS, REFERENCE_SECONDS } from '../kernel/tune/lscore';
import { categorical, float, int } from '../kernel/tune/space';
import { RandomSampler } from '../kernel/tune/random';
import { StudyStopped } from '../kernel/tune/study';
import { sweep } from '../kernel/tune/sweep';
import { byteTokenizer, qaPairs, tinyConfig, tmpDir } from './engine-helpers';

describe('L-score', () => {
  const base = {
    perplexity: 7.5,
    valCurve: [[1, 3.1], [2, 2.4], [3, 1.9], [4, 1.7]] as Array<[number, number]>,
    targetLoss: 2.0,
    epochsTrained: 4,
    trainableParameters: 50_000,
    totalParameters: 1_000_000,
    trainingSeconds: 120,
    gflops: REFERENCE_GFLOPS * 2,
  };

  test('is the product of perplexity and the three documented factors', () => {
    const l = lScore(base);
    // Independent arithmetic from the definitions: target first reached at epoch 3.
    const fD = 1 + 3 / REFERENCE_EPOCHS;
    const fA = 1 + 0.05;
    const fH = 1 + (120 * 2) / REFERENCE_SECONDS;
    expect(l.epochsToTarget).toBe(3);
    expect(l.fD).toBeCloseTo(fD, 12);
    expect(l.fA).toBeCloseTo(fA, 12);
    expect(l.fH).toBeCloseTo(fH, 12);
    expect(l.L).toBeCloseTo(7.5 * fD * fA * fH, 10);
    expect(l.L).toBeGreaterThanOrEqual(l.perplexity);
  });

  test('a run that never reaches the target pays a penalty beyond its whole budget', () => {
    expect(epochsToTarget(base.valCurve, 1.0)).toBeNull();
    expect(lScore({ ...base, targetLoss: 1.0 }).fD).toBeCloseTo(1 + (4 + REFERENCE_EPOCHS) / REFERENCE_EPOCHS, 12);
  });

  test('more trainable parameters, slower hardware-normalised training or higher perplexity all raise L', () => {
    const l0 = lScore(base).L;
    expect(lScore({ ...base, trainableParameters: 1_000_000 }).L).toBeGreaterThan(l0);
    expect(lScore({ ...base, trainingSeconds: 600 }).L).toBeGreaterThan(l0);
    expect(lScore({ ...base, perplexity: 9 }).L).toBeGreaterThan(l0);
  });

  test('bad inputs name the field', () => {
    expect(() => lScore({ ...base, perplexity: NaN })).toThrow(/perplexity must be a finite number > 0, got NaN/);
    expect(() => lScore({ ...base, trainableParameters: 2_000_000 })).toThrow(/trainableParameters must be in \[0, totalParameters=1000000\]/);
  });
});

describe('training sweep', () => {
  let dir: string;
  let model: GPT2Model;
  const tokenizer = byteTokenizer();
  const train = qaPairs(16);
  const validation = qaPairs(6, 100);
  const space = { rank: int(2, 4), alpha: float(4, 8), learningRate: float(1e-3, 2e-2, { log: true }), batchSize: categorical([8]), epochs: int(1, 2), dropout: float(0, 0.1) };

  beforeAll(async () => {
    await initBackend('wasm');
    dir = tmpDir('ct-sweep-');
    model = GPT2Model.random(tinyConfig({ n_positions: 96 }), 4);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('each trial is a run folder whose measured metrics are the study values', async () => {
    const out = path.join(dir, 'sweep');
    const study = await sweep({ model, tokenizer, modelDir: 'tiny', train, validation, dir: out, objective: 'l-score', sampler: new RandomSampler(), trials: 3, seed: 2, space, prune: false });
    expect(study.trials).toHaveLength(3);
    for (const t of study.trials) {
      expect(t.state).toBe('complete');
      const run = t.attrs.run as string;
      const summary = JSON.parse(fs.readFileSync(path.join(run, 'summary.json'), 'utf8'));
      expect(t.value).toBeCloseTo(summary.l_score.L, 10);
      expect(summary.settings.lora.r).toBe(t.params.rank);
      expect(summary.settings.learningRate).toBe(t.params.learningRate);
      expect(summary.steps).toBe((t.params.epochs as number) * Math.ceil(train.length / 8));
      // L from the run's own figures, recomputed here.
      const l = summary.l_score;
      expect(l.L).toBeCloseTo(summary.metrics.validation.finetuned.perplexity * l.fD * l.fA * l.fH, 8);
      expect(l.fA).toBeCloseTo(1 + summary.trainable_parameters / parameterCount(model.config), 12);
      expect(fs.existsSync(path.join(run, 'adapter', 'adapter_model.safetensors'))).toBe(true);
      expect((t.attrs.metrics as Record<string, number>).perplexity).toBeCloseTo(summary.metrics.validation.finetuned.perplexity, 10);
      // Intermediate validation losses were reported for pruning.
      expect(t.intermediate.length).toBeGreaterThan(0);
    }
    expect(model.adapters.size).toBe(0); // trials clean up their adapters
    const ranked = study.ranking().map((t) => t.value!);
    expect(ranked).toEqual([...ranked].sort((a, b) => a - b));
    const file = JSON.parse(fs.readFileSync(path.join(out, 'ranking.json'), 'utf8'));
    expect(file.ranking.map((r: { value: number }) => r.value)).toEqual(ranked);
    const html = fs.readFileSync(path.join(out, 'report.html'), 'utf8');
    for (const t of study.trials) expect(html).toContain(`href="trial-${String(t.number).padStart(3, '0')}/report.html"`);
  });

  test('a stopped sweep leaves the trial resumable; running again continues it from its checkpoint', async () => {
    const out = path.join(dir, 'stopped');
    let steps = 0;
    const opts = { model, tokenizer, modelDir: 'tiny', train, validation, dir: out, objective: 'val-loss' as const, sampler: new RandomSampler(), trials: 2, seed: 5, space: { ...space, epochs: int(2, 2) }, prune: false, evalsPerTrial: 2 };
    await expect(sweep({ ...opts, onProgress: (e) => e.kind === 'step' && steps++, shouldStop: () => steps >= 3 })).rejects.toThrow(StudyStopped);
    const lines = fs.readFileSync(path.join(out, 'study.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.filter((e) => e.type === 'tell')).toHaveLength(0);
    // The report is written when stopped too; the running trial links to its folder, which has no report yet.
    expect(fs.readFileSync(path.join(out, 'report.html'), 'utf8')).toContain('href="trial-000"');
    // Values of another objective, or measured on other data, would not compare: such a resume is refused.
    await expect(sweep({ ...opts, objective: 'perplexity' })).rejects.toThrow(/created with objective "val-loss", not "perplexity"/);
    await expect(sweep({ ...opts, train: train.slice(1) })).rejects.toThrow(/created with train "16 examples, sha256 [0-9a-f]{16}", not "15 examples/);
    const firstStep: number[] = [];
    const study = await sweep({ ...opts, onProgress: (e) => e.kind === 'step' && firstStep.length === 0 && firstStep.push(e.step) });
    expect(firstStep[0]).toBeGreaterThan(1); // continued from the checkpoint, not from step 1
    expect(study.trials.map((t) => t.state)).toEqual(['complete', 'complete']);
    // 4 steps, evaluated every 2: the evaluation before the stop is reported again from the checkpoint.
    expect(study.trials[0].intermediate.map(([step]) => step)).toEqual([2, 4]);
  });
});
