/** Learning-rate schedules: linear warmup, then cosine or linear decay to minLrRatio · peak. */
export type ScheduleKind = 'cosine' | 'linear' | 'constant';
export const SCHEDULES: readonly ScheduleKind[] = ['cosine', 'linear', 'constant'];

export interface Schedule {
  kind: ScheduleKind;
  peak: number;
  warmupSteps: number;
  totalSteps: number;
  minLrRatio: number;
}

/** Learning rate of update number `step` (0-based). */
export function learningRateAt(s: Schedule, step: number): number {
  if (step < s.warmupSteps) return (s.peak * (step + 1)) / s.warmupSteps;
  if (s.kind === 'constant') return s.peak;
  const span = Math.max(1, s.totalSteps - s.warmupSteps);
  const progress = Math.min(1, (step - s.warmupSteps) / span);
  const decay = s.kind === 'cosine' ? 0.5 * (1 + Math.cos(Math.PI * progress)) : 1 - progress;
  return s.peak * (s.minLrRatio + (1 - s.minLrRatio) * decay);
}
