/** Samplers by name, for the command line and study files. */
import { type BayesOptions, BayesSampler } from './bayes';
import { type GridOptions, GridSampler } from './grid';
import { ParticleSwarmSampler, type SwarmOptions } from './pso';
import { RandomSampler } from './random';
import { TpeSampler, type TpeOptions } from './tpe';
import type { Sampler } from './types';

export const SAMPLER_NAMES = ['grid', 'random', 'bayes', 'tpe', 'pso'] as const;
export type SamplerName = (typeof SAMPLER_NAMES)[number];

/** Options of each sampler, by name. */
export interface SamplerOptionsByName {
  grid: GridOptions;
  random: Record<string, never>;
  bayes: BayesOptions;
  tpe: TpeOptions;
  pso: SwarmOptions;
}

/** A sampler by name; an unknown name throws an Error that lists the valid ones. */
export function makeSampler<N extends SamplerName>(name: N, options?: SamplerOptionsByName[N]): Sampler;
export function makeSampler(name: string, options?: Record<string, unknown>): Sampler;
export function makeSampler(name: string, options: Record<string, unknown> = {}): Sampler {
  switch (name) {
    case 'grid':
      return new GridSampler(options as GridOptions);
    case 'random':
      return new RandomSampler();
    case 'bayes':
      return new BayesSampler(options as BayesOptions);
    case 'tpe':
      return new TpeSampler(options as TpeOptions);
    case 'pso':
      return new ParticleSwarmSampler(options as SwarmOptions);
    default:
      throw new Error(`unknown sampler ${JSON.stringify(name)}; valid samplers: ${SAMPLER_NAMES.join(', ')}`);
  }
}
