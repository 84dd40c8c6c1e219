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
