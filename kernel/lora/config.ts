/**
 * LoRA configuration as plain data, after PEFT's LoraConfig. Target modules use PEFT's names for
 * GPT-2 (suffixes of module paths); friendly aliases are accepted on input.
 */
import { ConfigError, GPT2Config, mlpWidth } from '../model/config';

export const TARGET_MODULES = {
  qkv: 'attn.c_attn',
  attn_out: 'attn.c_proj',
  mlp_in: 'mlp.c_fc',
  mlp_out: 'mlp.c_proj',
} as const;
export type TargetAlias = keyof typeof TARGET_MODULES;
export type TargetModule = (typeof TARGET_MODULES)[TargetAlias];
export const ALL_TARGETS: TargetModule[] = Object.values(TARGET_MODULES);

export interface LoraConfig {
  r: number;
  /** Numerator of the update's scale alpha/r (alpha/sqrt(r) under rsLoRA); defaults to 2r (scale 2). */
  alpha: number;
  dropout: number;
  /**
   * PEFT's use_rslora: scale alpha/sqrt(r) instead of alpha/r, so that the update does not shrink as the
   * rank grows. Absent means off.
   */
  useRslora?: boolean;
  targetModules: TargetModule[];
  /** Per-module rank overrides, PEFT's rank_pattern: key is a module-path suffix, e.g. "h.0.attn.c_attn". */
  rankPattern?: Record<string, number>;
  /** Per-module alpha overrides, PEFT's alpha_pattern. */
  alphaPattern?: Record<string, number>;
  /** Per-module dropout overrides (training only, so not part of PEFT's saved config). */
  dropoutPattern?: Record<string, number>;
  /**
   * Scale of the adapter's word vectors (lora/words), trained beside the factors; absent means none.
   * Saved apart from PEFT's config, in word_vectors.safetensors.
   */
  wordVectors?: number;
  /** Root mean square of what the word bag (lora/words) adds, trained with the word vectors' words; absent means none. */
  wordBag?: number;
  /** Weight of the answer memory's loss (lora/memory), a memory read from the word bag; absent means none. */
  answerMemory?: number;
}

export interface LoraConfigInput {
  r?: number;
  /** Defaults to 2r (scale 2) whether or not r is given. */
  alpha?: number;
  dropout?: number;
  useRslora?: boolean;
  targetModules?: Array<TargetModule | TargetAlias | string>;
  rankPattern?: Record<string, number>;
  alphaPattern?: Record<string, number>;
  dropoutPattern?: Record<string, number>;
  /** Word vectors' scale; 0 or absent: none. */
  wordVectors?: number;
  /** Word bag's root mean square; 0 or absent: none. Needs wordVectors. */
  wordBag?: number;
  /** Answer memory's loss weight; 0 or absent: none. Needs wordBag. */
  answerMemory?: number;
}

export const DEFAULT_LORA: LoraConfig = { r: 8, alpha: 16, dropout: 0, targetModules: [...ALL_TARGETS] };

const BARE_NAMES = [...new Set(ALL_TARGETS.map((t) => t.slice(t.lastIndexOf('.') + 1)))];

/**
 * The modules a target name selects. As in PEFT, a name selects every module whose path ends with it at
 * a dot boundary, so "c_proj" is both attn.c_proj and mlp.c_proj; aliases ("qkv") are accepted too.
 */
export function resolveTargets(name: string): TargetModule[] {
  // hasOwn, not `in`: "constructor" and the like are on every object's prototype.
  if (Object.hasOwn(TARGET_MODULES, name)) return [TARGET_MODULES[name as TargetAlias]];
  const matches = ALL_TARGETS.filter((t) => t === name || t.endsWith(`.${name}`));
  if (matches.length > 0) return matches;
  const valid = [...Object.keys(TARGET_MODULES), ...ALL_TARGETS, ...BARE_NAMES].join(', ');
  // A longer path such as "h.0.attn.c_attn" would pick single layers, which an adapter here cannot.
  const longer = ALL_TARGETS.find((t) => name.endsWith(`.${t}`));
  const why = longer ? ` (targets apply to every layer; a path naming a layer cannot be targeted, use "${longer}")` : '';
  throw new ConfigError(`lora.targetModules: unknown target module "${name}"${why}; valid: ${valid}`);
}

/** Shape [in, out] of a target module in Conv1D layout. */
export function moduleShape(cfg: GPT2Config, target: TargetModule): [number, number] {
  const d = cfg.n_embd;
  const f = mlpWidth(cfg);
  switch (target) {
    case 'attn.c_attn':
      return [d, 3 * d];
    case 'attn.c_proj':
      return [d, d];
    case 'mlp.c_fc':
      return [d, f];
    case 'mlp.c_proj':
      return [f, d];
  }
}

/** PEFT matches pattern keys as module-path suffixes; so do we. */
function patternValue(pattern: Record<string, number> | undefined, modulePath: string): number | undefined {
  if (!pattern) return undefined;
  let best: { key: string; value: number } | undefined;
  for (const [key, value] of Object.entries(pattern)) {
    if (modulePath === key || modulePath.endsWith(`.${key}`)) {
      if (!best || key.length > best.key.length) best = { key, value };
    }
  }
  return best?.value;
}

export const rankFor = (c: LoraConfig, modulePath: string): number => patternValue(c.rankPattern, modulePath) ?? c.r;
export const alphaFor = (c: LoraConfig, modulePath: string): number => patternValue(c.alphaPattern, modulePath) ?? c.alpha;
/** The factor on a module's update: alpha/r, or alpha/sqrt(r) under rsLoRA. */
export const scaleFor = (c: LoraConfig, modulePath: string): number => {
  const r = rankFor(c, modulePath);
  return alphaFor(c, modulePath) / (c.useRslora ? Math.sqrt(r) : r);
};
export const dropoutFor = (c: LoraConfig, modulePath: string): number => patternValue(c.dropoutPattern, modulePath) ?? c.dropout;

function checkNumber(field: string, v: unknown, ok: (x: number) => boolean, range: string): number {
  if (typeof v !== 'number' || Number.isNaN(v) || !ok(v)) {
    // String(), not JSON.stringify, for numbers: JSON writes NaN and Infinity as "null".
    throw new ConfigError(`${field} must be ${range}, got ${typeof v === 'number' ? String(v) : JSON.stringify(v === undefined ? 'undefined' : v)}`);
  }
  return v;
}

/** Validates against the model: every rank must be an integer in [1, min(in, out)] of its layer. */
export function makeLoraConfig(input: LoraConfigInput, model: GPT2Config): LoraConfig {
  const targets = (input.targetModules ?? DEFAULT_LORA.targetModules).flatMap(resolveTargets);
  if (targets.length === 0) throw new ConfigError(`lora.targetModules must name at least one of ${ALL_TARGETS.join(', ')}`);
  if (input.useRslora !== undefined && typeof input.useRslora !== 'boolean') {
    throw new ConfigError(`lora.useRslora must be true or false, got ${JSON.stringify(input.useRslora)}`);
  }
  const r = input.r ?? DEFAULT_LORA.r;
  const c: LoraConfig = {
    r,
    alpha: input.alpha ?? 2 * r,
    dropout: input.dropout ?? DEFAULT_LORA.dropout,
    targetModules: [...new Set(targets)],
    rankPattern: input.rankPattern,
    alphaPattern: input.alphaPattern,
    dropoutPattern: input.dropoutPattern,
    ...(input.useRslora ? { useRslora: true } : {}),
    ...(input.wordVectors ? { wordVectors: input.wordVectors } : {}),
    ...(input.wordBag ? { wordBag: input.wordBag } : {}),
    ...(input.answerMemory ? { answerMemory: input.answerMemory } : {}),
  };
  if (input.wordVectors !== undefined) checkNumber('lora.wordVectors', input.wordVectors, (x) => Number.isFinite(x) && x >= 0, 'a finite number >= 0 (0: no word vectors)');
  if (input.wordBag !== undefined) checkNumber('lora.wordBag', input.wordBag, (x) => Number.isFinite(x) && x >= 0, 'a finite number >= 0 (0: no word bag)');
  if (input.answerMemory !== undefined) checkNumber('lora.answerMemory', input.answerMemory, (x) => Number.isFinite(x) && x >= 0, 'a finite number >= 0 (0: no answer memory)');
  if (c.answerMemory && !c.wordBag) throw new ConfigError(`lora.answerMemory (${c.answerMemory}) needs lora.wordBag > 0: the memory is read from the word bag's mean`);
  if (c.wordBag && !c.wordVectors) throw new ConfigError(`lora.wordBag (${c.wordBag}) needs lora.wordVectors > 0: the bag keeps a vector for each of the word vectors' words`);
  checkNumber('lora.dropout', c.dropout, (x) => x >= 0 && x < 1, 'in [0, 1)');
  for (const t of c.targetModules) {
    const [i, o] = moduleShape(model, t);
    const maxR = Math.min(i, o);
    for (let layer = 0; layer < model.n_layer; layer++) {
      const path = `transformer.h.${layer}.${t}`;
      const field = c.rankPattern && patternValue(c.rankPattern, path) !== undefined ? `lora.rankPattern (${path})` : 'lora.r';
      checkNumber(field, rankFor(c, path), (x) => Number.isInteger(x) && x >= 1 && x <= maxR, `an integer in [1, ${maxR}] for ${t} (its smaller dimension)`);
      checkNumber('lora.alpha', alphaFor(c, path), (x) => Number.isFinite(x) && x > 0, 'a finite number > 0');
      checkNumber('lora.dropout', dropoutFor(c, path), (x) => x >= 0 && x < 1, 'in [0, 1)');
    }
  }
  return c;
}
