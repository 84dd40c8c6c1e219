/**
 * Expected improvement for minimisation, and its logarithm computed without underflow: far from the
 * best value EI is below 1e-300, yet the optimiser still needs to tell such points apart.
 */
import { erfcxPos, LOG_SQRT_2PI, normCdf, normPdf } from './normal';

/** Expected improvement below `best` of a normal N(mean, sd²): E[max(best − f, 0)]. */
export function expectedImprovement(mean: number, sd: number, best: number): number {
  if (!(sd > 0)) return Math.max(0, best - mean);
  const z = (best - mean) / sd;
  return Math.max(0, sd * (normPdf(z) + z * normCdf(z)));
}

/** log(φ(z) + z·Φ(z)), accurate for very negative z. */
export function logH(z: number): number {
  if (z > -1) return Math.log(normPdf(z) + z * normCdf(z));
  const a = -z;
  const logPhi = -0.5 * z * z - LOG_SQRT_2PI;
  if (a <= 8) {
    // h = φ(z)·(1 − a·Φ(−a)/φ(a)) and Φ(−a)/φ(a) = √(π/2)·erfcx(a/√2).
    return logPhi + Math.log(1 - a * Math.sqrt(Math.PI / 2) * erfcxPos(a / Math.SQRT2));
  }
  // Asymptotic series of the Mills ratio: h ≈ φ(z)/a²·(1 − 3/a² + 15/a⁴ − 105/a⁶ + 945/a⁸).
  const u = 1 / (a * a);
  return logPhi + Math.log(u) + Math.log(1 - 3 * u + 15 * u * u - 105 * u * u * u + 945 * u * u * u * u);
}

/** log EI; −Infinity only when sd is 0 and there is no improvement. */
export function logExpectedImprovement(mean: number, sd: number, best: number): number {
  if (!(sd > 1e-12)) return Math.log(Math.max(0, best - mean));
  return Math.log(sd) + logH((best - mean) / sd);
}
