/**
 * Live training progress in a notebook: one display that is updated in place (by its display id)
 * with a bar, a small loss curve, the step, tokens/s and the ETA; updates are throttled so a fast
 * training loop does not flood the front end. Outside a notebook (no display sink) the title is
 * printed at the start and the summary at the end.
 */
import type { ProgressEvent } from '../train/finetune';
import { clip, fmtNum, themedBlock } from './bundles';
import { escapeHtml as e, lineChart } from './html';
import { display, hasDisplaySink, type DisplayHandle, type MimeBundle } from './mime';

export interface LiveProgressOptions {
  /** Least time between two updates of the display (default 500 ms). */
  minIntervalMs?: number;
  /** Milliseconds now; a test passes its own clock. */
  now?: () => number;
  /** Loss points kept per curve: beyond it, older points are thinned (default 400). */
  maxPoints?: number;
}

export type Outcome = 'finished' | 'interrupted' | 'failed';

/** What done() shows: a sentence, or named figures (a run's summary, a result's numbers). */
export type LiveSummary = string | Record<string, unknown>;

export interface LiveProgress {
  readonly displayId: string;
  /** Pass as a trainer's onProgress: records every event, redraws at most every minIntervalMs. */
  onProgress(e: ProgressEvent): void;
  /**
   * The final update: the last state, the summary and how the work ended (default finished); later
   * events are ignored. An interrupted or failed run keeps its bar where it stopped.
   */
  done(summary?: LiveSummary, outcome?: Outcome): void;
}

/** Keeps a curve under `max` points by dropping every other one; the newest point always stays. */
function thin(points: Array<[number, number]>, max: number): void {
  if (points.length <= max) return;
  const last = points[points.length - 1];
  const kept = points.filter((_, i) => i % 2 === 0);
  if (kept[kept.length - 1] !== last) kept.push(last);
  points.splice(0, points.length, ...kept);
}

export function fmtDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '—';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

interface State {
  last: ProgressEvent | null;
  train: Array<[number, number]>;
  validation: Array<[number, number]>;
}

const CSS = `
.R .ct-bar-out{height:12px;border-radius:6px;background:var(--ct-panel);border:1px solid var(--ct-line);overflow:hidden;margin:6px 0 4px;max-width:520px}
.R .ct-bar-in{height:100%;background:linear-gradient(to right,#31688e,#35b779);border-radius:6px 0 0 6px}
.R .ct-stats{display:flex;flex-wrap:wrap;gap:2px 16px;font-variant-numeric:tabular-nums}
.R .ct-stats b{font-weight:600}
.R .ct-chart{margin-top:6px;display:inline-block;border-radius:4px;overflow:hidden}
.R .ct-summary{margin-top:8px;padding:6px 10px;background:var(--ct-panel);border-radius:6px}
`;

/** A summary's named figures worth showing (no functions, nothing undefined), each as text. */
const summaryEntries = (s: Record<string, unknown>): Array<[string, string]> =>
  Object.entries(s)
    .filter(([, v]) => v !== undefined && typeof v !== 'function')
    .map(([k, v]) => [k, summaryValue(v)]);

function summaryHtml(s: LiveSummary): string {
  if (typeof s === 'string') return `<div class="ct-summary">${e(s)}</div>`;
  const rows = summaryEntries(s)
    .map(([k, v]) => `<tr><th>${e(k)}</th><td>${e(v)}</td></tr>`)
    .join('');
  return `<div class="ct-summary"><table><tbody>${rows}</tbody></table></div>`;
}

function summaryValue(v: unknown): string {
  if (typeof v === 'number') return fmtNum(v);
  if (typeof v === 'string') return v;
  try {
    return clip(JSON.stringify(v) ?? String(v), 160);
  } catch {
    // Cyclic or otherwise unserialisable (a model, a client): name it rather than fail the display.
    return `[${(v as object)?.constructor?.name ?? typeof v}]`;
  }
}

const summaryText = (s: LiveSummary): string =>
  typeof s === 'string'
    ? s
    : summaryEntries(s)
        .map(([k, v]) => `${k}: ${v}`)
        .join(', ');

/** The current state as a bundle; `end` marks the final view and how the work ended. */
function render(title: string, st: State, end: Outcome | null, summary?: LiveSummary): MimeBundle {
  const final = end !== null;
  const ev = st.last;
  const total = ev?.totalSteps ?? 0;
  const step = ev?.step ?? 0;
  const frac = total > 0 ? Math.min(1, step / total) : 0;
  const status = end ?? (ev ? `${(100 * frac).toFixed(0)}%` : 'starting…');
  const loss = st.train.at(-1)?.[1];
  const val = st.validation.at(-1)?.[1];
  const stats: Array<[string, string]> = ev
    ? [
        ['step', `${step}/${total}`],
        ['epoch', fmtNum(ev.epoch, 3)],
        ...(loss !== undefined ? [['loss', fmtNum(loss)] as [string, string]] : []),
        ...(val !== undefined ? [['val loss', fmtNum(val)] as [string, string]] : []),
        ['tokens/s', Number.isFinite(ev.tokensPerSecond) ? ev.tokensPerSecond.toFixed(0) : '—'],
        final ? ['time', fmtDuration(ev.elapsedSeconds)] : ['ETA', fmtDuration(ev.etaSeconds)],
      ]
    : [];
  const series = [
    { name: 'training loss', color: '#1f77b4', points: st.train },
    { name: 'validation loss', color: '#d62728', points: st.validation },
  ].filter((s) => s.points.length);
  const chart = series.length ? `<div class="ct-chart">${lineChart(series, { width: 440, height: 170, xLabel: 'step', title: 'loss' })}</div>` : '';
  const html = themedBlock(
    'ct-live',
    CSS,
    `<div class="ct-title">${e(title)} <span class="ct-sub">${e(status)}</span></div>` +
      `<div class="ct-bar-out" role="progressbar" aria-valuemin="0" aria-valuemax="${total}" aria-valuenow="${step}"><div class="ct-bar-in" style="width:${(100 * (end === 'finished' && total === 0 ? 1 : frac)).toFixed(1)}%"></div></div>` +
      `<div class="ct-stats">${stats.map(([k, v]) => `<span>${e(k)} <b>${e(v)}</b></span>`).join('')}</div>${chart}${summary !== undefined ? summaryHtml(summary) : ''}`,
  );
  const text = [`${title}: ${status}`, stats.map(([k, v]) => `${k} ${v}`).join(', '), summary !== undefined ? summaryText(summary) : ''].filter(Boolean).join('\n');
  return { 'text/html': html, 'text/plain': text };
}

/** Starts the display now; feed it with onProgress and close it with done(). */
export function liveProgress(title: string, o: LiveProgressOptions = {}): LiveProgress {
  const minInterval = o.minIntervalMs ?? 500;
  const now = o.now ?? (() => Date.now());
  const maxPoints = o.maxPoints ?? 400;
  const st: State = { last: null, train: [], validation: [] };
  const handle: DisplayHandle = display(render(title, st, null));
  let lastDraw = -Infinity;
  let finished = false;
  return {
    displayId: handle.displayId,
    onProgress(ev) {
      if (finished) return;
      st.last = ev;
      if (ev.kind === 'step' && typeof ev.loss === 'number') {
        st.train.push([ev.step, ev.loss]);
        thin(st.train, maxPoints);
      }
      if (ev.kind === 'eval' && typeof ev.valLoss === 'number') {
        st.validation.push([ev.step, ev.valLoss]);
        thin(st.validation, maxPoints);
      }
      const t = now();
      if (t - lastDraw < minInterval) return;
      lastDraw = t;
      handle.update(render(title, st, null));
    },
    done(summary, outcome = 'finished') {
      if (finished) return;
      finished = true;
      const bundle = render(title, st, outcome, summary);
      handle.update(bundle);
      // Without a notebook the updates went nowhere: print the outcome once.
      if (!hasDisplaySink()) process.stdout.write(`${bundle['text/plain']}\n`);
    },
  };
}
