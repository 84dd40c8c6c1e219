/**
 * Rich representations of a study, a run and a dataset for notebooks: each a MIME bundle with a
 * compact, self-contained text/html (no script, no network) and a text/plain fallback. Also the
 * small shared pieces the other notebook views build on: the themed container, number formatting
 * and quality chips.
 */
import * as path from 'path';
import type { QAExample } from '../data/example';
import type { JobSummary } from '../run/job';
import type { ParamValue } from '../tune/space';
import type { Direction, TrialRecord } from '../tune/types';
import { escapeHtml as e } from './html';
import type { MimeBundle } from './mime';
import { metricTable, pct } from './metricTable';

/** A path as the reader's working folder sees it (summaries store absolute paths). */
const shownPath = (p: string): string => (path.isAbsolute(p) ? path.relative(process.cwd(), p) || '.' : p);

/** Every view's root carries this class; all its CSS is scoped under it. */
export const ROOT_CLASS = 'chromatune';

/**
 * The component paints its own background and text colour, so it reads the same whatever the
 * notebook's theme; JupyterLab's dark themes (and nbconvert's dark lab template) mark the page with
 * data-jp-theme-light="false", which switches the component's palette. Table rules are written with
 * a doubled class so they win over the notebook's own striped/hovered table styles.
 */
const BASE_CSS = `
.R{--ct-bg:#fbfbfc;--ct-fg:#1f2328;--ct-muted:#59636e;--ct-line:#d5d9de;--ct-panel:#f1f3f5;--ct-accent:#d1495b;
background:var(--ct-bg);color:var(--ct-fg);border:1px solid var(--ct-line);border-radius:8px;padding:10px 14px;margin:4px 0;
font:13px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:100%;box-sizing:border-box;overflow-x:auto;text-align:left}
[data-jp-theme-light="false"] .R{--ct-bg:#1d2025;--ct-fg:#e6e8eb;--ct-muted:#a3abb5;--ct-line:#3b4048;--ct-panel:#272b31;--ct-accent:#ff7f7f}
.R *{box-sizing:border-box}
.R .ct-title{font-size:15px;font-weight:600;margin:0 0 2px}
.R .ct-sub{color:var(--ct-muted);margin:0 0 8px}
.R .ct-h{font-size:13px;font-weight:600;margin:12px 0 4px;color:var(--ct-fg)}
.R .ct-note{color:var(--ct-muted);font-size:12px;margin:2px 0}
.R code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:var(--ct-panel);color:var(--ct-fg);padding:0 3px;border-radius:3px}
.R.R table{border-collapse:collapse;margin:4px 0;table-layout:auto;font-size:12px;border:none;width:auto}
.R.R th,.R.R td{border:none;border-bottom:1px solid var(--ct-line);padding:3px 8px;text-align:left;vertical-align:top;color:var(--ct-fg);background:transparent;max-width:none}
.R.R thead th{color:var(--ct-muted);font-weight:600;border-bottom:1px solid var(--ct-muted)}
.R.R tbody tr,.R.R tbody tr:nth-child(odd),.R.R tbody tr:hover{background:transparent}
.R.R td.num,.R.R th.num{text-align:right;font-variant-numeric:tabular-nums}
.R .ct-chip{display:inline-block;min-width:38px;padding:0 5px;border-radius:9px;font-size:11px;font-weight:600;text-align:center;font-variant-numeric:tabular-nums}
.R .ct-up{color:#1a7f37}.R .ct-down{color:var(--ct-accent)}
[data-jp-theme-light="false"] .R .ct-up{color:#56d364}
`;

/** `css` written with `.R` for the root; returns it scoped under ROOT_CLASS. */
export const scopedCss = (css: string): string => css.replace(/\.R\b/g, `.${ROOT_CLASS}`);

/** A themed, self-contained block: the base CSS, the view's own CSS, and its body. */
export function themedBlock(viewClass: string, css: string, body: string): string {
  return `<div class="${ROOT_CLASS} ${viewClass}"><style>${scopedCss(BASE_CSS + css)}</style>${body}</div>`;
}

/** Short form of a number: integers as they are, others to 4 significant digits; '—' for none. */
export function fmtNum(v: number | null | undefined, digits = 4): string {
  if (v === null || v === undefined) return '—';
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e9) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return Number(v.toPrecision(digits)).toExponential();
  return String(Number(v.toPrecision(digits)));
}

/**
 * A colour from data as a CSS value: only '#rgb'/'#rrggbb'(aa) pass, so nothing in a payload can
 * smuggle CSS (url(), expressions) into a style attribute.
 */
export const safeColour = (c: unknown, fallback = '#8b949e'): string => (typeof c === 'string' && /^#(?:[0-9a-f]{3}|[0-9a-f]{6}|[0-9a-f]{8})$/i.test(c) ? c : fallback);

/** Dark or light text, whichever reads on background `c` (relative luminance of sRGB). */
export function textOn(c: string): string {
  let h = safeColour(c).slice(1);
  if (h.length === 3) h = [...h].map((x) => x + x).join('');
  const lin = [0, 2, 4].map((i) => {
    const v = parseInt(h.slice(i, i + 2), 16) / 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  });
  const L = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2];
  return L > 0.2 ? '#111' : '#fff';
}

/** A quality as a chip in its own colour. */
export function qualityChip(q: number, colour: string, title?: string): string {
  const c = safeColour(colour);
  return `<span class="ct-chip" style="background:${c};color:${textOn(c)}"${title ? ` title="${e(title)}"` : ''}>${Number.isFinite(q) ? q.toFixed(2) : '—'}</span>`;
}

/** Cuts long text for tables and text/plain, with an ellipsis. */
export const clip = (s: string, n: number): string => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

/* ---------------------------------------------------------------- study */

/** What the study view needs; a Study passes as it is. */
export interface StudyView {
  name?: string;
  direction: Direction;
  sampler?: string | { name: string };
  trials: readonly TrialRecord[];
}

const fmtParam = (v: ParamValue): string =>
  Array.isArray(v) ? `(${v.map((x) => (typeof x === 'number' ? x.toFixed(2) : String(x))).join(', ')})` : typeof v === 'number' ? fmtNum(v) : String(v);

/** Complete trials with a finite value, best first (ties by trial number). */
function rankTrials(study: StudyView): TrialRecord[] {
  const sign = study.direction === 'minimize' ? 1 : -1;
  return study.trials
    .filter((t) => t.state === 'complete' && typeof t.value === 'number' && Number.isFinite(t.value))
    .sort((a, b) => sign * (a.value! - b.value!) || a.number - b.number);
}

const STUDY_CSS = `.R .ct-best{font-weight:600}`;

/** A study as a ranking table (top `top` trials) and its best trial. */
export function studyBundle(study: StudyView, o: { top?: number } = {}): MimeBundle {
  const top = o.top ?? 10;
  const ranked = rankTrials(study);
  const best = ranked[0];
  const count = (s: TrialRecord['state']) => study.trials.filter((t) => t.state === s).length;
  const sampler = typeof study.sampler === 'string' ? study.sampler : study.sampler?.name;
  const name = study.name ?? 'study';
  const counts = `${study.trials.length} trials: ${count('complete')} complete, ${count('failed')} failed, ${count('pruned')} pruned${count('running') ? `, ${count('running')} running` : ''}`;
  const paramNames = [...new Set(ranked.slice(0, top).flatMap((t) => Object.keys(t.params)))];
  const bestLine = best ? `#${best.number} = ${fmtNum(best.value)} with ${Object.entries(best.params).map(([k, v]) => `${k}=${fmtParam(v)}`).join(', ')}` : 'none completed yet';

  const rows = ranked
    .slice(0, top)
    .map(
      (t, i) =>
        `<tr${i === 0 ? ' class="ct-best"' : ''}><td class="num">${i + 1}</td><td class="num">#${t.number}</td><td class="num">${e(fmtNum(t.value))}</td>${paramNames.map((p) => `<td>${t.params[p] === undefined ? '' : e(fmtParam(t.params[p]))}</td>`).join('')}</tr>`,
    )
    .join('');
  const table = ranked.length
    ? `<table><thead><tr><th class="num">rank</th><th class="num">trial</th><th class="num">value</th>${paramNames.map((p) => `<th>${e(p)}</th>`).join('')}</tr></thead><tbody>${rows}</tbody></table>${ranked.length > top ? `<div class="ct-note">… and ${ranked.length - top} more complete trials</div>` : ''}`
    : '<div class="ct-note">No complete trials yet.</div>';
  const html = themedBlock(
    'ct-study',
    STUDY_CSS,
    `<div class="ct-title">Study ${e(name)}</div><div class="ct-sub">${e(study.direction)}${sampler ? ` · ${e(sampler)} sampler` : ''} · ${e(counts)}</div>` +
      `<div><b>best</b> ${e(bestLine)}</div>${table}`,
  );
  const text = [
    `Study ${name} (${study.direction}${sampler ? `, ${sampler}` : ''}): ${counts}`,
    `best: ${bestLine}`,
    ...ranked.slice(1, Math.min(top, 5)).map((t, i) => `  ${i + 2}. #${t.number} = ${fmtNum(t.value)}`),
  ].join('\n');
  return { 'text/html': html, 'text/plain': text };
}

/* ------------------------------------------------------------------ run */


/** A run's summary: metric table (base against fine-tuned) and the headline numbers. */
export function runBundle(s: JobSummary): MimeBundle {
  const splits = Object.entries(s.metrics);
  const facts: Array<[string, string]> = [
    ['steps', String(s.steps)],
    ['trainable parameters', s.trainable_parameters.toLocaleString('en-US')],
    ['final train loss', fmtNum(s.final_train_loss)],
    ['best validation loss', fmtNum(s.best_val_loss)],
    ['time', `${s.seconds.total.toFixed(0)} s (training ${s.seconds.training.toFixed(0)} s)`],
  ];
  if (s.l_score) facts.push([`L-score (${s.l_score.split})`, fmtNum(s.l_score.L)]);
  const status = s.interrupted ? 'interrupted' : s.stopped_early ? 'stopped early' : 'complete';
  const table = splits.length
    ? metricTable(s.metrics, { up: 'ct-up', down: 'ct-down', num: 'num', plain: (x) => fmtNum(x) })
    : '<div class="ct-note">No metrics: the run did not finish.</div>';
  const html = themedBlock(
    'ct-run',
    '',
    `<div class="ct-title">${e(s.title)}</div><div class="ct-sub">run <code>${e(s.run)}</code> · ${e(s.method)} on <code>${e(shownPath(s.model))}</code> · ${e(status)}</div>` +
      `<div class="ct-note">${facts.map(([k, v]) => `${e(k)} <b>${e(v)}</b>`).join(' · ')}</div>${table}`,
  );
  const text = [
    `${s.title}: run ${s.run} (${s.method} on ${shownPath(s.model)}, ${status})`,
    facts.map(([k, v]) => `${k} ${v}`).join(', '),
    ...splits.map(([split, m]) => `  ${split} (${m.base.examples}): perplexity ${fmtNum(m.base.perplexity)} → ${fmtNum(m.finetuned.perplexity)}, token F1 ${pct(m.base.tokenF1)}% → ${pct(m.finetuned.tokenF1)}%${m.finetuned.recited !== undefined ? `, recited ${pct(m.base.recited ?? 0)}% → ${pct(m.finetuned.recited)}%` : ''}`),
  ].join('\n');
  return { 'text/html': html, 'text/plain': text };
}

/* -------------------------------------------------------------- dataset */

const DATASET_CSS = `.R.R td.ct-text{max-width:360px;white-space:pre-wrap;word-break:break-word}.R .ct-src{color:var(--ct-muted);font-size:11px}`;

/** A dataset: its size and sources, and its first `rows` examples as a table. */
export function datasetBundle(examples: QAExample[], name: string, o: { rows?: number } = {}): MimeBundle {
  const n = Math.min(examples.length, o.rows ?? 10);
  const files = [...new Set(examples.map((x) => x.source.file))];
  const meanLen = (f: (x: QAExample) => string) => (examples.length ? examples.reduce((a, x) => a + f(x).length, 0) / examples.length : 0);
  const distinct = new Set(examples.map((x) => x.question)).size;
  const facts = `${examples.length} examples · ${distinct} distinct questions · mean length ${meanLen((x) => x.question).toFixed(0)} / ${meanLen((x) => x.answer).toFixed(0)} characters (question / answer) · from ${files.length === 1 ? files[0] : `${files.length} files`}`;
  const rows = examples
    .slice(0, n)
    .map((x, i) => `<tr><td class="num">${i}</td><td>${e(x.id ?? '')}</td><td class="ct-text">${e(x.question)}</td><td class="ct-text">${e(x.answer)}</td><td class="ct-src">${e(x.source.file)}:${x.source.line}</td></tr>`)
    .join('');
  const html = themedBlock(
    'ct-dataset',
    DATASET_CSS,
    `<div class="ct-title">Dataset ${e(name)}</div><div class="ct-sub">${e(facts)}</div>` +
      (n
        ? `<table><thead><tr><th class="num">#</th><th>id</th><th>question</th><th>answer</th><th>source</th></tr></thead><tbody>${rows}</tbody></table>${examples.length > n ? `<div class="ct-note">first ${n} of ${examples.length}</div>` : ''}`
        : '<div class="ct-note">No examples.</div>'),
  );
  const text = [`Dataset ${name}: ${facts}`, ...examples.slice(0, Math.min(n, 5)).map((x, i) => `  ${i}. ${clip(x.question, 60)} → ${clip(x.answer, 40)}`)].join('\n');
  return { 'text/html': html, 'text/plain': text };
}
