/**
 * Well-formed UTF-8 from a byte-level vocabulary. Its tokens are byte strings, so a model can emit a
 * token that ends inside a character and then one that does not continue it, and the text decodes
 * with U+FFFD. A model that never saw a byte in pretraining does exactly that: the embedded model's
 * WordNet corpus is ASCII, so after fine-tuning it wrote "Fr\uFFFDd\uFFFDric" for "Frédéric", its
 * first byte right and the second unlearnt. The guard masks, at each step, the tokens whose bytes
 * cannot extend the text so far to well-formed UTF-8: greedy becomes the argmax among the tokens that
 * keep the text valid, and sampling renormalises over them.
 *
 * Hand-written: the automaton is the Unicode Standard's table of well-formed byte sequences
 * (chapter 3, table 3-7), eight states; no library exposes it as a next-byte filter.
 */
import type { Tokenizer } from '../tokenizer';

/** What the next byte must be: how many continuation bytes are still owed and the range of the first. */
interface Need {
  owed: number;
  lo: number;
  hi: number;
}

/** State 0 is "between characters"; the others owe continuation bytes. -1 is rejected. */
const STATES: Need[] = [
  { owed: 0, lo: 0, hi: 0 },
  { owed: 1, lo: 0x80, hi: 0xbf },
  { owed: 2, lo: 0x80, hi: 0xbf },
  { owed: 2, lo: 0xa0, hi: 0xbf }, // after E0: no overlong three-byte forms
  { owed: 2, lo: 0x80, hi: 0x9f }, // after ED: no surrogates
  { owed: 3, lo: 0x80, hi: 0xbf },
  { owed: 3, lo: 0x90, hi: 0xbf }, // after F0: no overlong four-byte forms
  { owed: 3, lo: 0x80, hi: 0x8f }, // after F4: nothing above U+10FFFF
];
const REJECT = -1;

/** The state after one more byte. */
export function utf8Step(state: number, byte: number): number {
  if (state === REJECT) return REJECT;
  if (state === 0) {
    if (byte <= 0x7f) return 0;
    if (byte >= 0xc2 && byte <= 0xdf) return 1;
    if (byte === 0xe0) return 3;
    if (byte === 0xed) return 4;
    if (byte >= 0xe1 && byte <= 0xef) return 2;
    if (byte === 0xf0) return 6;
    if (byte >= 0xf1 && byte <= 0xf3) return 5;
    if (byte === 0xf4) return 7;
    return REJECT; // a continuation byte with no lead, C0, C1 or F5-FF
  }
  const need = STATES[state];
  if (byte < need.lo || byte > need.hi) return REJECT;
  return need.owed - 1; // states 0, 1 and 2 owe 0, 1 and 2 bytes of any continuation range
}

export class Utf8Guard {
  /** next[state * vocab + id]: the state after token id, or REJECT. */
  private readonly next: Int8Array;
  /** Whether any token is rejected in each state (when none is, rows need no mask). */
  private readonly restricts: boolean[];

  private constructor(
    private readonly vocab: number,
    tokens: Array<Uint8Array | undefined>,
  ) {
    this.next = new Int8Array(STATES.length * vocab).fill(REJECT);
    this.restricts = STATES.map(() => false);
    for (let s = 0; s < STATES.length; s++) {
      let anyAllowed = false;
      for (let id = 0; id < vocab; id++) {
        const bytes = tokens[id];
        let t = bytes ? s : REJECT;
        if (bytes) for (const b of bytes) t = utf8Step(t, b);
        this.next[s * vocab + id] = t;
        if (t === REJECT) this.restricts[s] = true;
        else anyAllowed = true;
      }
      // A vocabulary missing the bytes a state needs cannot be guarded there: leave it unmasked.
      if (!anyAllowed) this.restricts[s] = false;
    }
  }

  private static cache = new WeakMap<Tokenizer, Map<number, Utf8Guard | null>>();

  /** The guard of a byte-level tokenizer over a model's vocabulary size; undefined for other tokenizers. */
  static of(tokenizer: Tokenizer, vocab: number): Utf8Guard | undefined {
    let byVocab = Utf8Guard.cache.get(tokenizer);
    if (!byVocab) Utf8Guard.cache.set(tokenizer, (byVocab = new Map()));
    if (!byVocab.has(vocab)) {
      const tokens = tokenizer.tokenBytes();
      byVocab.set(vocab, tokens ? new Utf8Guard(vocab, tokens) : null);
    }
    return byVocab.get(vocab) ?? undefined;
  }

  /** The state after `ids` from the start of a text; REJECT when they are not well-formed UTF-8. */
  stateAfter(ids: number[]): number {
    let s = 0;
    for (const id of ids) {
      s = id >= 0 && id < this.vocab ? this.next[s * this.vocab + id] : REJECT;
      if (s === REJECT) break;
    }
    return s;
  }

  /** The state after one more token (REJECT when it breaks the text: only an unguarded state allows that). */
  advance(state: number, id: number): number {
    return state === REJECT ? REJECT : this.next[state * this.vocab + id];
  }

  /**
   * `row` with the logits of tokens that cannot follow in `state` set to -Infinity (a copy), or `row`
   * itself when nothing is excluded. A rejected state (text that is already not UTF-8) is not guarded.
   */
  mask(row: Float32Array, state: number): Float32Array {
    if (state === REJECT || !this.restricts[state]) return row;
    const out = Float32Array.from(row);
    const base = state * this.vocab;
    for (let id = 0; id < this.vocab; id++) if (this.next[base + id] === REJECT) out[id] = -Infinity;
    return out;
  }
}
