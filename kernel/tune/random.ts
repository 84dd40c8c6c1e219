/** Random search: independent uniform points in the unit cube, mapped through the space. */
import { decode, spaceDims } from './space';
import type { Sampler, SamplerContext } from './types';

export class RandomSampler implements Sampler {
  readonly name = 'random';
  readonly options = {};
  sample(ctx: SamplerContext) {
    return decode(ctx.space, Array.from({ length: spaceDims(ctx.space) }, () => ctx.rng()));
  }
}
