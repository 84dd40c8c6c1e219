/**
 * The self-contained report.html of a study: summary, a sortable ranking of the trials, parameter
 * importance, the best responses beside the desired output, a heatmap over two parameters and the
 * optimisation history.
 *
 * No network: no external scripts, styles, fonts or images. One small inline script sorts the
 * ranking's rows in the DOM (the data stays in the table; the script holds none), and the page's
 * Content-Security-Policy allows that script alone, by its hash. Every piece of text that comes
 * from the study (names, params, errors, responses, attrs) is escaped.
 *
 * Conventions read from trial attrs when present:
 *   attrs.run        string: the trial's run folder (linked, relative to the report's folder)
 *   attrs.metrics    Record<string, number>: extra columns (validation loss, perplexity, tokenF1, …)
 *   attrs.responses  Array<TrialResponse>: generated responses of a decoding trial
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { pathToFileURL } from 'url';
import { writeFileAtomic } from '../io/atomic';
import { parameterImportance, type ParamImportance } from '../tune/importance';
import { decodeParam, encodeParam, gridValues, type Param, type ParamValue, type Space } from '../tune/space';
import type { Direction, TrialRecord } from '../tune/types';
import { colourScale, qualityColour } from '../chroma/colour';
import { fmtNum } from './bundles';
import { escapeHtml as e, lineChart } from './html';

/** What the report needs of a study; a `Study` passes as it is. */
export interface StudyLike {
  name?: string;
  direction: Direction;
  space: Space;
  sampler?: string | { name: string; options?: Record<string, unknown> };
  trials: readonly TrialRecord[];
}

/** One generated response of a decoding trial (attrs.responses). Scores: higher is better. */
export interface TrialResponse {
  text: string;
  score?: number;
  scores?: Record<string, number>;
  prompt?: string;
}

export interface StudyReportInput {
  study: StudyLike;
  /** Page title (default: "Study <name>"). */
  title?: string;
  /** What the objective measures, e.g. "validation loss" (default "objective"). */
  objective?: string;
  /** The output the responses aim at: shown beside the top trials' best responses. */
  desired?: string;
  /** Two parameters for the heatmap (float, int or categorical); default: the two most important numeric ones. */
  heatmap?: [string, string];
  /** Trials shown in the responses section (default 5). */
  topK?: number;
  /** Responses shown per trial (default 3, best score first). */
  responsesPerTrial?: number;
  /**
   * Folder the report will live in: run links (attrs.run) are made relative to it, so the report
   * and the runs can move together. writeStudyReport sets it to the file's folder.
   */
  reportDir?: string;
  /** The link of a trial's run, overriding attrs.run (e.g. to its report.html); undefined for none. */
  runHref?: (trial: TrialRecord) => string | undefined;
}

/** Heatmap bins per axis for a continuous parameter; discrete ones get a bin per value up to MAX_DISCRETE. */
const CONTINUOUS_BINS = 8;
const MAX_DISCRETE = 12;

/** Write the report to `file` atomically (creating its folder); returns the file's absolute path. */
export function writeStudyReport(input: StudyReportInput, file: string): string {
  const abs = path.resolve(file);
  fs.mkdirSync(path.dirname(abs), { recursive: true });
  writeFileAtomic(abs, renderStudyReport({ ...input, reportDir: input.reportDir ?? path.dirname(abs) }));
  return abs;
}

export function renderStudyReport(input: StudyReportInput): string {
  const { study } = input;
  const { space, direction } = study;
  const objective = input.objective ?? 'objective';
  const title = input.title ?? `Study ${study.name ?? ''}`.trim();
  const better = (a: number, b: number) => (direction === 'minimize' ? a < b : a > b);
  const byValue = (a: TrialRecord, b: TrialRecord) => {
    const [x, y] = [finite(a.value), finite(b.value)];
    if (x === undefined || y === undefined) return x === y ? a.number - b.number : x === undefined ? 1 : -1;
    return x === y ? a.number - b.number : better(x, y) ? -1 : 1;
  };
  const trials = [...study.trials];
  const ranked = trials.filter((t) => t.state === 'complete' && finite(t.value) !== undefined).sort(byValue);
  const importance = parameterImportance(space, trials, direction);
  const count = (s: TrialRecord['state']) => trials.filter((t) => t.state === s).length;
  const best = ranked[0];
  const sampler = typeof study.sampler === 'string' ? { name: study.sampler } : study.sampler;

  const summary = [
    ['objective', `${e(objective)} (${direction === 'minimize' ? 'lower is better' : 'higher is better'}: ${direction})`],
    ['sampler', sampler ? `${e(sampler.name)}${sampler.options && Object.keys(sampler.options).length ? ` <code>${e(JSON.stringify(sampler.options))}</code>` : ''}` : '—'],
    ['trials', `${trials.length}: ${count('complete')} complete · ${count('failed')} failed · ${count('pruned')} pruned${count('running') ? ` · ${count('running')} running` : ''}`],
    ['best trial', best ? `#${best.number}: ${e(fmtNum(best.value!))} with ${paramsInline(space, best)}` : 'none completed yet'],
  ]
    .map(([k, v]) => `<tr><th>${k}</th><td>${v}</td></tr>`)
    .join('');

  const history = ranked.length
    ? lineChart(historySeries(trials, better, objective), { xLabel: 'trial', yLabel: objective, title: 'optimisation history' })
    : '<p class="note">No complete trials yet.</p>';

  const body = [
    `<h1>${e(title)}</h1>`,
    `<table class="summary">${summary}</table>`,
    `<h2>Ranking</h2><p class="note">Click a column header to sort; click again to reverse.</p>`,
    rankingTable(input, trials, ranked, byValue, objective),
    `<h2>Parameter importance</h2>`,
    importanceChart(importance),
    responsesSection(input, ranked),
    heatmapSection(input, ranked, importance, better, objective),
    `<h2>Optimisation history</h2>${history}`,
    `<h2>Search space</h2>${spaceTable(space)}`,
  ].join('\n');

  const hash = createHash('sha256').update(SORT_SCRIPT, 'utf8').digest('base64');
  const csp = `default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-${hash}'; img-src 'none'; base-uri 'none'; form-action 'none'`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<title>${e(title)}</title>
<style>${STYLE}</style></head><body>
${body}
<script>${SORT_SCRIPT}</script>
</body></html>
`;
}

// ---------------------------------------------------------------------------------------------
// Ranking table

function rankingTable(
  input: StudyReportInput,
  trials: TrialRecord[],
  ranked: TrialRecord[],
  byValue: (a: TrialRecord, b: TrialRecord) => number,
  objective: string,
): string {
  const { space } = input.study;
  const rank = new Map(ranked.map((t, i) => [t.number, i + 1]));
  // Complete trials best first, then pruned (by their last value), failed, running.
  const order: TrialRecord['state'][] = ['complete', 'pruned', 'failed', 'running'];
  const rows = [...trials].sort((a, b) => order.indexOf(a.state) - order.indexOf(b.state) || (a.state === 'complete' || a.state === 'pruned' ? byValue(a, b) : a.number - b.number));
  const metricNames = [...new Set(trials.flatMap((t) => Object.keys(readMetrics(t))))];
  const params = Object.entries(space);
  const arrow = input.study.direction === 'minimize' ? '↓' : '↑';
  const th = (key: string, type: 'num' | 'str', label: string) => `<th data-key="${e(key)}" data-type="${type}" tabindex="0">${label}</th>`;
  const head = [
    th('rank', 'num', 'rank'),
    th('trial', 'num', 'trial'),
    th('value', 'num', `${e(objective)} ${arrow}`),
    ...params.map(([n, p]) => th(`param:${n}`, p.kind === 'float' || p.kind === 'int' ? 'num' : 'str', e(n))),
    ...metricNames.map((n) => th(`metric:${n}`, 'num', e(n))),
    th('state', 'str', 'state'),
    th('error', 'str', 'error'),
    th('run', 'str', 'run'),
  ].join('');
  const td = (sortKey: string | number | undefined, html: string, cls = '') => `<td${cls ? ` class="${cls}"` : ''} data-v="${sortKey === undefined ? '' : e(sortKey)}">${html}</td>`;
  const body = rows
    .map((t) => {
      const metrics = readMetrics(t);
      const value = finite(t.value);
      const href = runHref(input, t);
      const run = typeof t.attrs.run === 'string' ? t.attrs.run : href ?? '';
      const cells = [
        td(rank.get(t.number), rank.has(t.number) ? String(rank.get(t.number)) : ''),
        td(t.number, `#${t.number}`),
        td(value, value === undefined ? '—' : e(fmtNum(value)), 'num'),
        ...params.map(([n, p]) => {
          const v = t.params[n];
          const key = v === undefined ? undefined : p.kind === 'float' || p.kind === 'int' ? Number(v) : Array.isArray(v) ? v.join(',') : String(v);
          return td(key, v === undefined ? '' : fmtParamHtml(v), p.kind === 'float' || p.kind === 'int' ? 'num' : '');
        }),
        ...metricNames.map((n) => td(metrics[n], metrics[n] === undefined ? '' : e(fmtNum(metrics[n])), 'num')),
        td(t.state, e(t.state), `state ${e(t.state)}`),
        td(t.error, t.error === undefined ? '' : `<span class="error">${e(t.error)}</span>`),
        td(run || undefined, href ? `<a href="${e(href)}" title="${e(run)}">${e(path.basename(run) || run)}</a>` : run ? e(run) : ''),
      ];
      return `<tr data-trial="${t.number}" class="${t === ranked[0] ? 'best' : ''}">${cells.join('')}</tr>`;
    })
    .join('\n');
  return `<div class="scroll"><table id="ranking" class="ranking"><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table></div>`;
}

/** The link of a trial's run folder: the caller's runHref, else attrs.run relative to the report's folder. */
function runHref(input: StudyReportInput, t: TrialRecord): string | undefined {
  if (input.runHref) return input.runHref(t);
  const run = t.attrs.run;
  if (typeof run !== 'string' || run === '') return undefined;
  if (input.reportDir !== undefined) return relHref(path.relative(path.resolve(input.reportDir), path.resolve(run)));
  // Without the report's folder only an absolute path can be linked for sure.
  return path.isAbsolute(run) ? `${pathToFileURL(run).href}/` : relHref(run);
}

/** A relative path as a URL path to a folder: each segment percent-encoded (so "a:b" is never a scheme). */
const relHref = (rel: string): string => (rel === '' ? './' : `${rel.split(/[\\/]+/).filter(Boolean).map(encodeURIComponent).join('/')}/`);

// ---------------------------------------------------------------------------------------------
// Importance

function importanceChart(importance: ParamImportance[]): string {
  if (importance.length === 0) return '<p class="note">Needs at least two complete trials.</p>';
  const W = 640;
  const row = 24;
  const left = 180;
  const right = 60;
  const H = importance.length * row + 24;
  const bars = importance
    .map((p, i) => {
      const y = 8 + i * row;
      const w = Math.max(0, p.importance) * (W - left - right);
      return (
        `<text x="${left - 8}" y="${y + 15}" text-anchor="end" font-size="12">${e(p.name)}</text>` +
        `<rect class="bar" x="${left}" y="${y + 3}" width="${w.toFixed(1)}" height="${row - 8}" fill="#4c78a8"><title>${e(p.name)}: ${(100 * p.importance).toFixed(1)}%</title></rect>` +
        `<text x="${(left + w + 6).toFixed(1)}" y="${y + 15}" font-size="12">${(100 * p.importance).toFixed(1)}%</text>`
      );
    })
    .join('');
  return (
    `<svg class="importance" width="${W}" height="${H}" role="img" aria-label="parameter importance"><rect width="${W}" height="${H}" fill="white"/>` +
    `<line x1="${left}" y1="4" x2="${left}" y2="${H - 12}" stroke="#333"/>${bars}</svg>` +
    '<p class="note">Share of the objective\'s variance explained by each parameter alone (fANOVA over a random forest fitted to the complete trials; shares sum to 100%).</p>'
  );
}

// ---------------------------------------------------------------------------------------------
// Responses

function responsesSection(input: StudyReportInput, ranked: TrialRecord[]): string {
  const top = ranked.filter((t) => readResponses(t).length > 0).slice(0, input.topK ?? 5);
  if (input.desired === undefined || top.length === 0) return '';
  const per = input.responsesPerTrial ?? 3;
  const blocks = top
    .map((t) => {
      // Best score first; unscored responses keep their order, after the scored ones.
      const rs = readResponses(t)
        .map((r, i) => ({ r, i }))
        .sort((a, b) => (b.r.score ?? -Infinity) - (a.r.score ?? -Infinity) || a.i - b.i)
        .slice(0, per)
        .map(({ r }) => {
          const scores = [
            ...(r.score !== undefined ? [`score ${e(fmtNum(r.score))}`] : []),
            ...Object.entries(r.scores ?? {}).map(([k, v]) => `${e(k)} ${e(fmtNum(v))}`),
          ].join(' · ');
          return `<li><div class="text">${e(r.text)}</div>${scores ? `<div class="scores">${scores}</div>` : ''}${r.prompt !== undefined ? `<div class="prompt">prompt: ${e(r.prompt)}</div>` : ''}</li>`;
        })
        .join('');
      return (
        `<div class="pair"><h3>#${t.number} · ${e(fmtNum(t.value!))} · ${paramsInline(input.study.space, t)}</h3>` +
        `<div class="cols"><div class="desired"><h4>desired</h4><div class="text">${e(input.desired)}</div></div>` +
        `<div class="responses"><h4>best responses</h4><ol>${rs}</ol></div></div></div>`
      );
    })
    .join('\n');
  return `<h2>Best responses</h2>\n${blocks}`;
}

// ---------------------------------------------------------------------------------------------
// Heatmap

/** A heatmap axis: one bin per choice or grid value, or equal-width bins of the unit coordinate. */
interface Axis {
  name: string;
  bins: number;
  bin(v: ParamValue): number | undefined;
  /** Tick labels at positions in bin units: a bin's centre (k + 0.5) or an edge (k). */
  ticks: Array<{ at: number; label: string }>;
}

function makeAxis(name: string, p: Param, values: ParamValue[]): Axis {
  if (p.kind === 'categorical') {
    return {
      name,
      bins: p.choices.length,
      bin: (v) => (p.choices.indexOf(v as string | number | boolean) >= 0 ? p.choices.indexOf(v as string | number | boolean) : undefined),
      ticks: p.choices.map((c, k) => ({ at: k + 0.5, label: String(c) })),
    };
  }
  if (p.kind === 'cube') throw new RangeError(`heatmap parameter "${name}" is a cube (${p.dims} coordinates); choose a float, int or categorical parameter`);
  const unit = (v: ParamValue) => encodeParam(p, v)[0];
  // Discrete values: the grid when the parameter has a small one, else the values seen when few.
  const grid =
    p.step !== undefined ? (gridValues(p, 1) as number[]) : p.kind === 'int' && !p.log ? Array.from({ length: p.high - p.low + 1 }, (_, k) => p.low + k) : [];
  const seen = [...new Set(values.map(Number).filter(Number.isFinite))].sort((a, b) => a - b);
  const discrete = p.low === p.high ? [p.low] : grid.length > 0 && grid.length <= MAX_DISCRETE ? grid : seen.length <= CONTINUOUS_BINS ? seen : undefined;
  if (discrete) {
    const us = discrete.map((v) => unit(v));
    return {
      name,
      bins: discrete.length,
      // Nearest grid point in unit coordinates: tolerant of rounding in stored values.
      bin: (v) => {
        const u = unit(v);
        return Number.isFinite(u) ? us.reduce((best, x, k) => (Math.abs(x - u) < Math.abs(us[best] - u) ? k : best), 0) : undefined;
      },
      ticks: discrete.map((v, k) => ({ at: k + 0.5, label: fmtNum(v) })),
    };
  }
  const n = CONTINUOUS_BINS;
  return {
    name,
    bins: n,
    bin: (v) => {
      const u = unit(v);
      return Number.isFinite(u) ? Math.min(n - 1, Math.floor(u * n)) : undefined;
    },
    // Floats: values at the bin edges; ints: the (rounded) value at each bin's centre.
    ticks:
      p.kind === 'float'
        ? Array.from({ length: n + 1 }, (_, k) => ({ at: k, label: fmtNum(decodeParam(p, [k / n]) as number) }))
        : Array.from({ length: n }, (_, k) => ({ at: k + 0.5, label: fmtNum(decodeParam(p, [(k + 0.5) / n]) as number) })),
  };
}

/** The two most important float/int parameters that vary (categoricals when too few), in importance order. */
function defaultHeatmapParams(space: Space, importance: ParamImportance[]): [string, string] | undefined {
  const order = importance.length ? importance.map((p) => p.name) : Object.keys(space);
  const varies = (p: Param) => (p.kind === 'categorical' ? p.choices.length > 1 : p.kind !== 'cube' && p.low !== p.high);
  const numeric = order.filter((n) => (space[n].kind === 'float' || space[n].kind === 'int') && varies(space[n]));
  const rest = order.filter((n) => space[n].kind === 'categorical' && varies(space[n]));
  const pick = [...numeric, ...rest].slice(0, 2);
  return pick.length === 2 ? [pick[0], pick[1]] : undefined;
}

function heatmapSection(input: StudyReportInput, ranked: TrialRecord[], importance: ParamImportance[], better: (a: number, b: number) => boolean, objective: string): string {
  const { space } = input.study;
  if (input.heatmap) {
    for (const n of input.heatmap) if (!(n in space)) throw new RangeError(`heatmap parameter "${n}" is not in the space (${Object.keys(space).join(', ')})`);
  }
  const pair = input.heatmap ?? defaultHeatmapParams(space, importance);
  if (!pair) return '';
  const [ax, ay] = pair.map((n) => makeAxis(n, space[n], ranked.map((t) => t.params[n]).filter((v) => v !== undefined)));
  // Best value per cell: the heatmap answers "where is the good region", which a mean blurs with unlucky trials.
  const cells = new Map<string, { best: number; n: number }>();
  for (const t of ranked) {
    const [va, vb] = [t.params[ax.name], t.params[ay.name]];
    if (va === undefined || vb === undefined) continue;
    let i: number | undefined;
    let j: number | undefined;
    try {
      [i, j] = [ax.bin(va), ay.bin(vb)];
    } catch {
      continue; // a value outside the space (an older study): not placeable
    }
    if (i === undefined || j === undefined) continue;
    const c = cells.get(`${i},${j}`);
    if (!c) cells.set(`${i},${j}`, { best: t.value!, n: 1 });
    else {
      c.n++;
      if (better(t.value!, c.best)) c.best = t.value!;
    }
  }
  const vals = [...cells.values()].map((c) => c.best);
  const bestV = vals.reduce((a, b) => (better(b, a) ? b : a), vals[0] ?? 0);
  const worstV = vals.reduce((a, b) => (better(a, b) ? b : a), vals[0] ?? 0);
  const quality = (v: number) => (bestV === worstV ? 1 : (v - worstV) / (bestV - worstV)); // 1 = best

  const cw = Math.max(18, Math.min(64, Math.floor(520 / ax.bins)));
  const ch = Math.max(14, Math.min(40, Math.floor(360 / ay.bins)));
  const m = { l: 110, t: 12, r: 20, b: 56 };
  const W = m.l + ax.bins * cw + m.r;
  const H = m.t + ay.bins * ch + m.b;
  const rects: string[] = [];
  for (let i = 0; i < ax.bins; i++) {
    for (let j = 0; j < ay.bins; j++) {
      const x = m.l + i * cw;
      const y = m.t + (ay.bins - 1 - j) * ch; // the y axis grows upwards
      const c = cells.get(`${i},${j}`);
      if (!c) {
        rects.push(`<rect class="cell empty" x="${x}" y="${y}" width="${cw}" height="${ch}" fill="#f6f6f6" stroke="#d0d0d0" stroke-dasharray="3 2"><title>no trials</title></rect>`);
        continue;
      }
      const q = quality(c.best);
      rects.push(
        `<rect class="cell" x="${x}" y="${y}" width="${cw}" height="${ch}" fill="${qualityColour(q)}" stroke="white" data-n="${c.n}" data-best="${c.best}"><title>best ${e(fmtNum(c.best))} over ${c.n} trial${c.n === 1 ? '' : 's'}</title></rect>` +
          (cw >= 44 && ch >= 18 ? `<text x="${x + cw / 2}" y="${y + ch / 2 + 4}" text-anchor="middle" font-size="10" fill="${q > 0.6 ? '#222' : '#fff'}" pointer-events="none">${e(fmtNum(c.best))}</text>` : ''),
      );
    }
  }
  const xTicks = ax.ticks
    .map(({ at, label }) => {
      const x = m.l + at * cw;
      return `<text x="${x}" y="${m.t + ay.bins * ch + 14}" text-anchor="end" font-size="10" transform="rotate(-30 ${x} ${m.t + ay.bins * ch + 14})">${e(label)}</text>`;
    })
    .join('');
  const yTicks = ay.ticks.map(({ at, label }) => `<text x="${m.l - 6}" y="${m.t + (ay.bins - at) * ch + 4}" text-anchor="end" font-size="10">${e(label)}</text>`).join('');
  const axes =
    `<text x="${m.l + (ax.bins * cw) / 2}" y="${H - 6}" text-anchor="middle" font-size="12">${e(ax.name)}</text>` +
    `<text transform="translate(14 ${m.t + (ay.bins * ch) / 2}) rotate(-90)" text-anchor="middle" font-size="12">${e(ay.name)}</text>`;
  // Legend: worst to best along the colour ramp (the quality scale the session views use, perceptually even and readable in grey).
  const LW = 200;
  const stops = colourScale().stops.map(([q, c]) => `<stop offset="${Math.round(100 * q)}%" stop-color="${c}"/>`).join('');
  const legend = vals.length
    ? `<svg class="legend" width="${LW + 200}" height="40" role="img" aria-label="colour legend"><defs><linearGradient id="heat-ramp">${stops}</linearGradient></defs>` +
      `<rect x="60" y="6" width="${LW}" height="12" fill="url(#heat-ramp)" stroke="#999"/>` +
      `<text x="56" y="16" text-anchor="end" font-size="11">worst</text><text x="${LW + 64}" y="16" font-size="11">best</text>` +
      `<text x="60" y="32" font-size="11">${e(fmtNum(worstV))}</text><text x="${LW + 60}" y="32" text-anchor="end" font-size="11">${e(fmtNum(bestV))}</text></svg>`
    : '';
  const svg = `<svg class="heatmap" width="${W}" height="${H}" role="img" aria-label="${e(`heatmap of ${objective} over ${ax.name} and ${ay.name}`)}"><rect width="${W}" height="${H}" fill="white"/>${rects.join('')}${xTicks}${yTicks}${axes}</svg>`;
  return (
    `<h2>Heatmap: ${e(ax.name)} × ${e(ay.name)}</h2>${svg}<div>${legend}</div>` +
    `<p class="note">Each cell is coloured by the best ${e(objective)} among the complete trials whose params fall in it; dashed cells hold no trial.</p>`
  );
}

// ---------------------------------------------------------------------------------------------
// History, space, formatting

function historySeries(trials: TrialRecord[], better: (a: number, b: number) => boolean, objective: string) {
  const done = trials.filter((t) => t.state === 'complete' && finite(t.value) !== undefined).sort((a, b) => a.number - b.number);
  let best: number | undefined;
  const bestSoFar = done.map((t): [number, number] => {
    if (best === undefined || better(t.value!, best)) best = t.value!;
    return [t.number, best];
  });
  return [
    { name: objective, color: '#9ecae1', points: done.map((t): [number, number] => [t.number, t.value!]) },
    { name: 'best so far', color: '#d62728', points: bestSoFar },
  ];
}

function spaceTable(space: Space): string {
  const describe = (p: Param): string => {
    if (p.kind === 'categorical') return `one of ${p.choices.map((c) => e(JSON.stringify(c))).join(', ')}`;
    if (p.kind === 'cube') return `a point in [0, 1]<sup>${p.dims}</sup>`;
    return `${p.kind} in [${e(fmtNum(p.low))}, ${e(fmtNum(p.high))}]${p.log ? ', log scale' : ''}${p.step !== undefined ? `, step ${e(fmtNum(p.step))}` : ''}`;
  };
  return `<table class="space">${Object.entries(space)
    .map(([n, p]) => `<tr><th>${e(n)}</th><td>${describe(p)}</td></tr>`)
    .join('')}</table>`;
}

const finite = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** attrs.metrics, keeping finite numbers only (attrs come from files and objectives: trust nothing). */
function readMetrics(t: TrialRecord): Record<string, number> {
  const m = t.attrs.metrics;
  if (!m || typeof m !== 'object' || Array.isArray(m)) return {};
  return Object.fromEntries(Object.entries(m as Record<string, unknown>).filter(([, v]) => finite(v) !== undefined)) as Record<string, number>;
}

/** attrs.responses, keeping well-formed entries. */
function readResponses(t: TrialRecord): TrialResponse[] {
  const rs = t.attrs.responses;
  if (!Array.isArray(rs)) return [];
  return rs
    .filter((r): r is Record<string, unknown> => !!r && typeof r === 'object' && typeof (r as { text?: unknown }).text === 'string')
    .map((r) => ({
      text: r.text as string,
      score: finite(r.score),
      scores: r.scores && typeof r.scores === 'object' ? (Object.fromEntries(Object.entries(r.scores).filter(([, v]) => finite(v) !== undefined)) as Record<string, number>) : undefined,
      prompt: typeof r.prompt === 'string' ? r.prompt : undefined,
    }));
}

/** A param value as HTML: a cube point of 3 coordinates shows its colour (ChromaTune nodes are colours). */
function fmtParamHtml(v: ParamValue): string {
  if (Array.isArray(v)) {
    const nums = v.map((x) => (typeof x === 'number' && Number.isFinite(x) ? x : NaN));
    const text = `(${nums.map((x) => x.toFixed(2)).join(', ')})`;
    if (nums.length === 3 && nums.every((x) => x >= 0 && x <= 1)) {
      return `<span class="swatch" style="background:rgb(${nums.map((x) => Math.round(255 * x)).join(',')})"></span>${text}`;
    }
    return text;
  }
  return e(typeof v === 'number' ? fmtNum(v) : String(v));
}

function paramsInline(space: Space, t: TrialRecord): string {
  return Object.keys(space)
    .filter((n) => t.params[n] !== undefined)
    .map((n) => `<code>${e(n)}</code>=${fmtParamHtml(t.params[n])}`)
    .join(', ');
}

const STYLE = `
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}h3{font-size:14px;margin:6px 0}h4{font-size:12px;margin:0 0 4px;color:#555}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
table.summary th,table.space th{background:#fafafa}
.scroll{overflow-x:auto}
table.ranking thead th{background:#f3f3f3;cursor:pointer;user-select:none;white-space:nowrap;position:sticky;top:0}
table.ranking th[aria-sort=ascending]::after{content:" \\25B2"}table.ranking th[aria-sort=descending]::after{content:" \\25BC"}
table.ranking td{white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.best td{background:#eef8ee}
td.state.failed{color:#b00020}td.state.pruned{color:#8a6d00}td.state.running{color:#555}
.error{display:block;min-width:240px;max-width:420px;color:#b00020;font-family:ui-monospace,monospace;font-size:12px;white-space:pre-wrap}
.swatch{display:inline-block;width:12px;height:12px;border:1px solid #999;margin-right:4px;vertical-align:-2px}
.note{color:#666;font-size:12px}
.pair{border:1px solid #ddd;border-radius:4px;padding:8px 12px;margin:10px 0}
.cols{display:grid;grid-template-columns:1fr 2fr;gap:12px}
.text{white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:12px;background:#f8f8f8;padding:4px 6px;border-radius:3px}
.desired .text{background:#eef4fb}
.responses ol{margin:0;padding-left:20px}.responses li{margin-bottom:6px}
.scores,.prompt{color:#666;font-size:11px}
`;

/**
 * Sorts the ranking's rows by the clicked column: first click ascending, next descending. Cells
 * carry their sort key in data-v; empty keys sort last either way. Holds no data.
 */
const SORT_SCRIPT = `(function(){
var table=document.getElementById('ranking');if(!table)return;
var heads=table.tHead.rows[0].cells;
function sortBy(th){
var i=th.cellIndex,num=th.getAttribute('data-type')==='num';
var dir=th.getAttribute('aria-sort')==='ascending'?'descending':'ascending';
for(var h=0;h<heads.length;h++)heads[h].removeAttribute('aria-sort');
th.setAttribute('aria-sort',dir);
var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
function key(r){var v=r.cells[i].getAttribute('data-v');return v===null||v===''?null:num?Number(v):v;}
rows.sort(function(a,b){var x=key(a),y=key(b);
if(x===null||y===null)return x===y?0:x===null?1:-1;
var c=num?x-y:String(x).localeCompare(String(y));return dir==='ascending'?c:-c;});
for(var r=0;r<rows.length;r++)body.appendChild(rows[r]);}
for(var k=0;k<heads.length;k++){heads[k].addEventListener('click',function(ev){sortBy(ev.currentTarget);});
heads[k].addEventListener('keydown',function(ev){if(ev.key==='Enter'||ev.key===' '){ev.preventDefault();sortBy(ev.currentTarget);}});}
})();`;
