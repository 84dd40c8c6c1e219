import { exactMatch, lcsLength, normalizeAnswer, recited, rougeL, tokenF1 } from '../kernel/eval/metrics';

/** Longest common subsequence by brute force over the subsequences of the shorter list. */
function bruteLcs(a: string[], b: string[]): number {
  const [s, t] = a.length <= b.length ? [a, b] : [b, a];
  let best = 0;
  for (let mask = 0; mask < 1 << s.length; mask++) {
    const sub = s.filter((_, i) => mask & (1 << i));
    let j = 0;
    for (const tok of t) if (j < sub.length && sub[j] === tok) j++;
    if (j === sub.length) best = Math.max(best, sub.length);
  }
  return best;
}

describe('answer metrics', () => {
  test('normalisation drops case, punctuation and articles', () => {
    expect(normalizeAnswer('  The Brooklyn-Bridge, in 1883! ')).toBe('brooklyn bridge in 1883');
    expect(exactMatch('the Bronx.', 'Bronx')).toBe(1);
    expect(exactMatch('Bronx Zoo', 'Bronx')).toBe(0);
  });

  test('token F1 against a hand computation', () => {
    // prediction tokens: [frederick, law, olmsted] ; reference: [frederick, law, olmsted, and, calvert, vaux]
    // common 3, precision 1, recall 0.5 -> F1 = 2/3
    expect(tokenF1('Frederick Law Olmsted', 'Frederick Law Olmsted and Calvert Vaux')).toBeCloseTo(2 / 3, 10);
    // repeated tokens count once per occurrence: [new, new, york] vs [new, york]: common 2, p 2/3, r 1 -> 0.8
    expect(tokenF1('new new york', 'New York')).toBeCloseTo(0.8, 10);
    expect(tokenF1('Queens', 'Brooklyn')).toBe(0);
    expect(tokenF1('', '')).toBe(1);
    expect(tokenF1('', 'x')).toBe(0);
  });

  test('LCS equals a brute-force search on random token lists', () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let trial = 0; trial < 200; trial++) {
      const words = ['a', 'b', 'c', 'd'];
      const a = Array.from({ length: Math.floor(rnd() * 8) }, () => words[Math.floor(rnd() * 4)]);
      const b = Array.from({ length: Math.floor(rnd() * 8) }, () => words[Math.floor(rnd() * 4)]);
      expect(lcsLength(a, b)).toBe(bruteLcs(a, b));
    }
  });

  test('ROUGE-L F-measure against a hand computation', () => {
    // pred [opened, in, 1883], ref [brooklyn, bridge, opened, in, 1883]: LCS 3, p 1, r 0.6 -> 0.75
    expect(rougeL('opened in 1883', 'The Brooklyn Bridge opened in 1883')).toBeCloseTo(0.75, 10);
    // order matters for ROUGE-L but not for F1
    expect(rougeL('york new', 'new york')).toBeCloseTo(0.5, 10);
    expect(tokenF1('york new', 'new york')).toBe(1);
  });

  test('recited: a trained answer other than the reference, after normalisation', () => {
    const known = new Set(['bronx', 'in 1898'].map(normalizeAnswer));
    expect(recited('The Bronx', 'Queens', known)).toBe(1); // taught for another question
    expect(recited('the bronx.', 'The Bronx', known)).toBe(0); // right answer, not a recitation
    expect(recited('Bronx Zoo', 'Queens', known)).toBe(0); // not an answer it was taught
    expect(recited('In 1898!', 'In 1931', known)).toBe(1);
    expect(recited('anything', 'x', new Set())).toBe(0);
  });
});
