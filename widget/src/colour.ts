/**
 * The payload's colour scale on the widget's side. The kernel already coloured every node, sample,
 * run, output and input, so the view uses those colours as they are; the scale itself is needed only
 * for the legend (plotly's colorscale), the rating palette, and the rare colour the payload lacks.
 */
import type { ColourScale } from './payload';

/** plotly colorscale: positions rescaled from the scale's domain to [0, 1]. */
export function plotlyColorscale(scale: ColourScale): Array<[number, string]> {
  const [d0, d1] = scale.domain;
  return scale.stops.map(([q, c]) => [(q - d0) / (d1 - d0), c]);
}

const rgb = (hex: string): [number, number, number] => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)) as [number, number, number];
const hex = (c: number[]): string => `#${c.map((v) => Math.round(Math.min(255, Math.max(0, v))).toString(16).padStart(2, '0')).join('')}`;

/** Colour of quality q: linear between the two stops around it (the stops are dense enough for this). */
export function colourAt(scale: ColourScale, q: number): string {
  const s = scale.stops;
  if (!(q > s[0][0])) return s[0][1];
  if (q >= s[s.length - 1][0]) return s[s.length - 1][1];
  const i = s.findIndex(([p]) => p >= q);
  const [[q0, c0], [q1, c1]] = [s[i - 1], s[i]];
  const t = (q - q0) / (q1 - q0);
  const [a, b] = [rgb(c0), rgb(c1)];
  return hex(a.map((v, k) => v + t * (b[k] - v)));
}

/** What a person picks from when rating: one swatch per stop of the scale. */
export const ratingPalette = (scale: ColourScale): Array<{ quality: number; colour: string }> => scale.stops.map(([quality, colour]) => ({ quality, colour }));

/** Relative luminance (sRGB), to choose readable text on a colour. */
function luminance(colour: string): number {
  const lin = rgb(colour).map((v) => {
    const c = v / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2];
}

/** Black or white, whichever reads better on the colour. */
export const textOn = (colour: string): string => (luminance(colour) > 0.3 ? '#000000' : '#ffffff');
