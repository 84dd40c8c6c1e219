/**
 * Parameter groups: every trainable tensor belongs to one group, keyed by layer depth, module
 * (attention or MLP) and factor (LoRA's A or B, or W for a full weight). Per-group learning rates and
 * ranks hang off these keys; ChromaTune's parameter nodes map their cube axes onto them.
 */
import type { GPT2Config } from '../model/config';
import { ALL_TARGETS, type TargetModule } from './config';

export type ModuleKind = 'attn' | 'mlp' | 'embed' | 'norm';
export type Factor = 'A' | 'B' | 'W';

export interface ParamGroup {
  /** Layer index, or null for embeddings and the final norm. */
  depth: number | null;
  module: ModuleKind;
  factor: Factor;
}

export const groupKey = (g: ParamGroup): string =>
  g.depth === null ? `${g.module}.${g.factor}` : `h${g.depth}.${g.module}.${g.factor}`;

/** Group of a parameter name: base names ("transformer.h.1.mlp.c_fc.weight") or LoRA names ("...lora_A"). */
export function groupOf(name: string): ParamGroup {
  const m = /\.h\.(\d+)\.(attn|mlp|ln_1|ln_2)\b/.exec(name);
  const factor: Factor = /lora_A/.test(name) ? 'A' : /lora_B/.test(name) ? 'B' : 'W';
  if (!m) return { depth: null, module: /\.(wte|wpe)\./.test(name) ? 'embed' : 'norm', factor };
  const part = m[2];
  const module: ModuleKind = part === 'attn' ? 'attn' : part === 'mlp' ? 'mlp' : 'norm';
  return { depth: Number(m[1]), module, factor };
}

export const moduleKindOf = (t: TargetModule): 'attn' | 'mlp' => (t.startsWith('attn.') ? 'attn' : 'mlp');

/**
 * A LoRA rank_pattern that gives every (depth, module kind) its own rank, e.g. from a parameter node.
 * Keys are PEFT module-path suffixes such as "h.0.attn.c_attn".
 */
export function rankPatternByGroup(
  cfg: GPT2Config,
  rank: (depth: number, module: 'attn' | 'mlp') => number,
  targets: TargetModule[] = ALL_TARGETS,
): Record<string, number> {
  const pattern: Record<string, number> = {};
  for (let i = 0; i < cfg.n_layer; i++) {
    for (const t of targets) pattern[`h.${i}.${t}`] = rank(i, moduleKindOf(t));
  }
  return pattern;
}
