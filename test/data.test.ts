import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { formatCompletion, formatPrompt } from '../kernel/data/example';
import { examplesTable, loadExamples } from '../kernel/data/load';
import { tokenizeExample, type TextEncoder } from '../kernel/data/tokenize';
import { batchIndices, collate, epochBatches, groupByLength, splitValidation } from '../kernel/data/batch';
import { augmentQuestion, resolveAugment, wordFrequencies } from '../kernel/data/augment';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'data-test-'));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});
const fixture = (name: string, text: string): string => {
  const f = path.join(dir, name);
  fs.writeFileSync(f, text);
  return f;
};
const brief = (xs: Array<{ question: string; answer: string; id?: string; source: { line: number } }>) =>
  xs.map((x) => ({ q: x.question, a: x.answer, line: x.source.line, ...(x.id !== undefined ? { id: x.id } : {}) }));

describe('loadExamples: formats and fields', () => {
  test('JSONL, blank lines skipped, numbers converted, ids', () => {
    const f = fixture('a.jsonl', '{"question":"2+2?","answer":4,"id":7}\n\n{"question":"Sky?","answer":"blue"}\r\n\n');
    expect(brief(loadExamples(f))).toEqual([
      { q: '2+2?', a: '4', line: 1, id: '7' },
      { q: 'Sky?', a: 'blue', line: 3 },
    ]);
    expect(loadExamples(f)[0].source.file).toBe(f);
  });

  test('pretty-printed JSON array gives each element its start line', () => {
    const data = [
      { input: 'a [tricky, "string"] {', output: 'x' },
      { input: 'b', output: 'y\nz' },
    ];
    const f = fixture('b.json', JSON.stringify(data, null, 2));
    // Lines: 1 "[", 2 "{", 3 input, 4 output, 5 "},", 6 "{", ...
    expect(brief(loadExamples(f))).toEqual([
      { q: 'a [tricky, "string"] {', a: 'x', line: 2 },
      { q: 'b', a: 'y\nz', line: 6 },
    ]);
    const g = fixture('b2.json', '[{"prompt":"p1","completion":"c1"},\n\n  {"prompt":"p2","completion":"c2"}]');
    expect(brief(loadExamples(g)).map((x) => x.line)).toEqual([1, 3]);
  });

  test('CSV with quoted comma and newline, case-insensitive header', () => {
    const f = fixture('c.csv', 'ID,Question,Answer\n1,"Hello, world?",hi\n2,"multi\nline ""q""",007\n\n3,last,"a,b"\n');
    expect(brief(loadExamples(f))).toEqual([
      { q: 'Hello, world?', a: 'hi', line: 2, id: '1' },
      { q: 'multi\nline "q"', a: '007', line: 3, id: '2' }, // autoType off: "007" stays a string
      { q: 'last', a: 'a,b', line: 6, id: '3' },
    ]);
  });

  test('TSV with instruction/response', () => {
    const f = fixture('d.tsv', 'instruction\tresponse\nsay hi\thello, there\n"two\nlines"\tok\nend\tfin');
    expect(brief(loadExamples(f))).toEqual([
      { q: 'say hi', a: 'hello, there', line: 2 },
      { q: 'two\nlines', a: 'ok', line: 3 },
      { q: 'end', a: 'fin', line: 5 },
    ]);
  });

  test('custom field pair and explicit format', () => {
    const f = fixture('e.txt', '{"q":"Q1","a":"A1","key":"k1"}\n');
    expect(brief(loadExamples(f, { format: 'jsonl', questionField: 'q', answerField: 'a', idField: 'key' }))).toEqual([{ q: 'Q1', a: 'A1', line: 1, id: 'k1' }]);
  });

  test('idField matches case-insensitively, and a row without it simply has no id', () => {
    const f = fixture('ids.csv', 'Key,question,answer\nk1,q1,a1\n,q2,a2\n');
    expect(brief(loadExamples(f, { idField: 'key' }))).toEqual([
      { q: 'q1', a: 'a1', line: 2, id: 'k1' },
      { q: 'q2', a: 'a2', line: 3 },
    ]);
    // JSONL fields are the union over all rows, so an id first seen in a later row is found.
    const g = fixture('ids.jsonl', '{"question":"q1","answer":"a1"}\n{"question":"q2","answer":"a2","uid":9}\n');
    expect(brief(loadExamples(g, { idField: 'UID' }))).toEqual([
      { q: 'q1', a: 'a1', line: 1 },
      { q: 'q2', a: 'a2', line: 2, id: '9' },
    ]);
  });

  test('quoted CSV fields: multi-line, "" escapes, closing quote at the very end of the file', () => {
    const f = fixture('quotes.csv', 'question,answer\nq1,"say ""hi""\nthen, go"\n"q""2""",a2\nq3,"""a3"""');
    expect(brief(loadExamples(f))).toEqual([
      { q: 'q1', a: 'say "hi"\nthen, go', line: 2 },
      { q: 'q"2"', a: 'a2', line: 4 },
      { q: 'q3', a: '"a3"', line: 5 }, // no line break after the last field: still unquoted and unescaped
    ]);
  });

  test('examplesTable gives an arquero table', () => {
    const f = fixture('t.jsonl', '{"question":"q","answer":"a"}\n{"question":"q2","answer":"a2","id":"x"}\n');
    const t = examplesTable(loadExamples(f));
    expect(t.columnNames()).toEqual(['id', 'question', 'answer', 'file', 'line']);
    expect(t.numRows()).toBe(2);
    expect(t.objects()[1]).toEqual({ id: 'x', question: 'q2', answer: 'a2', file: f, line: 2 });
  });
});

describe('loadExamples: errors name file:line', () => {
  const err = (f: string, opts = {}): string => {
    try {
      loadExamples(f, opts);
    } catch (e) {
      return (e as Error).message;
    }
    throw new Error('expected an error');
  };

  test('malformed JSON line', () => {
    const f = fixture('bad1.jsonl', '{"question":"a","answer":"b"}\n{"question":"c","answer":"d"}\n{"question": "e", answer}\n');
    expect(err(f)).toMatch(new RegExp(`^${f.replace(/[.\\]/g, '\\$&')}:3: invalid JSON`));
  });
  test('a missing file or a folder is named with the reason', () => {
    const missing = path.join(dir, 'absent.jsonl');
    expect(err(missing)).toBe(`${missing}: cannot read the dataset: no such file`);
    const folder = path.join(dir, 'folder.csv');
    fs.mkdirSync(folder, { recursive: true });
    expect(err(folder)).toBe(`${folder}: cannot read the dataset: a folder, not a file`);
  });
  test('JSONL line that is not an object', () => expect(err(fixture('bad2.jsonl', '{"question":"a","answer":"b"}\n[1]\n'))).toMatch(/bad2\.jsonl:2: expected a JSON object, got array/));
  test('missing answer', () => expect(err(fixture('bad3.jsonl', '{"question":"a","answer":"b"}\n{"question":"c"}\n'))).toMatch(/bad3\.jsonl:2: missing answer field "answer"/));
  test('empty question', () => expect(err(fixture('bad4.jsonl', '{"question":"a","answer":"b"}\n{"question":"  ","answer":"d"}\n'))).toMatch(/bad4\.jsonl:2: empty question/));
  test('non-string answer', () => expect(err(fixture('bad5.jsonl', '{"question":"a","answer":true}\n'))).toMatch(/bad5\.jsonl:1: answer field "answer" must be a string, got boolean/));
  test('JSON array element with empty answer reports its start line', () => {
    const f = fixture('bad6.json', JSON.stringify([{ question: 'a', answer: 'b' }, { question: 'c', answer: '' }], null, 2));
    expect(err(f)).toMatch(/bad6\.json:6: empty answer/);
  });
  test('invalid JSON array reports the line of the broken element', () => {
    const f = fixture('bad7.json', '[\n  {"question": "a", "answer": "b"},\n  {"question": "c",\n   "answer": }\n]');
    expect(err(f)).toMatch(/bad7\.json:3: in the array element starting on this line: invalid JSON/);
  });
  test('CSV row with too many columns (after a multi-line field)', () => {
    const f = fixture('bad8.csv', 'question,answer\n"a\nb",c\nd,e,f\n');
    expect(err(f)).toMatch(/bad8\.csv:4: expected 2 columns \(as in the header\), found 3/);
  });
  test('CSV quote that is never closed names the line it opens on, instead of swallowing the rest of the file', () => {
    const f = fixture('open1.csv', 'question,answer\nq1,"a1\nq2,a2\nq3,a3\n');
    expect(err(f)).toBe(`${f}:2: unterminated quoted field (a " opens a field that is never closed; write a " inside a quoted field as "")`);
    // After a well-formed multi-line field, the line is still that of the opening quote.
    const g = fixture('open2.tsv', 'question\tanswer\n"two\nlines"\tok\nq2\t"say ""hi""\nq3\ta3\n');
    expect(err(g)).toBe(`${g}:4: unterminated quoted field (a " opens a field that is never closed; write a " inside a quoted field as "")`);
    // A final "" is an escaped quote, not a closing one.
    expect(err(fixture('open3.csv', 'question,answer\nq1,"a1""'))).toMatch(/open3\.csv:2: unterminated quoted field/);
    expect(err(fixture('open4.csv', '"question,answer\nq1,a1\n'))).toMatch(/open4\.csv:1: unterminated quoted field/);
  });
  test('CSV empty cell', () => expect(err(fixture('bad9.csv', 'question,answer\nq,\n'))).toMatch(/bad9\.csv:2: empty answer/));
  test('unknown extension lists the valid ones', () => expect(err(fixture('x.parquet', ''))).toMatch(/x\.parquet: unknown dataset extension "\.parquet" \(valid: \.jsonl, \.ndjson, \.json, \.csv, \.tsv\)/));
  test('no recognisable field pair', () => {
    const m = err(fixture('nofields.jsonl', '{"foo":"a","bar":"b"}\n'));
    expect(m).toMatch(/nofields\.jsonl: no question\/answer field pair found/);
    expect(m).toContain('fields seen: foo, bar');
    expect(m).toContain('question/answer, input/output, prompt/completion, instruction/response');
  });
  test('a named field that is missing, or a named field with no partner, is named in the error', () => {
    const f = fixture('named.csv', 'q,a\nx,y\n');
    const load = (o: object) => () => loadExamples(f, o);
    expect(load({ questionField: 'qq', answerField: 'a' })).toThrow(/named\.csv: question field "qq" not found; fields seen: q, a$/);
    expect(load({ answerField: 'ans' })).toThrow(/named\.csv: answer field "ans" not found; fields seen: q, a$/);
    expect(load({ idField: 'key' })).toThrow(new Error(`${f}: id field "key" not found; fields seen: q, a`));
    expect(load({ questionField: 'q' })).toThrow(/named\.csv: no answer field found to go with question field "q"; fields seen: q, a; accepted pairs/);
    expect(load({ questionField: 'Q', answerField: 'A' })().map((e) => [e.question, e.answer])).toEqual([['x', 'y']]);
    const g = fixture('half.jsonl', '{"query":"x","answer":"y"}\n');
    expect(loadExamples(g, { questionField: 'query' }).map((e) => [e.question, e.answer])).toEqual([['x', 'y']]);
  });
  test('empty file', () => expect(err(fixture('empty.jsonl', '\n'))).toMatch(/empty\.jsonl: no examples found/));
});

/** Toy encoder: one id per character (its code). */
const charTok: TextEncoder = { encode: (s) => Array.from(s, (c) => c.codePointAt(0)!) };

describe('tokenize, collate, batches', () => {
  test('prompt tokens get weight 0, completion tokens weight 1', () => {
    const t = tokenizeExample(charTok, { question: 'hi', answer: 'yo' });
    const prompt = formatPrompt('hi');
    expect(prompt).toBe('Question: hi\nAnswer:');
    expect(formatCompletion('yo')).toBe(' yo\n');
    expect(t.ids).toEqual(charTok.encode(prompt + ' yo\n'));
    expect(t.promptLength).toBe(prompt.length);
    expect(t.weights).toEqual([...Array(prompt.length).fill(0), 1, 1, 1, 1]);
    expect(t.truncated).toBeUndefined();
  });

  test('truncation from the end sets the flag', () => {
    const t = tokenizeExample(charTok, { question: 'hi', answer: 'yo' }, 23);
    expect(t.ids).toHaveLength(23);
    expect(t.weights.filter((w) => w === 1)).toHaveLength(3); // prompt is 20 chars, completion 4
    expect(t.truncated).toBe(true);
  });

  test('collate shifts by one, pads with weight 0, truncates to seqLen+1', () => {
    const a = { ids: [10, 11, 12, 13], weights: [0, 0, 1, 1], promptLength: 2 };
    const b = { ids: [20, 21, 22, 23, 24, 25, 26], weights: [0, 1, 1, 1, 1, 1, 1], promptLength: 1 };
    const batch = collate([a, b], 5, 99);
    expect(batch.batchSize).toBe(2);
    expect(batch.seqLen).toBe(5);
    expect(Array.from(batch.inputIds)).toEqual([10, 11, 12, 99, 99, 20, 21, 22, 23, 24]);
    expect(Array.from(batch.targets)).toEqual([11, 12, 13, 99, 99, 21, 22, 23, 24, 25]);
    expect(Array.from(batch.weights)).toEqual([0, 1, 1, 0, 0, 1, 1, 1, 1, 1]);
  });

  test('batchIndices: deterministic per (seed, epoch), a permutation, last partial batch kept', () => {
    const a = batchIndices(10, 3, 0, 42);
    expect(batchIndices(10, 3, 0, 42)).toEqual(a);
    expect(a.map((x) => x.length)).toEqual([3, 3, 3, 1]);
    expect(a.flat().sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(batchIndices(10, 3, 1, 42)).not.toEqual(a);
    expect(batchIndices(10, 3, 0, 43)).not.toEqual(a);
    expect(batchIndices(5, 2, 0, 1, false)).toEqual([[0, 1], [2, 3], [4]]);
  });

  test('groupByLength: every index once, batches of neighbouring lengths, less padding, deterministic', () => {
    const n = 1003;
    const bs = 8;
    let x = 7;
    const lengths = Array.from({ length: n }, () => 10 + ((x = (x * 1103515245 + 12345) % 2147483648) % 50));
    const plain = batchIndices(n, bs, 0, 3);
    const grouped = groupByLength(plain, lengths, bs, 'g:3:0');
    expect(grouped).toEqual(groupByLength(plain, lengths, bs, 'g:3:0'));
    expect(grouped.length).toBe(plain.length);
    expect(grouped.flat().sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
    expect(grouped.filter((b) => b.length < bs)).toHaveLength(1); // one partial batch, as before
    // Padding to each batch's longest example: what dynamic batching pays.
    const padding = (bs_: number[][]) => bs_.reduce((sum, b) => sum + b.reduce((p, i) => p + Math.max(...b.map((j) => lengths[j])) - lengths[i], 0), 0);
    expect(padding(grouped)).toBeLessThan(padding(plain) / 5);
    // Within a megabatch (50 batches) the sort is by length: the ranges of two batches barely overlap.
    const spread = grouped.map((b) => Math.max(...b.map((i) => lengths[i])) - Math.min(...b.map((i) => lengths[i])));
    expect(Math.max(...spread)).toBeLessThanOrEqual(5); // the last, smaller megabatch is coarser
    expect(spread.reduce((a, b) => a + b, 0) / spread.length).toBeLessThan(1.5);
    // The batch order is shuffled, so length does not follow the step (and the learning rate).
    const firstHalf = grouped.slice(0, grouped.length / 2).flat().map((i) => lengths[i]);
    const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
    expect(Math.abs(mean(firstHalf) - mean(lengths))).toBeLessThan(3);
  });

  test('epochBatches: the shuffled order without lengths; with them, grouped per (seed, epoch)', () => {
    const n = 403;
    const lengths = Array.from({ length: n }, (_, i) => 5 + ((i * 37) % 41));
    expect(epochBatches(n, 8, 2, 5)).toEqual(batchIndices(n, 8, 2, 5));
    const grouped = epochBatches(n, 8, 2, 5, lengths);
    expect(grouped.flat().sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
    const spread = grouped.map((b) => Math.max(...b.map((i) => lengths[i])) - Math.min(...b.map((i) => lengths[i])));
    expect(spread.reduce((a, b) => a + b, 0) / spread.length).toBeLessThan(2); // 41 distinct lengths shuffled would spread ~30
    expect(epochBatches(n, 8, 2, 5, lengths)).toEqual(grouped);
    expect(epochBatches(n, 8, 3, 5, lengths)).not.toEqual(grouped); // a new order every epoch
    expect(epochBatches(n, 8, 2, 6, lengths)).not.toEqual(grouped); // and for every seed
  });

  test('splitValidation: deterministic, disjoint, covers all, at least one each', () => {
    const items = Array.from({ length: 20 }, (_, i) => `x${i}`);
    const s = splitValidation(items, 0.25, 7);
    expect(splitValidation(items, 0.25, 7)).toEqual(s);
    expect(s.validation).toHaveLength(5);
    expect(s.train.filter((x) => s.validation.includes(x))).toEqual([]);
    expect([...s.train, ...s.validation].sort()).toEqual([...items].sort());
    expect(splitValidation(items, 0.25, 8)).not.toEqual(s);
    const two = splitValidation(['a', 'b'], 0.01, 1);
    expect([two.train.length, two.validation.length]).toEqual([1, 1]);
    expect(splitValidation(['a', 'b', 'c'], 0.99, 1).train).toHaveLength(1);
  });

  test('splitValidation: fewer than 2 items is an error naming the data', () => {
    expect(() => splitValidation(['a'], 0.1, 0, 'mine.csv')).toThrow('mine.csv: 1 example is too few to split off a validation set (at least 2 are needed)');
    expect(() => splitValidation([], 0.1, 0)).toThrow('the data: 0 examples are too few');
  });
});

describe('question augmentation (word dropout)', () => {
  const q = 'Which county is coextensive with the borough of Brooklyn?';
  const words = q.slice(0, -1).split(' ');
  const variants = (a: Parameters<typeof resolveAugment>[0], n = 400) => Array.from({ length: n }, (_, i) => augmentQuestion(q, resolveAugment(a), `0:1:${i}`));

  test('a variant keeps the question mark and an in-order, non-empty subset of the words', () => {
    for (const v of variants({ wordDropout: 0.5, probability: 1 })) {
      expect(v.endsWith('?')).toBe(true);
      const kept = v.slice(0, -1).split(' ');
      expect(kept.length).toBeGreaterThanOrEqual(1);
      let j = 0;
      for (const w of kept) {
        while (j < words.length && words[j] !== w) j++;
        expect(j).toBeLessThan(words.length); // each kept word appears after the previous one
        j++;
      }
    }
  });

  test('drops words at the asked rate and augments the asked fraction of questions', () => {
    const vs = variants({ wordDropout: 0.3, probability: 0.75 }, 2000);
    const changed = vs.filter((v) => v !== q);
    // A changed question lost at least one word; unchanged ones are the untouched 25% plus the rare no-drop draws.
    expect(changed.length / vs.length).toBeGreaterThan(0.75 * (1 - 0.7 ** words.length) - 0.04);
    expect(changed.length / vs.length).toBeLessThan(0.75 + 0.04);
    const keptRate = changed.reduce((n, v) => n + v.split(' ').length, 0) / (changed.length * words.length);
    expect(keptRate).toBeGreaterThan(0.62);
    expect(keptRate).toBeLessThan(0.74);
  });

  test('is a function of the key (same key, same variant; resumed runs see the same batches)', () => {
    const a = resolveAugment({ wordDropout: 0.4, probability: 1 });
    expect(augmentQuestion(q, a, '3:2:17')).toBe(augmentQuestion(q, a, '3:2:17'));
    expect(new Set(Array.from({ length: 20 }, (_, e) => augmentQuestion(q, a, `3:${e}:17`))).size).toBeGreaterThan(10);
    expect(augmentQuestion('Brooklyn?', a, 'x')).toBe('Brooklyn?'); // one word: nothing to drop
    expect(variants({ wordDropout: 0 }).every((v) => v === q)).toBe(true);
  });

  test('word frequencies count training questions, ignoring case, punctuation and repeats', () => {
    const f = wordFrequencies(['Which borough is Brooklyn?', 'Which borough, which county?', 'Is SoHo in Manhattan?']);
    expect(f.questions.get('which')).toBe(2); // twice in the second question: counted once there
    expect(f.questions.get('borough')).toBe(2);
    expect(f.questions.get('is')).toBe(2);
    expect(f.questions.get('soho')).toBe(1);
    expect(f.questions.get('county')).toBe(1);
    expect(f.max).toBe(2);
  });

  test('rareWordDropout keeps rare words and drops common ones, interpolating on log frequency', () => {
    // 'common' is in all 64 questions, 'mid' in 8, 'rare' in 1: expected drop rates 0.8, 0.1 + 0.7*ln8/ln64 = 0.45, 0.1.
    const corpus = Array.from({ length: 64 }, (_, i) => `common ${i < 8 ? 'mid' : 'other'} word${i}?`);
    corpus[0] = 'common mid rare word0?';
    const freq = wordFrequencies(corpus);
    expect([freq.questions.get('common'), freq.questions.get('mid'), freq.questions.get('rare'), freq.max]).toEqual([64, 8, 1, 64]);
    const a = resolveAugment({ wordDropout: 0.8, rareWordDropout: 0.1, probability: 1 });
    const n = 4000;
    const kept = { common: 0, mid: 0, rare: 0 };
    for (let i = 0; i < n; i++) {
      const v = augmentQuestion('common mid rare word0?', a, `0:0:${i}`, freq).slice(0, -1).split(' ');
      for (const k of ['common', 'mid', 'rare'] as const) if (v.includes(k)) kept[k]++;
    }
    const want = { common: 0.2, mid: 1 - (0.1 + 0.7 * (Math.log(8) / Math.log(64))), rare: 0.9 };
    // Within 4 binomial standard deviations; the one-word fallback adds a little to each.
    for (const k of ['common', 'mid', 'rare'] as const) {
      const sd = Math.sqrt((want[k] * (1 - want[k])) / n);
      expect(kept[k] / n).toBeGreaterThan(want[k] - 4 * sd);
      expect(kept[k] / n).toBeLessThan(want[k] + 4 * sd + 0.02);
    }
    expect(() => augmentQuestion('common mid rare?', a, 'k')).toThrow(/needs the training questions' word frequencies/);
  });

  test('rareWordDropout equal to wordDropout is plain word dropout, variant for variant', () => {
    expect(resolveAugment({ wordDropout: 0.3, rareWordDropout: 0.3 })).toEqual(resolveAugment({ wordDropout: 0.3 }));
    expect(resolveAugment({ wordDropout: 0.3, rareWordDropout: 0.3 })).not.toHaveProperty('rareWordDropout');
  });

  test('bad settings name the field and the valid range', () => {
    expect(() => resolveAugment({ wordDropout: 0.3, rareWordDropout: 0.5 })).toThrow('augment.rareWordDropout must be in [0, wordDropout = 0.3], got 0.5');
    expect(() => resolveAugment({ wordDropout: 1 })).toThrow('augment.wordDropout must be in [0, 1), got 1');
    expect(() => resolveAugment({ wordDropout: 0.2, probability: 2 })).toThrow('augment.probability must be in [0, 1], got 2');
  });
});
