/**
 * The notebook-facing classes: Dataset (openDataset by name or file, its arquero table with the file's
 * other fields, its bundle), tableView and maskedTokens, and fineTuneRun → RunResult on a tiny model
 * (live progress display, run folder, bundle, side-by-side answers). Text from data is escaped in
 * every HTML view.
 */
import * as fs from 'fs';
import * as path from 'path';
import { initBackend } from '../kernel/backend';
import { Dataset, listDatasets, maskedTokens, openDataset, resolveDataset, tableView } from '../kernel/data/dataset';
import { DatasetError } from '../kernel/data/load';
import { setDisplaySink, type DisplayOptions, type MimeBundle } from '../kernel/display/mime';
import { GPT2Model } from '../kernel/model/gpt2';
import { projectPath } from '../kernel/paths';
import { fineTuneRun, RunResult } from '../kernel/run/result';
import { byteTokenizer, qaPairs, tinyConfig, tmpDir } from './engine-helpers';

const XSS = '<script>window.__pwned=1</script>';
const ESCAPED = '&lt;script&gt;window.__pwned=1&lt;/script&gt;';

let dir: string;
beforeAll(() => {
  dir = tmpDir('notebook-api');
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
afterEach(() => setDisplaySink(null));

/** Every bundle's HTML must carry the escaped text and never the raw markup. */
function expectEscaped(bundle: MimeBundle): void {
  expect(bundle['text/html']).toContain(ESCAPED);
  expect(bundle['text/html']).not.toContain('<script');
  expect(bundle['text/plain']).toContain(XSS); // plain text stays literal
}

describe('Dataset', () => {
  test('a shipped dataset by name: the file, its examples, and its other fields as table columns', () => {
    expect(listDatasets()).toEqual(expect.arrayContaining(['nyc-qa/train', 'nyc-qa/validation', 'nyc-qa/test', 'nyc-qa/held_out_facts']));
    expect(path.resolve(resolveDataset('nyc-qa/train'))).toBe(projectPath('datasets', 'nyc-qa', 'train.jsonl'));
    const ds = openDataset('nyc-qa/validation');
    expect(ds).toBeInstanceOf(Dataset);
    expect(ds.name).toBe('nyc-qa/validation');
    const lines = fs.readFileSync(projectPath('datasets', 'nyc-qa', 'validation.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(ds.length).toBe(lines.length);
    expect(ds.examples[3]).toMatchObject({ id: lines[3].id, question: lines[3].question, answer: lines[3].answer });
    const t = ds.table;
    expect(t.columnNames()).toEqual(['id', 'question', 'answer', 'file', 'line', 'fact_id', 'category']);
    expect(t.numRows()).toBe(lines.length);
    expect(t.array('category')).toEqual(lines.map((l) => l.category));
    // The table supports arquero's verbs: counts per category add up.
    const counts = t.groupby('category').count().objects() as Array<{ category: string; count: number }>;
    expect(counts.reduce((s, r) => s + r.count, 0)).toBe(lines.length);
  });

  test('a file with other field names; slice and filter keep the extra fields aligned', () => {
    const file = path.join(dir, 'mine.jsonl');
    const rows = [
      { query: 'What is 1?', reply: 'One', topic: 'a' },
      { query: `Is ${XSS} safe?`, reply: 'No & never', topic: 'b' },
      { query: 'What is 3?', reply: 'Three', topic: 'a' },
    ];
    fs.writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const ds = openDataset(file, { questionField: 'query', answerField: 'reply' });
    expect(ds.name).toBe('mine.jsonl');
    expect(ds.examples.map((x) => x.answer)).toEqual(['One', 'No & never', 'Three']);
    expect(ds.table.columnNames()).toEqual(['id', 'question', 'answer', 'file', 'line', 'topic']);
    const a = ds.filter((_, extra) => extra.topic === 'a');
    expect(a.examples.map((x) => x.question)).toEqual(['What is 1?', 'What is 3?']);
    expect(a.table.array('topic')).toEqual(['a', 'a']);
    expect(ds.slice(1).table.array('topic')).toEqual(['b', 'a']);
    expectEscaped(ds.toMimeBundle());
  });

  test('CSV files open too (no extra columns); an unknown name lists the shipped datasets', () => {
    const file = path.join(dir, 'faq.csv');
    fs.writeFileSync(file, 'Prompt Text,Expected Reply\n"Hello, who?",Me\nBye,You\n');
    const ds = openDataset(file, { questionField: 'Prompt Text', answerField: 'Expected Reply', name: 'faq' });
    expect(ds.name).toBe('faq');
    expect(ds.examples.map((x) => [x.question, x.answer])).toEqual([['Hello, who?', 'Me'], ['Bye', 'You']]);
    expect(ds.table.columnNames()).toEqual(['id', 'question', 'answer', 'file', 'line']);
    expect(() => openDataset('nyc-qa/nope')).toThrow(DatasetError);
    expect(() => openDataset('nyc-qa/nope')).toThrow(/no dataset "nyc-qa\/nope".*nyc-qa\/train/);
  });

  test('the bundle: HTML table and text summary', () => {
    const ds = new Dataset('tiny', qaPairs(3));
    const b = ds.toMimeBundle();
    expect(Object.keys(b).sort()).toEqual(['text/html', 'text/plain']);
    expect(b['text/html']).toContain('Dataset tiny');
    expect(b['text/plain']).toMatch(/^Dataset tiny: 3 examples/);
  });
});

describe('tableView and maskedTokens', () => {
  test('tableView escapes column names and values, right-aligns numbers, and says what it left out', async () => {
    const ds = new Dataset('t', qaPairs(30));
    const rows = [{ [XSS]: 1.23456789, text: XSS }, { [XSS]: 2, text: 'plain' }];
    const b = tableView(rows, { title: `Title ${XSS}` }).toMimeBundle();
    expectEscaped(b);
    expect(b['text/html']).toContain('<td class="num">1.235</td>');
    const long = tableView(ds.table, { limit: 5 }).toMimeBundle();
    expect((long['text/html'] as string).match(/<tr>/g)).toHaveLength(6); // header + 5 rows
    expect(long['text/html']).toContain('first 5 of 30 rows');
    expect(long['text/plain']).toContain('(first 5 of 30 rows)');
  });

  test('maskedTokens: prompt tokens weigh 0, answer tokens 1, and the ids decode to the example', () => {
    const tok = byteTokenizer();
    const m = maskedTokens(tok, { question: 'Who <b>?', answer: 'Me' });
    expect(m.ids.length).toBe(m.weights.length);
    expect(m.weights.slice(0, m.promptLength).every((w) => w === 0)).toBe(true);
    expect(m.weights.slice(m.promptLength).every((w) => w === 1)).toBe(true);
    expect(tok.decode(m.ids)).toBe('Question: Who <b>?\nAnswer: Me\n');
    expect(m.tokens.join('')).toBe('Question: Who <b>?\nAnswer: Me\n');
    const b = m.toMimeBundle();
    // One byte per token with this tokenizer: each of < b > is its own escaped chip.
    expect(b['text/html']).toContain('<code>&lt;</code>');
    expect(b['text/html']).not.toMatch(/<code>[<>]<\/code>/);
    expect(b['text/plain']).toContain(`weights: [${m.weights.join(', ')}]`);
  });
});

describe('fineTuneRun', () => {
  const tokenizer = byteTokenizer();

  beforeAll(async () => {
    await initBackend('wasm');
  });

  test('trains with a live display updated in place, writes the run folder, and shows itself as the run bundle', async () => {
    const calls: Array<{ op: string; bundle: MimeBundle; o: DisplayOptions }> = [];
    setDisplaySink({ display: (bundle, o) => calls.push({ op: 'display', bundle, o }), update: (bundle, o) => calls.push({ op: 'update', bundle, o }) });
    const model = GPT2Model.random(tinyConfig({ n_positions: 96 }), 3);
    const validation = [...qaPairs(3, 50), { question: `Is ${XSS} ok?`, answer: XSS, source: { file: 'mem', line: 99 } }];
    const r = await fineTuneRun({
      model, tokenizer, modelDir: 'tiny', train: new Dataset('tiny', qaPairs(16)), validation, out: path.join(dir, 'run'),
      lora: { r: 4, alpha: 8 }, epochs: 2, batchSize: 8, learningRate: 1e-2, evalEvery: 2, title: `Tiny ${XSS}`,
    });
    expect(r).toBeInstanceOf(RunResult);
    expect(r.dir).toBe(path.join(dir, 'run'));
    for (const f of ['summary.json', 'metrics.jsonl', 'answers.jsonl', 'report.html', 'adapter/adapter_config.json', 'adapter/adapter_model.safetensors']) {
      expect(fs.existsSync(path.join(r.dir, f))).toBe(true);
    }
    expect(r.output).toBe(path.join(dir, 'run', 'adapter'));
    expect(r.summary.steps).toBe(4);
    expect(r.summary.settings).toMatchObject({ epochs: 2, batchSize: 8, learningRate: 1e-2 });
    expect(r.tokensPerSecond).toBeGreaterThan(0);
    const m = r.metrics();
    expect(m.finetuned.loss).toBeLessThan(m.base.loss);
    expect(() => r.metrics('test')).toThrow(/no split "test".*validation/);

    // One display, then updates of that same display only; the last carries the summary.
    expect(calls[0].op).toBe('display');
    expect(calls.slice(1).every((c) => c.op === 'update' && c.o.displayId === calls[0].o.displayId)).toBe(true);
    const last = calls.at(-1)!.bundle;
    expect(last['text/plain']).toMatch(/finished/);
    expect(last['text/plain']).toContain(r.dir);
    expectEscaped(last);

    const b = r.toMimeBundle();
    expect(Object.keys(b).sort()).toEqual(['text/html', 'text/plain']);
    expectEscaped(b);
    expect(b['text/plain']).toContain(`run ${r.dir}`);

    const answers = r.sampleAnswers('validation', 10).toMimeBundle();
    expectEscaped(answers);
    expect((answers['text/html'] as string).match(/<tr>/g)).toHaveLength(5); // header + 4 answers

    // A second LoRA run on the same model trains an adapter of its own and reuses the base evaluation.
    const before = model.adapters.size;
    const r2 = await fineTuneRun({ model, tokenizer, modelDir: 'tiny', train: qaPairs(16), validation, out: path.join(dir, 'run2'), lora: { r: 2 }, maxSteps: 1, base: r, progress: false });
    expect(model.adapters.size).toBe(before + 1);
    expect(r2.summary.seconds.base_eval).toBeLessThan(0.5);
    expect(r2.metrics().base).toEqual(m.base);
    expect(calls.length).toBeGreaterThan(0);
  });

  test('an interrupted run resumes with resume: true, ending as an uninterrupted one', async () => {
    const model = GPT2Model.random(tinyConfig({ n_positions: 96 }), 6);
    const common = { model, tokenizer, modelDir: 'tiny', train: qaPairs(12), validation: qaPairs(4, 50), epochs: 2, batchSize: 4, lora: { r: 2 }, progress: false, seed: 3 };
    const whole = await fineTuneRun({ ...common, out: path.join(dir, 'whole') });
    const out = path.join(dir, 'interrupted');
    let steps = 0;
    const first = await fineTuneRun({ ...common, out, shouldStop: () => ++steps >= 2 });
    expect([first.summary.interrupted, first.summary.steps]).toEqual([true, 2]);
    await expect(fineTuneRun({ ...common, resume: true })).rejects.toThrow('fineTuneRun: resume needs out');
    const resumed = await fineTuneRun({ ...common, out, resume: true });
    expect([resumed.summary.interrupted, resumed.summary.steps]).toEqual([false, whole.summary.steps]);
    const trainSteps = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((m) => m.kind === 'train').map((m) => m.step);
    expect(trainSteps).toEqual(Array.from({ length: whole.summary.steps }, (_, i) => i + 1));
    expect(resumed.summary.final_train_loss).toBeCloseTo(whole.summary.final_train_loss!, 5);
  });

  test('without validation a share of train is split off; model and tokenizer go together', async () => {
    const model = GPT2Model.random(tinyConfig({ n_positions: 96 }), 5);
    const r = await fineTuneRun({ model, tokenizer, modelDir: 'tiny', train: qaPairs(20), validationFraction: 0.25, out: path.join(dir, 'split'), maxSteps: 1, batchSize: 4, progress: false });
    expect(r.summary.train_examples).toBe(15);
    expect(r.summary.validation_examples).toBe(5);
    await expect(fineTuneRun({ model, train: qaPairs(4), progress: false })).rejects.toThrow(/model and tokenizer together/);
  });
});
