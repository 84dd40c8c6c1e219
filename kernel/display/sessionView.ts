/**
 * The text/html fallback of a ChromaTune session, for classic Notebook and nbconvert's HTML where
 * the 3-D widget does not run: every parameter node as a small inline-SVG oblique view of its unit
 * cube, the colour legend, the outputs coloured by quality, the outlier inputs and the loss curves.
 * No script and no network: what is drawn is all in the markup, and every text from data is escaped.
 */
import { MIME_TYPE, sessionPayload, type ChromaPayload, type NodePayload } from '../chroma/payload';
import type { ChromaSession } from '../chroma/session';
import { cornerOf, type Vec3 } from '../chroma/node';
import { clip, fmtNum, qualityChip, safeColour, themedBlock } from './bundles';
import { escapeHtml as e, lineChart, type Series } from './html';
import type { MimeBundle } from './mime';

export interface SessionViewOptions {
  /** Outputs listed, newest run first (default 24). */
  maxOutputs?: number;
  /** Outlier inputs listed, worst first (default 12). */
  maxInputs?: number;
  /** Runs listed, newest first (default 10). */
  maxRuns?: number;
}

/* ------------------------------------------------------------ projection */

/**
 * An oblique view (azimuth 25°, elevation 22°): unlike a true isometric view it keeps the corners
 * (0,0,0) and (1,1,1) apart, so the cube's main diagonal, where nodes start, stays readable.
 * x runs right and toward the viewer, y into the page, z up.
 */
const AZ = (25 * Math.PI) / 180;
const EL = (22 * Math.PI) / 180;

/** Unit-cube point → [screen right, screen up, toward viewer], centred on the cube's centre. */
function view(p: Vec3): Vec3 {
  const [x, y, z] = [p[0] - 0.5, p[1] - 0.5, p[2] - 0.5];
  const across = x * Math.cos(AZ) + y * Math.sin(AZ);
  const away = -x * Math.sin(AZ) + y * Math.cos(AZ);
  return [across, z * Math.cos(EL) + away * Math.sin(EL), -away * Math.cos(EL) + z * Math.sin(EL)];
}

const CORNERS: Vec3[] = Array.from({ length: 8 }, (_, c) => cornerOf(c));
const CUBE_W = 250;
const CUBE_H = 214;
/** Room around the cube for the axis labels. */
const PAD = { l: 26, r: 26, t: 12, b: 30 };

const FIT = (() => {
  const v = CORNERS.map(view);
  const [x0, x1] = [Math.min(...v.map((q) => q[0])), Math.max(...v.map((q) => q[0]))];
  const [y0, y1] = [Math.min(...v.map((q) => q[1])), Math.max(...v.map((q) => q[1]))];
  const s = Math.min((CUBE_W - PAD.l - PAD.r) / (x1 - x0), (CUBE_H - PAD.t - PAD.b) / (y1 - y0));
  return { s, cx: PAD.l + (CUBE_W - PAD.l - PAD.r) / 2 - (s * (x0 + x1)) / 2, cy: PAD.t + (CUBE_H - PAD.t - PAD.b) / 2 + (s * (y0 + y1)) / 2 };
})();

/** Unit-cube point → SVG pixel [x, y] and its depth (larger is nearer). */
function px(p: Vec3): { x: number; y: number; depth: number } {
  const [a, b, d] = view(p);
  return { x: FIT.cx + FIT.s * a, y: FIT.cy - FIT.s * b, depth: d };
}

const f1 = (v: number): string => v.toFixed(1);
const xy = (p: Vec3): string => {
  const q = px(p);
  return `${f1(q.x)},${f1(q.y)}`;
};
const fmtVec = (p: Vec3): string => `(${p.map((v) => v.toFixed(2)).join(', ')})`;
const sub = (a: Vec3, b: Vec3): Vec3 => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
const norm = (a: Vec3): number => Math.hypot(a[0], a[1], a[2]);
const clamp01 = (v: number): number => Math.max(0, Math.min(1, v));
const finiteVec = (p: unknown): p is Vec3 => Array.isArray(p) && p.length === 3 && p.every((v) => typeof v === 'number' && Number.isFinite(v));

/** The corner farthest from the viewer: the three edges meeting there are hidden behind the cube. */
const FAR = CORNERS.reduce((far, c, i) => (px(c).depth < px(CORNERS[far]).depth ? i : far), 0);

/** The three silhouette edges the axis names sit on: one per axis, from low to high. */
const AXIS_EDGES: Array<[Vec3, Vec3]> = [
  [[0, 0, 0], [1, 0, 0]],
  [[1, 0, 0], [1, 1, 0]],
  [[0, 0, 0], [0, 0, 1]],
];

const ARROW = '#d1495b';

/* ---------------------------------------------------------------- a node */

function cubeEdges(): string {
  const out: string[] = [];
  for (let a = 0; a < 8; a++) {
    for (const bit of [1, 2, 4]) {
      const b = a | bit;
      if (b === a) continue;
      const hidden = a === FAR || b === FAR;
      out.push(`<line x1="${f1(px(CORNERS[a]).x)}" y1="${f1(px(CORNERS[a]).y)}" x2="${f1(px(CORNERS[b]).x)}" y2="${f1(px(CORNERS[b]).y)}" stroke="#8b949e" stroke-width="1"${hidden ? ' stroke-dasharray="3 3" opacity="0.6"' : ''}/>`);
    }
  }
  return out.join('');
}

/** Each axis name along its edge, reading in the direction of increase. */
function axisLabels(node: NodePayload): string {
  const centre = px([0.5, 0.5, 0.5]);
  return AXIS_EDGES.map(([lo, hi], a) => {
    const [p, q] = [px(lo), px(hi)];
    const mid = { x: (p.x + q.x) / 2, y: (p.y + q.y) / 2 };
    let angle = (Math.atan2(q.y - p.y, q.x - p.x) * 180) / Math.PI;
    let label = `${node.axes[a]?.name ?? 'xyz'[a]} →`;
    if (angle > 90 || angle < -90) {
      angle += 180;
      label = `← ${node.axes[a]?.name ?? 'xyz'[a]}`;
    }
    // Push the label off the edge, away from the cube.
    const [dx, dy] = [mid.x - centre.x, mid.y - centre.y];
    const len = Math.hypot(dx, dy) || 1;
    const at = { x: mid.x + (11 * dx) / len, y: mid.y + (11 * dy) / len };
    return `<text x="${f1(at.x)}" y="${f1(at.y)}" transform="rotate(${f1(angle)} ${f1(at.x)} ${f1(at.y)})" text-anchor="middle" dominant-baseline="middle" font-size="11" fill="currentColor">${e(label)}</text>`;
  }).join('');
}

/** The quality field as coloured points, far ones first; size and opacity grow with certainty. */
function fieldPoints(node: NodePayload): string {
  return node.field.samples
    .filter((s) => finiteVec(s.p))
    .map((s) => ({ s, q: px(s.p) }))
    .sort((a, b) => a.q.depth - b.q.depth)
    .map(({ s, q }) => {
      const certainty = 1 - clamp01((Number.isFinite(s.sd) ? s.sd : 0.5) / 0.5);
      return `<circle cx="${f1(q.x)}" cy="${f1(q.y)}" r="${(1.8 + 2.7 * certainty).toFixed(2)}" fill="${safeColour(s.colour)}" opacity="${(0.35 + 0.6 * certainty).toFixed(2)}"/>`;
    })
    .join('');
}

/** The runs' positions in order, joined: where the node has been. */
function trail(node: NodePayload, colourOf: RunColour): string {
  const pts = node.trail.filter((t) => finiteVec(t.p));
  if (!pts.length) return '';
  const line = pts.length > 1 ? `<polyline points="${pts.map((t) => xy(t.p)).join(' ')}" fill="none" stroke="currentColor" stroke-width="1" stroke-dasharray="2 2" opacity="0.7"/>` : '';
  return (
    line +
    pts
      .map((t) => {
        const q = px(t.p);
        return `<circle cx="${f1(q.x)}" cy="${f1(q.y)}" r="2.6" fill="${safeColour(colourOf(t.runId, t.quality))}" stroke="currentColor" stroke-width="0.6"><title>${e(t.runId)}: quality ${e(fmtNum(t.quality, 3))} at ${fmtVec(t.p)}</title></circle>`;
      })
      .join('')
  );
}

/** Radius of the node's marker with its ring; lines and the arrow start at its edge. */
const MARKER_R = 9;

/** The 8 sub-weights as lines from the node toward its corners: length and width grow with the sub-weight. */
function cornerLines(node: NodePayload): string {
  const p = node.position;
  const from = px(p);
  return CORNERS.map((c, i) => {
    const s = node.corners[i];
    if (!(typeof s === 'number' && Number.isFinite(s) && s > 0)) return '';
    const d = sub(c, p);
    const dist = norm(d);
    if (dist < 1e-9) return '';
    const len = Math.min(dist, 0.12 * s);
    const to = px([p[0] + (d[0] / dist) * len, p[1] + (d[1] / dist) * len, p[2] + (d[2] / dist) * len]);
    // Shifted out to the marker's edge so the marker hides none of the length.
    const [dx, dy] = [to.x - from.x, to.y - from.y];
    const l = Math.hypot(dx, dy) || 1;
    const [ox, oy] = [(MARKER_R * dx) / l, (MARKER_R * dy) / l];
    return `<line x1="${f1(from.x + ox)}" y1="${f1(from.y + oy)}" x2="${f1(to.x + ox)}" y2="${f1(to.y + oy)}" stroke="currentColor" stroke-width="${(0.7 + 0.45 * s).toFixed(2)}" stroke-linecap="round" opacity="0.7"><title>corner (${c.join(',')}): sub-weight ${s.toFixed(2)}</title></line>`;
  }).join('');
}

/** The direction of improvement as an arrow; its length grows with the slope. */
function improvementArrow(node: NodePayload): string {
  const d = node.improvement;
  if (!finiteVec(d) || norm(d) < 1e-9) return '';
  const u = d.map((v) => v / norm(d)) as Vec3;
  const len = Math.min(0.42, 0.14 + 0.5 * (Number.isFinite(node.slope) ? node.slope : 0));
  const p = node.position;
  const a = px(p);
  const b = px([p[0] + u[0] * len, p[1] + u[1] * len, p[2] + u[2] * len]);
  const [dx, dy] = [b.x - a.x, b.y - a.y];
  const l = Math.hypot(dx, dy);
  const title = `<title>toward higher quality ${fmtVec(u)}, slope ${fmtNum(node.slope, 3)}</title>`;
  // Pointing almost straight at (or away from) the viewer: a ring instead of a flat arrow.
  if (l < 4) return `<circle cx="${f1(a.x)}" cy="${f1(a.y)}" r="11" fill="none" stroke="${ARROW}" stroke-width="1.8">${title}</circle>`;
  const [ux, uy] = [dx / l, dy / l];
  // From the marker's edge, so its whole length shows.
  const start = { x: a.x + MARKER_R * ux, y: a.y + MARKER_R * uy };
  const tip = { x: b.x + MARKER_R * ux, y: b.y + MARKER_R * uy };
  const head = [
    [tip.x, tip.y],
    [tip.x - 8 * ux + 4 * uy, tip.y - 8 * uy - 4 * ux],
    [tip.x - 8 * ux - 4 * uy, tip.y - 8 * uy + 4 * ux],
  ];
  return `<g>${title}<line x1="${f1(start.x)}" y1="${f1(start.y)}" x2="${f1(tip.x - 6 * ux)}" y2="${f1(tip.y - 6 * uy)}" stroke="${ARROW}" stroke-width="2.2" stroke-linecap="round"/><polygon points="${head.map(([x, y]) => `${f1(x)},${f1(y)}`).join(' ')}" fill="${ARROW}"/></g>`;
}

/** The node itself, coloured by its quality, with a drop line to the floor for depth. */
function nodeMarker(node: NodePayload): string {
  const p = node.position;
  const a = px(p);
  const floor = px([p[0], p[1], 0]);
  return (
    `<line x1="${f1(a.x)}" y1="${f1(a.y)}" x2="${f1(floor.x)}" y2="${f1(floor.y)}" stroke="currentColor" stroke-width="0.8" stroke-dasharray="1 2" opacity="0.6"/>` +
    `<path d="M${f1(floor.x - 3)},${f1(floor.y)}h6M${f1(floor.x)},${f1(floor.y - 2)}v4" stroke="currentColor" stroke-width="0.8" opacity="0.6"/>` +
    `<circle cx="${f1(a.x)}" cy="${f1(a.y)}" r="${MARKER_R}" fill="none" stroke="currentColor" stroke-width="1.2"/>` +
    `<circle cx="${f1(a.x)}" cy="${f1(a.y)}" r="7" fill="${safeColour(node.colour)}" stroke="var(--ct-bg,#fff)" stroke-width="1.6"><title>${e(node.label)} at ${fmtVec(p)}: quality ${node.quality.mean.toFixed(3)} ± ${node.quality.sd.toFixed(3)}</title></circle>`
  );
}

/** Effective settings in one line: a single value, or the range over groups. */
function valuesLine(values: Record<string, number>): string {
  const v = Object.entries(values).filter(([, x]) => typeof x === 'number' && Number.isFinite(x));
  if (v.length === 0) return '';
  if (v.length <= 2) return v.map(([k, x]) => `${k} ${fmtNum(x, 3)}`).join(', ');
  const xs = v.map(([, x]) => x);
  const [lo, hi] = [Math.min(...xs), Math.max(...xs)];
  return lo === hi ? `${fmtNum(lo, 3)} in all ${v.length} groups` : `${fmtNum(lo, 3)} … ${fmtNum(hi, 3)} over ${v.length} groups`;
}

/** A run's colour: its own from the payload, else its quality read off the scale. */
type RunColour = (runId: string, quality: number) => string;

function nodeCard(node: NodePayload, colourOf: RunColour): string {
  const svg =
    `<svg class="ct-cube" data-node="${e(node.name)}" width="${CUBE_W}" height="${CUBE_H}" viewBox="0 0 ${CUBE_W} ${CUBE_H}" role="img" aria-label="${e(node.label)}: position and quality field">` +
    cubeEdges() +
    fieldPoints(node) +
    trail(node, colourOf) +
    cornerLines(node) +
    improvementArrow(node) +
    nodeMarker(node) +
    axisLabels(node) +
    '</svg>';
  const axes = node.axes.map((a, i) => `<div><b>${'xyz'[i]}</b> ${e(a.name)}: ${e(a.low)} → ${e(a.high)}</div>`).join('');
  const values = valuesLine(node.values);
  return (
    `<div class="ct-node"><div class="ct-node-head"><span class="ct-node-name" title="${e(node.name)}">${e(node.label)}</span>${qualityChip(node.quality.mean, node.colour, `quality ${node.quality.mean.toFixed(3)} ± ${node.quality.sd.toFixed(3)}`)}<span class="ct-sd">± ${node.quality.sd.toFixed(2)}</span></div>` +
    svg +
    `<div class="ct-axes">${axes}</div><div class="ct-note">at ${fmtVec(node.position)} · slope ${e(fmtNum(node.slope, 2))}${values ? `<br>settings: ${e(values)}` : ''}</div></div>`
  );
}

/* ------------------------------------------------------- other sections */

function legend(p: ChromaPayload): string {
  const [d0, d1] = p.scale.domain;
  const at = (q: number) => (100 * clamp01((q - d0) / (d1 - d0 || 1))).toFixed(1);
  const gradient = p.scale.stops.map(([q, c]) => `${safeColour(c)} ${at(q)}%`).join(', ');
  const ticks = p.scale.ticks
    .map(([q, label]) => {
      const pos = Number(at(q));
      const shift = pos <= 2 ? '0' : pos >= 98 ? '-100%' : '-50%';
      return `<span style="left:${pos}%;transform:translateX(${shift})">${e(fmtNum(q, 2))} ${e(label)}</span>`;
    })
    .join('');
  const key =
    '<div class="ct-key"><span><i class="ct-k-node"></i>node, coloured by its quality</span><span><i class="ct-k-field"></i>quality field (larger = surer)</span>' +
    `<span><i class="ct-k-corner"></i>corner sub-weights</span><span><i class="ct-k-arrow"></i>toward higher quality</span><span><i class="ct-k-trail"></i>runs so far</span></div>`;
  return `<div class="ct-legend"><span class="ct-legend-title">${e(p.scale.title)}</span><div class="ct-scale"><div class="ct-bar" style="background:linear-gradient(to right, ${gradient})"></div><div class="ct-ticks">${ticks}</div></div></div>${key}`;
}

function runsTable(p: ChromaPayload, max: number): string {
  if (!p.runs.length) return '';
  const rows = [...p.runs]
    .reverse()
    .slice(0, max)
    .map((r) => {
      const m = r.metrics;
      return `<tr><td>${e(r.id)}</td><td>${qualityChip(r.quality, r.colour)}</td><td class="num">${e(fmtNum(m.valLoss, 4))}</td><td class="num">${e(fmtNum(m.perplexity, 4))}</td><td class="num">${e(fmtNum(m.tokenF1, 3))}</td><td class="num">${e(fmtNum(m.seconds, 3))}</td></tr>`;
    })
    .join('');
  const more = p.runs.length > max ? `<div class="ct-note">newest ${max} of ${p.runs.length} runs</div>` : '';
  return `<div class="ct-h">Runs</div><table><thead><tr><th>run</th><th>quality</th><th class="num">val loss</th><th class="num">perplexity</th><th class="num">token F1</th><th class="num">seconds</th></tr></thead><tbody>${rows}</tbody></table>${more}`;
}

function outputsTable(p: ChromaPayload, max: number): string {
  if (!p.outputs.length) return '<div class="ct-h">Outputs</div><div class="ct-note">No outputs yet: a run samples them.</div>';
  const order = new Map(p.runs.map((r, i) => [r.id, i]));
  const shown = p.outputs
    .map((o, i) => ({ o, i }))
    .sort((a, b) => (order.get(b.o.runId) ?? -1) - (order.get(a.o.runId) ?? -1) || a.i - b.i)
    .slice(0, max);
  const rated = p.outputs.filter((o) => o.rated).length;
  const rows = shown
    .map(({ o }) => {
      const mark = o.rated ? `<span class="ct-rated" title="rated by a person (automatic ${o.autoQuality.toFixed(2)})">★ rated</span>` : '';
      return `<tr><td class="ct-q" style="border-left:4px solid ${safeColour(o.colour)}">${qualityChip(o.quality, o.colour)}${mark}</td><td class="ct-text">${e(o.question)}</td><td class="ct-text ct-answer">${e(o.text)}</td><td class="ct-text ct-ref">${e(o.reference)}</td><td class="ct-id">${e(o.id)}</td></tr>`;
    })
    .join('');
  const more = p.outputs.length > max ? `<div class="ct-note">${max} of ${p.outputs.length} outputs, newest run first</div>` : '';
  return `<div class="ct-h">Outputs <span class="ct-count">${p.outputs.length} · ${rated} rated</span></div><table><thead><tr><th>quality</th><th>question</th><th>output</th><th>reference</th><th>id</th></tr></thead><tbody>${rows}</tbody></table>${more}`;
}

function outliersTable(p: ChromaPayload, max: number): string {
  if (!p.inputs.length) return '<div class="ct-h">Outlier inputs</div><div class="ct-note">Inputs not judged yet.</div>';
  const outliers = p.inputs.filter((i) => i.outlier).sort((a, b) => b.score - a.score);
  if (!outliers.length) return `<div class="ct-h">Outlier inputs</div><div class="ct-note">None of ${p.inputs.length} inputs flagged.</div>`;
  const rows = outliers
    .slice(0, max)
    .map(
      (i) =>
        `<tr><td class="ct-q" style="border-left:4px solid ${safeColour(i.colour)}">${qualityChip(i.quality, i.colour)}</td><td class="ct-id">${e(i.id ?? `#${i.index}`)}</td><td class="ct-text">${e(i.question)}</td><td class="ct-text">${e(i.answer)}</td><td class="num">${e(fmtNum(i.score, 3))}</td><td><ul class="ct-reasons">${i.reasons.map((r) => `<li>${e(r)}</li>`).join('')}</ul></td></tr>`,
    )
    .join('');
  const more = outliers.length > max ? `<div class="ct-note">worst ${max} of ${outliers.length}</div>` : '';
  return `<div class="ct-h">Outlier inputs <span class="ct-count">${outliers.length} of ${p.inputs.length}</span></div><table><thead><tr><th>quality</th><th>input</th><th>question</th><th>answer</th><th class="num">score</th><th>why</th></tr></thead><tbody>${rows}</tbody></table>${more}`;
}

const CURVE_COLOURS = [
  ['#1f77b4', '#d62728'],
  ['#7f7f7f', '#e377c2'],
];

/** Training and validation loss of the newest run and of the best one. */
function lossSection(p: ChromaPayload): string {
  const withData = p.lossCurves.filter((c) => c.train.length || c.validation.length);
  if (!withData.length) return '';
  const latest = withData.at(-1)!;
  const quality = new Map(p.runs.map((r) => [r.id, r.quality]));
  const best = withData.reduce((b, c) => ((quality.get(c.runId) ?? -Infinity) > (quality.get(b.runId) ?? -Infinity) ? c : b), withData[0]);
  const shown = best === latest ? [latest] : [latest, best];
  // lineChart spaces legend entries 150 px apart: short names, and which run is which in a note.
  const series: Series[] = shown.flatMap((c, k) =>
    [
      { name: `${clip(c.runId, 8)} training`, color: CURVE_COLOURS[k][0], points: c.train },
      { name: `${clip(c.runId, 8)} validation`, color: CURVE_COLOURS[k][1], points: c.validation },
    ].filter((s) => s.points.length),
  );
  const note = shown.length > 1 ? `<span class="ct-count">${e(latest.runId)} newest · ${e(best.runId)} best</span>` : `<span class="ct-count">${e(latest.runId)}</span>`;
  const width = Math.max(520, 64 + 150 * series.length + 16);
  return `<div class="ct-h">Loss ${note}</div><div class="ct-chart">${lineChart(series, { width, height: 220, xLabel: 'step', yLabel: 'loss (nats/token)', title: 'loss curves' })}</div>`;
}

const SESSION_CSS = `
.R .ct-head{display:flex;flex-wrap:wrap;align-items:baseline;gap:4px 14px;margin-bottom:6px}
.R .ct-legend{display:flex;align-items:center;gap:10px;margin:4px 0 2px}
.R .ct-legend-title{font-weight:600}
.R .ct-scale{width:260px}
.R .ct-bar{height:12px;border-radius:3px;border:1px solid var(--ct-line)}
.R .ct-ticks{position:relative;height:16px;font-size:11px;color:var(--ct-muted)}
.R .ct-ticks span{position:absolute;top:1px;white-space:nowrap}
.R .ct-key{display:flex;flex-wrap:wrap;gap:2px 14px;font-size:11px;color:var(--ct-muted);margin-bottom:6px}
.R .ct-key i{display:inline-block;vertical-align:middle;margin-right:4px}
.R .ct-k-node{width:10px;height:10px;border-radius:50%;background:#35b779;border:1.5px solid var(--ct-fg)}
.R .ct-k-field{width:6px;height:6px;border-radius:50%;background:#31688e}
.R .ct-k-corner{width:14px;height:3px;background:var(--ct-fg);opacity:.65}
.R .ct-k-arrow{width:14px;height:2px;background:${ARROW};border-right:4px solid ${ARROW}}
.R .ct-k-trail{width:14px;border-top:1.5px dashed var(--ct-fg)}
.R .ct-nodes{display:flex;flex-wrap:wrap;gap:10px}
.R .ct-node{background:var(--ct-panel);border:1px solid var(--ct-line);border-radius:6px;padding:6px 8px;width:${CUBE_W + 18}px}
.R .ct-node-head{display:flex;align-items:center;gap:6px}
.R .ct-node-name{font-weight:600;flex:1}
.R .ct-sd{font-size:11px;color:var(--ct-muted)}
.R svg.ct-cube{display:block;overflow:visible;color:var(--ct-fg);max-width:none}
.R .ct-axes{font-size:11px;color:var(--ct-muted);line-height:1.35}
.R .ct-axes b{color:var(--ct-fg);font-weight:600;margin-right:2px}
.R .ct-count{font-weight:400;color:var(--ct-muted);margin-left:6px}
.R.R td.ct-text{max-width:300px;white-space:pre-wrap;word-break:break-word}
.R.R td.ct-ref{color:var(--ct-muted)}
.R.R td.ct-q{white-space:nowrap}
.R .ct-id{font:11px ui-monospace,SFMono-Regular,Menlo,monospace;color:var(--ct-muted);white-space:nowrap}
.R .ct-rated{display:block;font-size:10px;color:var(--ct-muted);margin-top:2px}
.R .ct-reasons{margin:0;padding-left:16px;font-size:12px}
.R .ct-chart{display:inline-block;border-radius:4px;overflow:hidden;max-width:100%;overflow-x:auto}
`;

/** The session as self-contained HTML: nodes, legend, runs, outputs, outlier inputs, loss curves. */
export function sessionHtml(payload: ChromaPayload, o: SessionViewOptions = {}): string {
  const p = payload;
  const onScale = scaleLookup(p);
  const runColours = new Map(p.runs.map((r) => [r.id, r.colour]));
  const colourOf: RunColour = (id, q) => runColours.get(id) ?? onScale(q);
  const best = bestRun(p);
  const outliers = p.inputs.filter((i) => i.outlier).length;
  const head =
    `<div class="ct-head"><div class="ct-title">ChromaTune session</div><div class="ct-sub">${p.runs.length} run${p.runs.length === 1 ? '' : 's'}` +
    (best ? ` · best ${e(best.id)} ${qualityChip(best.quality, best.colour)}` : ' · no runs yet') +
    ` · ${p.outputs.length} outputs · ${outliers} outlier input${outliers === 1 ? '' : 's'}</div></div>`;
  const body =
    head +
    legend(p) +
    `<div class="ct-nodes">${p.nodes.map((n) => nodeCard(n, colourOf)).join('')}</div>` +
    runsTable(p, o.maxRuns ?? 10) +
    outputsTable(p, o.maxOutputs ?? 24) +
    outliersTable(p, o.maxInputs ?? 12) +
    lossSection(p);
  return themedBlock('ct-session', SESSION_CSS, body);
}

const bestRun = (p: ChromaPayload) => p.runs.reduce<ChromaPayload['runs'][number] | undefined>((b, r) => (!b || r.quality > b.quality ? r : b), undefined);

/** Colour of a quality read off the payload's own scale (nearest stop), so the view needs no colour library. */
function scaleLookup(p: ChromaPayload): (q: number) => string {
  const stops = p.scale.stops;
  const [d0, d1] = p.scale.domain;
  return (q) => {
    const t = clamp01((q - d0) / (d1 - d0 || 1));
    return stops.reduce((b, s) => (Math.abs(s[0] - t) < Math.abs(b[0] - t) ? s : b), stops[0])?.[1] ?? '#8b949e';
  };
}

/** A few lines for text/plain: runs, best quality, each node's position and quality, outliers. */
export function sessionText(p: ChromaPayload): string {
  const best = bestRun(p);
  const width = Math.max(0, ...p.nodes.map((n) => n.name.length));
  const outliers = p.inputs.filter((i) => i.outlier).length;
  return [
    `ChromaTune session: ${p.runs.length} run${p.runs.length === 1 ? '' : 's'}, ${best ? `best quality ${best.quality.toFixed(3)} (${best.id})` : 'no runs yet'}`,
    ...p.nodes.map((n) => `  ${n.name.padEnd(width)}  at ${fmtVec(n.position)}  quality ${n.quality.mean.toFixed(3)} ± ${n.quality.sd.toFixed(3)}`),
    `outputs: ${p.outputs.length} (${p.outputs.filter((x) => x.rated).length} rated) · inputs: ${p.inputs.length}, ${outliers} outlier${outliers === 1 ? '' : 's'}` +
      (outliers ? `: ${p.inputs.filter((i) => i.outlier).slice(0, 3).map((i) => clip(i.question, 40)).join('; ')}` : ''),
  ].join('\n');
}

/** A payload's bundle: the JSON payload itself for the widget, with the HTML and text fallbacks. */
export function payloadBundle(payload: ChromaPayload, o: SessionViewOptions = {}): MimeBundle {
  return { [MIME_TYPE]: payload, 'text/html': sessionHtml(payload, o), 'text/plain': sessionText(payload) };
}

/** The session's bundle, as its toMimeBundle() returns it. */
export const sessionBundle = (session: ChromaSession, o: SessionViewOptions = {}): MimeBundle => payloadBundle(sessionPayload(session), o);
