/**
 * The embedded base model's tokenizer: byte-level BPE learned from the pretraining corpus.
 *
 * No template padding is added: in the WordNet corpus about 80% of documents are Question/Answer
 * pairs, so "Question", ":", "Answer", " What", " is" are among the most frequent pieces and
 * become single tokens on their own (test/corpus.test.ts checks the prompt's token count).
 */
import { trainByteLevelBPE } from '../tokenizer/train';

/** GPT-2's end-of-text token, which separates documents in pretraining and ends generation. */
export const BASE_SPECIAL_TOKENS = ['<|endoftext|>'];

/** Learn the base tokenizer from `texts`; returns a tokenizer.json object (load with Tokenizer.fromJSON). */
export function trainBaseTokenizer(texts: string[], vocabSize = 4096, onProgress?: (done: number, total: number) => void): object {
  return trainByteLevelBPE(texts, { vocabSize, specialTokens: BASE_SPECIAL_TOKENS, onProgress });
}
