/**
 * Byte-level BPE training (GPT-2 style), written here by hand because nothing installable does it:
 * the JS tokenizer libraries (@huggingface/tokenizers, gpt-tokenizer, js-tiktoken) load or apply a
 * vocabulary but cannot learn one, and the Rust `tokenizers` npm binding needs a native per-platform
 * package that npm does not have for Linux x64 (checked with `npm view`: tokenizers@0.23.2 declares
 * no platform packages; 0.13.3 wants tokenizers-linux-x64-gnu@0.13.3, which was never published).
 * Native code would also not run in the wasm/browser setting this project targets.
 *
 * Algorithm (as in Hugging Face's BpeTrainer): pre-tokenize with GPT-2's regex, count distinct
 * words, then repeatedly merge the most frequent adjacent symbol pair. Pair counts are updated
 * incrementally: an index pair -> words lets each merge visit only the words containing that pair,
 * and a max-heap with lazy invalidation finds the next best pair in O(log n).
 */
import { byteLevelTokenizerJSON, bytesToUnicode, GPT2_PATTERN } from './bytelevel';

export interface TrainOptions {
  /** Target vocabulary size: 256 byte symbols + merges + special tokens. */
  vocabSize: number;
  /** A pair seen fewer times than this is never merged (default 2: a pair seen once generalises nothing). */
  minFrequency?: number;
  /** Special tokens, e.g. `<|endoftext|>`: removed from the training text, given the last ids. */
  specialTokens?: string[];
  /** Called with (merges done, merges wanted) about every 1% and at the end. */
  onProgress?: (done: number, total: number) => void;
}

// Pair keys pack two symbol ids into one number (ids < 2^21, product < 2^53: exact).
const SHIFT = 2 ** 21;
const pairKey = (a: number, b: number) => a * SHIFT + b;

/**
 * Max-heap of (count, a, b). Ties go to the smaller left id, then the smaller right id (as in
 * Hugging Face's trainer), which makes training deterministic; byte ids are byte values, so early
 * ties are broken in byte order.
 */
class PairHeap {
  private c: number[] = [];
  private a: number[] = [];
  private b: number[] = [];
  get size() {
    return this.c.length;
  }
  private above(i: number, j: number): boolean {
    if (this.c[i] !== this.c[j]) return this.c[i] > this.c[j];
    if (this.a[i] !== this.a[j]) return this.a[i] < this.a[j];
    return this.b[i] < this.b[j];
  }
  private swap(i: number, j: number) {
    [this.c[i], this.c[j]] = [this.c[j], this.c[i]];
    [this.a[i], this.a[j]] = [this.a[j], this.a[i]];
    [this.b[i], this.b[j]] = [this.b[j], this.b[i]];
  }
  push(count: number, a: number, b: number) {
    this.c.push(count);
    this.a.push(a);
    this.b.push(b);
    for (let i = this.c.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (!this.above(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }
  pop(): [number, number, number] {
    const top: [number, number, number] = [this.c[0], this.a[0], this.b[0]];
    const last = this.c.length - 1;
    this.swap(0, last);
    this.c.pop();
    this.a.pop();
    this.b.pop();
    for (let i = 0; ; ) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < last && this.above(l, m)) m = l;
      if (r < last && this.above(r, m)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
    return top;
  }
}

/** Learn a byte-level BPE vocabulary from `texts`; returns a tokenizer.json object. */
export function trainByteLevelBPE(texts: Iterable<string>, opts: TrainOptions): object {
  const specials = opts.specialTokens ?? [];
  const minFrequency = opts.minFrequency ?? 2;
  if (!Number.isInteger(opts.vocabSize) || opts.vocabSize < 256 + specials.length) {
    throw new RangeError(`vocabSize must be an integer >= ${256 + specials.length} (256 bytes + special tokens), got ${opts.vocabSize}`);
  }
  if (!Number.isFinite(minFrequency) || minFrequency < 1) throw new RangeError(`minFrequency must be >= 1, got ${minFrequency}`);

  // 1. Count pre-tokens as strings first (cheap), converting only distinct ones to bytes. Special
  //    tokens are cut out of the text, as the tokenizer does before pre-tokenizing at encode time.
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const specialRe = specials.length ? new RegExp(specials.map(escape).join('|'), 'g') : null;
  const pieceCounts = new Map<string, number>();
  for (const text of texts) {
    for (const section of specialRe ? text.split(specialRe) : [text]) {
      for (const piece of section.match(GPT2_PATTERN) ?? []) pieceCounts.set(piece, (pieceCounts.get(piece) ?? 0) + 1);
    }
  }
  const encoder = new TextEncoder();
  const words: number[][] = []; // symbol ids; bytes are ids 0..255
  const freqs: number[] = [];
  for (const [piece, n] of pieceCounts) {
    words.push(Array.from(encoder.encode(piece)));
    freqs.push(n);
  }
  pieceCounts.clear();

  // 2. Symbols: strings (GPT-2 byte characters) and their ids.
  const symbols: string[] = [...bytesToUnicode().values()];
  const symbolId = new Map(symbols.map((s, i) => [s, i]));

  // 3. Initial pair counts and pair -> words index. Index entries may go stale (a word loses the
  //    pair); merging re-checks each word, which is cheaper than keeping the index exact.
  const counts = new Map<number, number>();
  const where = new Map<number, Set<number>>();
  const add = (k: number, n: number) => counts.set(k, (counts.get(k) ?? 0) + n);
  words.forEach((w, wi) => {
    for (let i = 0; i + 1 < w.length; i++) {
      const k = pairKey(w[i], w[i + 1]);
      add(k, freqs[wi]);
      let s = where.get(k);
      if (!s) where.set(k, (s = new Set()));
      s.add(wi);
    }
  });
  const heap = new PairHeap();
  for (const [k, n] of counts) heap.push(n, Math.floor(k / SHIFT), k % SHIFT);

  const merges: Array<[string, string]> = [];
  const wanted = opts.vocabSize - specials.length - 256;
  const step = Math.max(1, Math.floor(wanted / 100));
  let added = 0; // new vocabulary entries (a merge may rebuild an existing string: no new entry)
  let reported = 0;
  const report = (final = false) => {
    if (opts.onProgress && (added !== reported || final)) opts.onProgress((reported = added), wanted);
  };
  while (added < wanted && heap.size > 0) {
    const [n, a, b] = heap.pop();
    const k = pairKey(a, b);
    const actual = counts.get(k) ?? 0;
    if (actual !== n) {
      // Stale entry. Counts of existing pairs only fall, so re-queue the lower current count.
      if (actual > 0 && actual < n) heap.push(actual, a, b);
      continue;
    }
    if (n < minFrequency) break; // the best pair is too rare: so are all others

    const merged = symbols[a] + symbols[b];
    let x = symbolId.get(merged);
    if (x === undefined) {
      x = symbols.length;
      symbols.push(merged);
      symbolId.set(merged, x);
      added++;
    }
    merges.push([symbols[a], symbols[b]]);

    // 4. Rewrite each word containing (a, b): remove its old pairs, add its new ones. Only pairs
    //    containing x can grow; they are queued after the pass with their final counts.
    const grown = new Set<number>();
    for (const wi of where.get(k) ?? []) {
      const w = words[wi];
      const out: number[] = [];
      for (let i = 0; i < w.length; i++) {
        if (i + 1 < w.length && w[i] === a && w[i + 1] === b) {
          out.push(x);
          i++;
        } else out.push(w[i]);
      }
      if (out.length === w.length) continue; // stale index entry
      const f = freqs[wi];
      for (let i = 0; i + 1 < w.length; i++) add(pairKey(w[i], w[i + 1]), -f);
      for (let i = 0; i + 1 < out.length; i++) {
        const pk = pairKey(out[i], out[i + 1]);
        add(pk, f);
        if (out[i] === x || out[i + 1] === x) {
          grown.add(pk);
          let s = where.get(pk);
          if (!s) where.set(pk, (s = new Set()));
          s.add(wi);
        }
      }
      words[wi] = out;
    }
    counts.delete(k);
    where.delete(k);
    for (const pk of grown) {
      const c = counts.get(pk) ?? 0;
      if (c > 0) heap.push(c, Math.floor(pk / SHIFT), pk % SHIFT);
    }
    if (added % step === 0 && added < wanted) report();
  }
  report(true); // the end, also when training stopped early for lack of frequent pairs

  const vocab: Record<string, number> = {};
  symbols.forEach((s, i) => (vocab[s] = i));
  return byteLevelTokenizerJSON({ merges, vocab, specialTokens: specials });
}
