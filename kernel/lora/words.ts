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
 *
 * A word bag adds a second vector per word, read where the answer starts rather than where the word
 * stands: the mean of the bag vectors of the question's words, each weighted by its inverse document
 * frequency over the training questions (as TF-IDF weighs a word), is scaled to a fixed root mean square
 * (the bag's scale) and added at the prompt's answer cue, the newline that ends the question through the
 * ":" of "Answer:". That is a bag-of-words reading of the whole question, a fastText-style mean of
 * evidence, given to the positions the answer is read from; the model's attention otherwise has to gather
 * a name's evidence from pieces spread over the question. The weighting lets the rare words that name a
 * fact outweigh the frame words, and the fixed size keeps only the mean's direction: a reworded question
 * shares fewer words with its fact's training questions, so its mean is shorter, yet it still points to
 * the fact. The cue lies in the prompt that formatPrompt writes, so decoding adds it in its first pass as
 * training does. A prompt with no ":" after its newline has the newline alone as its cue; decoding
 * without the key-value cache would then find the first ":" of the decoded text instead.
 */
import * as tf from '../backend/tf';
import type { Tokenizer } from '../tokenizer';
import { variableFrom } from '../model/tensor';
import type { Batch } from '../data/batch';
import { AnswerMemory, type AnswerIds } from './memory';

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
  return readQuestion(pieces, ids).spans;
}

/** A question read from token ids: its words, and its answer cue's positions [cue, cueEnd) (−1, −1: no newline). */
export interface Question {
  spans: WordSpan[];
  cue: number;
  cueEnd: number;
}

const COLON = 0x3a;

/** The words of `ids` before its first newline, and its answer cue: that newline through the next ":". */
export function readQuestion(pieces: Piece[], ids: ArrayLike<number>): Question {
  const tokenOfByte: number[] = [];
  const parts: Uint8Array[] = [];
  let end = -1;
  for (let i = 0; i < ids.length; i++) {
    const p = pieces[ids[i]] ?? { bytes: SEPARATOR, ends: false };
    if (p.ends) {
      end = i;
      break;
    }
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
  if (end < 0) return { spans, cue: -1, cueEnd: -1 };
  let colon = end + 1;
  while (colon < ids.length && !pieces[ids[colon]]?.bytes.includes(COLON)) colon++;
  return { spans, cue: end, cueEnd: colon < ids.length ? colon + 1 : end + 1 };
}

/** The words an adapter keeps vectors for, how to find them in token ids, and the bag's weight of each. */
export interface Vocabulary {
  pieces: Piece[];
  words: string[];
  /** [words], each word's inverse document frequency over the training questions; needed by a word bag. */
  idf?: Float32Array;
  /** The distinct training answers (lora/memory); needed by an answer memory. */
  answers?: AnswerIds[];
}

/** The vocabulary of token sequences (the training questions), read with `tokenizer`. */
export function vocabularyFor(tokenizer: Tokenizer, sequences: Iterable<ArrayLike<number>>): Vocabulary {
  const pieces = tokenPieces(tokenizer);
  return { pieces, ...vocabularyOf(pieces, sequences) };
}

/**
 * The distinct words of the sequences, commonest first (ties in code-point order), for a stable table,
 * and each word's smoothed inverse document frequency, ln((1 + n) / (1 + df)) + 1 over the n sequences,
 * df of which hold the word (scikit-learn's TfidfVectorizer default). Counted here, in the same pass,
 * rather than with augment's wordFrequencies: the bag's words are read from token ids, as `embed` reads
 * them, not split from the question's text.
 */
export function vocabularyOf(pieces: Piece[], sequences: Iterable<ArrayLike<number>>): { words: string[]; idf: Float32Array } {
  const counts = new Map<string, number>();
  const holding = new Map<string, number>();
  let n = 0;
  for (const ids of sequences) {
    n++;
    const keys = wordSpans(pieces, ids).map((s) => s.key);
    for (const key of keys) counts.set(key, (counts.get(key) ?? 0) + 1);
    for (const key of new Set(keys)) holding.set(key, (holding.get(key) ?? 0) + 1);
  }
  const words = [...counts].sort(([a, x], [b, y]) => y - x || (a < b ? -1 : a > b ? 1 : 0)).map(([w]) => w);
  return { words, idf: Float32Array.from(words, (w) => Math.log((1 + n) / (1 + holding.get(w)!)) + 1) };
}

/** Keeps the bag's mean finite and zero for a question with no known word (its mean is 0). */
const RMS_EPSILON = 1e-6;

export class WordVectors {
  /** [words, n_embd], one row per word of `words`, added at the word's tokens. */
  readonly table: tf.Variable<tf.Rank.R2>;
  /** [words, n_embd], the word bag's vectors (when bagScale > 0), averaged over a question at its answer cue. */
  readonly bag?: tf.Variable<tf.Rank.R2>;
  readonly words: string[];
  /** [words], the bag's weight of each word (its inverse document frequency); with a bag only. */
  readonly idf?: Float32Array;
  /** Keys and values per training answer, read from the bag's mean (lora/memory); with a bag only. */
  readonly memory?: AnswerMemory;
  private readonly pieces: Piece[];
  private readonly index: Map<string, number>;

  constructor(
    { pieces, words, idf, answers }: Vocabulary,
    readonly scale: number,
    width: number,
    readonly bagScale = 0,
    /** The answer memory's loss weight (0: no memory) and the seed of its keys. */
    memory: { weight: number; seed: number } = { weight: 0, seed: 0 },
  ) {
    this.pieces = pieces;
    this.words = words;
    if (words.length === 0) throw new Error('word vectors need at least one word; the training questions hold none');
    this.index = new Map(words.map((w, i) => [w, i]));
    if (this.index.size !== words.length) throw new Error('word vectors: the word list repeats a word');
    this.table = variableFrom(tf.zeros([words.length, width]) as tf.Tensor2D, true);
    if (bagScale > 0) {
      if (idf?.length !== words.length) throw new Error(`a word bag needs each word's inverse document frequency: ${idf?.length ?? 0} given for ${words.length} words`);
      this.idf = idf;
      this.bag = variableFrom(tf.zeros([words.length, width]) as tf.Tensor2D, true);
      if (memory.weight > 0) this.memory = new AnswerMemory(answers ?? [], width, memory.weight, memory.seed);
    } else if (memory.weight > 0) throw new Error('an answer memory reads the word bag: it needs a bag scale > 0');
  }

  /**
   * Where each row of ids [batch, seq] (row-major) reads its vectors. rows: per position, the row of
   * `table` of the word that stands there, −1 where none does. With a bag, `bag` holds the rows of the
   * questions' known words, one per occurrence, the row-major weights [batch, rows.length] that take each
   * question's IDF-weighted mean of them, and per position the question whose cue holds it (−1: none).
   */
  private read(ids: ArrayLike<number>, batch: number, seq: number): { rows: Int32Array; bag?: { rows: number[]; weights: Float32Array; cues: Int32Array } } {
    const rows = new Int32Array(batch * seq).fill(-1);
    const questions: Array<{ found: number[]; cue: number; cueEnd: number }> = [];
    for (let r = 0; r < batch; r++) {
      const line = Array.prototype.slice.call(ids, r * seq, (r + 1) * seq) as number[];
      const { spans, cue, cueEnd } = readQuestion(this.pieces, line);
      const found: number[] = [];
      for (const { key, start, end } of spans) {
        const row = this.index.get(key);
        if (row === undefined) continue;
        rows.fill(row, r * seq + start, r * seq + end);
        found.push(row);
      }
      questions.push({ found, cue, cueEnd });
    }
    if (!this.bag) return { rows };
    const bagRows = questions.flatMap((q) => q.found);
    const weights = new Float32Array(batch * bagRows.length);
    const cues = new Int32Array(batch * seq).fill(-1);
    let k = 0;
    const idf = this.idf!;
    questions.forEach(({ found, cue, cueEnd }, r) => {
      const total = found.reduce((sum, row) => sum + idf[row], 0);
      for (const row of found) weights[r * bagRows.length + k++] = idf[row] / total;
      if (cue >= 0) cues.fill(r, r * seq + cue, r * seq + cueEnd);
    });
    return { rows, bag: { rows: bagRows, weights, cues } };
  }

  /**
   * What the vectors add to the input embedding of ids [batch, seq]: scale · (the word's vector) at each
   * word's tokens, and with a bag, at its answer cue, the IDF-weighted mean m of the question's bag
   * vectors scaled to root mean square bagScale, bagScale · m / sqrt(mean(m²) + ε), plus with a memory
   * what the memory reads from m; zero elsewhere. [batch*seq, n_embd].
   */
  embed(ids: tf.Tensor2D): tf.Tensor2D {
    const [b, t] = ids.shape;
    const { rows, bag } = this.read(ids.dataSync(), b, t);
    const onRows = (table: tf.Tensor2D, at: Int32Array, weight: number): tf.Tensor2D =>
      tf.mul(tf.gather(table, tf.tensor1d(Int32Array.from(at, (r) => Math.max(r, 0)), 'int32')), tf.tensor2d(Float32Array.from(at, (r) => (r < 0 ? 0 : weight)), [b * t, 1]));
    const words = onRows(this.table, rows, this.scale);
    if (!bag || bag.rows.length === 0 || bag.cues.every((r) => r < 0)) return words;
    const means = this.meansOf(bag, b);
    const sized = tf.mul(means, tf.div(this.bagScale, tf.sqrt(tf.add(tf.mean(tf.square(means), 1, true), RMS_EPSILON)))) as tf.Tensor2D;
    return tf.add(words, onRows(this.memory ? tf.add(sized, this.memory.read(means)) : sized, bag.cues, 1));
  }

  /** [b, n_embd]: each question's IDF-weighted mean of its words' bag vectors (zero with none known). */
  private meansOf(bag: { rows: number[]; weights: Float32Array }, b: number): tf.Tensor2D {
    if (bag.rows.length === 0) return tf.zeros([b, this.bag!.shape[1]]);
    return tf.matMul(tf.tensor2d(bag.weights, [b, bag.rows.length]), tf.gather(this.bag!, tf.tensor1d(bag.rows, 'int32')));
  }

  /**
   * The answer memory's loss on a training batch: its weight times the cross-entropy of each row's
   * answer (read from the row's weighted targets) under the bag means of its question; null without a
   * memory or a row holding a training answer.
   */
  answerLoss(batch: Pick<Batch, 'inputIds' | 'targets' | 'weights' | 'batchSize' | 'seqLen'>): tf.Scalar | null {
    const labels = this.memory?.labels(batch);
    if (!labels || labels.every((l) => l < 0)) return null;
    const { inputIds, batchSize: b, seqLen: t } = batch;
    return this.memory!.loss(this.meansOf(this.read(inputIds, b, t).bag!, b), labels);
  }

  dispose(): void {
    this.table.dispose();
    this.bag?.dispose();
    this.memory?.dispose();
  }
}
