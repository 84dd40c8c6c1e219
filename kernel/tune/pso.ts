/**
 * Particle swarm optimisation in the unit cube. Trial n is particle n mod `particles` in generation
 * ⌊n / particles⌋; generation 0 is uniform random. A particle's state is rebuilt from the history
 * alone, so the sampler stays stateless:
 *
 * - position: its point in the previous generation (the trial's params, encoded);
 * - velocity: the displacement it actually made into that point (x_{g−1} − x_{g−2}, zero after
 *   generation 0). The standard update x_g = x_{g−1} + v_g makes this exact, walls included: a move
 *   clamped at a face of the cube keeps only the part that happened;
 * - personal and global best: the best finished trials of earlier generations (pruned ones with their
 *   last value, failed ones never).
 *
 * The random factors of a step come from the trial's own rng, which is seeded by (study seed, trial
 * number), i.e. by (particle, generation): a resumed study proposes the same moves.
 */
import { lossOf } from './history';
import { randomParams } from './random';
import { clamp01, decode, encode } from './space';
import type { Sampler, SamplerContext } from './types';

export type SwarmOptions = {
  /** Particles per generation (default 8). */
  particles?: number;
  /** Weight of the previous velocity (default 0.7298, Clerc's constriction). */
  inertia?: number;
  /** Pull towards the particle's own best (default 1.49618). */
  cognitive?: number;
  /** Pull towards the swarm's best (default 1.49618). */
  social?: number;
  /** Largest move per coordinate and generation, in unit-cube units (default 0.5). */
  maxVelocity?: number;
};

export type SwarmCoefficients = Required<Omit<SwarmOptions, 'particles'>>;

/** A best point so far: unit-cube coordinates and its value as "lower is better". */
export interface BestPoint {
  x: number[];
  loss: number;
  trial: number;
}

/** What a particle knows before moving into `generation`. */
export interface ParticleState {
  particle: number;
  generation: number;
  position: number[];
  velocity: number[];
  personalBest?: BestPoint;
  globalBest?: BestPoint;
}

/**
 * One PSO move of a point in [0,1]^d:
 *   v' = w·v + c1·r1∘(pbest − x) + c2·r2∘(gbest − x), each coordinate within ±maxVelocity;
 *   x' = clamp(x + v') and the returned velocity is x' − x, the move actually made.
 * r1, r2 are fresh uniform draws per coordinate from `rng`.
 */
export function swarmStep(
  x: readonly number[],
  v: readonly number[],
  pbest: readonly number[],
  gbest: readonly number[],
  c: SwarmCoefficients,
  rng: () => number,
): { position: number[]; velocity: number[] } {
  const position: number[] = [];
  const velocity: number[] = [];
  for (let k = 0; k < x.length; k++) {
    const r1 = rng();
    const r2 = rng();
    let vk = c.inertia * v[k] + c.cognitive * r1 * (pbest[k] - x[k]) + c.social * r2 * (gbest[k] - x[k]);
    vk = Math.max(-c.maxVelocity, Math.min(c.maxVelocity, vk));
    position.push(clamp01(x[k] + vk));
    velocity.push(position[k] - x[k]);
  }
  return { position, velocity };
}

/** Rebuilds particle `particle`'s state before `generation` (≥ 1) from the trials. */
export function particleState(
  ctx: Pick<SamplerContext, 'space' | 'direction' | 'trials'>,
  particles: number,
  particle: number,
  generation: number,
): ParticleState {
  const at = (g: number) => ctx.trials[g * particles + particle];
  const prev = at(generation - 1);
  if (!prev) throw new RangeError(`particle ${particle} has no trial in generation ${generation - 1}`);
  const position = encode(ctx.space, prev.params);
  const before = generation >= 2 ? at(generation - 2) : undefined;
  const velocity = before ? encode(ctx.space, before.params).map((b, k) => position[k] - b) : position.map(() => 0);
  let personalBest: BestPoint | undefined;
  let globalBest: BestPoint | undefined;
  for (const t of ctx.trials.slice(0, generation * particles)) {
    const loss = lossOf(t, ctx.direction);
    if (loss === undefined) continue;
    // Strict comparisons: the earliest of equal values stays the best.
    if (!globalBest || loss < globalBest.loss) globalBest = { x: encode(ctx.space, t.params), loss, trial: t.number };
    if (t.number % particles === particle && (!personalBest || loss < personalBest.loss)) personalBest = { x: encode(ctx.space, t.params), loss, trial: t.number };
  }
  return { particle, generation, position, velocity, personalBest, globalBest };
}

export class ParticleSwarmSampler implements Sampler {
  readonly name = 'pso';
  readonly options: Required<SwarmOptions>;

  constructor(o: SwarmOptions = {}) {
    this.options = {
      particles: o.particles ?? 8,
      inertia: o.inertia ?? 0.7298,
      cognitive: o.cognitive ?? 1.49618,
      social: o.social ?? 1.49618,
      maxVelocity: o.maxVelocity ?? 0.5,
    };
    const { particles, ...c } = this.options;
    if (!(Number.isInteger(particles) && particles >= 1)) throw new RangeError(`pso particles must be an integer >= 1, got ${particles}`);
    for (const [k, v] of Object.entries(c)) if (!(Number.isFinite(v) && v >= 0)) throw new RangeError(`pso ${k} must be a finite number >= 0, got ${v}`);
    if (!(c.maxVelocity > 0)) throw new RangeError(`pso maxVelocity must be > 0, got ${c.maxVelocity}`);
  }

  sample(ctx: SamplerContext) {
    const { particles, ...coefficients } = this.options;
    const particle = ctx.number % particles;
    const generation = Math.floor(ctx.number / particles);
    if (generation === 0) return randomParams(ctx);
    const s = particleState(ctx, particles, particle, generation);
    // No finished trial yet (all failed or still running): the particle drifts on its velocity.
    const pbest = s.personalBest?.x ?? s.position;
    const gbest = s.globalBest?.x ?? pbest;
    return decode(ctx.space, swarmStep(s.position, s.velocity, pbest, gbest, coefficients, ctx.rng).position);
  }
}
