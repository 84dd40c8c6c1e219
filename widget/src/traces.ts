/**
 * Payload → plotly figures, as plain data: one 3-D scene per parameter node (its unit cube, the
 * quality field, the run trail, the 8 corner sub-weights, the node, the improvement arrow and the
 * colour legend) and the 2-D loss curves. The geometry matches the HTML fallback
 * (kernel/display/sessionView.ts) so both views read alike.
 */
import { colourAt, plotlyColorscale } from './colour';
import { type ChromaPayload, type ColourScale, cornerOf, type NodePayload, type Vec3 } from './payload';
import type { Theme } from './theme';

/** What a trace shows, so the view and tests can find it without relying on order. */
export type TraceRole = 'cube' | 'field' | 'trail' | 'corner' | 'node' | 'improvement' | 'improvement-head' | 'target' | 'legend' | 'train' | 'validation';

export interface TraceMeta {
  role: TraceRole;
  /** Corner index c = bx + 2·by + 4·bz, for corner lines. */
  corner?: number;
  subWeight?: number;
  runId?: string;
}

export interface ColourBar {
  title: { text: string; side: 'right' };
  tickvals: number[];
  ticktext: string[];
  x: number;
  len: number;
  thickness: number;
  outlinewidth: number;
  tickfont: { color: string };
}

export interface Marker {
  color: string | string[] | number[];
  size: number | number[];
  opacity?: number;
  symbol?: string;
  line?: { color: string; width: number };
  colorscale?: Array<[number, string]>;
  cmin?: number;
  cmax?: number;
  showscale?: boolean;
  colorbar?: ColourBar;
}

export interface Scatter3dTrace {
  type: 'scatter3d';
  name: string;
  meta: TraceMeta;
  mode: 'lines' | 'markers' | 'lines+markers';
  x: Array<number | null>;
  y: Array<number | null>;
  z: Array<number | null>;
  line?: { color: string; width: number; dash?: 'solid' | 'dash' | 'dot' };
  marker?: Marker;
  hovertext?: string | string[];
  hoverinfo: 'text' | 'skip';
  showlegend: false;
}

export interface ConeTrace {
  type: 'cone';
  name: string;
  meta: TraceMeta;
  x: number[];
  y: number[];
  z: number[];
  u: number[];
  v: number[];
  w: number[];
  anchor: 'tip';
  sizemode: 'absolute';
  sizeref: number;
  colorscale: Array<[number, string]>;
  showscale: false;
  hoverinfo: 'skip';
  showlegend: false;
}

export interface ScatterTrace {
  type: 'scatter';
  name: string;
  meta: TraceMeta;
  mode: 'lines' | 'lines+markers';
  x: number[];
  y: number[];
  line: { color: string; width: number; dash?: 'solid' | 'dot' };
  marker?: { color: string; size: number };
  legendgroup: string;
  hovertemplate: string;
}

export type SceneTrace = Scatter3dTrace | ConeTrace;

/* --------------------------------------------------------------- geometry */

export { cornerOf };

/** Length of a corner line per unit of sub-weight (as in the HTML fallback); a line never runs past its corner. */
export const CORNER_LENGTH = 0.12;
/** Width of a corner line: base plus this much per unit of sub-weight. */
export const CORNER_WIDTH = { base: 1.5, perWeight: 1.2 };

const sub = (a: Vec3, b: Vec3): Vec3 => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
const norm = (a: Vec3): number => Math.hypot(a[0], a[1], a[2]);
const along = (p: Vec3, u: Vec3, len: number): Vec3 => [p[0] + u[0] * len, p[1] + u[1] * len, p[2] + u[2] * len];

/**
 * The line of corner c: from the node toward the corner, length CORNER_LENGTH·s_c, ending on the corner
 * itself when that is nearer. Null when there is nothing to draw (zero weight, or the node on the corner).
 */
export function cornerSegment(p: Vec3, c: number, s: number): { from: Vec3; to: Vec3; length: number } | null {
  if (!(Number.isFinite(s) && s > 0)) return null;
  const corner = cornerOf(c);
  const d = sub(corner, p);
  const dist = norm(d);
  if (dist < 1e-9) return null;
  const length = Math.min(dist, CORNER_LENGTH * s);
  return { from: p, to: length === dist ? corner : along(p, [d[0] / dist, d[1] / dist, d[2] / dist], length), length };
}

/** Length of the improvement arrow: grows with the slope, within the cube's scale. */
export const improvementLength = (slope: number): number => Math.min(0.42, 0.14 + 0.5 * (Number.isFinite(slope) ? Math.max(0, slope) : 0));

/** plotly reads hover text as its own small HTML subset: keep data text literal. */
export const escapeText = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A number for labels: `digits` decimals, exponent form when very large or small, '–' when not finite. */
export const fmt = (v: number, digits = 2): string => (Number.isFinite(v) ? (Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(2) : String(+v.toFixed(digits))) : '–');
export const fmtVec = (p: Vec3): string => `(${p.map((v) => v.toFixed(2)).join(', ')})`;

/* ----------------------------------------------------------------- scene */

export interface SceneOptions {
  /** Where a person is about to move the node: drawn as a hollow marker joined to the node. */
  target?: Vec3;
}

function cubeEdges(theme: Theme): Scatter3dTrace {
  const x: Array<number | null> = [];
  const y: Array<number | null> = [];
  const z: Array<number | null> = [];
  for (let a = 0; a < 8; a++) {
    for (const bit of [1, 2, 4]) {
      if (a & bit) continue;
      const [p, q] = [cornerOf(a), cornerOf(a | bit)];
      x.push(p[0], q[0], null);
      y.push(p[1], q[1], null);
      z.push(p[2], q[2], null);
    }
  }
  return { type: 'scatter3d', name: 'unit cube', meta: { role: 'cube' }, mode: 'lines', x, y, z, line: { color: theme.grid, width: 2 }, hoverinfo: 'skip', showlegend: false };
}

/** The field's samples in the payload's own colours; surer samples are larger. */
function fieldMarkers(node: NodePayload): Scatter3dTrace {
  const s = node.field.samples;
  return {
    type: 'scatter3d',
    name: 'quality field',
    meta: { role: 'field' },
    mode: 'markers',
    x: s.map((q) => q.p[0]),
    y: s.map((q) => q.p[1]),
    z: s.map((q) => q.p[2]),
    marker: { color: s.map((q) => q.colour), size: s.map((q) => 4 + 6 * (1 - Math.min(1, Math.max(0, q.sd) / 0.5))), opacity: 0.75, line: { color: 'rgba(0,0,0,0)', width: 0 } },
    hovertext: s.map((q) => `field at ${fmtVec(q.p)}<br>quality ${fmt(q.mean, 3)} ± ${fmt(q.sd, 3)}`),
    hoverinfo: 'text',
    showlegend: false,
  };
}

function trail(node: NodePayload, payload: ChromaPayload, theme: Theme): Scatter3dTrace | null {
  if (!node.trail.length) return null;
  const runColour = new Map(payload.runs.map((r) => [r.id, r.colour]));
  return {
    type: 'scatter3d',
    name: 'runs',
    meta: { role: 'trail' },
    mode: 'lines+markers',
    x: node.trail.map((t) => t.p[0]),
    y: node.trail.map((t) => t.p[1]),
    z: node.trail.map((t) => t.p[2]),
    line: { color: theme.muted, width: 2, dash: 'dash' },
    marker: { color: node.trail.map((t) => runColour.get(t.runId) ?? colourAt(payload.scale, t.quality)), size: 5, line: { color: theme.foreground, width: 1 } },
    hovertext: node.trail.map((t, i) => `${escapeText(t.runId)} (#${i + 1})<br>quality ${fmt(t.quality, 3)} at ${fmtVec(t.p)}`),
    hoverinfo: 'text',
    showlegend: false,
  };
}

function cornerLines(node: NodePayload, theme: Theme): Scatter3dTrace[] {
  const out: Scatter3dTrace[] = [];
  node.corners.forEach((s, c) => {
    const seg = cornerSegment(node.position, c, s);
    if (!seg) return;
    out.push({
      type: 'scatter3d',
      name: `corner ${c}`,
      meta: { role: 'corner', corner: c, subWeight: s },
      mode: 'lines',
      x: [seg.from[0], seg.to[0]],
      y: [seg.from[1], seg.to[1]],
      z: [seg.from[2], seg.to[2]],
      line: { color: theme.foreground, width: CORNER_WIDTH.base + CORNER_WIDTH.perWeight * s },
      hovertext: `corner (${cornerOf(c).join(',')})<br>sub-weight ${fmt(s, 3)}`,
      hoverinfo: 'text',
      showlegend: false,
    });
  });
  return out;
}

function nodeMarker(node: NodePayload, theme: Theme): Scatter3dTrace {
  const p = node.position;
  return {
    type: 'scatter3d',
    name: node.label,
    meta: { role: 'node' },
    mode: 'markers',
    x: [p[0]],
    y: [p[1]],
    z: [p[2]],
    marker: { color: [node.colour], size: 14, line: { color: theme.foreground, width: 2 } },
    hovertext: `${escapeText(node.label)} at ${fmtVec(p)}<br>quality ${fmt(node.quality.mean, 3)} ± ${fmt(node.quality.sd, 3)}`,
    hoverinfo: 'text',
    showlegend: false,
  };
}

/** The direction of improvement: a shaft and a cone at its tip. */
function improvement(node: NodePayload, theme: Theme): SceneTrace[] {
  const d = node.improvement;
  const n = norm(d);
  if (!(n > 1e-9)) return [];
  const u: Vec3 = [d[0] / n, d[1] / n, d[2] / n];
  const len = improvementLength(node.slope);
  const tip = along(node.position, u, len);
  const text = `toward higher quality ${fmtVec(u)}<br>slope ${fmt(node.slope, 3)}`;
  return [
    {
      type: 'scatter3d',
      name: 'improvement',
      meta: { role: 'improvement' },
      mode: 'lines',
      x: [node.position[0], tip[0]],
      y: [node.position[1], tip[1]],
      z: [node.position[2], tip[2]],
      line: { color: theme.accent, width: 6 },
      hovertext: text,
      hoverinfo: 'text',
      showlegend: false,
    },
    {
      type: 'cone',
      name: 'improvement head',
      meta: { role: 'improvement-head' },
      x: [tip[0]],
      y: [tip[1]],
      z: [tip[2]],
      u: [u[0]],
      v: [u[1]],
      w: [u[2]],
      anchor: 'tip',
      sizemode: 'absolute',
      sizeref: 0.08,
      colorscale: [
        [0, theme.accent],
        [1, theme.accent],
      ],
      showscale: false,
      hoverinfo: 'skip',
      showlegend: false,
    },
  ];
}

function target(node: NodePayload, to: Vec3, theme: Theme): Scatter3dTrace {
  const p = node.position;
  return {
    type: 'scatter3d',
    name: 'move to',
    meta: { role: 'target' },
    mode: 'lines+markers',
    x: [p[0], to[0]],
    y: [p[1], to[1]],
    z: [p[2], to[2]],
    line: { color: theme.foreground, width: 2, dash: 'dot' },
    marker: { color: ['rgba(0,0,0,0)', 'rgba(0,0,0,0)'], size: [0, 14], symbol: 'circle-open', line: { color: theme.foreground, width: 3 } },
    hovertext: ['', `move to ${fmtVec(to)}`],
    hoverinfo: 'text',
    showlegend: false,
  };
}

/** plotly's colour bar from the payload's scale: the legend of every colour in the scene. */
function colourBar(scale: ColourScale, theme: Theme): ColourBar {
  return {
    title: { text: scale.title, side: 'right' },
    tickvals: scale.ticks.map(([q]) => q),
    ticktext: scale.ticks.map(([q, label]) => `${fmt(q)} ${label}`),
    x: 0.93,
    len: 0.8,
    thickness: 14,
    outlinewidth: 0,
    tickfont: { color: theme.foreground },
  };
}

/**
 * The legend's carrier: plotly draws a colour bar only for numeric colours on a colorscale, while the
 * scene's markers use the payload's exact colours; this trace holds the scale, at the node's own
 * position and invisible.
 */
function legend(node: NodePayload, scale: ColourScale, theme: Theme): Scatter3dTrace {
  const p = node.position;
  return {
    type: 'scatter3d',
    name: scale.title,
    meta: { role: 'legend' },
    mode: 'markers',
    x: [p[0], p[0]],
    y: [p[1], p[1]],
    z: [p[2], p[2]],
    marker: { color: [...scale.domain], size: 0.1, opacity: 0, colorscale: plotlyColorscale(scale), cmin: scale.domain[0], cmax: scale.domain[1], showscale: true, colorbar: colourBar(scale, theme) },
    hoverinfo: 'skip',
    showlegend: false,
  };
}

/** Every trace of one node's scene, back to front. */
export function nodeTraces(payload: ChromaPayload, node: NodePayload, theme: Theme, o: SceneOptions = {}): SceneTrace[] {
  const t = trail(node, payload, theme);
  return [
    cubeEdges(theme),
    fieldMarkers(node),
    ...(t ? [t] : []),
    ...cornerLines(node, theme),
    ...improvement(node, theme),
    nodeMarker(node, theme),
    ...(o.target ? [target(node, o.target, theme)] : []),
    legend(node, payload.scale, theme),
  ];
}

/* ---------------------------------------------------------------- layouts */

const TRANSPARENT = 'rgba(0,0,0,0)';

function sceneAxis(axis: NodePayload['axes'][number], letter: string, theme: Theme) {
  return {
    title: { text: `${letter} · ${axis.name}`, font: { color: theme.foreground } },
    range: [-0.02, 1.02],
    tickvals: [0, 0.5, 1],
    ticktext: [axis.low, '', axis.high],
    tickfont: { color: theme.muted, size: Math.max(9, theme.fontSize - 2) },
    gridcolor: theme.grid,
    zerolinecolor: theme.grid,
    linecolor: theme.grid,
    showbackground: false,
    showspikes: false,
  };
}

/** The scene's layout; uirevision keeps a person's camera while the same node re-renders. */
export function sceneLayout(node: NodePayload, theme: Theme) {
  return {
    paper_bgcolor: TRANSPARENT,
    plot_bgcolor: TRANSPARENT,
    font: { family: theme.fontFamily, size: theme.fontSize, color: theme.foreground },
    margin: { l: 0, r: 0, t: 0, b: 0 },
    showlegend: false,
    uirevision: node.name,
    hoverlabel: { font: { family: theme.fontFamily } },
    scene: {
      // The colour bar sits to the right of the scene's domain, not over the cube.
      domain: { x: [0, 0.86], y: [0, 1] },
      aspectmode: 'cube',
      bgcolor: TRANSPARENT,
      camera: { eye: { x: 0.85, y: -1.95, z: 0.9 }, up: { x: 0, y: 0, z: 1 } },
      xaxis: sceneAxis(node.axes[0], 'x', theme),
      yaxis: sceneAxis(node.axes[1], 'y', theme),
      zaxis: sceneAxis(node.axes[2], 'z', theme),
    },
  };
}

/** Runs whose loss curves are drawn: the newest few, each in its run's colour. */
const MAX_LOSS_RUNS = 8;

export function lossTraces(payload: ChromaPayload): ScatterTrace[] {
  const runs = new Map(payload.runs.map((r) => [r.id, r]));
  const curves = payload.lossCurves.filter((c) => c.train.length || c.validation.length).slice(-MAX_LOSS_RUNS);
  return curves.flatMap((c) => {
    const run = runs.get(c.runId);
    const colour = run?.colour ?? colourAt(payload.scale, run?.quality ?? 0.5);
    const id = escapeText(c.runId);
    const traces: ScatterTrace[] = [];
    if (c.train.length) {
      traces.push({
        type: 'scatter', name: `${c.runId} training`, meta: { role: 'train', runId: c.runId }, mode: 'lines',
        x: c.train.map((p) => p[0]), y: c.train.map((p) => p[1]), line: { color: colour, width: 2 }, legendgroup: c.runId,
        hovertemplate: `${id} training<br>step %{x}: %{y:.4f}<extra></extra>`,
      });
    }
    if (c.validation.length) {
      traces.push({
        type: 'scatter', name: `${c.runId} validation`, meta: { role: 'validation', runId: c.runId }, mode: 'lines+markers',
        x: c.validation.map((p) => p[0]), y: c.validation.map((p) => p[1]), line: { color: colour, width: 2, dash: 'dot' }, marker: { color: colour, size: 6 }, legendgroup: c.runId,
        hovertemplate: `${id} validation<br>step %{x}: %{y:.4f}<extra></extra>`,
      });
    }
    return traces;
  });
}

export function lossLayout(theme: Theme) {
  const axis = (title: string) => ({ title: { text: title, font: { color: theme.muted } }, gridcolor: theme.grid, zeroline: false, linecolor: theme.grid, tickfont: { color: theme.muted } });
  return {
    paper_bgcolor: TRANSPARENT,
    plot_bgcolor: TRANSPARENT,
    font: { family: theme.fontFamily, size: theme.fontSize, color: theme.foreground },
    margin: { l: 56, r: 12, t: 8, b: 40 },
    uirevision: 'loss',
    xaxis: axis('step'),
    yaxis: axis('loss (nats/token)'),
    legend: { orientation: 'h', y: -0.25, font: { color: theme.foreground } },
    showlegend: true,
  };
}
