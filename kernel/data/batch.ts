/** Tokenized examples -> fixed-shape next-token batches; deterministic shuffling and validation split. */
import seedrandom from 'seedrandom';
import type { TokenizedExample } from './tokenize';

export interface Batch {
  /** [batch*seq] row-major. */
  inputIds: Int32Array;
  /** [batch*seq] the next token after each input position. */
  targets: Int32Array;
  /** [batch*seq] loss weight of each target (0 on prompt and padding). */
  weights: Float32Array;
  batchSize: number;
  seqLen: number;
}

/**
 * Causal LM collation: inputs t[0..L-2], targets t[1..L-1], and the weight of each target is the weight
 * of the token being predicted, w[1..L-1] (so the first answer token is learned from the prompt's last
 * position). Rows are right-padded to seqLen (the model's context) with padId and weight 0; examples
 * longer than seqLen+1 tokens are cut to seqLen+1.
 */
export function collate(examples: TokenizedExample[], seqLen: number, padId = 0): Batch {
  if (!Number.isInteger(seqLen) || seqLen < 1) throw new Error(`seqLen must be a positive integer, got ${seqLen}`);
  const b = examples.length;
  const inputIds = new Int32Array(b * seqLen).fill(padId);
  const targets = new Int32Array(b * seqLen).fill(padId);
  const weights = new Float32Array(b * seqLen);
  examples.forEach((ex, row) => {
    const L = Math.min(ex.ids.length, seqLen + 1);
    const base = row * seqLen;
    for (let i = 0; i + 1 < L; i++) {
      inputIds[base + i] = ex.ids[i];
      targets[base + i] = ex.ids[i + 1];
      weights[base + i] = ex.weights[i + 1];
    }
  });
  return { inputIds, targets, weights, batchSize: b, seqLen };
}

/** Fisher-Yates over 0..n-1 with a seeded PRNG. */
function permutation(n: number, seedKey: string): number[] {
  const rng = seedrandom(seedKey);
  const idx = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [idx[i], idx[j]] = [idx[j], idx[i]];
  }
  return idx;
}

/**
 * Batches of example indices for one epoch. The order depends only on (seed, epoch), so a resumed run
 * sees the same batches; the last partial batch is kept so every example is used each epoch.
 */
export function batchIndices(n: number, batchSize: number, epoch: number, seed: number, shuffle = true): number[][] {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batchSize must be a positive integer, got ${batchSize}`);
  const order = shuffle ? permutation(n, `batch:${seed}:${epoch}`) : Array.from({ length: n }, (_, i) => i);
  const batches: number[][] = [];
  for (let i = 0; i < n; i += batchSize) batches.push(order.slice(i, i + batchSize));
  return batches;
}

/**
 * Regroups one epoch's batches so each holds examples of similar length, after transformers'
 * group_by_length: the epoch's shuffled order is cut into megabatches of 50 batches, each sorted by
 * length, and cut into batches again. Padding to the longest example of a batch then wastes little.
 * Unlike transformers (which keeps the sorted order, longest first), the batches are then shuffled, so
 * that length does not follow the learning-rate schedule.
 * Deterministic in (seedKey, lengths); every index appears exactly once.
 */
export function groupByLength(batches: number[][], lengths: ArrayLike<number>, batchSize: number, seedKey: string): number[][] {
  const order = batches.flat();
  const mega = batchSize * 50;
  const grouped: number[][] = [];
  for (let i = 0; i < order.length; i += mega) {
    const part = order.slice(i, i + mega).sort((a, b) => lengths[b] - lengths[a]);
    for (let j = 0; j < part.length; j += batchSize) grouped.push(part.slice(j, j + batchSize));
  }
  return permutation(grouped.length, seedKey).map((k) => grouped[k]);
}

/**
 * One epoch's batches of example indices, as training takes them: shuffled per (seed, epoch), then,
 * given the examples' lengths, regrouped by length. The finetune loop and the bench both use it, so a
 * benchmark times the order the main job trains in.
 */
export function epochBatches(n: number, batchSize: number, epoch: number, seed: number, lengths?: ArrayLike<number>): number[][] {
  const batches = batchIndices(n, batchSize, epoch, seed);
  return lengths ? groupByLength(batches, lengths, batchSize, `group:${seed}:${epoch}`) : batches;
}

/**
 * Deterministic train/validation split: round(n*fraction) items (at least 1 in each part) chosen by a
 * seeded shuffle; both parts keep the original order, which is easier to inspect. `source` names the
 * data in the error for fewer than 2 items, which leave nothing to train or nothing to validate on.
 */
export function splitValidation<T>(items: T[], fraction: number, seed: number, source = 'the data'): { train: T[]; validation: T[] } {
  if (!(fraction > 0 && fraction < 1)) throw new Error(`validation fraction must be in (0, 1), got ${fraction}`);
  const n = items.length;
  if (n < 2) throw new RangeError(`${source}: ${n} example${n === 1 ? ' is' : 's are'} too few to split off a validation set (at least 2 are needed); add examples or give a separate validation file`);
  const nVal = Math.min(n - 1, Math.max(1, Math.round(n * fraction)));
  const inVal = new Set(permutation(n, `split:${seed}`).slice(0, nVal));
  return { train: items.filter((_, i) => !inVal.has(i)), validation: items.filter((_, i) => inVal.has(i)) };
}
