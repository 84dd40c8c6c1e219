/**
 * A LoRA adapter lives apart from the base weights (as in PEFT): for each target module it holds
 * A [in, r] and B [r, out] so that y = xW + b + scale · dropout(x) A B (scale alpha/r, or alpha/sqrt(r) with rsLoRA). B starts at zero, so a fresh
 * adapter leaves the model's outputs unchanged.
 */
import * as tf from '../backend/tf';
import type { GPT2Config } from '../model/config';
import { variableFrom } from '../model/tensor';
import { type LoraConfig, moduleShape, rankFor, scaleFor } from './config';
import { type Vocabulary, WordVectors } from './words';

/** The word vectors' name among the trainable variables (an embedding-group parameter, lora/groups). */
export const WORD_VECTORS = 'transformer.wte.word_vectors';
export const WORD_BAG = 'transformer.wte.word_bag';
/** The answer memory's keys and values (lora/memory) among the trainable variables. */
export const ANSWER_KEYS = 'transformer.wte.answer_keys';
export const ANSWER_VALUES = 'transformer.wte.answer_values';

export interface LoraLayer {
  /** Module path without ".weight", e.g. "transformer.h.0.attn.c_attn". */
  path: string;
  A: tf.Variable<tf.Rank.R2>; // [in, r]
  B: tf.Variable<tf.Rank.R2>; // [r, out]
  scale: number; // alpha / r, or alpha / sqrt(r) with rsLoRA
  r: number;
}

export class LoraAdapter {
  readonly layers = new Map<string, LoraLayer>();
  /** True while the adapter's product is folded into the base weights. */
  merged = false;
  /** Vectors per word, scaled by config.wordVectors, a word bag by config.wordBag and an answer memory by config.answerMemory (lora/words); undefined without them. */
  readonly words?: WordVectors;

  constructor(
    readonly name: string,
    readonly config: LoraConfig,
    model: GPT2Config,
    seed: number,
    /** The words to keep vectors for; required when config.wordVectors is set, and only then. */
    vocabulary?: Vocabulary,
  ) {
    if (Boolean(config.wordVectors) !== Boolean(vocabulary)) {
      throw new Error(config.wordVectors ? 'lora.wordVectors is set: the adapter needs its word list (from the training questions)' : 'a word list given to an adapter whose config has no wordVectors');
    }
    this.words = vocabulary && new WordVectors(vocabulary, config.wordVectors!, model.n_embd, config.wordBag, { weight: config.answerMemory ?? 0, seed });
    let k = 0;
    for (let i = 0; i < model.n_layer; i++) {
      for (const t of config.targetModules) {
        const path = `transformer.h.${i}.${t}`;
        const [fanIn, fanOut] = moduleShape(model, t);
        const r = rankFor(config, path);
        // PEFT: kaiming_uniform(a=sqrt(5)) on lora_A, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)); B = 0.
        const bound = 1 / Math.sqrt(fanIn);
        const A = variableFrom(tf.randomUniform([fanIn, r], -bound, bound, 'float32', seed * 7919 + k++) as tf.Tensor2D, true);
        const B = variableFrom(tf.zeros([r, fanOut]) as tf.Tensor2D, true);
        this.layers.set(path, { path, A, B, r, scale: scaleFor(config, path) });
      }
    }
  }

  variables(): tf.Variable[] {
    return this.namedVariables().map(([, v]) => v);
  }

  /** Variable name -> PEFT-style parameter name, for grouping and checkpoints. */
  namedVariables(): Array<[string, tf.Variable]> {
    return [...this.layers.values()].flatMap((l): Array<[string, tf.Variable]> => [
      [`${l.path}.lora_A`, l.A],
      [`${l.path}.lora_B`, l.B],
    ]).concat(
      this.words ? [[WORD_VECTORS, this.words.table]] : [],
      this.words?.bag ? [[WORD_BAG, this.words.bag]] : [],
      this.words?.memory ? [[ANSWER_KEYS, this.words.memory.keys], [ANSWER_VALUES, this.words.memory.values]] : [],
    );
  }

  trainableParameterCount(): number {
    return this.variables().reduce((n, v) => n + v.size, 0);
  }

  dispose(): void {
    for (const v of this.variables()) v.dispose();
    this.layers.clear();
  }
}
