/** The standard normal distribution: density, distribution function, draws. */

/** log √(2π): the standard normal log density is −z²/2 − LOG_SQRT_2PI. */
export const LOG_SQRT_2PI = 0.5 * Math.log(2 * Math.PI);

/** exp(x²)·erfc(x) for x ≥ 0 (Chebyshev fit, relative error < 1.2e-7; Numerical Recipes' erfcc). */
export function erfcxPos(x: number): number {
  const t = 1 / (1 + 0.5 * x);
  const poly =
    -1.26551223 +
    t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  return t * Math.exp(poly);
}

/** Complementary error function. */
export function erfc(x: number): number {
  const a = Math.abs(x);
  const v = erfcxPos(a) * Math.exp(-a * a);
  return x >= 0 ? v : 2 - v;
}

export const normPdf = (z: number): number => Math.exp(-0.5 * z * z - LOG_SQRT_2PI);
export const normCdf = (z: number): number => 0.5 * erfc(-z / Math.SQRT2);

/** A standard normal draw (Box-Muller) from a uniform [0,1) source. */
export function gaussian(rng: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
}
