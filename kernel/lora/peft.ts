/**
 * Adapter folders in PEFT's format: adapter_config.json plus adapter_model.safetensors with keys
 * base_model.model.<module>.lora_A.weight [r, in] and .lora_B.weight [out, r] (PyTorch Linear layout,
 * while we compute with A [in, r] and B [r, out]). The folder is replaced atomically. An adapter with
 * word vectors (lora/words) adds word_vectors.safetensors, which PEFT does not read: the tensor
 * "word_vectors" [words, n_embd], with the word list (JSON) and the scale in its metadata, and with a
 * word bag also "word_bag" [words, n_embd] and "bag_idf" [words] (each word's weight in the bag's mean),
 * the root mean square of what the bag adds in the metadata's "bag_rms"; with an answer memory
 * (lora/memory) also "answer_keys" and "answer_values" [answers, n_embd], with the answers (JSON lists of
 * the completions' token ids) in the metadata's "answers" and the weight of its loss in "answer_memory".
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '../backend/tf';
import { LoraAdapter } from './adapter';
import { type LoraConfig, makeLoraConfig } from './config';
import type { GPT2Model } from '../model/gpt2';
import { arraysOf, type NamedArrays } from '../model/tensor';
import { tokenPieces, type Vocabulary } from './words';
import type { AnswerIds } from './memory';
import type { Tokenizer } from '../tokenizer';
import { readSafetensors, writeSafetensors } from '../model/safetensors';
import { replaceDirAtomic, writeFileAtomic } from '../io/atomic';

const PREFIX = 'base_model.model.';
export const WORD_VECTORS_FILE = 'word_vectors.safetensors';
const WORD_TENSOR = 'word_vectors';
const BAG_TENSOR = 'word_bag';
const IDF_TENSOR = 'bag_idf';
const KEYS_TENSOR = 'answer_keys';
const VALUES_TENSOR = 'answer_values';

export interface PeftAdapterConfig {
  peft_type: 'LORA';
  task_type: 'CAUSAL_LM';
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  target_modules: string[];
  fan_in_fan_out: boolean;
  base_model_name_or_path: string;
  bias: 'none';
  rank_pattern: Record<string, number>;
  alpha_pattern: Record<string, number>;
  inference_mode: boolean;
  modules_to_save: null;
  init_lora_weights: boolean;
  use_rslora: boolean;
  use_dora: false;
}

export function peftConfig(c: LoraConfig, baseModel: string): PeftAdapterConfig {
  return {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    r: c.r,
    lora_alpha: c.alpha,
    lora_dropout: c.dropout,
    target_modules: [...c.targetModules],
    fan_in_fan_out: true, // GPT-2's Conv1D stores weights [in, out]
    base_model_name_or_path: baseModel,
    bias: 'none',
    rank_pattern: c.rankPattern ?? {},
    alpha_pattern: c.alphaPattern ?? {},
    inference_mode: true,
    modules_to_save: null,
    init_lora_weights: true,
    use_rslora: c.useRslora ?? false,
    use_dora: false,
  };
}

/** Adapter tensors under PEFT's names, transposed to PyTorch's Linear layout. */
export function peftTensors(adapter: LoraAdapter): NamedArrays {
  const out: NamedArrays = new Map();
  for (const l of adapter.layers.values()) {
    const a = tf.tidy(() => tf.transpose(l.A));
    const b = tf.tidy(() => tf.transpose(l.B));
    out.set(`${PREFIX}${l.path}.lora_A.weight`, { shape: a.shape, data: a.dataSync() as Float32Array });
    out.set(`${PREFIX}${l.path}.lora_B.weight`, { shape: b.shape, data: b.dataSync() as Float32Array });
    a.dispose();
    b.dispose();
  }
  return out;
}

export function saveAdapter(adapter: LoraAdapter, dir: string, baseModel: string): void {
  replaceDirAtomic(dir, (tmp) => writeAdapterFiles(adapter, tmp, baseModel));
}

/** Writes the two files into an existing folder (used inside checkpoints, which are swapped in whole). */
export function writeAdapterFiles(adapter: LoraAdapter, dir: string, baseModel: string): void {
  writeSafetensors(path.join(dir, 'adapter_model.safetensors'), peftTensors(adapter), { format: 'pt' });
  writeFileAtomic(path.join(dir, 'adapter_config.json'), JSON.stringify(peftConfig(adapter.config, baseModel), null, 2) + '\n');
  const w = adapter.words;
  if (w) {
    writeSafetensors(path.join(dir, WORD_VECTORS_FILE), wordVectorTensors(adapter), {
      scale: String(w.scale),
      words: JSON.stringify(w.words),
      ...(w.bag ? { bag_rms: String(w.bagScale) } : {}),
      ...(w.memory ? { answer_memory: String(w.memory.weight), answers: JSON.stringify(w.memory.answers) } : {}),
    });
  }
}

/** The adapter's word vectors (and word bag, with its words' weights, and answer memory) as word_vectors.safetensors names them; empty without any. */
export function wordVectorTensors(adapter: LoraAdapter): NamedArrays {
  const w = adapter.words;
  const memory = w?.memory ? [[KEYS_TENSOR, w.memory.keys], [VALUES_TENSOR, w.memory.values]] as const : [];
  const named = arraysOf(w ? [[WORD_TENSOR, w.table], ...(w.bag ? [[BAG_TENSOR, w.bag] as const] : []), ...memory] : []);
  if (w?.idf) named.set(IDF_TENSOR, { shape: [w.idf.length], data: w.idf.slice() });
  return named;
}

/** A word_vectors.safetensors file's contents: its words, scales, vectors [words, width] and bag (vectors and weights) if any. */
interface WordFile {
  words: string[];
  scale: number;
  data: Float32Array;
  bag?: { scale: number; data: Float32Array; idf: Float32Array };
  memory?: { weight: number; answers: AnswerIds[]; keys: Float32Array; values: Float32Array };
}

/** Reads and checks a word_vectors.safetensors file. */
function readWordFile(file: string, width: number): WordFile {
  const { tensors, metadata } = readSafetensors(file);
  /** Metadata `key` as a non-empty JSON list whose items pass `isItem`, one per row of tensor `rowsOf`. */
  const list = <T>(key: string, isItem: (x: unknown) => boolean, what: string, rowsOf: string): T[] => {
    let value: unknown;
    try {
      value = JSON.parse(metadata[key] ?? 'null');
    } catch {
      value = null;
    }
    if (!Array.isArray(value) || value.length === 0 || !value.every(isItem)) throw new Error(`${file}: metadata "${key}" must be a JSON list of ${what}, one per row of "${rowsOf}"`);
    return value as T[];
  };
  const positive = (key: string): number => {
    const x = Number(metadata[key]);
    if (!Number.isFinite(x) || x <= 0) throw new Error(`${file}: metadata "${key}" must be a number > 0, got ${JSON.stringify(metadata[key])}`);
    return x;
  };
  const words = list<string>('words', (w) => typeof w === 'string', 'the words', WORD_TENSOR);
  const scale = positive('scale');
  const rows = words.length;
  const tensor = (name: string, expected = [rows, width]): Float32Array => {
    const t = tensors.get(name);
    if (!t) throw new Error(`${file}: missing tensor "${name}" (expected shape [${expected.join(', ')}])`);
    if (t.shape.join() !== expected.join()) throw new Error(`${file}: tensor "${name}" has shape [${t.shape.join(', ')}], expected [${expected.join(', ')}]`);
    return t.data as Float32Array;
  };
  if (metadata.bag_rms === undefined) {
    if (tensors.has(BAG_TENSOR)) throw new Error(`${file}: holds tensor "${BAG_TENSOR}" but no metadata "bag_rms" (the size of what the bag adds)`);
    if (metadata.answer_memory !== undefined || tensors.has(KEYS_TENSOR)) throw new Error(`${file}: holds an answer memory but no word bag (metadata "bag_rms"), which the memory is read from`);
    return { words, scale, data: tensor(WORD_TENSOR) };
  }
  const bagScale = positive('bag_rms');
  const idf = tensor(IDF_TENSOR, [rows]);
  if (!idf.every((x) => Number.isFinite(x) && x > 0)) throw new Error(`${file}: tensor "${IDF_TENSOR}" must hold numbers > 0, one weight per word`);
  const bag = { scale: bagScale, data: tensor(BAG_TENSOR), idf };
  if (metadata.answer_memory === undefined) {
    if (tensors.has(KEYS_TENSOR)) throw new Error(`${file}: holds tensor "${KEYS_TENSOR}" but no metadata "answer_memory" (the weight of the answer memory's loss)`);
    return { words, scale, data: tensor(WORD_TENSOR), bag };
  }
  const weight = positive('answer_memory');
  const isIds = (a: unknown) => Array.isArray(a) && a.length > 0 && a.every((x) => Number.isInteger(x) && x >= 0);
  const answers = list<AnswerIds>('answers', isIds, "the answers' token ids (lists of integers)", KEYS_TENSOR);
  const memory = { weight, answers, keys: tensor(KEYS_TENSOR, [answers.length, width]), values: tensor(VALUES_TENSOR, [answers.length, width]) };
  return { words, scale, data: tensor(WORD_TENSOR), bag, memory };
}

/** The first row at which two lists differ (the shorter one's length when one extends the other); −1 when equal. */
function firstDifference(a: string[], b: string[]): number {
  const at = a.findIndex((x, i) => x !== b[i]);
  return at >= 0 ? at : a.length !== b.length ? Math.min(a.length, b.length) : -1;
}

/** makeLoraConfig's field names as adapter_config.json spells them, for errors about the file. */
const PEFT_FIELDS: Record<string, string> = {
  'lora.r': 'r',
  'lora.alpha': 'lora_alpha',
  'lora.dropout': 'lora_dropout',
  'lora.targetModules': 'target_modules',
  'lora.rankPattern': 'rank_pattern',
  'lora.useRslora': 'use_rslora',
};

const isEmpty = (v: unknown): boolean => v === undefined || v === null || (Array.isArray(v) && v.length === 0);

/**
 * Reads a PEFT LoRA config. Fields that would change what the adapter computes and that are not supported
 * (DoRA, trained biases, fully trained modules) are errors rather than being dropped.
 */
export function readAdapterConfig(dir: string, model: GPT2Model): LoraConfig {
  const file = path.join(dir, 'adapter_config.json');
  if (!fs.existsSync(file)) throw new Error(`${file}: not found (an adapter folder needs adapter_config.json and adapter_model.safetensors)`);
  let raw: { [K in keyof PeftAdapterConfig]?: unknown };
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: invalid JSON (${(e as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`${file}: must hold a JSON object, got ${JSON.stringify(raw)}`);
  if (raw.peft_type !== 'LORA') throw new Error(`${file}: peft_type must be "LORA", got ${JSON.stringify(raw.peft_type)}`);
  if (!Array.isArray(raw.target_modules)) {
    throw new Error(`${file}: target_modules must be a list of module names (PEFT's regex form, a single string, is not supported), got ${JSON.stringify(raw.target_modules)}`);
  }
  if (raw.use_dora !== undefined && raw.use_dora !== null && raw.use_dora !== false) {
    throw new Error(`${file}: use_dora must be false (DoRA adapters are not supported, only plain LoRA), got ${JSON.stringify(raw.use_dora)}`);
  }
  if (raw.bias !== undefined && raw.bias !== 'none') {
    throw new Error(`${file}: bias must be "none" (trained biases are not supported, only the lora_A and lora_B factors), got ${JSON.stringify(raw.bias)}`);
  }
  if (!isEmpty(raw.modules_to_save)) {
    throw new Error(`${file}: modules_to_save must be null or empty (fully trained modules are not supported, only the lora_A and lora_B factors), got ${JSON.stringify(raw.modules_to_save)}`);
  }
  const pattern = (p: unknown) => (p && typeof p === 'object' && Object.keys(p).length ? (p as Record<string, number>) : undefined);
  try {
    return makeLoraConfig(
      {
        // PEFT's LoraConfig defaults (r 8, lora_alpha 8), not ChromaTune's alpha = 2r: the file is read as PEFT reads it.
        r: (raw.r ?? 8) as number,
        alpha: (raw.lora_alpha ?? 8) as number,
        dropout: (raw.lora_dropout ?? 0) as number,
        targetModules: raw.target_modules as string[],
        rankPattern: pattern(raw.rank_pattern),
        alphaPattern: pattern(raw.alpha_pattern),
        useRslora: (raw.use_rslora ?? undefined) as boolean | undefined,
      },
      model.config,
    );
  } catch (e) {
    const message = (e as Error).message.replace(/^lora\.\w+/, (field) => PEFT_FIELDS[field] ?? field);
    throw new Error(`${file}: ${message}`);
  }
}

/**
 * Fills `adapter`'s A and B from the folder's adapter_model.safetensors, checking every name and shape,
 * and its word vectors, if it has them, from word_vectors.safetensors, which must hold the same words
 * (`words`: that file already read, as loadAdapter has it).
 */
export function assignAdapterWeights(adapter: LoraAdapter, dir: string, words?: WordFile): void {
  const file = path.join(dir, 'adapter_model.safetensors');
  if (!fs.existsSync(file)) throw new Error(`${file}: not found`);
  const { tensors } = readSafetensors(file);
  for (const l of adapter.layers.values()) {
    for (const [factor, v] of [['A', l.A], ['B', l.B]] as const) {
      const key = `${PREFIX}${l.path}.lora_${factor}.weight`;
      const expected = [v.shape[1], v.shape[0]]; // PEFT stores the transposes
      const t = tensors.get(key);
      if (!t) throw new Error(`${file}: missing tensor "${key}" (expected shape [${expected.join(', ')}])`);
      if (t.shape.join() !== expected.join()) {
        throw new Error(`${file}: tensor "${key}" has shape [${t.shape.join(', ')}], expected [${expected.join(', ')}]`);
      }
      tf.tidy(() => v.assign(tf.transpose(tf.tensor2d(t.data as Float32Array, t.shape as [number, number]))));
    }
  }
  const w = adapter.words;
  if (!w) return;
  const wordFile = path.join(dir, WORD_VECTORS_FILE);
  if (!words && !fs.existsSync(wordFile)) throw new Error(`${wordFile}: not found (the adapter has word vectors)`);
  const saved = words ?? readWordFile(wordFile, w.table.shape[1]);
  const differ = firstDifference(saved.words, w.words);
  if (differ >= 0) throw new Error(`${wordFile}: its ${saved.words.length} words are not the adapter's ${w.words.length} (first difference at row ${differ}); the training questions changed`);
  if (Boolean(saved.bag) !== Boolean(w.bag)) throw new Error(`${wordFile}: ${w.bag ? `missing the word bag (metadata "bag_rms" and tensors "${BAG_TENSOR}", "${IDF_TENSOR}") that the adapter has` : 'holds a word bag that the adapter has not'}`);
  const idfDiffers = w.idf?.findIndex((x, i) => x !== saved.bag!.idf[i]) ?? -1;
  if (idfDiffers >= 0) throw new Error(`${wordFile}: tensor "${IDF_TENSOR}" differs from the adapter's weight of "${w.words[idfDiffers]}" (row ${idfDiffers}); the training questions changed`);
  if (Boolean(saved.memory) !== Boolean(w.memory)) throw new Error(`${wordFile}: ${w.memory ? `missing the answer memory (metadata "answer_memory", "answers" and tensors "${KEYS_TENSOR}", "${VALUES_TENSOR}") that the adapter has` : 'holds an answer memory that the adapter has not'}`);
  if (w.memory) {
    const [theirs, mine] = [saved.memory!.answers, w.memory.answers];
    const at = firstDifference(theirs.map((a) => a.join()), mine.map((a) => a.join()));
    if (at >= 0) throw new Error(`${wordFile}: its ${theirs.length} answers are not the adapter's ${mine.length} (first difference at row ${at}); the training answers changed`);
  }
  tf.tidy(() => {
    w.table.assign(tf.tensor2d(saved.data, w.table.shape));
    if (w.bag) w.bag.assign(tf.tensor2d(saved.bag!.data, w.bag.shape));
    if (w.memory) {
      w.memory.keys.assign(tf.tensor2d(saved.memory!.keys, w.memory.keys.shape));
      w.memory.values.assign(tf.tensor2d(saved.memory!.values, w.memory.values.shape));
    }
  });
}

/**
 * Loads a PEFT adapter onto `model` under `name` and makes it active. An adapter with word vectors needs
 * the base model's tokenizer, which tells where words start.
 */
export function loadAdapter(model: GPT2Model, dir: string, name = path.basename(path.resolve(dir)), tokenizer?: Tokenizer): LoraAdapter {
  let config = readAdapterConfig(dir, model);
  let vocabulary: Vocabulary | undefined;
  let saved: WordFile | undefined;
  const wordFile = path.join(dir, WORD_VECTORS_FILE);
  if (fs.existsSync(wordFile)) {
    if (!tokenizer) throw new Error(`${wordFile}: the adapter has word vectors; loading it needs the base model's tokenizer (loadAdapter's 4th argument)`);
    saved = readWordFile(wordFile, model.config.n_embd);
    vocabulary = { pieces: tokenPieces(tokenizer), words: saved.words, idf: saved.bag?.idf, answers: saved.memory?.answers };
    config = { ...config, wordVectors: saved.scale, ...(saved.bag ? { wordBag: saved.bag.scale } : {}), ...(saved.memory ? { answerMemory: saved.memory.weight } : {}) };
  }
  const adapter = new LoraAdapter(name, config, model.config, 0, vocabulary);
  try {
    assignAdapterWeights(adapter, dir, saved);
  } catch (e) {
    adapter.dispose();
    throw e;
  }
  model.attachAdapter(adapter);
  return adapter;
}
