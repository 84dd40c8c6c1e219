/** AdamW with decoupled weight decay, per-group learning-rate scales and global-norm clipping. */
import * as tf from '../backend/tf';
import { groupKey, groupOf } from '../lora/groups';
import type { NamedArrays } from '../model/tensor';

export interface AdamParams {
  learningRate: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Clip the global gradient norm to this value (0 or undefined: off). */
  gradClipNorm?: number;
  /** Multipliers of learningRate per parameter group key (see lora/groups), e.g. {"h0.attn.A": 2}. */
  groupScales?: Record<string, number>;
}

export const ADAM_DEFAULTS = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };

/** The gradients hold NaN or Infinity (the loss itself may be finite); nothing was updated. */
export class NonFiniteGradientError extends Error {
  override name = 'NonFiniteGradientError';
  constructor(readonly gradNorm: number) {
    super(`gradient norm is ${gradNorm}; the update was skipped`);
  }
}

interface Moments {
  m: Float32Array;
  v: Float32Array;
  shape: number[];
}

export function validateAdamParams(p: AdamParams): void {
  const check = (field: string, v: number | undefined, ok: (x: number) => boolean, range: string) => {
    if (v !== undefined && (typeof v !== 'number' || Number.isNaN(v) || !ok(v))) {
      throw new RangeError(`${field} must be ${range}, got ${v}`);
    }
  };
  check('learningRate', p.learningRate, (x) => x > 0 && Number.isFinite(x), 'a finite number > 0');
  if (p.learningRate === undefined) throw new RangeError('learningRate is required (a finite number > 0)');
  check('beta1', p.beta1, (x) => x >= 0 && x < 1, 'in [0, 1)');
  check('beta2', p.beta2, (x) => x >= 0 && x < 1, 'in [0, 1)');
  check('eps', p.eps, (x) => x > 0 && Number.isFinite(x), 'a finite number > 0');
  check('weightDecay', p.weightDecay, (x) => x >= 0 && Number.isFinite(x), 'a finite number >= 0');
  check('gradClipNorm', p.gradClipNorm, (x) => x >= 0 && Number.isFinite(x), 'a finite number >= 0');
  for (const [k, s] of Object.entries(p.groupScales ?? {})) check(`groupScales["${k}"]`, s, (x) => x >= 0 && Number.isFinite(x), 'a finite number >= 0');
}

/** Group keys (see lora/groups) of the named parameters, in order of first appearance. */
export function groupKeysOf(names: Iterable<string>): string[] {
  return [...new Set(Array.from(names, (n) => groupKey(groupOf(n))))];
}

/** Every groupScales key must name a group of the trained parameters: a misspelled key would silently leave its group at scale 1. */
export function checkGroupScaleKeys(groupScales: Record<string, number> | undefined, names: Iterable<string>): void {
  if (!groupScales) return;
  const valid = groupKeysOf(names);
  const known = new Set(valid);
  const unknown = Object.keys(groupScales).filter((k) => !known.has(k));
  if (unknown.length > 0) {
    throw new RangeError(`groupScales has unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')}; valid keys: ${valid.join(', ')}`);
  }
}

/**
 * The update runs in plain JS over Float32Arrays: one pass per tensor instead of ~10 kernel launches
 * (each with its own allocation), which on the wasm and cpu backends made the optimizer a visible
 * share of a LoRA step. Moments live in JS and go to checkpoints as they are.
 */
export class AdamW {
  readonly moments = new Map<string, Moments>();
  /** The groupScales object whose keys were last checked: training passes the same one every step. */
  private checkedScales?: Record<string, number>;
  step = 0;

  /**
   * One update of `vars` from `grads` (same names). Returns the pre-clipping global norm and the
   * effective learning rate of every group, so callers can check what reached the optimizer.
   */
  apply(vars: Array<[string, tf.Variable]>, grads: Map<string, tf.Tensor>, p: AdamParams): { gradNorm: number; groupLearningRates: Record<string, number> } {
    validateAdamParams(p);
    if (p.groupScales && p.groupScales !== this.checkedScales) {
      checkGroupScaleKeys(p.groupScales, vars.map(([name]) => name));
      this.checkedScales = p.groupScales;
    }
    const { beta1, beta2, eps, weightDecay } = { ...ADAM_DEFAULTS, ...p };
    const gradArrays = new Map<string, Float32Array>();
    let sq = 0;
    for (const [name, g] of grads) {
      const a = g.dataSync() as Float32Array;
      gradArrays.set(name, a);
      for (let i = 0; i < a.length; i++) sq += a[i] * a[i];
    }
    const gradNorm = Math.sqrt(sq);
    if (!Number.isFinite(gradNorm)) throw new NonFiniteGradientError(gradNorm);
    const clip = p.gradClipNorm && gradNorm > p.gradClipNorm ? p.gradClipNorm / (gradNorm + 1e-6) : 1;
    this.step += 1;
    const bc1 = 1 - Math.pow(beta1, this.step);
    const bc2 = 1 - Math.pow(beta2, this.step);
    const groupLearningRates: Record<string, number> = {};
    for (const [name, v] of vars) {
      const g = gradArrays.get(name);
      if (!g) continue;
      const key = groupKey(groupOf(name));
      const lr = p.learningRate * (p.groupScales?.[key] ?? 1);
      groupLearningRates[key] = lr;
      let st = this.moments.get(name);
      if (!st) {
        st = { m: new Float32Array(g.length), v: new Float32Array(g.length), shape: v.shape };
        this.moments.set(name, st);
      }
      const { m, v: s } = st;
      // Copy: the cpu backend's dataSync returns its own buffer, shared with clones of v and with any
      // array the variable was created from; writing into it would change those too.
      const w = (v.dataSync() as Float32Array).slice();
      // Decoupled decay on matrices only; biases and norms are not decayed (common practice).
      const decay = weightDecay > 0 && v.rank >= 2 ? 1 - lr * weightDecay : 1;
      for (let i = 0; i < w.length; i++) {
        const gi = g[i] * clip;
        m[i] = beta1 * m[i] + (1 - beta1) * gi;
        s[i] = beta2 * s[i] + (1 - beta2) * gi * gi;
        w[i] = w[i] * decay - (lr * (m[i] / bc1)) / (Math.sqrt(s[i] / bc2) + eps);
      }
      tf.tidy(() => v.assign(tf.tensor(w, v.shape, 'float32')));
    }
    return { gradNorm, groupLearningRates };
  }

  /** Moments as named tensors, for checkpoints. */
  stateTensors(): NamedArrays {
    const out: NamedArrays = new Map();
    for (const [name, { m, v, shape }] of this.moments) {
      out.set(`${name}.exp_avg`, { shape, data: m });
      out.set(`${name}.exp_avg_sq`, { shape, data: v });
    }
    return out;
  }

  loadState(step: number, tensors: Map<string, { shape: number[]; data: Float32Array | Int32Array }>): void {
    this.dispose();
    this.step = step;
    for (const [key, t] of tensors) {
      const m = /^(.*)\.exp_avg$/.exec(key);
      if (!m) continue;
      const sq = tensors.get(`${m[1]}.exp_avg_sq`);
      if (!sq) throw new Error(`optimizer state: "${m[1]}.exp_avg_sq" is missing`);
      this.moments.set(m[1], { m: Float32Array.from(t.data), v: Float32Array.from(sq.data), shape: t.shape });
    }
  }

  dispose(): void {
    this.moments.clear();
  }
}
