import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Tokenizer, byteLevelTokenizerJSON, bytesToUnicode, trainByteLevelBPE } from '../kernel/tokenizer';

// The regex is written out again here, so the test does not trust the module's copy.
const GPT2_RE = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** Small deterministic PRNG (mulberry32), independent of the code under test. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random string of code points from all planes, no surrogates (so valid UTF-8). */
function randomUnicode(r: () => number, len: number): string {
  const cps: number[] = [];
  while (cps.length < len) {
    // Mix ranges so ASCII, whitespace and astral characters all show up often.
    const pick = r();
    const cp = pick < 0.3 ? Math.floor(r() * 128) : pick < 0.4 ? [9, 10, 13, 32, 0xa0, 0x3000][Math.floor(r() * 6)] : Math.floor(r() * 0x110000);
    if (cp >= 0xd800 && cp <= 0xdfff) continue;
    cps.push(cp);
  }
  return String.fromCodePoint(...cps);
}

const SAMPLES: Record<string, string> = {
  ascii: 'Hello, world! The quick brown fox jumps over the lazy dog. 1234567890 ~!@#$%^&*()_+{}|:"<>?',
  contractions: "I'm sure they'll say it's what we've done, isn't it? You'd've known.",
  accented: 'Crème brûlée, façade, naïve, Ångström, São Paulo, Zürich, Łódź, señor, ÆØÅ æøå ß',
  emoji: 'Hi 😀👍🏽 family 👩‍👩‍👧 👨‍👩‍👧‍👦 flags 🇺🇸🇯🇵🏳️‍🌈 keycap 1️⃣ heart ❤️',
  cjk: '日本語のテキストです。中文文本，汉字。한국어 텍스트입니다.',
  arabic: 'مرحبا بالعالم، هذا نص عربي. ١٢٣',
  devanagari: 'नमस्ते दुनिया, यह हिंदी पाठ है। क्षत्रिय',
  whitespace: '  leading\ttab\t\ttabs\n\nnewlines\r\nCRLF   trailing   \n\t \u00a0nbsp\u3000ideographic ',
  mixed: 'Mixed: abc日本😀 ñ\n\tعربي 123 🇺🇸!',
  empty: '',
  single: 'a',
};

// A small multilingual corpus, so that learned merges include multi-byte characters.
function corpus(): string[] {
  const r = rng(7);
  const words = ['the', 'cat', 'sat', 'on', 'mat', 'lower', 'newest', 'widest', 'café', 'naïve', '日本', '語', '😀', 'नमस्ते', 'مرحبا', 'Zürich'];
  const texts: string[] = [];
  for (let i = 0; i < 300; i++) {
    const n = 3 + Math.floor(r() * 10);
    texts.push(Array.from({ length: n }, () => words[Math.floor(r() * words.length)]).join(r() < 0.8 ? ' ' : '\n') + '.');
  }
  return texts;
}

const EOS = '<|endoftext|>';
const bytes = Tokenizer.fromJSON(byteLevelTokenizerJSON({ specialTokens: [EOS] }));
const trainedJSON = trainByteLevelBPE(corpus(), { vocabSize: 256 + 64 + 1, specialTokens: [EOS] });
const trained = Tokenizer.fromJSON(trainedJSON);

describe('bytesToUnicode', () => {
  it("is GPT-2's mapping", () => {
    const m = bytesToUnicode();
    expect(m.size).toBe(256);
    expect(new Set(m.values()).size).toBe(256);
    // Known values from GPT-2's vocabulary: printable ASCII is itself, space is 'Ġ', newline 'Ċ'.
    expect(m.get(0x41)).toBe('A');
    expect(m.get(0x20)).toBe('Ġ');
    expect(m.get(0x0a)).toBe('Ċ');
    expect(m.get(0x09)).toBe('ĉ');
    expect(m.get(0x00)).toBe('Ā');
    expect(m.get(0x7f)).toBe('ġ');
    expect(m.get(0xad)).toBe('Ń');
    expect(m.get(0xe9)).toBe('é');
  });
});

describe.each([
  ['256-byte', bytes],
  ['trained', trained],
])('%s tokenizer', (_name, tok) => {
  it.each(Object.entries(SAMPLES))('round-trips %s', (_k, text) => {
    const ids = tok.encode(text);
    expect(tok.decode(ids)).toBe(text);
    for (const id of ids) expect(id >= 0 && id < tok.vocabSize).toBe(true);
  });

  it('round-trips random Unicode strings', () => {
    const r = rng(42);
    for (let i = 0; i < 300; i++) {
      const s = randomUnicode(r, 1 + Math.floor(r() * 40));
      expect(tok.decode(tok.encode(s))).toBe(s);
    }
  });

  it('encodes <|endoftext|> to the single eos id', () => {
    const eos = tok.eosId!;
    expect(eos).toBe(tok.vocabSize - 1);
    expect(tok.encode(EOS)).toEqual([eos]);
    const ids = tok.encode(`ab${EOS}cd`);
    expect(ids.filter((id) => id === eos)).toHaveLength(1);
    expect(tok.decode(ids)).toBe(`ab${EOS}cd`);
  });
});

describe('256-byte tokenizer', () => {
  it('has 256 byte ids then the special tokens', () => {
    expect(bytes.vocabSize).toBe(257);
    expect(bytes.eosId).toBe(256);
    const plain = Tokenizer.fromJSON(byteLevelTokenizerJSON({}));
    expect(plain.vocabSize).toBe(256);
    expect(plain.eosId).toBeUndefined();
    expect(plain.tokenId('Ġ')).toBe(32);
  });

  it('encodes a string to exactly its UTF-8 bytes', () => {
    const r = rng(1);
    const strings = [...Object.values(SAMPLES), ...Array.from({ length: 100 }, () => randomUnicode(r, 30))];
    for (const s of strings) expect(bytes.encode(s)).toEqual([...Buffer.from(s, 'utf8')]);
  });

  it('rejects unknown ids when decoding', () => {
    expect(() => bytes.decode([1000])).toThrow(/unknown token id 1000/);
    expect(bytes.decode([])).toBe('');
  });
});

describe('trainByteLevelBPE', () => {
  /** Pre-tokenized words as byte arrays, with counts. */
  function wordCounts(texts: string[]): Map<string, number> {
    const m = new Map<string, number>();
    for (const t of texts) for (const w of t.match(GPT2_RE) ?? []) m.set(w, (m.get(w) ?? 0) + 1);
    return m;
  }

  it('learns the most frequent adjacent byte pair first', () => {
    const texts = ['low lower lowest', 'slow flow glow', 'newer wider'];
    const pairs = new Map<string, number>();
    for (const [w, n] of wordCounts(texts)) {
      const b = [...Buffer.from(w, 'utf8')];
      for (let i = 0; i + 1 < b.length; i++) {
        const k = `${b[i]},${b[i + 1]}`;
        pairs.set(k, (pairs.get(k) ?? 0) + n);
      }
    }
    // Most frequent; ties go to the smaller pair of byte values (the trainer's documented rule).
    const best = [...pairs].map(([k, n]) => [n, ...k.split(',').map(Number)]).sort((p, q) => q[0] - p[0] || p[1] - q[1] || p[2] - q[2]);
    const [, x, y] = best[0];
    const m = bytesToUnicode();
    const json = trainByteLevelBPE(texts, { vocabSize: 260 }) as { model: { merges: string[][] } };
    expect(json.model.merges[0]).toEqual([m.get(x), m.get(y)]);
  });

  // Runs of one symbol ("aaaa", "====") exercise overlapping pairs, where merges are subtle.
  const runs = () => {
    const r = rng(3);
    return Array.from({ length: 200 }, () => Array.from({ length: 20 + Math.floor(r() * 40) }, () => 'aab= \n'[Math.floor(r() * 6)]).join(''));
  };
  it.each([
    ['multilingual words', corpus],
    ['runs of repeated symbols', runs],
  ])('matches a naive (recount everything) BPE trainer merge for merge: %s', (_name, make) => {
    const texts = make();
    const m = bytesToUnicode();
    // Naive reference: words as symbol-string arrays; every step recounts all pairs. Ties go to
    // the pair of smaller symbol ids (ids: bytes, then new strings in order of creation).
    const ids = new Map<string, number>([...m].map(([b, s]) => [s, b]));
    const words = [...wordCounts(texts)].map(([w, n]) => ({ w, s: [...Buffer.from(w, 'utf8')].map((b) => m.get(b)!), n }));
    const expected: string[][] = [];
    while (ids.size < 256 + 64) {
      const counts = new Map<string, [number, string, string]>();
      for (const { s, n } of words) {
        for (let i = 0; i + 1 < s.length; i++) {
          const k = s[i] + '\u0000' + s[i + 1];
          const c = counts.get(k);
          counts.set(k, [(c?.[0] ?? 0) + n, s[i], s[i + 1]]);
        }
      }
      let best: [number, string, string] | undefined;
      for (const c of counts.values()) {
        if (!best || c[0] > best[0] || (c[0] === best[0] && (ids.get(c[1])! < ids.get(best[1])! || (c[1] === best[1] && ids.get(c[2])! < ids.get(best[2])!)))) best = c;
      }
      if (!best || best[0] < 2) break;
      const [, a, b] = best;
      expected.push([a, b]);
      if (!ids.has(a + b)) ids.set(a + b, ids.size);
      for (const w of words) {
        const out: string[] = [];
        for (let i = 0; i < w.s.length; i++) {
          if (i + 1 < w.s.length && w.s[i] === a && w.s[i + 1] === b) {
            out.push(a + b);
            i++;
          } else out.push(w.s[i]);
        }
        w.s = out;
      }
    }
    const json = trainByteLevelBPE(texts, { vocabSize: 256 + 64 }) as { model: { merges: string[][] } };
    expect(json.model.merges).toEqual(expected);
    // The tokenizer (which applies merges by rank) splits every corpus word as training left it.
    const tok = Tokenizer.fromJSON(json);
    for (const { w, s } of words) expect(tok.encode(w)).toEqual(s.map((t) => tok.tokenId(t)));
  });

  it('compresses its corpus', () => {
    const text = corpus().join('\n');
    expect(trained.encode(text).length).toBeLessThan(Buffer.byteLength(text, 'utf8') / 2);
    expect(trained.vocabSize).toBe(256 + 64 + 1);
    // Each merge's result is a token.
    const merges = (trainedJSON as { model: { merges: string[][] } }).model.merges;
    for (const [a, b] of merges) expect(trained.tokenId(a + b)).toBeDefined();
  });

  it('reports progress and validates its options', () => {
    const seen: Array<[number, number]> = [];
    trainByteLevelBPE(corpus(), { vocabSize: 300, onProgress: (d, t) => seen.push([d, t]) });
    expect(seen.length).toBeGreaterThan(1);
    expect(seen[seen.length - 1]).toEqual([44, 44]);
    expect(() => trainByteLevelBPE([], { vocabSize: 100 })).toThrow(/vocabSize/);
  });
});

describe('save and load', () => {
  it('round-trips through a file, atomically', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chromatune-tok-'));
    const file = path.join(dir, 'sub', 'tokenizer.json');
    trained.save(file);
    expect(fs.readdirSync(path.dirname(file))).toEqual(['tokenizer.json']); // no temp file left
    const loaded = Tokenizer.fromFile(file);
    expect(loaded.toJSON()).toEqual(trained.toJSON());
    expect(Tokenizer.fromFile(path.dirname(file)).vocabSize).toBe(trained.vocabSize); // a model folder
    for (const s of Object.values(SAMPLES)) expect(loaded.encode(s)).toEqual(trained.encode(s));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('names the file when it is missing or invalid', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chromatune-tok-'));
    const missing = path.join(dir, 'nope.json');
    expect(() => Tokenizer.fromFile(missing)).toThrow(missing);
    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, '{not json');
    expect(() => Tokenizer.fromFile(bad)).toThrow(bad);
    fs.writeFileSync(bad, '{"hello": 1}');
    expect(() => Tokenizer.fromFile(bad)).toThrow(bad);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('tokenBytes', () => {
  it("concatenated over an encoding, each token's bytes are the text's UTF-8; added tokens are their text", () => {
    for (const tok of [bytes, trained, Tokenizer.fromFile(path.join(__dirname, '..', 'models', 'chromatune-base'))]) {
      const table = tok.tokenBytes()!;
      expect(table.length).toBe(tok.vocabSize);
      for (const s of Object.values(SAMPLES)) {
        const joined = tok.encode(s).flatMap((id) => [...table[id]!]);
        expect(Buffer.from(joined).equals(Buffer.from(s, 'utf8'))).toBe(true);
      }
      expect(Buffer.from(table[tok.eosId!]!).toString('utf8')).toBe(EOS);
    }
  });

  it('is undefined for a tokenizer whose decoder is not byte-level (its tokens are not byte strings)', () => {
    const json = { ...(bytes.toJSON() as Record<string, unknown>), decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true } };
    expect(Tokenizer.fromJSON(json).tokenBytes()).toBeUndefined();
  });
});
