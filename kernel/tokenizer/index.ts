/**
 * Tokenizer: text <-> token ids, from a Hugging Face `tokenizer.json`.
 *
 * Encoding and decoding are delegated to @huggingface/tokenizers (pure JS, no native code, so it
 * runs wherever the kernel runs). This wrapper fixes the options that matter for training data:
 * no added BOS/EOS, no "clean up" of spaces on decode (it would turn " ." into "." and break the
 * exact round trip), and clear errors.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Tokenizer as HFTokenizer } from '@huggingface/tokenizers';
import { bytesToUnicode } from './bytelevel';

export { byteLevelTokenizerJSON, bytesToUnicode, GPT2_PATTERN } from './bytelevel';
export { trainByteLevelBPE } from './train';

const EOS_TOKEN = '<|endoftext|>';

interface TokenizerJSON {
  model: { vocab?: Record<string, number> | Array<[string, number]> };
  added_tokens?: Array<{ id: number; content: string }>;
  [key: string]: unknown;
}

export class Tokenizer {
  private readonly hf: HFTokenizer;
  private readonly json: TokenizerJSON;
  private readonly size: number;

  private constructor(json: TokenizerJSON) {
    this.json = json;
    // The library iterates added_tokens unconditionally; older files may omit it.
    this.hf = new HFTokenizer({ ...json, added_tokens: json.added_tokens ?? [] }, { clean_up_tokenization_spaces: false });
    // Size of the id space (what an embedding table needs): highest id + 1, added tokens included.
    const vocab = json.model.vocab ?? {};
    const ids = Array.isArray(vocab) ? vocab.map((_, i) => i) : Object.values(vocab);
    let size = 0;
    for (const id of ids) size = Math.max(size, id + 1);
    for (const t of json.added_tokens ?? []) size = Math.max(size, t.id + 1);
    this.size = size;
  }

  /** Load a tokenizer.json file (or a model folder containing one). */
  static fromFile(file: string): Tokenizer {
    let target = file;
    try {
      if (fs.statSync(file).isDirectory()) target = path.join(file, 'tokenizer.json');
    } catch {
      throw new Error(`Tokenizer file not found: ${file}`);
    }
    let text: string;
    try {
      text = fs.readFileSync(target, 'utf8');
    } catch (e) {
      throw new Error(`Cannot read tokenizer file ${target}: ${(e as Error).message}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new Error(`Invalid tokenizer file ${target}: not JSON (${(e as Error).message})`);
    }
    try {
      return Tokenizer.fromJSON(json as object);
    } catch (e) {
      throw new Error(`Invalid tokenizer file ${target}: ${(e as Error).message}`);
    }
  }

  /** Build from a tokenizer.json object (copied, so later changes to `json` do not affect it). */
  static fromJSON(json: object): Tokenizer {
    const j = json as Partial<TokenizerJSON> | null;
    if (!j || typeof j !== 'object' || Array.isArray(j) || !j.model || typeof j.model !== 'object') {
      throw new Error('tokenizer.json must be an object with a "model" section');
    }
    try {
      return new Tokenizer(structuredClone(j) as TokenizerJSON);
    } catch (e) {
      throw new Error(`Invalid tokenizer.json: ${(e as Error).message}`);
    }
  }

  /** Token ids of `text`, with no special tokens added (special token strings in it still map to their ids). */
  encode(text: string): number[] {
    const ids = this.hf.encode(text, { add_special_tokens: false }).ids;
    // Undefined means a piece outside the vocabulary with no unk token: fail loudly, not silently.
    const bad = ids.findIndex((id) => id === undefined || id === null);
    if (bad >= 0) throw new Error(`encode: token ${JSON.stringify(this.hf.tokenize(text)[bad])} is not in the vocabulary and there is no unk token`);
    return ids;
  }

  /**
   * Text of `ids`, special tokens written out. Ids that split a UTF-8 character decode to U+FFFD,
   * so decode whole sequences rather than single tokens when streaming.
   */
  decode(ids: number[]): string {
    if (ids.length === 0) return '';
    for (const id of ids) {
      if (!Number.isInteger(id) || this.hf.id_to_token(id) === undefined) {
        throw new RangeError(`decode: unknown token id ${id} (vocabulary size ${this.size})`);
      }
    }
    return this.hf.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }

  /**
   * The bytes each id decodes to (index = id), for a byte-level vocabulary (ByteLevel decoder);
   * undefined for other tokenizers, whose tokens are not byte strings. Added tokens decode to their
   * text; an id that names no token has no entry.
   */
  tokenBytes(): Array<Uint8Array | undefined> | undefined {
    if ((this.json.decoder as { type?: string } | null | undefined)?.type !== 'ByteLevel') return undefined;
    const byteOf = new Map([...bytesToUnicode()].map(([b, ch]) => [ch, b]));
    const out = new Array<Uint8Array | undefined>(this.size);
    const vocab = this.json.model.vocab ?? {};
    for (const [token, id] of Array.isArray(vocab) ? vocab : Object.entries(vocab)) {
      const bytes = [...token].map((ch) => byteOf.get(ch));
      if (bytes.every((b) => b !== undefined)) out[id] = Uint8Array.from(bytes as number[]);
    }
    for (const t of this.json.added_tokens ?? []) out[t.id] = new TextEncoder().encode(t.content);
    return out;
  }

  /** Number of ids (highest id + 1), special tokens included. */
  get vocabSize(): number {
    return this.size;
  }

  tokenId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  /** Id of GPT-2's end-of-text token `<|endoftext|>`, if this vocabulary has it. */
  get eosId(): number | undefined {
    return this.tokenId(EOS_TOKEN);
  }

  /** The tokenizer.json object (a copy). */
  toJSON(): object {
    return structuredClone(this.json);
  }

  /** Write tokenizer.json atomically (temp file then rename), so a crash never leaves half a file. */
  save(file: string): void {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
    try {
      fs.writeFileSync(tmp, JSON.stringify(this.json));
      fs.renameSync(tmp, file);
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      throw e;
    }
  }
}
