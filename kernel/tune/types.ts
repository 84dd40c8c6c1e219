/**
 * Shapes shared by studies, samplers, reports and the study file. Search knows nothing of the
 * objective: a trial is params in, one number (or an error) out.
 */
import type { Params, Space } from './space';

export type Direction = 'minimize' | 'maximize';
export type TrialState = 'running' | 'complete' | 'failed' | 'pruned';

/** One trial as recorded: what was asked, what came back. */
export interface TrialRecord {
  number: number;
  params: Params;
  state: TrialState;
  /** The objective's value (complete trials; pruned trials keep their last reported value). */
  value?: number;
  /** Why a failed trial failed (the objective's error message, or "objective returned NaN"). */
  error?: string;
  /** Values reported during the trial: [step, value] (e.g. validation loss after each evaluation). */
  intermediate: Array<[number, number]>;
  /** Anything the objective attaches: run folder, metrics, responses. */
  attrs: Record<string, unknown>;
  startedAt: string;
  finishedAt?: string;
}

/** Everything a sampler may look at when proposing the next trial. */
export interface SamplerContext {
  space: Space;
  direction: Direction;
  /** Trials so far, in number order (running ones included, with their params). */
  trials: readonly TrialRecord[];
  /** The number of the trial being proposed. */
  number: number;
  /** Uniform [0,1) generator seeded by (study seed, trial number): a resumed study proposes the same. */
  rng: () => number;
}

/**
 * A sampler proposes params from the history alone (no hidden state), so a study resumed from its
 * file continues exactly where it stopped.
 */
export interface Sampler {
  readonly name: string;
  /** Options recorded in the study file, e.g. { interval: 0.1 }. */
  readonly options: Record<string, unknown>;
  /** The next trial's params, or null when the sampler has nothing left to propose (a finished grid). */
  sample(ctx: SamplerContext): Params | null;
}
