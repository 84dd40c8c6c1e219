/** Named model sizes. `base` is the embedded base model's architecture; `tiny` is benchmark (a). */
import { type GPT2Config, makeConfig } from './config';

export const PRESETS = {
  /** Benchmark (a): 2 layers, d=128, 4 heads, context 64, 256-token vocabulary. */
  tiny: { vocab_size: 256, n_positions: 64, n_embd: 128, n_layer: 2, n_head: 4 },
  /** The embedded base model: about 4.2M parameters (17 MB in float32). */
  base: { vocab_size: 4096, n_positions: 128, n_embd: 256, n_layer: 4, n_head: 4 },
} as const;

export type PresetName = keyof typeof PRESETS;

export function presetConfig(name: PresetName): GPT2Config {
  return makeConfig({ ...PRESETS[name] }, `preset "${name}"`);
}
