/**
 * Model folders in Hugging Face's layout: config.json, model.safetensors (GPT-2 names, Conv1D
 * [in, out] layout, output head tied to wte) and tokenizer.json.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '../backend/tf';
import { type GPT2Config, expectedTensors, makeConfig } from './config';
import { GPT2Model } from './gpt2';
import { readSafetensors, writeSafetensors } from './safetensors';
import { writeFileAtomic } from '../io/atomic';
import { Tokenizer } from '../tokenizer';

export class ModelFormatError extends Error {
  override name = 'ModelFormatError';
}

/** Tensors that checkpoints carry but the architecture derives (causal-mask buffers, tied head). */
const IGNORED = /(\.attn\.bias|\.attn\.masked_bias|^lm_head\.weight)$/;

export function readConfig(dir: string): GPT2Config {
  const file = path.join(dir, 'config.json');
  if (!fs.existsSync(file)) throw new ModelFormatError(`${file}: not found (a model folder needs config.json, model.safetensors, tokenizer.json)`);
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ModelFormatError(`${file}: invalid JSON (${(e as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ModelFormatError(`${file}: expected a JSON object`);
  const cfg = raw as Partial<GPT2Config>;
  if (cfg.model_type !== undefined && cfg.model_type !== 'gpt2') {
    throw new ModelFormatError(`${file}: model_type "${cfg.model_type}" is not supported; valid: "gpt2"`);
  }
  return makeConfig(cfg, file);
}

/** Loads a model folder; every tensor is checked for presence and shape before any variable is made. */
export function loadModel(dir: string): { model: GPT2Model; tokenizer: Tokenizer } {
  const config = readConfig(dir);
  const file = path.join(dir, 'model.safetensors');
  if (!fs.existsSync(file)) throw new ModelFormatError(`${file}: not found`);
  const { tensors } = readSafetensors(file);
  // Checkpoints saved from GPT2Model (not GPT2LMHeadModel) have no "transformer." prefix.
  const lookup = (name: string) => tensors.get(name) ?? tensors.get(name.replace(/^transformer\./, ''));
  const expected = expectedTensors(config);
  for (const [name, shape] of expected) {
    const t = lookup(name);
    if (!t) throw new ModelFormatError(`${file}: missing tensor "${name}" (expected shape [${shape.join(', ')}])`);
    if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
      throw new ModelFormatError(
        `${file}: tensor "${name}" has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}] (from config.json)`,
      );
    }
  }
  const known = new Set([...expected.keys()].flatMap((n) => [n, n.replace(/^transformer\./, '')]));
  const unknown = [...tensors.keys()].filter((n) => !known.has(n) && !IGNORED.test(n));
  if (unknown.length) throw new ModelFormatError(`${file}: unexpected tensors for a GPT-2 model: ${unknown.slice(0, 5).join(', ')}`);
  const weights = new Map<string, tf.Tensor>();
  for (const [name, shape] of expected) weights.set(name, tf.tensor(lookup(name)!.data as Float32Array, shape, 'float32'));
  const model = new GPT2Model(config, weights);
  weights.forEach((t) => t.dispose());
  const tokFile = path.join(dir, 'tokenizer.json');
  if (!fs.existsSync(tokFile)) throw new ModelFormatError(`${tokFile}: not found`);
  const tokenizer = Tokenizer.fromFile(tokFile);
  if (tokenizer.vocabSize > config.vocab_size) {
    throw new ModelFormatError(`${tokFile}: vocabulary of ${tokenizer.vocabSize} tokens exceeds vocab_size ${config.vocab_size} in config.json`);
  }
  return { model, tokenizer };
}

/** Saves the base weights (adapters stay apart; merge first to bake one in). Each file is written atomically. */
export function saveModel(model: GPT2Model, tokenizer: Tokenizer, dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, 'model.safetensors'), model.weightArrays(), { format: 'pt' });
  writeFileAtomic(path.join(dir, 'config.json'), JSON.stringify(model.config, null, 2) + '\n');
  tokenizer.save(path.join(dir, 'tokenizer.json'));
}
