/**
 * Next-token choice from a model's logits: temperature, top-k, top-p (nucleus), seeded sampling.
 *
 * Pure JS on a Float32Array: one vocabulary-sized vector per step is small, and keeping this off
 * the tensor backend makes it exact, testable and identical on every backend.
 */
import seedrandom from 'seedrandom';

export interface SamplingParams {
  /** Divides the logits; default 1; 0 = greedy (argmax). */
  temperature?: number;
  /** Keep only the k most likely tokens; 0 or undefined = off. */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches topP; 1 or undefined = off. */
  topP?: number;
}

export function validateSamplingParams(p: SamplingParams): void {
  const { temperature: t, topK: k, topP } = p;
  if (t !== undefined && !(typeof t === 'number' && Number.isFinite(t) && t >= 0)) {
    throw new RangeError(`temperature must be a finite number >= 0 (0 = greedy), got ${t}`);
  }
  if (k !== undefined && !(Number.isInteger(k) && k >= 0)) {
    throw new RangeError(`topK must be an integer >= 0 (0 = off), got ${k}`);
  }
  if (topP !== undefined && !(typeof topP === 'number' && topP > 0 && topP <= 1)) {
    // NaN fails both comparisons, so it is rejected here too.
    throw new RangeError(`topP must be in (0, 1] (1 = off), got ${topP}`);
  }
}

/** Index of the largest logit, the lowest index on ties. */
function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

function checkLogits(logits: ArrayLike<number>): void {
  if (logits.length === 0) throw new RangeError('logits must not be empty');
  let finite = false;
  for (let i = 0; i < logits.length; i++) {
    if (Number.isNaN(logits[i])) throw new RangeError(`logits[${i}] is NaN (did the model diverge?)`);
    if (logits[i] > -Infinity) finite = true;
  }
  if (!finite) throw new RangeError('all logits are -Infinity: no token can be sampled');
}

/**
 * Probabilities of the next token: softmax(logits / temperature), restricted by top-k, then by
 * top-p, renormalised. temperature 0 gives a one-hot on the argmax.
 */
export function nextTokenDistribution(logits: Float32Array | number[], p: SamplingParams): Float64Array {
  validateSamplingParams(p);
  checkLogits(logits);
  const n = logits.length;
  const t = p.temperature ?? 1;
  const probs = new Float64Array(n);
  if (t === 0) {
    probs[argmax(logits)] = 1;
    return probs;
  }
  const max = logits[argmax(logits)];
  const topK = p.topK ?? 0;
  const topP = p.topP ?? 1;
  const truncate = (topK > 0 && topK < n) || topP < 1;

  // Candidates, best first; the sort (by logit, then index) is needed only when truncating.
  // Temperature > 0 preserves the order, so the same ranking serves top-k and top-p.
  let order: number[] = Array.from({ length: n }, (_, i) => i);
  if (truncate) order.sort((i, j) => logits[j] - logits[i] || i - j);
  if (topK > 0 && topK < n) order = order.slice(0, topK);

  // Softmax over the candidates with the max subtracted, so exp never overflows. An infinite max
  // would give Inf - Inf = NaN: the +Infinity logits then share all the mass.
  let sum = 0;
  for (const i of order) {
    const e = max === Infinity ? (logits[i] === Infinity ? 1 : 0) : Math.exp((logits[i] - max) / t);
    probs[i] = e;
    sum += e;
  }
  for (const i of order) probs[i] /= sum;

  if (topP < 1) {
    // Smallest prefix reaching topP (a hair of slack so that rounding in exp/log cannot push
    // 0.5 + 0.2 to 0.6999999 and keep a token too many); always at least one token.
    let cum = 0;
    let keep = 0;
    while (keep < order.length && (keep === 0 || cum < topP - 1e-12)) cum += probs[order[keep++]];
    for (let r = keep; r < order.length; r++) probs[order[r]] = 0;
    for (let r = 0; r < keep; r++) probs[order[r]] /= cum;
  }
  return probs;
}

/** Draw a token id: inverse CDF of nextTokenDistribution with `rng()` in [0, 1); greedy needs no rng. */
export function sampleToken(logits: Float32Array | number[], p: SamplingParams, rng: () => number): number {
  validateSamplingParams(p);
  if (p.temperature === 0) {
    checkLogits(logits);
    return argmax(logits);
  }
  const probs = nextTokenDistribution(logits, p);
  const u = rng();
  let cum = 0;
  let last = -1;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] === 0) continue; // never return an excluded token, whatever u is
    last = i;
    cum += probs[i];
    if (u < cum) return i;
  }
  return last; // u within rounding of 1
}

/** A seeded uniform generator in [0, 1): the same seed gives the same sequence on every machine. */
export function makeRng(seed: number | string): () => number {
  if (typeof seed === 'number' ? !Number.isFinite(seed) : typeof seed !== 'string') {
    throw new RangeError(`seed must be a finite number or a string, got ${String(seed)}`);
  }
  const prng = seedrandom(String(seed));
  return () => prng();
}
