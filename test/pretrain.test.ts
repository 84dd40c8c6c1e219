/**
 * `pretrain` on a small slice of the corpus: a paused run leaves the model folder untouched, the resumed
 * run finishes it and replaces the folder whole, and a run with other corpus settings trains its own
 * tokenizer instead of reusing the first one's.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { initBackend } from '../kernel/backend';
import { loadModel } from '../kernel/model/io';
import { pretrain } from '../kernel/pretrain';

let dir: string;
beforeAll(async () => {
  await initBackend('wasm');
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ct-pretrain-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

test('a paused run leaves the model folder as it was; the resumed run replaces it whole', async () => {
  const out = path.join(dir, 'model');
  const workDir = path.join(dir, 'work');
  fs.mkdirSync(out);
  fs.writeFileSync(path.join(out, 'model.safetensors'), 'the previous model');
  const opts = { out, workDir, steps: 2, batchSize: 2, maxDocuments: 300, vocabSize: 300, checkpointEvery: 1 };
  let steps = 0;
  const paused = await pretrain({ ...opts, onProgress: (e) => void (e.kind === 'step' && steps++), shouldStop: () => steps >= 1 });
  expect([paused.finished, paused.steps]).toEqual([false, 1]);
  expect(fs.readdirSync(out)).toEqual(['model.safetensors']);
  expect(fs.readFileSync(path.join(out, 'model.safetensors'), 'utf8')).toBe('the previous model');

  const done = await pretrain(opts);
  expect([done.finished, done.steps]).toEqual([true, 2]);
  expect(fs.readdirSync(out).sort()).toEqual(['README.md', 'config.json', 'model.safetensors', 'pretrain_metrics.json', 'tokenizer.json']);
  const metrics = JSON.parse(fs.readFileSync(path.join(out, 'pretrain_metrics.json'), 'utf8'));
  const { model, tokenizer } = loadModel(out);
  // Every step trains batchSize windows of the full context.
  expect(metrics.tokens_seen).toBe(2 * 2 * model.config.n_positions);
  expect([metrics.steps, metrics.finished, model.config.vocab_size, tokenizer.vocabSize]).toEqual([2, true, 300, 300]);
  expect(Number.isFinite(metrics.held_out_perplexity)).toBe(true);
  model.dispose();
});

test('other corpus settings in the same work folder get their own tokenizer', async () => {
  const workDir = path.join(dir, 'work2');
  const base = { workDir, steps: 1, batchSize: 2, vocabSize: 300 };
  await pretrain({ ...base, out: path.join(dir, 'a'), maxDocuments: 200 });
  // Resuming the first run's checkpoint with another corpus is refused; without the checkpoint the
  // second run starts afresh, with its own tokenizer.
  await expect(pretrain({ ...base, out: path.join(dir, 'b'), maxDocuments: 400 })).rejects.toThrow(/cannot resume, trainExamples was \d+ and is now \d+/);
  fs.rmSync(path.join(workDir, 'checkpoint'), { recursive: true });
  await pretrain({ ...base, out: path.join(dir, 'b'), maxDocuments: 400 });
  const toks = fs.readdirSync(workDir).filter((f) => f.startsWith('tokenizer')).sort();
  expect(toks).toEqual(['tokenizer-0-200-300.json', 'tokenizer-0-400-300.json']);
  expect(fs.readFileSync(path.join(dir, 'a', 'tokenizer.json'), 'utf8')).not.toEqual(fs.readFileSync(path.join(dir, 'b', 'tokenizer.json'), 'utf8'));
});

describe('pretraining further (from)', () => {
  const small = { batchSize: 2, maxDocuments: 300, vocabSize: 300, checkpointEvery: 1 };
  let first: string;
  beforeAll(async () => {
    first = path.join(dir, 'first');
    await pretrain({ ...small, out: first, workDir: path.join(dir, 'first-work'), steps: 3, seed: 3 });
  });
  const metricsOf = (d: string) => JSON.parse(fs.readFileSync(path.join(d, 'pretrain_metrics.json'), 'utf8'));

  test('a second stage starts from the model, keeps its tokenizer and held-out split, and adds to its figures', async () => {
    const out = path.join(dir, 'second');
    const before = metricsOf(first);
    const r = await pretrain({ ...small, out, workDir: path.join(dir, 'second-work'), steps: 2, seed: 1, from: first, learningRate: 5e-4, warmupSteps: 1 });
    expect([r.finished, r.steps]).toEqual([true, 2]);
    const m = metricsOf(out);
    expect(fs.readFileSync(path.join(out, 'tokenizer.json'), 'utf8')).toBe(fs.readFileSync(path.join(first, 'tokenizer.json'), 'utf8'));
    // The first stage's corpus seed (3), not this stage's order seed (1): its held-out synsets stay held out.
    expect([before.corpus_seed, m.corpus_seed]).toEqual([3, 3]);
    expect(m.corpus).toEqual(before.corpus);
    expect(m.stages.map((s: { from: string | null; steps: number }) => [s.from, s.steps])).toEqual([[null, 3], [first, 2]]);
    expect([m.steps, m.target_steps]).toEqual([5, 5]);
    expect(m.tokens_seen).toBe(before.tokens_seen + 2 * 2 * before.context);
    expect(m.wall_seconds).toBeCloseTo(before.wall_seconds + m.stages[1].wall_seconds, 6);
    expect(m.stages[1]).toMatchObject({ peak_learning_rate: 5e-4, warmup_steps: 1, seed: 1, held_out_perplexity: m.held_out_perplexity });
    expect(m.stages[0].held_out_perplexity).toBe(before.held_out_perplexity);
    expect(m.stages[1].naming_questions).toBeUndefined();
    // The loss curve goes on from the first stage's last step.
    expect(m.loss_curve.map((p: { step: number }) => p.step)).toEqual([...before.loss_curve.map((p: { step: number }) => p.step), 5]);
    // The weights moved away from the first stage's.
    const a = loadModel(first).model.weightArrays();
    const b = loadModel(out).model.weightArrays();
    const name = [...a.keys()].find((k) => k.endsWith('wte.weight'))!;
    expect(Array.from(b.get(name)!.data)).not.toEqual(Array.from(a.get(name)!.data));
    const card = fs.readFileSync(path.join(out, 'README.md'), 'utf8');
    expect(card).toContain('| 1 | from scratch | 3 |');
    expect(card).toContain('| 2 | continued from the stage above | 2 |');
    expect(card).toContain(`| steps × batch | 5 × 2 sequences |`);
  });

  test('a finished second stage that replaced its own starting model is not started again from the new weights', async () => {
    const model = path.join(dir, 'twice');
    fs.cpSync(first, model, { recursive: true });
    const opts = { ...small, out: model, from: model, workDir: path.join(dir, 'twice-work'), steps: 1 };
    await pretrain(opts);
    expect(metricsOf(model).steps).toBe(4);
    await expect(pretrain(opts)).rejects.toThrow(/checkpoint: cannot resume, the checkpoint's run continued from .*twice .*model\.safetensors is now sha256/);
    expect(metricsOf(model).steps).toBe(4);
    // Nor does a run from scratch take over a continued run's checkpoint.
    await expect(pretrain({ ...opts, from: undefined })).rejects.toThrow(/continued from .* and this run starts from scratch; use a new --work folder/);
  });

  test('a stage with naming questions trains on them and says so in its figures and card', async () => {
    const out = path.join(dir, 'naming');
    const r = await pretrain({ ...small, out, workDir: path.join(dir, 'naming-work'), steps: 1, from: first, namingQuestions: true });
    expect(r.finished).toBe(true);
    const m = metricsOf(out);
    expect(m.stages[1].naming_questions).toBe(true);
    expect(m.corpus.namingDocuments).toBeGreaterThan(0);
    expect(m.corpus.documents).toBe(metricsOf(first).corpus.documents);
    // Its token cache is its own: the plain corpus's would lack the naming questions.
    expect(fs.readdirSync(path.join(dir, 'naming-work')).filter((f) => f.startsWith('train-'))).toEqual([expect.stringContaining('-naming-')]);
    const card = fs.readFileSync(path.join(out, 'README.md'), 'utf8');
    expect(card).toContain('| 2 | continued from the stage above, with naming questions | 1 |');
    expect(card).toContain('its definition as the question and its word as the answer');
    expect(fs.readFileSync(path.join(first, 'README.md'), 'utf8')).not.toContain('naming questions');
  });

  test('a paused model cannot be continued', async () => {
    const paused = path.join(dir, 'paused');
    fs.cpSync(first, paused, { recursive: true });
    const file = path.join(paused, 'pretrain_metrics.json');
    fs.writeFileSync(file, JSON.stringify({ ...metricsOf(first), finished: false }));
    await expect(pretrain({ ...small, out: path.join(dir, 'x'), from: paused, workDir: path.join(dir, 'x-work'), steps: 1 })).rejects.toThrow(
      `${file}: finished is false`,
    );
  });
});
