/** Random search: independent uniform points in the unit cube, mapped through the space. */
import { decode, type Params, spaceDims } from './space';
import type { Sampler, SamplerContext } from './types';

/** A uniform point of the space, drawn from the trial's rng (also the start-up trials of other samplers). */
export function randomParams(ctx: Pick<SamplerContext, 'space' | 'rng'>): Params {
  return decode(ctx.space, Array.from({ length: spaceDims(ctx.space) }, () => ctx.rng()));
}

export class RandomSampler implements Sampler {
  readonly name = 'random';
  readonly options = {};
  sample(ctx: SamplerContext) {
    return randomParams(ctx);
  }
}
