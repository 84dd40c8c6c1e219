/**
 * The `chromatune` command line, run in-process: --help on every subcommand, logprobs --json against the
 * library's own forward pass, a finetune run folder, and clear errors for bad flags.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { initBackend } from '../kernel/backend';
import { buildProgram, main } from '../kernel/cli';
import { GPT2Model } from '../kernel/model/gpt2';
import { saveModel } from '../kernel/model/io';
import { readSafetensors } from '../kernel/model/safetensors';
import { byteTokenizer, logitsOf, logSoftmax, tinyConfig } from './engine-helpers';

let dir: string;
let modelDir: string;
let model: GPT2Model;

/** What the last run wrote to stderr (logs and warnings). */
let stderr = '';

/** Runs the CLI and returns what it wrote to stdout. */
async function run(...args: string[]): Promise<string> {
  let out = '';
  stderr = '';
  const write = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  });
  const err = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  try {
    await main(['node', 'chromatune', ...args]);
  } finally {
    write.mockRestore();
    err.mockRestore();
  }
  return out;
}

beforeAll(async () => {
  await initBackend('wasm');
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ct-cli-'));
  modelDir = path.join(dir, 'model');
  model = GPT2Model.random(tinyConfig({ n_positions: 96 }), 3);
  saveModel(model, byteTokenizer(), modelDir);
  const rows = Array.from({ length: 12 }, (_, i) => JSON.stringify({ prompt: `What is ${i}?`, completion: `It is ${i * 3}` }));
  fs.writeFileSync(path.join(dir, 'qa.jsonl'), rows.join('\n') + '\n');
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('chromatune CLI', () => {
  test.each(['finetune', 'nyc', 'eval', 'sample', 'logprobs', 'pretrain', 'bench', 'sweep', 'decode', 'outliers'])('%s --help describes its options', (name) => {
    const cmd = buildProgram().commands.find((c) => c.name() === name);
    expect(cmd).toBeDefined();
    const help = cmd!.helpInformation();
    expect(help).toContain(`Usage: chromatune ${name}`);
    expect(help.length).toBeGreaterThan(80);
  });

  test('logprobs --json gives token ids and logprobs equal to an independent log-softmax of the logits', async () => {
    const prompt = 'Question: What is 2?\nAnswer:';
    const completion = ' It is 6';
    const out = JSON.parse(await run('logprobs', '--model', modelDir, '--prompt', prompt, '--completion', completion, '--json'));
    const bytes = (s: string) => [...Buffer.from(s, 'utf8')];
    expect(out.prompt_tokens).toEqual(bytes(prompt));
    expect(out.completion_tokens).toEqual(bytes(completion));
    const ids = [...out.prompt_tokens, ...out.completion_tokens];
    const logits = logitsOf(model, [ids]);
    const V = model.config.vocab_size;
    const expected = out.completion_tokens.map((t: number, i: number) => {
      const pos = out.prompt_tokens.length - 1 + i;
      return logSoftmax(logits.subarray(pos * V, (pos + 1) * V))[t];
    });
    expect(out.logprobs).toHaveLength(expected.length);
    out.logprobs.forEach((lp: number, i: number) => expect(lp).toBeCloseTo(expected[i], 4));
    expect(out.total_logprob).toBeCloseTo(expected.reduce((a: number, b: number) => a + b, 0), 3);
  });

  test('nyc batches by length and averages its weights by default, --no-group-by-length and --ema 0 turn them off; finetune --group-by-length and --ema turn them on', async () => {
    // A four-split dataset folder of the nyc-qa layout, from the small question/answer file.
    const nycDir = path.join(dir, 'nyc-data');
    fs.mkdirSync(nycDir, { recursive: true });
    const rows = Array.from({ length: 8 }, (_, i) => JSON.stringify({ id: `f${i}`, fact_id: `f${i}`, category: 'borough', question: `Which number follows ${i}${'?'.padStart(1 + (i % 4) * 3, '!')}`, answer: `${i + 1}` }));
    for (const split of ['train', 'validation', 'test', 'held_out_facts']) fs.writeFileSync(path.join(nycDir, `${split}.jsonl`), rows.join('\n') + '\n');
    const nyc = (...extra: string[]) => run('nyc', '--model', modelDir, '--dataset', nycDir, '--max-steps', '1', '--rank', '2', '--out', path.join(dir, `nyc-${extra.length}`), '--json', ...extra);
    const main = JSON.parse(await nyc());
    expect(main.settings.groupByLength).toBe(true);
    // The main job averages its weights from step 200; a 1-step run has no average and says so.
    expect([main.settings.ema, main.averaged_from]).toEqual([{ decay: 0.99, startStep: 200 }, null]);
    expect(stderr).toContain("warning: ema starts at step 200, after the run's last (1): the run ends on its last weights, not an average");
    const plain = JSON.parse(await nyc('--no-group-by-length', '--ema', '0'));
    expect([plain.settings.groupByLength, plain.settings.ema]).toEqual([false, undefined]);
    await expect(nyc('--patience', '2')).rejects.toThrow('--patience and --ema cannot be combined: early stopping ends on the weights of the best validation loss, --ema on an average; add --ema 0 to stop early');
    const grouped = JSON.parse(await run('finetune', '--model', modelDir, '--data', path.join(dir, 'qa.jsonl'), '--max-steps', '2', '--rank', '2', '--group-by-length', '--ema', '0.5', '--out', path.join(dir, 'grouped'), '--json'));
    expect([grouped.settings.groupByLength, grouped.settings.ema, grouped.averaged_from]).toEqual([true, { decay: 0.5, startStep: 1 }, 1]);
  });

  test('finetune --data writes a run folder with a PEFT adapter, metrics and a report', async () => {
    const out = path.join(dir, 'run');
    const summary = JSON.parse(
      await run('finetune', '--model', modelDir, '--data', path.join(dir, 'qa.jsonl'), '--epochs', '2', '--batch-size', '4', '--rank', '4', '--word-dropout', '0.3', '--rare-word-dropout', '0.1', '--augment-probability', '0.9', '--out', out, '--json'),
    );
    expect(summary.settings.augment).toEqual({ wordDropout: 0.3, rareWordDropout: 0.1, probability: 0.9 });
    expect(summary.settings.groupByLength).toBe(false); // finetune keeps plain shuffled batches unless asked
    expect(summary.train_examples + summary.validation_examples).toBe(12);
    expect(summary.steps).toBe(2 * Math.ceil(summary.train_examples / 4));
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'adapter', 'adapter_config.json'), 'utf8'));
    // No --alpha: twice the rank (scale 2), as recorded in the summary and the adapter.
    expect(cfg).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, fan_in_fan_out: true });
    expect(summary.settings.lora).toMatchObject({ r: 4, alpha: 8 });
    const { tensors } = readSafetensors(path.join(out, 'adapter', 'adapter_model.safetensors'));
    expect(tensors.get('base_model.model.transformer.h.0.attn.c_attn.lora_A.weight')?.shape).toEqual([4, model.config.n_embd]);
    const metrics = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(metrics.filter((m) => m.kind === 'train').map((m) => m.step)).toEqual(Array.from({ length: summary.steps }, (_, i) => i + 1));
    const html = fs.readFileSync(path.join(out, 'report.html'), 'utf8');
    expect(html).toMatch(/^<!doctype html>/);
    expect(html).not.toMatch(/<script|https?:\/\//);
    // the report's validation row carries the summary's figures: perplexity to 2 decimals, the rest as percentages
    const v = summary.metrics.validation;
    const row = html.match(/<tr><th>validation<\/th>(.*?)<\/tr>/)?.[1] ?? '';
    const shown = [...row.matchAll(/<td[^>]*>([^<]*)<\/td>/g)].map((c) => c[1]);
    const p = (x: number) => (100 * x).toFixed(1);
    expect(shown).toEqual([String(v.base.examples), v.base.perplexity.toFixed(2), v.finetuned.perplexity.toFixed(2), p(v.base.exactMatch), p(v.finetuned.exactMatch), p(v.base.tokenF1), p(v.finetuned.tokenF1), p(v.base.rougeL), p(v.finetuned.rougeL), p(v.base.recited), p(v.finetuned.recited)]);
    expect(row).toContain(`<td class="up">${v.finetuned.perplexity.toFixed(2)}</td>`); // perplexity fell: better
    expect(summary.metrics.validation.finetuned.examples).toBe(summary.validation_examples);
    // recited: the share of validation answers that are a training answer other than their reference,
    // recomputed here from answers.jsonl and the training file with a plain lower-case comparison
    const trainRows = fs.readFileSync(path.join(dir, 'qa.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const rows = fs.readFileSync(path.join(out, 'answers.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const trainAnswers = new Set(trainRows.map((r) => r.completion.toLowerCase()).filter((a) => !rows.some((r: { reference: string }) => r.reference.toLowerCase() === a)));
    const expected = rows.filter((r) => trainAnswers.has(r.finetuned.trim().toLowerCase()) && r.finetuned.trim().toLowerCase() !== r.reference.toLowerCase()).length / rows.length;
    expect(summary.metrics.validation.finetuned.recited).toBeCloseTo(expected, 10);
    expect(rows.map((r) => r.finetuned_recited).reduce((a: number, b: number) => a + b, 0) / rows.length).toBeCloseTo(expected, 10);
    const evalArgs = ['eval', '--model', modelDir, '--adapter', path.join(out, 'adapter'), '--data', path.join(dir, 'qa.jsonl'), '--json'];
    const withTrain = JSON.parse(await run(...evalArgs, '--train', path.join(dir, 'qa.jsonl')));
    const own = new Set(trainRows.map((r) => r.completion.toLowerCase()));
    const recitedHere = withTrain.answers.filter((a: { answer: string; reference: string }) => own.has(a.answer.trim().toLowerCase()) && a.answer.trim().toLowerCase() !== a.reference.toLowerCase()).length;
    expect(withTrain.recited).toBeCloseTo(recitedHere / 12, 10);
    expect(JSON.parse(await run(...evalArgs)).recited).toBeUndefined();
    // --adapter continues training that adapter, with its own settings: one step at a tiny learning rate
    // leaves its weights almost as they were (a fresh adapter would start from B = 0).
    const cont = path.join(dir, 'continued');
    const adapterArgs = ['finetune', '--model', modelDir, '--data', path.join(dir, 'qa.jsonl'), '--adapter', path.join(out, 'adapter')];
    const again = JSON.parse(await run(...adapterArgs, '--epochs', '1', '--max-steps', '1', '--lr', '1e-7', '--out', cont, '--json'));
    expect(again.settings.lora).toMatchObject({ r: 4, alpha: 8 });
    const key = 'base_model.model.transformer.h.0.attn.c_attn.lora_B.weight';
    const [oldB, newB] = [out, cont].map((d) => readSafetensors(path.join(d, 'adapter', 'adapter_model.safetensors')).tensors.get(key)!.data as Float32Array);
    const maxAbs = (a: Float32Array) => a.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    expect(maxAbs(oldB)).toBeGreaterThan(1e-3);
    expect(maxAbs(newB.map((x, i) => x - oldB[i]))).toBeLessThan(1e-4);
    await expect(run(...adapterArgs, '--method', 'full', '--out', path.join(dir, 'c2'))).rejects.toThrow('--adapter continues training a LoRA adapter; it cannot be combined with --method full');
    await expect(run(...adapterArgs, '--rank', '8', '--out', path.join(dir, 'c3'))).rejects.toThrow('--adapter trains the adapter with its own LoRA settings; leave out --rank');
    // The folder holds a run now: starting another there is refused, so nothing is appended to it.
    const before = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8');
    await expect(run('finetune', '--model', modelDir, '--data', path.join(dir, 'qa.jsonl'), '--epochs', '1', '--out', out)).rejects.toThrow(`${out} already holds files; continue its run with --resume ${out}, or choose another --out`);
    expect(fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8')).toBe(before);
  });

  test('training examples longer than the context are counted and the first is named in a warning', async () => {
    const data = path.join(dir, 'long.jsonl');
    const rows = [0, 1, 2, 3].map((i) => ({ question: `Q${i}?`, answer: i === 2 ? 'x'.repeat(150) : `A${i}` }));
    fs.writeFileSync(data, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const args = ['finetune', '--model', modelDir, '--data', data, '--validation', path.join(dir, 'qa.jsonl'), '--epochs', '1', '--rank', '2', '--json'];
    const summary = JSON.parse(await run(...args, '--out', path.join(dir, 'long')));
    expect(summary.truncated_train_examples).toBe(1);
    // byte tokenizer: one token per byte of "Question: Q2?\nAnswer:", " " + answer and "\n"
    const tokens = 'Question: Q2?\nAnswer:'.length + 1 + 150 + 1;
    expect(stderr).toContain(`warning: 1 of 4 training examples are longer than 97 tokens (the model's context of 96 and the token it predicts)`);
    expect(stderr).toContain(`the first is ${data}:3 (${tokens} tokens)`);
    expect(fs.readFileSync(path.join(dir, 'long', 'report.html'), 'utf8')).toContain('4 training examples (1 cut to the context), 12 for validation');
    expect(stderr).not.toContain('several lines');
    fs.writeFileSync(data, rows.filter((_, i) => i !== 2).map((r) => JSON.stringify(r)).join('\n') + '\n');
    expect(JSON.parse(await run(...args, '--out', path.join(dir, 'short'))).truncated_train_examples).toBe(0);
    expect(stderr).not.toContain('warning');
    fs.writeFileSync(data, rows.map((r, i) => JSON.stringify(i === 1 ? { ...r, answer: 'line one\nline two' } : r)).join('\n') + '\n');
    await run(...args, '--out', path.join(dir, 'multi'));
    expect(stderr).toContain(`warning: 1 answer spans several lines; a generated answer ends at its first line break`);
    expect(stderr).toContain(`the first is ${data}:2`);
  });

  test('bad flags give errors that name the flag or field and the valid range', async () => {
    await expect(run('finetune', '--model', modelDir, '--data', path.join(dir, 'qa.jsonl'), '--lr', 'abc')).rejects.toThrow(/--lr expects a number/);
    await expect(run('finetune', '--model', modelDir, '--data', path.join(dir, 'qa.jsonl'), '--rank', '0', '--out', path.join(dir, 'r0'))).rejects.toThrow(/lora\.r must be an integer in \[1, \d+\]/);
    await expect(run('finetune', '--model', modelDir, '--data', path.join(dir, 'missing.jsonl'), '--out', path.join(dir, 'r1'))).rejects.toThrow(/missing\.jsonl/);
    await expect(run('finetune', '--model', modelDir, '--data', path.join(dir, 'qa.jsonl'), '--word-dropout', '1', '--out', path.join(dir, 'r2'))).rejects.toThrow(/augment\.wordDropout must be in \[0, 1\), got 1/);
    await expect(run('finetune', '--model', modelDir, '--data', path.join(dir, 'qa.jsonl'), '--word-dropout', '0.3', '--rare-word-dropout', '0.5', '--out', path.join(dir, 'r3'))).rejects.toThrow(/augment\.rareWordDropout must be in \[0, wordDropout = 0\.3\], got 0\.5/);
    await expect(run('finetune', '--model', modelDir, '--data', path.join(dir, 'qa.jsonl'), '--word-dropout', '0.3', '--augment-probability', '2', '--out', path.join(dir, 'r4'))).rejects.toThrow(/augment\.probability must be in \[0, 1\], got 2/);
    await expect(run('sample', '--model', modelDir)).rejects.toThrow(/exactly one of --prompt or --question/);
    const one = path.join(dir, 'one.csv');
    fs.writeFileSync(one, 'question,answer\nWhat is 1?,It is 3\n');
    const tooFew = `${one}: 1 example is too few to split off a validation set`;
    await expect(run('finetune', '--model', modelDir, '--data', one, '--out', path.join(dir, 'one'))).rejects.toThrow(tooFew);
    expect(fs.existsSync(path.join(dir, 'one'))).toBe(false);
    await expect(run('outliers', '--model', modelDir, '--data', one)).rejects.toThrow(tooFew);
  });
});
