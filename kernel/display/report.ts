/** The self-contained report.html of a run: loss curves, metric table, answers side by side. No scripts, no network. */
import type { EvalResult } from '../eval';
import type { FinetuneResult } from '../train/finetune';
import type { JobSummary } from '../run/job';
import { escapeHtml as e, lineChart } from './html';
import { metricTable } from './metricTable';

export function renderRunReport(s: JobSummary, r: FinetuneResult, answers: Record<string, { base: EvalResult; finetuned: EvalResult }>): string {
  const lossChart = lineChart(
    [
      { name: 'training loss', color: '#1f77b4', points: r.history.map((h) => [h.step, h.loss]) },
      { name: 'validation loss', color: '#d62728', points: r.evals.map((v) => [v.step, v.valLoss]) },
    ],
    { xLabel: 'step', yLabel: 'loss (nats/token)', title: 'loss curves' },
  );
  const lrChart = lineChart([{ name: 'learning rate', color: '#2ca02c', points: r.history.map((h) => [h.step, h.lr]) }], { height: 180, xLabel: 'step', title: 'learning rate' });
  const metrics = metricTable(s.metrics, { up: 'up', down: 'down', num: '', plain: (x) => x.toFixed(2) });
  const answerSections = Object.entries(answers)
    .map(([split, a]) => {
      const rows = a.base.answers
        .map((b, i) => {
          const f = a.finetuned.answers[i];
          return `<tr><td>${e(b.question)}</td><td>${e(b.reference)}</td><td>${e(b.answer)}<span class="f1">F1 ${b.tokenF1.toFixed(2)}</span></td><td style="background:${heat(f.tokenF1)}">${e(f.answer)}<span class="f1">F1 ${f.tokenF1.toFixed(2)}</span></td></tr>`;
        })
        .join('');
      return `<details${split === 'test' ? ' open' : ''}><summary>${e(split)}: ${a.base.answers.length} questions</summary><table class="answers"><thead><tr><th>question</th><th>reference</th><th>base</th><th>fine-tuned</th></tr></thead><tbody>${rows}</tbody></table></details>`;
    })
    .join('');
  const settings = Object.entries(s.settings)
    .filter(([, v]) => v !== undefined && typeof v !== 'function')
    .map(([k, v]) => `<tr><th>${e(k)}</th><td>${e(JSON.stringify(v))}</td></tr>`)
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${e(s.title)}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
td.up{color:#0a7a2f;font-weight:600}td.down{color:#b00020}
table.answers td{max-width:260px}.f1{display:block;color:#777;font-size:11px}
.meta{color:#555}
</style></head><body>
<h1>${e(s.title)}</h1>
<p class="meta">run <code>${e(s.run)}</code> · base model <code>${e(s.model)}</code> · ${e(s.method)} · ${s.train_examples} training examples${s.truncated_train_examples ? ` (${s.truncated_train_examples} cut to the context)` : ''}, ${s.validation_examples} for validation · ${s.steps} steps · ${s.trainable_parameters} trainable parameters · ${s.seconds.total.toFixed(0)} s in all</p>
<h2>Metrics: base model against fine-tuned</h2>
${metrics}
<p class="meta">recited: answers that repeat the answer of another trained question. On facts never trained on (such as nyc-qa's held_out_facts) every such answer is made up, so this measures hallucination.</p>
<h2>Loss</h2>${lossChart}${lrChart}
<h2>Answers side by side</h2>${answerSections}
<h2>Settings</h2><table>${settings}</table>
</body></html>
`;
}

/** Background for a quality in [0, 1]: red through yellow to green, light enough for text. */
function heat(q: number): string {
  const hue = Math.round(120 * Math.max(0, Math.min(1, q)));
  return `hsl(${hue} 70% 88%)`;
}
