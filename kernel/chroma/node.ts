/**
 * Parameter nodes: every tunable parameter is a point p in the unit cube whose axes mean something.
 * The cube's 8 corners are the node's 8 directions; corner c = bx + 2·by + 4·bz carries the trilinear
 * weight w_c(p) = Π_a (b_a ? p_a : 1 − p_a), and its sub-weight s_c = 8·w_c(p) (mean 1 over corners:
 * 1 everywhere at the centre, 8 at a corner the node sits on, 0 at the opposite one).
 *
 * Effective settings blend the sub-weights trilinearly at the location of what they act on. A LoRA
 * parameter group at depth d (0 early .. 1 late), module m (0 attention, 1 MLP) and factor f (0 A,
 * 1 B) gets the multiplier
 *
 *   m(q) = Σ_c w_c(q) · s_c(p) = 8 · Π_a (q_a·p_a + (1 − q_a)(1 − p_a)),
 *
 * so moving the node toward a corner shifts weight onto the groups there. Nodes:
 *
 * - learningRate: x depth, y module, z factor. Group learning rate = base lr · m(depth, module, factor).
 * - rank: x depth, y module, z level. Rank of a module = round(2^(1+5·p_z) · m₂), m₂ the multiplier
 *   over x and y only (4·Π over the two axes); level 2 .. 64, each module capped at 64.
 * - alpha: as rank with level 2^(2+4·p_z) (4 .. 64).
 * - dropout: as rank with level 0.3·p_z (0 .. 0.3), capped at 0.9 per module.
 * - temperature: x level (0 .. 1.5); y ramp over the answer (0.5 flat; 1 heats up to ×4 by the last
 *   token, 0 cools to ×¼); z adaptivity (0.5 none; 1 hotter where the model is unsure, cooler where it
 *   is confident, by up to ×2 from the normalised entropy of the next-token distribution).
 * - topP: x level (0.5 .. 1); y ramp (±0.5 by the last token); z adaptivity (±0.25 with the entropy).
 */
import type { GPT2Config } from '../model/config';
import type { LoraConfigInput } from '../lora/config';
import { groupKey, rankPatternByGroup } from '../lora/groups';
import type { SamplingParams } from '../sample/sampler';
import { cornerOf } from '../../widget/src/payload';

// The corner order is part of the payload the widget reads; notebooks reach it here, beside the weights.
export { cornerOf };

export type Vec3 = [number, number, number];

export const NODE_NAMES = ['learningRate', 'rank', 'alpha', 'dropout', 'temperature', 'topP'] as const;
export type NodeName = (typeof NODE_NAMES)[number];

export interface AxisDef {
  name: string;
  low: string;
  high: string;
}

export interface NodeDef {
  name: NodeName;
  label: string;
  /** Training nodes change the adapter and optimizer; decoding nodes change sampling. */
  kind: 'training' | 'decoding';
  axes: [AxisDef, AxisDef, AxisDef];
  /** Where a new node starts. */
  start: Vec3;
}

const DEPTH: AxisDef = { name: 'depth', low: 'first layer', high: 'last layer' };
const MODULE: AxisDef = { name: 'module', low: 'attention', high: 'MLP' };
const RAMP: AxisDef = { name: 'ramp', low: 'falls over the answer', high: 'rises over the answer' };
const ADAPT: AxisDef = { name: 'adaptivity', low: 'sharper when unsure', high: 'looser when unsure' };

export const NODE_DEFS: Record<NodeName, NodeDef> = {
  learningRate: { name: 'learningRate', label: 'LoRA learning rate', kind: 'training', axes: [DEPTH, MODULE, { name: 'factor', low: 'A', high: 'B' }], start: [0.5, 0.5, 0.5] },
  rank: { name: 'rank', label: 'LoRA rank', kind: 'training', axes: [DEPTH, MODULE, { name: 'level', low: '2', high: '64' }], start: [0.5, 0.5, 0.5] },
  alpha: { name: 'alpha', label: 'LoRA alpha', kind: 'training', axes: [DEPTH, MODULE, { name: 'level', low: '4', high: '64' }], start: [0.5, 0.5, 0.5] },
  dropout: { name: 'dropout', label: 'LoRA dropout', kind: 'training', axes: [DEPTH, MODULE, { name: 'level', low: '0', high: '0.3' }], start: [0.5, 0.5, 0.25] },
  temperature: { name: 'temperature', label: 'decoding temperature', kind: 'decoding', axes: [{ name: 'level', low: '0', high: '1.5' }, RAMP, ADAPT], start: [0.5, 0.5, 0.5] },
  topP: { name: 'topP', label: 'decoding top-p', kind: 'decoding', axes: [{ name: 'level', low: '0.5', high: '1' }, RAMP, ADAPT], start: [1, 0.5, 0.5] },
};

export type NodePositions = Partial<Record<NodeName, Vec3>>;

/** Validates a position: three finite numbers in [0, 1]. */
export function checkPosition(name: string, p: unknown): Vec3 {
  if (!Array.isArray(p) || p.length !== 3 || !p.every((v) => typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= 1)) {
    throw new RangeError(`node "${name}": position must be [x, y, z] with each in [0, 1], got ${JSON.stringify(p)}`);
  }
  return [p[0], p[1], p[2]];
}

export function checkNodeName(name: string): NodeName {
  if (!(NODE_NAMES as readonly string[]).includes(name)) throw new RangeError(`unknown parameter node "${name}"; nodes: ${NODE_NAMES.join(', ')}`);
  return name as NodeName;
}

/** The 8 trilinear weights w_c(p); they sum to 1. */
export function trilinearWeights(p: Vec3): number[] {
  return Array.from({ length: 8 }, (_, c) => cornerOf(c).reduce((w, b, a) => w * (b ? p[a] : 1 - p[a]), 1));
}

/** Sub-weights s_c = 8·w_c(p) of the node's 8 directions. */
export const cornerSubWeights = (p: Vec3): number[] => trilinearWeights(p).map((w) => 8 * w);

/** Trilinear blend of corner values at q: Σ_c w_c(q)·values[c]. */
export function blend(values: ArrayLike<number>, q: Vec3): number {
  return trilinearWeights(q).reduce((s, w, c) => s + w * values[c], 0);
}

/** Multiplier at location q of a node at p: the blend of its sub-weights. */
export const multiplierAt = (p: Vec3, q: Vec3): number => blend(cornerSubWeights(p), q);

/** Multiplier over the depth and module axes only (mean 1 over the 4 edges). */
const multiplier2 = (p: Vec3, depth: number, module: number): number =>
  4 * (depth * p[0] + (1 - depth) * (1 - p[0])) * (module * p[1] + (1 - module) * (1 - p[1]));

const depthOf = (layer: number, cfg: GPT2Config): number => (cfg.n_layer > 1 ? layer / (cfg.n_layer - 1) : 0.5);
const moduleCoord = (m: 'attn' | 'mlp'): number => (m === 'attn' ? 0 : 1);

export interface TrainingSettings {
  /** Multipliers of the base learning rate per group key, e.g. "h0.attn.A". */
  groupScales: Record<string, number>;
  lora: Required<Pick<LoraConfigInput, 'r' | 'alpha' | 'dropout' | 'rankPattern' | 'alphaPattern'>> & { dropoutPattern: Record<string, number> };
}

/** Base learning rate that the learningRate node's group multipliers scale, when a run sets none. */
export const DEFAULT_LEARNING_RATE = 5e-3;

/** Largest rank a node gives one module (also capped by n_embd, every module's smaller side): keeps a corner position (multiplier 4) affordable. */
const MAX_RANK = 64;

const positionOf = (nodes: NodePositions, name: NodeName): Vec3 => nodes[name] ?? NODE_DEFS[name].start;

/** The per-group settings the trainer uses for these node positions. */
export function trainingSettings(nodes: NodePositions, cfg: GPT2Config): TrainingSettings {
  const lr = positionOf(nodes, 'learningRate');
  const groupScales: Record<string, number> = {};
  for (let d = 0; d < cfg.n_layer; d++) {
    for (const module of ['attn', 'mlp'] as const) {
      for (const factor of ['A', 'B'] as const) {
        groupScales[groupKey({ depth: d, module, factor })] = multiplierAt(lr, [depthOf(d, cfg), moduleCoord(module), factor === 'A' ? 0 : 1]);
      }
    }
  }
  const [rp, ap, dp] = [positionOf(nodes, 'rank'), positionOf(nodes, 'alpha'), positionOf(nodes, 'dropout')];
  const rankLevel = 2 ** (1 + 5 * rp[2]);
  const alphaLevel = 2 ** (2 + 4 * ap[2]);
  const dropoutLevel = 0.3 * dp[2];
  const rankPattern = rankPatternByGroup(cfg, (d, m) => Math.min(MAX_RANK, cfg.n_embd, Math.max(1, Math.round(rankLevel * multiplier2(rp, depthOf(d, cfg), moduleCoord(m))))));
  const alphaPattern = rankPatternByGroup(cfg, (d, m) => alphaLevel * multiplier2(ap, depthOf(d, cfg), moduleCoord(m)));
  const dropoutPattern = rankPatternByGroup(cfg, (d, m) => Math.min(0.9, dropoutLevel * multiplier2(dp, depthOf(d, cfg), moduleCoord(m))));
  return {
    groupScales,
    lora: { r: Math.max(1, Math.round(rankLevel)), alpha: alphaLevel, dropout: dropoutLevel, rankPattern, alphaPattern, dropoutPattern },
  };
}

export interface DecodingSettings {
  /** Values at the answer's first token with the adaptivity at rest. */
  temperature: number;
  topP: number;
  /** Sampling parameters for generated token `step` of `maxTokens`, given the next-token logits. */
  paramsAt: (step: number, maxTokens: number, logits: ArrayLike<number>) => SamplingParams;
}

/** Entropy of softmax(logits) divided by log(vocabulary size): 0 certain .. 1 uniform. */
export function normalisedEntropy(logits: ArrayLike<number>): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let z = 0;
  let s = 0;
  for (let i = 0; i < logits.length; i++) {
    const e = Math.exp(logits[i] - max);
    z += e;
    s += e * (logits[i] - max);
  }
  const h = Math.log(z) - s / z;
  return logits.length > 1 ? Math.min(1, Math.max(0, h / Math.log(logits.length))) : 0;
}

const clampP = (x: number): number => Math.min(1, Math.max(0.01, x));

/** The sampling schedule the decoding nodes define. */
export function decodingSettings(nodes: NodePositions): DecodingSettings {
  const t = positionOf(nodes, 'temperature');
  const p = positionOf(nodes, 'topP');
  const temperature = 1.5 * t[0];
  const topP = 0.5 + 0.5 * p[0];
  return {
    temperature,
    topP,
    paramsAt(step, maxTokens, logits) {
      const frac = maxTokens > 1 ? step / (maxTokens - 1) : 0;
      const h = t[2] === 0.5 && p[2] === 0.5 ? 0.5 : normalisedEntropy(logits);
      const temp = temperature * 4 ** ((2 * t[1] - 1) * frac) * 2 ** ((2 * t[2] - 1) * (2 * h - 1));
      const top = clampP(topP + (2 * p[1] - 1) * 0.5 * frac + (2 * p[2] - 1) * 0.25 * (2 * h - 1));
      return { temperature: temp, topP: top };
    },
  };
}
