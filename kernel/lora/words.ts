/**
 * Word vectors: one trainable vector per word of the training questions, added (times `scale`) to the
 * input embedding of each of the word's tokens, beside a LoRA adapter. A byte-level BPE splits names into
 * pieces ("Verrazzano" is five tokens), and a question's fact is named by a few rare words; a vector per
 * whole word gives the model each word's identity at once, as a bag-of-words reader has it, and lets
 * training weigh fact-naming words apart from common ones. The vectors start at zero, so a fresh adapter
 * leaves the model's outputs unchanged, as LoRA's B = 0 does.
 *
 * Written here because no library fits: PEFT's trainable tokens train rows of the token embedding (one
 * per token, shared with a tied output head), not vectors for words of several tokens.
 *
 * Words are read in the prompt up to its first newline, i.e. the question of "Question: …\nAnswer:", so
 * that a forward pass over the prompt alone (decoding) and over prompt and answer (training) add the same
 * vectors. A word is a run of letters and digits, keyed in lower case; its vector is added at every token
 * that holds part of it.
 */
import * as tf from '../backend/tf';
import type { Tokenizer } from '../tokenizer';
import { variableFrom } from '../model/tensor';

/** Per token id: the bytes it adds to the prompt's text, and whether it ends the question (a newline). */
export interface Piece {
  bytes: Uint8Array;
  ends: boolean;
}

const NO_BYTES = new Uint8Array(0);
const SEPARATOR = Uint8Array.of(0x20);
/** A word: a run of letters and digits ("what's" is "what" and "s"; "Meadows–Corona" two words). */
const WORD = /[\p{L}\p{N}]+/gu;

/** Per-id pieces of a byte-level tokenizer's vocabulary; the end-of-text token separates words. */
export function tokenPieces(tokenizer: Tokenizer): Piece[] {
  const bytes = tokenizer.tokenBytes();
  if (!bytes) throw new Error('word vectors need a byte-level tokenizer (tokenizer.json with a ByteLevel decoder)');
  const eos = tokenizer.eosId;
  return Array.from(bytes, (b, id): Piece => {
    if (id === eos) return { bytes: SEPARATOR, ends: false };
    return { bytes: b ?? NO_BYTES, ends: (b ?? NO_BYTES).includes(0x0a) };
  });
}

/** A word found in a token sequence: its text in lower case and the positions [start, end) of its tokens. */
export interface WordSpan {
  key: string;
  start: number;
  end: number;
}

/**
 * The words of `ids` before its first newline. Words are found in the decoded text, so that they do
 * not depend on how the tokenizer merged bytes, and each is mapped back to the tokens its bytes are in.
 */
export function wordSpans(pieces: Piece[], ids: ArrayLike<number>): WordSpan[] {
  const tokenOfByte: number[] = [];
  const parts: Uint8Array[] = [];
  for (let i = 0; i < ids.length; i++) {
    const p = pieces[ids[i]] ?? { bytes: SEPARATOR, ends: false };
    if (p.ends) break;
    parts.push(p.bytes);
    for (let k = 0; k < p.bytes.length; k++) tokenOfByte.push(i);
  }
  const text = Buffer.concat(parts).toString('utf8');
  const spans: WordSpan[] = [];
  let chars = 0;
  let bytes = 0;
  for (const m of text.matchAll(WORD)) {
    bytes += Buffer.byteLength(text.slice(chars, m.index));
    const length = Buffer.byteLength(m[0]);
    spans.push({ key: m[0].toLowerCase(), start: tokenOfByte[bytes], end: tokenOfByte[bytes + length - 1] + 1 });
    chars = m.index! + m[0].length;
    bytes += length;
  }
  return spans;
}

/** The words an adapter keeps vectors for, and how to find them in token ids. */
export interface Vocabulary {
  pieces: Piece[];
  words: string[];
}

/** The vocabulary of token sequences (the training questions), read with `tokenizer`. */
export function vocabularyFor(tokenizer: Tokenizer, sequences: Iterable<ArrayLike<number>>): Vocabulary {
  const pieces = tokenPieces(tokenizer);
  return { pieces, words: vocabularyOf(pieces, sequences) };
}

/** The distinct words of the sequences, commonest first (ties in code-point order), for a stable table. */
export function vocabularyOf(pieces: Piece[], sequences: Iterable<ArrayLike<number>>): string[] {
  const counts = new Map<string, number>();
  for (const ids of sequences) for (const { key } of wordSpans(pieces, ids)) counts.set(key, (counts.get(key) ?? 0) + 1);
  return [...counts].sort(([a, x], [b, y]) => y - x || (a < b ? -1 : a > b ? 1 : 0)).map(([w]) => w);
}

export class WordVectors {
  /** [words, n_embd], one row per word of `words`. */
  readonly table: tf.Variable<tf.Rank.R2>;
  readonly words: string[];
  private readonly pieces: Piece[];
  private readonly index: Map<string, number>;

  constructor(
    { pieces, words }: Vocabulary,
    readonly scale: number,
    width: number,
  ) {
    this.pieces = pieces;
    this.words = words;
    if (words.length === 0) throw new Error('word vectors need at least one word; the training questions hold none');
    this.index = new Map(words.map((w, i) => [w, i]));
    if (this.index.size !== words.length) throw new Error('word vectors: the word list repeats a word');
    this.table = variableFrom(tf.zeros([words.length, width]) as tf.Tensor2D, true);
  }

  /** Row of each position of ids [batch, seq] (row-major), −1 where no known word stands. */
  rows(ids: ArrayLike<number>, batch: number, seq: number): Int32Array {
    const rows = new Int32Array(batch * seq).fill(-1);
    for (let r = 0; r < batch; r++) {
      const line = Array.prototype.slice.call(ids, r * seq, (r + 1) * seq) as number[];
      for (const { key, start, end } of wordSpans(this.pieces, line)) {
        const row = this.index.get(key);
        if (row !== undefined) rows.fill(row, r * seq + start, r * seq + end);
      }
    }
    return rows;
  }

  /** scale · (the word's vector) at each position of ids [batch, seq], zero elsewhere: [batch*seq, n_embd]. */
  embed(ids: tf.Tensor2D): tf.Tensor2D {
    const [b, t] = ids.shape;
    const rows = this.rows(ids.dataSync(), b, t);
    const at = tf.tensor1d(Int32Array.from(rows, (r) => Math.max(r, 0)), 'int32');
    const mask = tf.tensor2d(Float32Array.from(rows, (r) => (r < 0 ? 0 : this.scale)), [b * t, 1]);
    return tf.mul(tf.gather(this.table, at), mask);
  }

  dispose(): void {
    this.table.dispose();
  }
}
