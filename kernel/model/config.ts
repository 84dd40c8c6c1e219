/** GPT-2 configuration, with the keys of Hugging Face's config.json. */
export interface GPT2Config {
  model_type: 'gpt2';
  architectures?: string[];
  vocab_size: number;
  n_positions: number;
  n_embd: number;
  n_layer: number;
  n_head: number;
  /** MLP width; GPT-2 uses 4 * n_embd when null. */
  n_inner?: number | null;
  layer_norm_epsilon: number;
  activation_function: 'gelu_new' | 'gelu_pytorch_tanh';
  bos_token_id?: number;
  eos_token_id?: number;
  tie_word_embeddings?: boolean;
  [extra: string]: unknown;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Fills GPT-2's defaults and checks every size; `where` names the source in errors. */
export function makeConfig(partial: Partial<GPT2Config>, where = 'config'): GPT2Config {
  const cfg: GPT2Config = {
    model_type: 'gpt2',
    architectures: ['GPT2LMHeadModel'],
    layer_norm_epsilon: 1e-5,
    activation_function: 'gelu_new',
    tie_word_embeddings: true,
    n_inner: null,
    ...partial,
  } as GPT2Config;
  for (const key of ['vocab_size', 'n_positions', 'n_embd', 'n_layer', 'n_head'] as const) {
    const v = cfg[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
      throw new ConfigError(`${where}: ${key} must be a positive integer, got ${JSON.stringify(v)}`);
    }
  }
  if (cfg.n_embd % cfg.n_head !== 0) {
    throw new ConfigError(`${where}: n_embd (${cfg.n_embd}) must be divisible by n_head (${cfg.n_head})`);
  }
  if (cfg.n_inner != null && (!Number.isInteger(cfg.n_inner) || cfg.n_inner <= 0)) {
    throw new ConfigError(`${where}: n_inner must be a positive integer or null, got ${cfg.n_inner}`);
  }
  // GPT-2 uses the tanh approximation; PyTorch's name for the same function is gelu_pytorch_tanh.
  if (!['gelu_new', 'gelu_pytorch_tanh'].includes(cfg.activation_function)) {
    throw new ConfigError(`${where}: activation_function must be "gelu_new" or "gelu_pytorch_tanh" (tanh approximation), got "${cfg.activation_function}"`);
  }
  if (!(cfg.layer_norm_epsilon > 0)) {
    throw new ConfigError(`${where}: layer_norm_epsilon must be > 0, got ${cfg.layer_norm_epsilon}`);
  }
  return cfg;
}

export const mlpWidth = (cfg: GPT2Config): number => cfg.n_inner ?? 4 * cfg.n_embd;

/** The expected name and shape of every base tensor, in Hugging Face's GPT-2 layout (Conv1D: [in, out]). */
export function expectedTensors(cfg: GPT2Config): Map<string, number[]> {
  const d = cfg.n_embd;
  const f = mlpWidth(cfg);
  const shapes = new Map<string, number[]>();
  shapes.set('transformer.wte.weight', [cfg.vocab_size, d]);
  shapes.set('transformer.wpe.weight', [cfg.n_positions, d]);
  for (let i = 0; i < cfg.n_layer; i++) {
    const p = `transformer.h.${i}`;
    shapes.set(`${p}.ln_1.weight`, [d]);
    shapes.set(`${p}.ln_1.bias`, [d]);
    shapes.set(`${p}.attn.c_attn.weight`, [d, 3 * d]);
    shapes.set(`${p}.attn.c_attn.bias`, [3 * d]);
    shapes.set(`${p}.attn.c_proj.weight`, [d, d]);
    shapes.set(`${p}.attn.c_proj.bias`, [d]);
    shapes.set(`${p}.ln_2.weight`, [d]);
    shapes.set(`${p}.ln_2.bias`, [d]);
    shapes.set(`${p}.mlp.c_fc.weight`, [d, f]);
    shapes.set(`${p}.mlp.c_fc.bias`, [f]);
    shapes.set(`${p}.mlp.c_proj.weight`, [f, d]);
    shapes.set(`${p}.mlp.c_proj.bias`, [d]);
  }
  shapes.set('transformer.ln_f.weight', [d]);
  shapes.set('transformer.ln_f.bias', [d]);
  return shapes;
}

/** Parameters of the base model (tied output head counted once). */
export function parameterCount(cfg: GPT2Config): number {
  let n = 0;
  for (const shape of expectedTensors(cfg).values()) n += shape.reduce((a, b) => a * b, 1);
  return n;
}
