/**
 * Quality as colour: a perceptual scale (viridis, interpolated in Lab by chroma-js) from 0 (dark
 * purple, poor) to 1 (yellow, good), its inverse for people who recolour an output by picking a
 * colour, and the legend carried in the payload.
 */
import chroma from 'chroma-js';
import type { ColourScale } from '../../widget/src/payload';

export const SCALE_NAME = 'viridis';
const scale = chroma.scale('Viridis').mode('lab').domain([0, 1]);

export type { ColourScale };

const clamp01 = (q: number): number => (q < 0 ? 0 : q > 1 ? 1 : q);

/** '#rrggbb' of quality q in [0, 1] (values outside are clamped; NaN is an error). */
export function qualityColour(q: number): string {
  if (typeof q !== 'number' || Number.isNaN(q)) throw new RangeError(`quality must be a number in [0, 1], got ${q}`);
  return scale(clamp01(q)).hex();
}

// A fine table of the scale, so the inverse is a nearest-neighbour search in Lab.
const TABLE_SIZE = 256;
const table = Array.from({ length: TABLE_SIZE + 1 }, (_, i) => {
  const q = i / TABLE_SIZE;
  return { q, lab: scale(q).lab() };
});

/**
 * The quality whose colour is nearest (Euclidean distance in CIE Lab) to a CSS colour, so a person can
 * recolour an output with any colour picker: colours off the scale map to the nearest point on it.
 */
export function colourToQuality(colour: string): number {
  if (!chroma.valid(colour)) throw new RangeError(`not a colour: ${JSON.stringify(colour)}; give a CSS colour such as "#fde725" or "rgb(68,1,84)"`);
  const [l, a, b] = chroma(colour).lab();
  let best = table[0];
  let bestD = Infinity;
  for (const t of table) {
    const d = (t.lab[0] - l) ** 2 + (t.lab[1] - a) ** 2 + (t.lab[2] - b) ** 2;
    if (d < bestD) {
      bestD = d;
      best = t;
    }
  }
  return best.q;
}

/** The scale as data: what the widget and the HTML fallback draw the legend from. */
export function colourScale(stopCount = 11): ColourScale {
  return {
    name: SCALE_NAME,
    domain: [0, 1],
    stops: Array.from({ length: stopCount }, (_, i) => {
      const q = i / (stopCount - 1);
      return [q, qualityColour(q)] as [number, string];
    }),
    ticks: [
      [0, 'poor'],
      [0.5, 'fair'],
      [1, 'good'],
    ],
    title: 'quality',
  };
}
