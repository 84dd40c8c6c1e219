/** Small helpers for self-contained HTML: escaping, and SVG line charts drawn without any script. */

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text from data (answers, questions, file names) for HTML text and attribute values. */
export const escapeHtml = (s: unknown): string => String(s).replace(/[&<>"']/g, (c) => ESCAPES[c]);

export interface Series {
  name: string;
  color: string;
  points: Array<[number, number]>;
}

/** A line chart as inline SVG with axes, ticks and a legend. */
export function lineChart(series: Series[], opts: { width?: number; height?: number; xLabel?: string; yLabel?: string; title?: string } = {}): string {
  const W = opts.width ?? 640;
  const H = opts.height ?? 280;
  const m = { l: 64, r: 16, t: 28, b: 40 };
  const all = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  if (all.length === 0) return `<svg width="${W}" height="${H}" role="img"><text x="10" y="20">no data</text></svg>`;
  const [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  const [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  const sx = (x: number) => m.l + ((x - x0) / (x1 - x0 || 1)) * (W - m.l - m.r);
  const sy = (y: number) => H - m.b - ((y - y0) / (y1 - y0 || 1)) * (H - m.t - m.b);
  const ticks = (a: number, b: number) => Array.from({ length: 5 }, (_, i) => a + ((b - a) * i) / 4);
  const fmt = (v: number) =>
    Math.abs(v - Math.round(v)) < 1e-9 ? String(Math.round(v)) : Math.abs(v) < 0.01 ? v.toExponential(1) : v.toPrecision(3);
  const grid = [
    ...ticks(y0, y1).map((v) => `<line x1="${m.l}" x2="${W - m.r}" y1="${sy(v).toFixed(1)}" y2="${sy(v).toFixed(1)}" stroke="#ddd"/><text x="${m.l - 6}" y="${(sy(v) + 4).toFixed(1)}" text-anchor="end" font-size="11">${fmt(v)}</text>`),
    ...ticks(x0, x1).map((v) => `<text x="${sx(v).toFixed(1)}" y="${H - m.b + 16}" text-anchor="middle" font-size="11">${fmt(v)}</text>`),
  ].join('');
  const lines = series
    .map((s) => {
      const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)).map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`);
      const dots = s.points.length <= 40 ? s.points.map(([x, y]) => `<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="2.5" fill="${s.color}"/>`).join('') : '';
      return `<polyline fill="none" stroke="${s.color}" stroke-width="1.6" points="${pts.join(' ')}"/>${dots}`;
    })
    .join('');
  const legend = series.map((s, i) => `<rect x="${m.l + 10 + i * 150}" y="8" width="12" height="3" fill="${s.color}"/><text x="${m.l + 26 + i * 150}" y="13" font-size="12">${escapeHtml(s.name)}</text>`).join('');
  const labels =
    (opts.xLabel ? `<text x="${(W + m.l) / 2}" y="${H - 6}" text-anchor="middle" font-size="12">${escapeHtml(opts.xLabel)}</text>` : '') +
    (opts.yLabel ? `<text transform="translate(14 ${(H - m.b + m.t) / 2}) rotate(-90)" text-anchor="middle" font-size="12">${escapeHtml(opts.yLabel)}</text>` : '');
  return `<svg width="${W}" height="${H}" role="img" aria-label="${escapeHtml(opts.title ?? 'chart')}"><rect width="${W}" height="${H}" fill="white"/>${grid}<line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" stroke="#333"/><line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}" stroke="#333"/>${lines}${legend}${labels}</svg>`;
}
