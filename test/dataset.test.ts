/**
 * Integrity checks for the NYC question-and-answer dataset in datasets/nyc-qa/.
 *
 * Each check is a pure function returning a list of problems; the real files must give none, and a
 * small planted-fault fixture shows that every check does catch what it is for.
 */
import * as fs from 'fs';
import * as path from 'path';

const DIR = path.join(__dirname, '..', 'datasets', 'nyc-qa');

const SPLITS = ['train', 'validation', 'test', 'held_out_facts'] as const;
type Split = (typeof SPLITS)[number];
const FIELDS = ['id', 'fact_id', 'category', 'question', 'answer'] as const;
const CATEGORIES = [
  'borough', 'neighbourhood', 'landmark', 'museum', 'park', 'bridge_tunnel', 'transit',
  'airport', 'sports', 'food', 'history', 'geography', 'government', 'culture',
];
const MAX_ANSWER_WORDS = 25;
const MIN_FACTS = 400;
const MIN_FACTS_PER_CATEGORY = 20;
const MIN_HELD_OUT_FACTS = 50;

interface Row {
  id: string;
  fact_id: string;
  category: string;
  question: string;
  answer: string;
}
type Dataset = Record<Split, Row[]>;
interface Fact {
  fact_id: string;
  category: string;
  answer: string;
  questions: string[];
}
interface BuildModule {
  buildSplits: (facts: Fact[]) => Dataset;
  readFacts: (dir?: string) => Fact[];
  toJsonl: (rows: Row[]) => string;
}

/** Lower case, accents and punctuation dropped, whitespace collapsed: "What's  SoHo?" -> "whats soho". */
const normalise = (q: string): string =>
  q
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s]/gu, '')
    .replace(/\s+/g, ' ')
    .trim();

const readJsonl = (file: string): unknown[] =>
  fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line, i) => {
      try {
        return JSON.parse(line) as unknown;
      } catch {
        throw new Error(`${path.basename(file)} line ${i + 1}: not JSON`);
      }
    });

// ---------------------------------------------------------------- per-row checks

/** Exactly the five fields, each a non-empty, trimmed, single-line string. */
function checkFields(split: string, rows: unknown[]): string[] {
  const problems: string[] = [];
  rows.forEach((r, i) => {
    const where = `${split}[${i}]`;
    if (typeof r !== 'object' || r === null || Array.isArray(r)) {
      problems.push(`${where}: not an object`);
      return;
    }
    const obj = r as Record<string, unknown>;
    const keys = Object.keys(obj);
    for (const f of FIELDS) if (!keys.includes(f)) problems.push(`${where}: missing field ${f}`);
    for (const k of keys) if (!(FIELDS as readonly string[]).includes(k)) problems.push(`${where}: extra field ${k}`);
    for (const f of FIELDS) {
      const v = obj[f];
      if (v === undefined) continue;
      if (typeof v !== 'string') problems.push(`${where}: ${f} is not a string`);
      else if (v.trim() === '') problems.push(`${where}: ${f} is empty`);
      else if (v !== v.trim() || /[\r\n]/.test(v)) problems.push(`${where}: ${f} has stray whitespace`);
    }
  });
  return problems;
}

/** id is "<fact_id>-q<n>", fact_id is "nyc-NNNN". */
function checkIdFormat(d: Dataset): string[] {
  const problems: string[] = [];
  for (const s of SPLITS) {
    for (const r of d[s]) {
      if (!/^nyc-\d{4}$/.test(r.fact_id)) problems.push(`${s}: bad fact_id ${r.fact_id}`);
      if (!new RegExp(`^${r.fact_id}-q[1-3]$`).test(r.id)) problems.push(`${s}: id ${r.id} does not match fact_id ${r.fact_id}`);
    }
  }
  return problems;
}

function checkCategories(d: Dataset): string[] {
  return SPLITS.flatMap((s) => d[s].filter((r) => !CATEGORIES.includes(r.category)).map((r) => `${s}: ${r.id} has category ${r.category}`));
}

const wordCount = (s: string): number => s.trim().split(/\s+/).length;

function checkAnswerLength(d: Dataset): string[] {
  return SPLITS.flatMap((s) =>
    d[s].filter((r) => wordCount(r.answer) > MAX_ANSWER_WORDS).map((r) => `${s}: ${r.id} answer has ${wordCount(r.answer)} words`),
  );
}

// ---------------------------------------------------------------- whole-dataset checks

function checkDuplicateIds(d: Dataset): string[] {
  const where = new Map<string, Split>();
  const problems: string[] = [];
  for (const s of SPLITS) {
    for (const r of d[s]) {
      const prev = where.get(r.id);
      if (prev !== undefined) problems.push(`duplicate id ${r.id} (${prev} and ${s})`);
      else where.set(r.id, s);
    }
  }
  return problems;
}

/** The same normalised question twice anywhere, whether within one split or across two. */
function checkDuplicateQuestions(d: Dataset): string[] {
  const where = new Map<string, string>();
  const problems: string[] = [];
  for (const s of SPLITS) {
    for (const r of d[s]) {
      const key = normalise(r.question);
      const prev = where.get(key);
      if (prev !== undefined) problems.push(`duplicate question "${r.question}" (${prev} and ${s}:${r.id})`);
      else where.set(key, `${s}:${r.id}`);
    }
  }
  return problems;
}

/** A question (normalised) present in two different splits. */
function checkQuestionLeakage(d: Dataset): string[] {
  const problems: string[] = [];
  for (let i = 0; i < SPLITS.length; i++) {
    const a = new Set(d[SPLITS[i]].map((r) => normalise(r.question)));
    for (let j = i + 1; j < SPLITS.length; j++) {
      for (const r of d[SPLITS[j]]) {
        if (a.has(normalise(r.question))) problems.push(`question "${r.question}" is in both ${SPLITS[i]} and ${SPLITS[j]}`);
      }
    }
  }
  return problems;
}

function checkHeldOutIsolation(d: Dataset): string[] {
  const held = new Set(d.held_out_facts.map((r) => r.fact_id));
  return (['train', 'validation', 'test'] as const).flatMap((s) =>
    d[s].filter((r) => held.has(r.fact_id)).map((r) => `held-out fact ${r.fact_id} appears in ${s} (${r.id})`),
  );
}

function checkEvalFactsTrained(d: Dataset): string[] {
  const train = new Set(d.train.map((r) => r.fact_id));
  return (['validation', 'test'] as const).flatMap((s) =>
    d[s].filter((r) => !train.has(r.fact_id)).map((r) => `${s} fact ${r.fact_id} is not in train`),
  );
}

/** Same answer and category for every row of a fact, across all splits. */
function checkAnswerConsistency(d: Dataset): string[] {
  const first = new Map<string, Row>();
  const problems: string[] = [];
  for (const s of SPLITS) {
    for (const r of d[s]) {
      const f = first.get(r.fact_id);
      if (f === undefined) first.set(r.fact_id, r);
      else {
        if (f.answer !== r.answer) problems.push(`fact ${r.fact_id}: answers differ ("${f.answer}" vs "${r.answer}")`);
        if (f.category !== r.category) problems.push(`fact ${r.fact_id}: categories differ (${f.category} vs ${r.category})`);
      }
    }
  }
  return problems;
}

function checkPhrasingCounts(d: Dataset): string[] {
  const n = new Map<string, number>();
  for (const s of SPLITS) for (const r of d[s]) n.set(r.fact_id, (n.get(r.fact_id) ?? 0) + 1);
  return [...n].filter(([, c]) => c < 2 || c > 3).map(([f, c]) => `fact ${f} has ${c} phrasings`);
}

function checkFactCounts(d: Dataset, min = MIN_FACTS, minPerCategory = MIN_FACTS_PER_CATEGORY, minHeldOut = MIN_HELD_OUT_FACTS): string[] {
  const problems: string[] = [];
  const perCat = new Map<string, Set<string>>();
  for (const s of SPLITS) {
    for (const r of d[s]) {
      if (!perCat.has(r.category)) perCat.set(r.category, new Set());
      perCat.get(r.category)!.add(r.fact_id);
    }
  }
  const all = new Set(SPLITS.flatMap((s) => d[s].map((r) => r.fact_id)));
  if (all.size < min) problems.push(`only ${all.size} distinct facts (need ${min})`);
  for (const c of CATEGORIES) {
    const k = perCat.get(c)?.size ?? 0;
    if (k < minPerCategory) problems.push(`category ${c} has ${k} facts (need ${minPerCategory})`);
  }
  const held = new Set(d.held_out_facts.map((r) => r.fact_id)).size;
  if (held < minHeldOut) problems.push(`only ${held} held-out facts (need ${minHeldOut})`);
  return problems;
}

const ALL_CHECKS: Array<[string, (d: Dataset) => string[]]> = [
  ['id format', checkIdFormat],
  ['categories', checkCategories],
  ['answer length', checkAnswerLength],
  ['duplicate ids', checkDuplicateIds],
  ['duplicate questions', checkDuplicateQuestions],
  ['question leakage', checkQuestionLeakage],
  ['held-out isolation', checkHeldOutIsolation],
  ['eval facts trained', checkEvalFactsTrained],
  ['answer consistency', checkAnswerConsistency],
  ['phrasing counts', checkPhrasingCounts],
];

// ---------------------------------------------------------------- the real files

const raw = {} as Record<Split, unknown[]>;
for (const s of SPLITS) raw[s] = readJsonl(path.join(DIR, `${s}.jsonl`));
const data = raw as unknown as Dataset;

describe('datasets/nyc-qa: rows', () => {
  test.each(SPLITS)('%s: exactly id, fact_id, category, question, answer; all non-empty strings', (s) => {
    expect(raw[s].length).toBeGreaterThan(0);
    expect(checkFields(s, raw[s])).toEqual([]);
  });
  test('ids are "<fact_id>-qN" and fact_ids are "nyc-NNNN"', () => expect(checkIdFormat(data)).toEqual([]));
  test('every category is one of the fourteen', () => expect(checkCategories(data)).toEqual([]));
  test(`answers are at most ${MAX_ANSWER_WORDS} words`, () => expect(checkAnswerLength(data)).toEqual([]));
});

describe('datasets/nyc-qa: splits', () => {
  test('no duplicate ids within or across files', () => expect(checkDuplicateIds(data)).toEqual([]));
  test('no duplicate question text (normalised) within or across files', () => expect(checkDuplicateQuestions(data)).toEqual([]));
  test('no question text shared between two splits', () => expect(checkQuestionLeakage(data)).toEqual([]));
  test('held-out facts appear in no other split', () => expect(checkHeldOutIsolation(data)).toEqual([]));
  test('every validation and test fact is a training fact', () => expect(checkEvalFactsTrained(data)).toEqual([]));
  test('one answer and one category per fact across all files', () => expect(checkAnswerConsistency(data)).toEqual([]));
  test('every fact has 2 or 3 phrasings in all', () => expect(checkPhrasingCounts(data)).toEqual([]));
  test(`at least ${MIN_FACTS} facts, ${MIN_FACTS_PER_CATEGORY} per category, ${MIN_HELD_OUT_FACTS} held out`, () =>
    expect(checkFactCounts(data)).toEqual([]));
  test('validation and test are of similar size', () => {
    expect(Math.abs(data.validation.length - data.test.length)).toBeLessThanOrEqual(1);
  });
});

describe('datasets/nyc-qa: derived from facts.jsonl by build.js', () => {
  // build.js is plain CommonJS with no types; require it and describe the part the test uses.
  const build = require(path.join(DIR, 'build.js')) as BuildModule;
  const facts = build.readFacts(DIR);

  test('facts.jsonl: unique fact_ids, known categories, 2-3 distinct questions each', () => {
    expect(new Set(facts.map((f) => f.fact_id)).size).toBe(facts.length);
    for (const f of facts) {
      expect(CATEGORIES).toContain(f.category);
      expect(f.questions.length).toBeGreaterThanOrEqual(2);
      expect(f.questions.length).toBeLessThanOrEqual(3);
      expect(new Set(f.questions.map(normalise)).size).toBe(f.questions.length);
    }
  });

  test('each split file is exactly what buildSplits(facts) derives', () => {
    const derived = build.buildSplits(facts);
    for (const s of SPLITS) {
      expect(data[s]).toEqual(derived[s]);
      // Byte for byte too: field order, escaping, trailing newline.
      expect(fs.readFileSync(path.join(DIR, `${s}.jsonl`), 'utf8')).toBe(build.toJsonl(derived[s]));
    }
  });

  test('the split rule: q1 and q3 train, q2 alternates validation/test, every 7th fact held out', () => {
    const derived = build.buildSplits(facts);
    let t = 0;
    facts.forEach((f, i) => {
      const ids = (s: Split) => derived[s].filter((r) => r.fact_id === f.fact_id).map((r) => r.id);
      if ((i + 1) % 7 === 0) {
        expect(ids('held_out_facts')).toEqual(f.questions.map((_, k) => `${f.fact_id}-q${k + 1}`));
        return;
      }
      expect(ids('train')).toEqual(f.questions.length === 3 ? [`${f.fact_id}-q1`, `${f.fact_id}-q3`] : [`${f.fact_id}-q1`]);
      expect(ids(t % 2 === 0 ? 'validation' : 'test')).toEqual([`${f.fact_id}-q2`]);
      t += 1;
    });
  });
});

describe('datasets/nyc-qa: the nearest-question baseline (baseline.js)', () => {
  interface BaselineModule {
    tfidf(corpus: string[], texts: string[]): Array<Map<string, number>>;
    nearestQuestion(train: string[], questions: string[]): number[];
    scoreSplit(train: Row[], rows: Row[]): { tokenF1: number; exactMatch: number; rightFact: number };
  }
  const baseline = require(path.join(DIR, 'baseline.js')) as BaselineModule;

  test('a rare shared word outweighs common ones; weights as scikit-learn computes them, by hand', () => {
    const train = ['Who built the bridge?', 'Who built the tunnel?', 'When was the tunnel opened?', 'Who designed the park?'];
    // "tunnel" is in 2 of 4 questions, "built" in 2, "who" in 3: with "tunnel" and "who", question 1 wins.
    expect(baseline.nearestQuestion(train, ['Who dug the tunnel?', 'bridge', 'When did it open?'])).toEqual([1, 0, 2]);
    // The weights, from the formula by hand: idf(w) = ln((1 + 4) / (1 + df)) + 1, raw counts, unit length.
    const idf = (df: number) => Math.log(5 / (1 + df)) + 1;
    const raw: Array<[string, number]> = [['who', 2 * idf(3)], ['designed', idf(1)], ['park', idf(1)]]; // "who" twice
    const norm = Math.hypot(...raw.map(([, x]) => x));
    const [v] = baseline.tfidf(train, ['Who designed the park, who?']);
    expect([...v.keys()].sort()).toEqual(raw.map(([w]) => w).sort()); // "the" is dropped as the metrics drop articles
    for (const [w, x] of raw) expect(v.get(w)).toBeCloseTo(x / norm, 12);
    expect(baseline.nearestQuestion(train, ['who designed'])).toEqual([3]);
  });

  test('every training question finds itself, so on train it answers every fact right', () => {
    const s = baseline.scoreSplit(data.train, data.train);
    expect(s).toEqual({ tokenF1: 1, exactMatch: 1, rightFact: 1 });
    // On facts never trained on it can only answer from another fact.
    expect(baseline.scoreSplit(data.train, data.held_out_facts).rightFact).toBe(0);
  });
});

// ---------------------------------------------------------------- the checks catch planted faults

describe('dataset checks detect faults', () => {
  const r = (id: string, question: string, answer = 'An answer', category = 'park'): Row => ({
    id,
    fact_id: id.slice(0, 8),
    category,
    question,
    answer,
  });
  const clean = (): Dataset => ({
    train: [r('nyc-0001-q1', 'Who designed Central Park?'), r('nyc-0002-q1', 'When did the subway open?', 'In 1904', 'transit')],
    validation: [r('nyc-0001-q2', 'Central Park was designed by whom?')],
    test: [r('nyc-0002-q2', 'In what year did the subway open?', 'In 1904', 'transit')],
    held_out_facts: [r('nyc-0003-q1', 'Where is JFK?', 'Queens', 'airport'), r('nyc-0003-q2', 'JFK is in which borough?', 'Queens', 'airport')],
  });

  test('a clean fixture passes every check', () => {
    for (const [name, check] of ALL_CHECKS) expect([name, check(clean())]).toEqual([name, []]);
    expect(checkFactCounts(clean(), 3, 0, 1)).toEqual([]);
  });

  test('normalise ignores case, whitespace and punctuation', () => {
    expect(normalise('  Who   designed CENTRAL park?! ')).toBe(normalise('who designed central park'));
    expect(normalise("What's Café?")).toBe('whats cafe');
  });

  test('missing, extra, empty and non-string fields', () => {
    expect(checkFields('x', [{ id: 'a', fact_id: 'b', category: 'park', question: 'q' }])).toEqual(['x[0]: missing field answer']);
    expect(checkFields('x', [{ ...clean().train[0], extra: 1 }])).toEqual(['x[0]: extra field extra']);
    expect(checkFields('x', [{ ...clean().train[0], answer: '  ' }])).toEqual(['x[0]: answer is empty']);
    expect(checkFields('x', [{ ...clean().train[0], answer: 7 }])).toEqual(['x[0]: answer is not a string']);
    expect(checkFields('x', [null])).toEqual(['x[0]: not an object']);
  });

  test('duplicate ids', () => {
    const d = clean();
    d.test.push({ ...d.train[0], question: 'Something else entirely?' });
    expect(checkDuplicateIds(d)).toHaveLength(1);
  });

  test('duplicate questions within a split, after normalisation', () => {
    const d = clean();
    d.train.push(r('nyc-0004-q1', 'who designed  central park'));
    expect(checkDuplicateQuestions(d)).toHaveLength(1);
    expect(checkQuestionLeakage(d)).toEqual([]);
  });

  test('question leakage between splits', () => {
    const d = clean();
    d.test.push(r('nyc-0001-q3', 'WHO designed Central Park'));
    expect(checkQuestionLeakage(d)).toHaveLength(1);
    expect(checkDuplicateQuestions(d)).toHaveLength(1);
  });

  test('held-out fact in another split', () => {
    const d = clean();
    d.validation.push(r('nyc-0003-q3', 'Which airport is JFK?', 'Queens', 'airport'));
    expect(checkHeldOutIsolation(d)).toEqual(['held-out fact nyc-0003 appears in validation (nyc-0003-q3)']);
  });

  test('validation or test fact missing from train', () => {
    const d = clean();
    d.test.push(r('nyc-0009-q2', 'An untrained question?'));
    expect(checkEvalFactsTrained(d)).toEqual(['test fact nyc-0009 is not in train']);
  });

  test('inconsistent answer or category for a fact', () => {
    const d = clean();
    d.validation[0] = { ...d.validation[0], answer: 'Someone else' };
    d.test[0] = { ...d.test[0], category: 'history' };
    expect(checkAnswerConsistency(d)).toHaveLength(2);
  });

  test('answers over the word limit', () => {
    const d = clean();
    d.train[0] = { ...d.train[0], answer: Array(MAX_ANSWER_WORDS + 1).fill('word').join(' ') };
    expect(checkAnswerLength(d)).toHaveLength(1);
  });

  test('too few or too many phrasings', () => {
    const d = clean();
    d.held_out_facts.pop();
    expect(checkPhrasingCounts(d)).toEqual(['fact nyc-0003 has 1 phrasings']);
    const e = clean();
    e.train.push(r('nyc-0001-q3', 'Who laid out Central Park?'), r('nyc-0001-q4', 'Whose design is Central Park?'));
    expect(checkPhrasingCounts(e)).toEqual(['fact nyc-0001 has 4 phrasings']);
  });

  test('unknown category, bad id, too few facts', () => {
    const d = clean();
    d.train[0] = { ...d.train[0], category: 'weather' };
    expect(checkCategories(d)).toHaveLength(1);
    const e = clean();
    e.train[0] = { ...e.train[0], id: 'nyc-0001-x' };
    expect(checkIdFormat(e)).toHaveLength(1);
    expect(checkFactCounts(clean())).toContain(`only 3 distinct facts (need ${MIN_FACTS})`);
  });
});
