/**
 * Adapter folders in PEFT's format: adapter_config.json plus adapter_model.safetensors with keys
 * base_model.model.<module>.lora_A.weight [r, in] and .lora_B.weight [out, r] (PyTorch Linear layout,
 * while we compute with A [in, r] and B [r, out]). The folder is replaced atomically.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '../backend/tf';
import { LoraAdapter } from './adapter';
import { type LoraConfig, makeLoraConfig } from './config';
import type { GPT2Model } from '../model/gpt2';
import type { NamedArrays } from '../model/tensor';
import { readSafetensors, writeSafetensors } from '../model/safetensors';
import { replaceDirAtomic, writeFileAtomic } from '../io/atomic';

const PREFIX = 'base_model.model.';

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
}

export function readAdapterConfig(dir: string, model: GPT2Model): LoraConfig {
  const file = path.join(dir, 'adapter_config.json');
  if (!fs.existsSync(file)) throw new Error(`${file}: not found (an adapter folder needs adapter_config.json and adapter_model.safetensors)`);
  let raw: Partial<PeftAdapterConfig>;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: invalid JSON (${(e as Error).message})`);
  }
  if (raw.peft_type !== 'LORA') throw new Error(`${file}: peft_type must be "LORA", got ${JSON.stringify(raw.peft_type)}`);
  if (!Array.isArray(raw.target_modules)) throw new Error(`${file}: target_modules must be a list of module names`);
  try {
    return makeLoraConfig(
      {
        r: raw.r,
        alpha: raw.lora_alpha,
        dropout: raw.lora_dropout ?? 0,
        targetModules: raw.target_modules,
        rankPattern: raw.rank_pattern && Object.keys(raw.rank_pattern).length ? raw.rank_pattern : undefined,
        alphaPattern: raw.alpha_pattern && Object.keys(raw.alpha_pattern).length ? raw.alpha_pattern : undefined,
      },
      model.config,
    );
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
}

/** Fills `adapter`'s A and B from a PEFT adapter_model.safetensors, checking every name and shape. */
export function assignAdapterWeights(adapter: LoraAdapter, file: string): void {
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
}

/** Loads a PEFT adapter onto `model` under `name` and makes it active. */
export function loadAdapter(model: GPT2Model, dir: string, name = path.basename(path.resolve(dir))): LoraAdapter {
  const config = readAdapterConfig(dir, model);
  const adapter = new LoraAdapter(name, config, model.config, 0);
  try {
    assignAdapterWeights(adapter, path.join(dir, 'adapter_model.safetensors'));
  } catch (e) {
    adapter.dispose();
    throw e;
  }
  model.attachAdapter(adapter);
  return adapter;
}
