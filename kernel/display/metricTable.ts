/** The metric table of a run, base model against fine-tuned per split: in report.html and in the notebook's run display. */
import type { JobSummary } from '../run/job';
import { escapeHtml as e } from './html';

export const pct = (x: number): string => (100 * x).toFixed(1);

/** How one view styles the table: class names for better and worse cells and for numbers, and how a non-percentage shows. */
export interface MetricTableStyle {
  up: string;
  down: string;
  num: string;
  plain: (x: number) => string;
}

/** The whole <table>, header included; a cell is marked better or worse than the base model's. */
export function metricTable(metrics: JobSummary['metrics'], st: MetricTableStyle): string {
  const cls = (...names: string[]) => {
    const c = names.filter(Boolean).join(' ');
    return c ? ` class="${c}"` : '';
  };
  const num = cls(st.num);
  const cells = (b: number | undefined, f: number | undefined, asPct: boolean, higherBetter: boolean): string => {
    if (b === undefined || f === undefined) return `<td${num}>-</td><td${num}>-</td>`;
    const show = asPct ? pct : st.plain;
    const mark = f === b ? '' : f > b === higherBetter ? st.up : st.down;
    return `<td${num}>${show(b)}</td><td${cls(st.num, mark)}>${show(f)}</td>`;
  };
  const rows = Object.entries(metrics)
    .map(
      ([split, { base: b, finetuned: f }]) =>
        `<tr><th>${e(split)}</th><td${num}>${b.examples}</td>${cells(b.perplexity, f.perplexity, false, false)}${cells(b.exactMatch, f.exactMatch, true, true)}` +
        `${cells(b.tokenF1, f.tokenF1, true, true)}${cells(b.rougeL, f.rougeL, true, true)}${cells(b.recited, f.recited, true, false)}</tr>`,
    )
    .join('');
  const head = (label: string, title = '') => `<th${num} colspan="2"${title ? ` title="${e(title)}"` : ''}>${label}</th>`;
  return (
    `<table><thead><tr><th>split</th><th${num}>n</th>${head('perplexity (base, tuned)')}${head('exact match %')}${head('token F1 %')}${head('ROUGE-L %')}` +
    `${head('recited %', 'answers that repeat the answer of another trained question: on facts never trained on, made up')}</tr></thead><tbody>${rows}</tbody></table>`
  );
}
