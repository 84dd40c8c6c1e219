/**
 * The keys whose values differ between two records of settings, over both sides' keys (a key set on
 * one side only differs), compared as JSON. Resumes use it to name what changed.
 */
export function differingKeys(before: Record<string, unknown>, now: Record<string, unknown>): string[] {
  return [...new Set([...Object.keys(before), ...Object.keys(now)])].filter((k) => JSON.stringify(before[k]) !== JSON.stringify(now[k]));
}
