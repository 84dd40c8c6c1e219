import { makeRng, nextTokenDistribution, sampleToken, validateSamplingParams } from '../kernel/sample/sampler';
import { utf8Step } from '../kernel/sample/utf8';
import { utf8Prefix } from './engine-helpers';

const P = [0.5, 0.2, 0.15, 0.1, 0.05];
const logits = Float32Array.from(P.map(Math.log));

/** Expect two distributions to agree entrywise (float32 logits: ~1e-7 relative). */
function expectClose(actual: ArrayLike<number>, expected: number[], tol = 1e-6) {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) expect(Math.abs(actual[i] - expected[i])).toBeLessThan(tol);
}
const normalise = (xs: number[]) => xs.map((x) => x / xs.reduce((a, b) => a + b, 0));

describe('nextTokenDistribution', () => {
  it('temperature 1 reproduces the distribution', () => {
    expectClose(nextTokenDistribution(logits, {}), P);
    expectClose(nextTokenDistribution(logits, { temperature: 1, topK: 0, topP: 1 }), P);
  });

  it('temperature 0.5 squares and renormalises', () => {
    expectClose(nextTokenDistribution(logits, { temperature: 0.5 }), normalise(P.map((p) => p * p)));
  });

  it('temperature 0 is one-hot on the argmax, lowest index on ties', () => {
    expectClose(nextTokenDistribution(logits, { temperature: 0 }), [1, 0, 0, 0, 0]);
    expectClose(nextTokenDistribution([1, 3, 3, 2], { temperature: 0 }), [0, 1, 0, 0]);
  });

  it('top-k keeps the k highest', () => {
    expectClose(nextTokenDistribution(logits, { topK: 2 }), [0.5 / 0.7, 0.2 / 0.7, 0, 0, 0]);
    expectClose(nextTokenDistribution(logits, { topK: 10 }), P); // k beyond the vocabulary: no-op
    // Ties at the k-th value: the lowest indices, exactly k tokens.
    const d = nextTokenDistribution([0, 1, 1, 1, 0], { topK: 2 });
    expectClose(d, [0, 0.5, 0.5, 0, 0]);
  });

  it('top-p keeps the smallest prefix reaching p', () => {
    expectClose(nextTokenDistribution(logits, { topP: 0.8 }), [0.5 / 0.85, 0.2 / 0.85, 0.15 / 0.85, 0, 0]);
    expectClose(nextTokenDistribution(logits, { topP: 0.5 }), [1, 0, 0, 0, 0]);
    expectClose(nextTokenDistribution(logits, { topP: 0.7 }), [0.5 / 0.7, 0.2 / 0.7, 0, 0, 0]); // boundary
    expectClose(nextTokenDistribution(logits, { topP: 1e-9 }), [1, 0, 0, 0, 0]); // at least one
  });

  it('applies temperature, then top-k, then top-p', () => {
    // T = 0.5: [25, 4, 2.25, 1, 0.25] / 32.5; top-k 3 -> [25, 4, 2.25] / 31.25; top-p 0.9 -> 25 + 4 >= 0.9 * 31.25.
    expectClose(nextTokenDistribution(logits, { temperature: 0.5, topK: 3, topP: 0.9 }), [25 / 29, 4 / 29, 0, 0, 0]);
  });

  it('is numerically stable and order-independent', () => {
    const big = Float32Array.from(P.map((p) => Math.log(p) + 1e4));
    expectClose(nextTokenDistribution(big, {}), P, 1e-3); // float32 at 1e4 keeps ~1e-3 absolute
    const shuffled = [P[3], P[0], P[4], P[2], P[1]].map(Math.log);
    expectClose(nextTokenDistribution(shuffled, { topK: 2 }), [0, 0.5 / 0.7, 0, 0, 0.2 / 0.7]);
    expectClose(nextTokenDistribution([0, -Infinity, 0], {}), [0.5, 0, 0.5]);
    expectClose(nextTokenDistribution([0, 0], { temperature: 1e-6 }), [0.5, 0.5]);
    expect(() => nextTokenDistribution([0, NaN], {})).toThrow(/NaN/);
  });
});

describe('sampleToken', () => {
  it('greedy picks the argmax without the rng', () => {
    const rng = jest.fn(() => 0.99);
    expect(sampleToken(logits, { temperature: 0 }, rng)).toBe(0);
    expect(sampleToken([0, 5, 1], { temperature: 0 }, rng)).toBe(1);
    expect(rng).not.toHaveBeenCalled();
  });

  it('draws with the empirical frequencies of the distribution', () => {
    const cases: Array<[object, number[]]> = [
      [{}, P],
      [{ temperature: 0.5 }, normalise(P.map((p) => p * p))],
      [{ topK: 2 }, [0.5 / 0.7, 0.2 / 0.7, 0, 0, 0]],
      [{ topP: 0.8 }, [0.5 / 0.85, 0.2 / 0.85, 0.15 / 0.85, 0, 0]],
    ];
    for (const [params, expected] of cases) {
      const rng = makeRng(123);
      const counts = new Array(5).fill(0);
      const N = 20000;
      for (let i = 0; i < N; i++) counts[sampleToken(logits, params, rng)]++;
      counts.forEach((c, i) => {
        expect(Math.abs(c / N - expected[i])).toBeLessThan(0.01);
        if (expected[i] === 0) expect(c).toBe(0); // excluded tokens are never drawn
      });
    }
  });

  it('never returns an excluded token even when rng gives ~1', () => {
    expect(sampleToken(logits, { topK: 2 }, () => 0.9999999999)).toBe(1);
  });
});

describe('makeRng', () => {
  it('same seed gives the same sequence, another seed another', () => {
    const draw = (seed: number | string) => {
      const r = makeRng(seed);
      return Array.from({ length: 50 }, () => sampleToken(logits, {}, r));
    };
    expect(draw(1)).toEqual(draw(1));
    expect(draw('abc')).toEqual(draw('abc'));
    expect(draw(1)).not.toEqual(draw(2));
    const r = makeRng(5);
    for (let i = 0; i < 1000; i++) {
      const u = r();
      expect(u >= 0 && u < 1).toBe(true);
    }
  });
});

describe('validateSamplingParams', () => {
  it.each([
    [{ temperature: -1 }, /temperature/],
    [{ temperature: NaN }, /temperature/],
    [{ temperature: Infinity }, /temperature/],
    [{ topK: 1.5 }, /topK/],
    [{ topK: -1 }, /topK/],
    [{ topK: NaN }, /topK/],
    [{ topP: 0 }, /topP/],
    [{ topP: 1.5 }, /topP/],
    [{ topP: NaN }, /topP/],
  ])('rejects %p', (params, field) => {
    expect(() => validateSamplingParams(params)).toThrow(field);
    expect(() => nextTokenDistribution(logits, params)).toThrow(field);
  });

  it('names the valid range', () => {
    expect(() => validateSamplingParams({ topP: 2 })).toThrow('topP must be in (0, 1]');
    expect(() => validateSamplingParams({ temperature: -0.1 })).toThrow('temperature must be a finite number >= 0');
    expect(() => validateSamplingParams({ temperature: 0, topK: 0, topP: 1 })).not.toThrow();
  });
});

describe('utf8Step', () => {
  const automatonAccepts = (seq: number[]) => seq.reduce((s, b) => utf8Step(s, b), 0) !== -1;

  it('accepts exactly the byte sequences the WHATWG decoder accepts: every pair, and random runs of 3 to 6 bytes', () => {
    for (let a = 0; a < 256; a++) for (let b = 0; b < 256; b++) expect(automatonAccepts([a, b])).toBe(utf8Prefix([a, b]));
    const r = makeRng('utf8');
    // Bytes drawn mostly from the lead and continuation ranges, where the table's edge cases are.
    const draw = () => (r() < 0.5 ? 0x80 + Math.floor(r() * 0x40) : r() < 0.8 ? 0xc0 + Math.floor(r() * 0x40) : Math.floor(r() * 0x80));
    let accepted = 0;
    for (let i = 0; i < 20000; i++) {
      const seq = Array.from({ length: 3 + Math.floor(r() * 4) }, draw);
      const want = utf8Prefix(seq);
      expect({ seq, ok: automatonAccepts(seq) }).toEqual({ seq, ok: want });
      if (want) accepted++;
    }
    expect(accepted).toBeGreaterThan(500); // both outcomes were exercised
  });

  it('a finished character returns to the start state: E2 82 AC (€) and F0 9F 98 80 (😀)', () => {
    expect([0xe2, 0x82, 0xac].reduce(utf8Step, 0)).toBe(0);
    expect([0xf0, 0x9f, 0x98, 0x80].reduce(utf8Step, 0)).toBe(0);
    expect([0xe0, 0x80].reduce(utf8Step, 0)).toBe(-1); // overlong
    expect([0xed, 0xa0].reduce(utf8Step, 0)).toBe(-1); // surrogate
  });
});
