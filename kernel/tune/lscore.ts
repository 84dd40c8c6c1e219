/**
 * The L-score: one number, lower is better, that weighs a run's held-out perplexity by what it cost.
 *
 *   L = perplexity(T) · f(D) · f(A) · f(H)
 *
 * - perplexity(T): exp of the mean loss per reference-answer token on the held-out set T (validation
 *   in a sweep; test in a final report).
 * - f(D), training algorithm: f(D) = 1 + E/E_ref, with E the epochs (passes over the training
 *   tokens) until validation loss first reached the target τ, and E_ref = 10 epochs. A run that never
 *   reaches τ gets E = epochsTrained + E_ref (a fixed penalty beyond its whole budget).
 *   Caveats: E is quantised by the evaluation interval; τ must be the same for runs compared; the
 *   default τ (half the base model's validation loss, in nats) suits fine-tuning from a pretrained
 *   base, not training from scratch.
 * - f(A), architecture: f(A) = 1 + ρ, with ρ = trainable parameters / all parameters (LoRA r=8 on
 *   the embedded model: ρ≈0.03; full fine-tuning: ρ=1, f=2).
 *   Caveats: counts parameters, not optimizer or activation memory; LoRA's rank-r matrices count fully.
 * - f(H), hardware: f(H) = 1 + t_ref/T_ref, with t_ref the training seconds converted to a reference
 *   machine, t·(G/G_ref), where G is this backend's measured matmul GFLOP/s and G_ref the reference
 *   machine's (REFERENCE_GFLOPS), and T_ref = 600 s (the main job's 10-minute budget).
 *   Caveats: matmul throughput does not capture memory bandwidth, kernel launch overheads or
 *   threading; G is measured in the same process, but on a shared machine it is noisy (±20%).
 *
 * All three factors are ≥ 1, so L ≥ perplexity(T), and L equals perplexity only for a free run.
 */

/** Matmul GFLOP/s of the reference machine (measureMatmulGflops): 1 thread of a 2-core x86-64 machine, wasm SIMD + OpenBLAS, 2026-11. */
export const REFERENCE_GFLOPS = 65;
/** Epochs that double f(D). */
export const REFERENCE_EPOCHS = 10;
/** Reference-machine seconds that double f(H). */
export const REFERENCE_SECONDS = 600;

export interface LScoreInputs {
  /** Perplexity of the reference answers on the held-out set T. */
  perplexity: number;
  /** Validation losses during training: [epoch (fractional), loss]. */
  valCurve: Array<[number, number]>;
  /** Target validation loss τ (nats per token). */
  targetLoss: number;
  /** Epochs trained in all. */
  epochsTrained: number;
  trainableParameters: number;
  totalParameters: number;
  /** Wall seconds spent training. */
  trainingSeconds: number;
  /** This machine's measured matmul GFLOP/s on the backend used. */
  gflops: number;
}

export interface LScore {
  L: number;
  perplexity: number;
  fD: number;
  fA: number;
  fH: number;
  /** Epochs to reach the target, or null when it was not reached. */
  epochsToTarget: number | null;
  trainableFraction: number;
  referenceSeconds: number;
  targetLoss: number;
}

function positive(name: string, x: number, allowZero = false): void {
  if (!(Number.isFinite(x) && (allowZero ? x >= 0 : x > 0))) throw new RangeError(`L-score: ${name} must be a finite number ${allowZero ? '>= 0' : '> 0'}, got ${x}`);
}

/** First epoch at which the validation curve reached `target`, or null. */
export function epochsToTarget(curve: ReadonlyArray<[number, number]>, target: number): number | null {
  for (const [epoch, loss] of curve) if (loss <= target) return epoch;
  return null;
}

export function lScore(x: LScoreInputs): LScore {
  positive('perplexity', x.perplexity);
  positive('targetLoss', x.targetLoss);
  positive('epochsTrained', x.epochsTrained, true);
  positive('totalParameters', x.totalParameters);
  positive('trainingSeconds', x.trainingSeconds, true);
  positive('gflops', x.gflops);
  if (!(x.trainableParameters >= 0 && x.trainableParameters <= x.totalParameters)) {
    throw new RangeError(`L-score: trainableParameters must be in [0, totalParameters=${x.totalParameters}], got ${x.trainableParameters}`);
  }
  const e = epochsToTarget(x.valCurve, x.targetLoss);
  const fD = 1 + (e ?? x.epochsTrained + REFERENCE_EPOCHS) / REFERENCE_EPOCHS;
  const trainableFraction = x.trainableParameters / x.totalParameters;
  const fA = 1 + trainableFraction;
  const referenceSeconds = x.trainingSeconds * (x.gflops / REFERENCE_GFLOPS);
  const fH = 1 + referenceSeconds / REFERENCE_SECONDS;
  return { L: x.perplexity * fD * fA * fH, perplexity: x.perplexity, fD, fA, fH, epochsToTarget: e, trainableFraction, referenceSeconds, targetLoss: x.targetLoss };
}
