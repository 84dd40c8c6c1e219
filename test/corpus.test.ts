import { article, buildWordnetCorpus, Corpus, heldOutDefinitionQuestions, mentionsNyc } from '../kernel/pretrain/corpus';
import { trainBaseTokenizer } from '../kernel/pretrain/tokenizer';
import { Tokenizer } from '../kernel/tokenizer';

// Written out again here, independently of the module's list: the test must not trust it.
const NYC = new RegExp(
  `\\b(?:${[
    'new york', 'nyc', 'manhattan', 'brooklyn', 'bronx', 'staten island', 'harlem', 'wall street',
    'central park', 'hudson river', 'east river', 'long island', 'coney island', 'ellis island',
    'statue of liberty', 'empire state building', 'yankees', 'knicks', 'greenwich village',
    'times square', 'fifth avenue',
  ].join('|')})\\b`,
  'i',
);
const NYC_CASED = /\b(?:Queens|Broadway|Mets|Rangers)\b/;
const QA = /^Question: .+\nAnswer: .+\n$/s;

// The full database takes about 2 s; build it once (with synset ids) for most checks.
let full: Corpus;
beforeAll(() => {
  full = buildWordnetCorpus({ seed: 0, withSynsetIds: true });
});

describe('buildWordnetCorpus', () => {
  it('is deterministic for a seed and shuffled by it', () => {
    const again = buildWordnetCorpus({ seed: 0 });
    expect(again.train).toEqual(full.train);
    expect(again.heldOut).toEqual(full.heldOut);
    expect(again.stats).toEqual(full.stats);
    const other = buildWordnetCorpus({ seed: 1, posFilter: ['adv'] });
    const adv = buildWordnetCorpus({ seed: 0, posFilter: ['adv'] });
    expect(other.train).not.toEqual(adv.train);
  });

  it('leaves out New York City', () => {
    expect(full.stats.excludedNyc).toBeGreaterThan(100); // WordNet does name NYC places
    for (const doc of [...full.train, ...full.heldOut]) {
      if (NYC.test(doc) || NYC_CASED.test(doc)) throw new Error(`NYC leaked: ${JSON.stringify(doc)}`);
    }
    expect(mentionsNyc('a large park in Manhattan')).toBe(true);
    expect(mentionsNyc('the play had a long run on Broadway')).toBe(true);
    expect(mentionsNyc('the N. Y. Stock Exchange')).toBe(true);
    expect(mentionsNyc('the queens of England')).toBe(false); // lowercase: not the borough
    expect(mentionsNyc('an inland sea in northern Canada, Hudson Bay')).toBe(false);
  });

  it('holds out whole synsets, about heldOutFraction of them', () => {
    const ids = full.synsetIds!;
    expect(ids.train).toHaveLength(full.train.length);
    expect(ids.heldOut).toHaveLength(full.heldOut.length);
    const trainIds = new Set(ids.train);
    const heldIds = new Set(ids.heldOut);
    for (const id of heldIds) expect(trainIds.has(id)).toBe(false);
    expect(heldIds.size).toBe(full.stats.heldOutSynsets);
    const frac = heldIds.size / (heldIds.size + trainIds.size);
    expect(frac).toBeGreaterThan(0.015);
    expect(frac).toBeLessThan(0.025);
    // The split depends on the seed and synset only, not on filters.
    const verbs = buildWordnetCorpus({ seed: 0, posFilter: ['verb'], withSynsetIds: true });
    expect(new Set(verbs.synsetIds!.heldOut)).toEqual(new Set([...heldIds].filter((id) => id.endsWith('-verb'))));
  });

  it('writes Q/A documents in the prompt format and plain sentences otherwise', () => {
    // Plain checks in the loop: expect() on 237k documents costs seconds.
    let qa = 0;
    for (const doc of [...full.train, ...full.heldOut]) {
      if (!doc.endsWith('\n')) throw new Error(`no final newline: ${JSON.stringify(doc)}`);
      if (doc.startsWith('Question: ')) {
        if (!QA.test(doc) || doc.split('\n').length !== 3) throw new Error(`bad Q/A doc: ${JSON.stringify(doc)}`);
        qa++;
      } else if (doc.indexOf('\n') !== doc.length - 1 || doc.includes('"')) {
        throw new Error(`bad sentence doc: ${JSON.stringify(doc)}`);
      }
    }
    expect(qa / full.stats.documents).toBeGreaterThan(0.5);
    // The noun "bridge" under any template (the template is drawn at random).
    const bridge = /^Question: (?:What is a bridge\?|Define bridge\.|What is the meaning of bridge\?|What does the word "bridge" mean\?)\nAnswer: .*\bstructure\b/;
    expect([...full.train, ...full.heldOut].some((d) => bridge.test(d))).toBe(true);
    const verbs = buildWordnetCorpus({ posFilter: ['verb'], maxDocuments: 2000 });
    expect(verbs.train.some((d) => /^Question: What does it mean to .+\?\nAnswer: to /.test(d))).toBe(true);
    expect(verbs.stats.documents).toBe(2000);
  });

  it('has consistent stats', () => {
    const { stats } = full;
    expect(stats.documents).toBe(full.train.length + full.heldOut.length);
    expect(stats.characters).toBe([...full.train, ...full.heldOut].reduce((n, d) => n + d.length, 0));
    expect(stats.synsets).toBeGreaterThan(110000); // WordNet 3.1: 117,791 synsets
    expect(stats.excludedNyc + stats.heldOutSynsets).toBeLessThan(stats.synsets);
  });

  it('chooses articles by sound', () => {
    expect(['apple', 'bridge', 'hour', 'unicorn', 'umbrella', 'FBI agent', 'NASA', 'HIV'].map(article)).toEqual(['an', 'a', 'an', 'a', 'an', 'an', 'a', 'an']);
  });
});

describe('naming questions', () => {
  let naming: Corpus;
  beforeAll(() => {
    naming = buildWordnetCorpus({ seed: 0, namingQuestions: true, withSynsetIds: true });
  });

  it('adds one definition-to-word question per defined training synset, and leaves the rest of the corpus as it was', () => {
    const added = new Map<string, number>();
    for (const d of naming.train) added.set(d, (added.get(d) ?? 0) + 1);
    for (const d of full.train) {
      const n = added.get(d);
      if (!n) throw new Error(`document missing with naming questions: ${JSON.stringify(d)}`);
      added.set(d, n - 1);
    }
    const extra = [...added].flatMap(([d, n]) => Array<string>(n).fill(d));
    expect(extra).toHaveLength(naming.stats.namingDocuments);
    expect(naming.stats.namingDocuments).toBe(naming.train.length - full.train.length);
    // Held-out synsets get none, and the held-out documents keep their order: held-out perplexity is
    // measured on the same packed sequences as for a model trained without naming questions.
    expect(naming.heldOut).toEqual(full.heldOut);
    // One per training synset that has a definition document.
    const defined = new Set(full.synsetIds!.train.filter((_, i) => full.train[i].startsWith('Question: ')));
    expect(naming.stats.namingDocuments).toBe(defined.size);
    for (const d of extra) if (!QA.test(d) || d.split('\n').length !== 3) throw new Error(`bad naming doc: ${JSON.stringify(d)}`);
  });

  it('asks the definition and answers with the word, in varied wordings', () => {
    // WordNet's river: "a large natural stream of water (larger than a creek)".
    const river = naming.train.filter((d) => /\nAnswer: river\n$/.test(d) && d.includes('a large natural stream of water'));
    expect(river).toHaveLength(1);
    expect(river[0]).toMatch(/^Question: (?:What do you call|What is the word for|Which noun means|What is the name for) a large natural stream of water \(larger than a creek\)\?\n/);
    const extra = new Set(naming.train);
    for (const d of full.train) extra.delete(d);
    const openings = new Set([...extra].map((d) => d.split(' ').slice(1, 3).join(' ')));
    expect(openings.size).toBeGreaterThanOrEqual(8);
    // Verb glosses that begin with "to" do not get a second one from the template.
    expect([...extra].some((d) => /^Question: (?:What verb means|Which word means|How do you say ")to to /.test(d))).toBe(false);
    expect([...extra].some((d) => /^Question: (?:What verb means|Which word means) to /.test(d))).toBe(true);
  });
});

describe('heldOutDefinitionQuestions', () => {
  it('parses held-out Q/A documents back into pairs', () => {
    const pairs = heldOutDefinitionQuestions(full, 20);
    expect(pairs).toHaveLength(20);
    for (const { question, answer } of pairs) {
      expect(full.heldOut).toContain(`Question: ${question}\nAnswer: ${answer}\n`);
    }
  });
});

describe('trainBaseTokenizer', () => {
  it('makes the Q/A template a handful of tokens', () => {
    const tok = Tokenizer.fromJSON(trainBaseTokenizer(full.train.slice(0, 20000), 1024));
    expect(tok.vocabSize).toBe(1024);
    expect(tok.eosId).toBe(1023);
    const ids = tok.encode('Question: What is a bridge?\nAnswer:');
    expect(ids.length).toBeLessThanOrEqual(12);
    expect(tok.decode(ids)).toBe('Question: What is a bridge?\nAnswer:');
    expect(tok.tokenId('Question')).toBeDefined();
    expect(tok.tokenId('Answer')).toBeDefined();
  });
});
