/**
 * GPT-2-style byte-level BPE tokenizer.json, built in code.
 *
 * Byte-level BPE works on UTF-8 bytes, so every string (any script, emoji, control characters)
 * encodes losslessly with no unknown token. Each byte is shown as a printable character (GPT-2's
 * `bytes_to_unicode`) so that vocab and merges stay plain JSON strings, as Hugging Face stores them.
 */

/** GPT-2's pre-tokenizer regex (contractions, letter runs, digit runs, other runs, whitespace). */
export const GPT2_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

let byteMap: Map<number, string> | undefined;

/**
 * GPT-2's byte -> character mapping: printable Latin-1 bytes map to themselves, the other 68
 * (controls, space, 0x7F-0xA0, 0xAD) to U+0100 onwards in byte order, so space becomes 'Ġ'.
 */
export function bytesToUnicode(): Map<number, string> {
  if (!byteMap) {
    const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    byteMap = new Map();
    let n = 0;
    for (let b = 0; b < 256; b++) byteMap.set(b, String.fromCharCode(printable(b) ? b : 256 + n++));
  }
  return new Map(byteMap); // a copy: callers may not corrupt the shared table
}

export interface ByteLevelOptions {
  /** Learned merges, in rank order. Default none. */
  merges?: Array<[string, string]>;
  /** token -> id. Default: the 256 byte symbols (id = byte value), then each merge's result in order. */
  vocab?: Record<string, number>;
  /** Special tokens (e.g. `<|endoftext|>`), given ids after the vocabulary unless already in it. */
  specialTokens?: string[];
}

/** A tokenizer.json object (Hugging Face `tokenizers` format) for a GPT-2-style byte-level BPE. */
export function byteLevelTokenizerJSON(opts: ByteLevelOptions = {}): object {
  const merges = opts.merges ?? [];
  let vocab: Record<string, number>;
  if (opts.vocab) {
    vocab = { ...opts.vocab };
  } else {
    vocab = {};
    for (const [b, ch] of bytesToUnicode()) vocab[ch] = b;
    let id = 256;
    for (const [a, b] of merges) if (!(a + b in vocab)) vocab[a + b] = id++;
  }
  // Every merge must produce a vocabulary token, otherwise encoding would emit unknown tokens.
  for (const [a, b] of merges) {
    if (!(a + b in vocab)) throw new Error(`byteLevelTokenizerJSON: merge [${JSON.stringify(a)}, ${JSON.stringify(b)}] produces a token missing from vocab`);
  }
  // A loop, not Math.max(...ids): spreading a 50k-entry vocab can overflow the call stack.
  let next = 0;
  for (const id of Object.values(vocab)) next = Math.max(next, id + 1);
  const addedTokens = (opts.specialTokens ?? []).map((content) => {
    // Like GPT-2's file, special tokens are in the model vocab too (so decoders know them).
    if (!(content in vocab)) vocab[content] = next++;
    return { id: vocab[content], content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
  });
  // Same shape and settings as GPT-2's tokenizer.json, so Python `tokenizers`/transformers load it too.
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: addedTokens,
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: merges.map(([a, b]) => [a, b]),
    },
  };
}
