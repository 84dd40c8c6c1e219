import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { pathToFileURL } from 'url';
import { renderStudyReport, writeStudyReport, type StudyReportInput } from '../kernel/display/studyReport';
import { parameterImportance } from '../kernel/tune/importance';
import { RandomSampler } from '../kernel/tune/random';
import { categorical, cube, float, int, type Params, type Space } from '../kernel/tune/space';
import { Study, TrialPruned } from '../kernel/tune/study';
import type { TrialRecord } from '../kernel/tune/types';
import { openTrackedPage } from './browser-helpers';

const OUT = path.join(__dirname, '..', 'test-output', 'study-report');

/** Deterministic uniform [0,1) numbers (an LCG), independent of the library's own generators. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

/** Complete trials with the given params and values, as a study would record them. */
function records(rows: Array<[Params, number]>): TrialRecord[] {
  return rows.map(([params, value], number) => ({ number, params, state: 'complete', value, intermediate: [], attrs: {}, startedAt: '2024-01-01T00:00:00Z' }));
}

const share = (imp: Array<{ name: string; importance: number }>, name: string) => imp.find((p) => p.name === name)!.importance;

describe('parameter importance (fANOVA over a random forest)', () => {
  test('an objective of x alone: x carries nearly all the variance, y almost none', () => {
    const r = lcg(1);
    const space: Space = { x: float(0, 1), y: float(0, 1) };
    const rows = Array.from({ length: 80 }, (): [Params, number] => {
      const [x, y] = [r(), r()];
      return [{ x, y }, 10 * (x - 0.3) ** 2 + 0.001 * y];
    });
    const imp = parameterImportance(space, records(rows), 'minimize');
    expect(imp.map((p) => p.name)).toEqual(['x', 'y']);
    expect(share(imp, 'x')).toBeGreaterThan(0.95);
    expect(share(imp, 'y')).toBeLessThan(0.03);
    expect(imp.reduce((s, p) => s + p.importance, 0)).toBeCloseTo(1, 9);
  });

  test('f = 3x + y on the uniform square: shares near the analytic 9/10 and 1/10', () => {
    // Var(3x) = 9/12, Var(y) = 1/12: first-order shares 0.9 and 0.1, no interaction.
    const r = lcg(2);
    const rows = Array.from({ length: 200 }, (): [Params, number] => {
      const [x, y] = [r(), r()];
      return [{ x, y }, 3 * x + y];
    });
    const imp = parameterImportance({ x: float(0, 1), y: float(0, 1) }, records(rows), 'maximize');
    expect(share(imp, 'x')).toBeGreaterThan(0.8);
    expect(share(imp, 'x')).toBeLessThan(0.97);
    expect(share(imp, 'y')).toBeGreaterThan(0.03);
    // Direction does not change variance shares.
    expect(parameterImportance({ x: float(0, 1), y: float(0, 1) }, records(rows), 'minimize')).toEqual(imp);
  });

  test('cube params count once, categoricals are ranked, constant params get 0', () => {
    const r = lcg(3);
    const space: Space = { colour: cube(3), mode: categorical(['a', 'b', 'c']), fixed: float(2, 2), n: int(1, 8) };
    const rows = Array.from({ length: 120 }, (): [Params, number] => {
      const colour = [r(), r(), r()];
      const mode = ['a', 'b', 'c'][Math.floor(r() * 3)];
      const n = 1 + Math.floor(r() * 8);
      // The cube's first and last coordinates and the mode matter; n barely.
      return [{ colour, mode, fixed: 2, n }, 4 * colour[0] + 4 * colour[2] + (mode === 'b' ? 3 : 0) + 0.01 * n];
    });
    const imp = parameterImportance(space, records(rows), 'minimize');
    expect(imp.map((p) => p.name).sort()).toEqual(['colour', 'fixed', 'mode', 'n']);
    expect(imp[0].name).toBe('colour');
    expect(imp[1].name).toBe('mode');
    expect(share(imp, 'fixed')).toBe(0);
    expect(share(imp, 'n')).toBeLessThan(0.05);
    for (let i = 1; i < imp.length; i++) expect(imp[i - 1].importance).toBeGreaterThanOrEqual(imp[i].importance);
  });

  test('a float and a one-coordinate cube over the same values get the same shares (two exact computations agree)', () => {
    const r = lcg(4);
    const rows = Array.from({ length: 60 }, () => [r(), r()]).map(([x, y]) => ({ x, y, v: Math.sin(6 * x) + y * y }));
    const a = parameterImportance({ x: float(0, 1), y: float(0, 1) }, records(rows.map(({ x, y, v }): [Params, number] => [{ x, y }, v])), 'minimize');
    const b = parameterImportance({ x: cube(1), y: cube(1) }, records(rows.map(({ x, y, v }): [Params, number] => [{ x: [x], y: [y] }, v])), 'minimize');
    expect(b.map((p) => p.name)).toEqual(a.map((p) => p.name));
    b.forEach((p, i) => expect(p.importance).toBeCloseTo(a[i].importance, 9));
  });

  test('fewer than 2 complete trials: empty; failed and pruned trials are ignored; constant objective: all 0', () => {
    const space: Space = { x: float(0, 1) };
    expect(parameterImportance(space, [], 'minimize')).toEqual([]);
    const [one, two] = records([
      [{ x: 0.1 }, 1],
      [{ x: 0.9 }, 2],
    ]);
    expect(parameterImportance(space, [one], 'minimize')).toEqual([]);
    expect(parameterImportance(space, [one, { ...two, state: 'failed', value: undefined, error: 'x' }, { ...two, number: 2, state: 'pruned' }], 'minimize')).toEqual([]);
    const flat = records([0.1, 0.5, 0.9].map((x): [Params, number] => [{ x }, 3]));
    expect(parameterImportance(space, flat, 'minimize')).toEqual([{ name: 'x', importance: 0 }]);
  });
});

const XSS_SCRIPT = '<script>window.__pwned = 1</script>';
const XSS_IMG = '"><img src=x onerror="window.__pwned=2">';

/** A maximising study with complete, failed and pruned trials, run folders, metrics and hostile text. */
async function makeStudy(runsDir: string): Promise<Study> {
  const space: Space = { lr: float(1e-4, 1e-1, { log: true }), layers: int(1, 4), mode: categorical(['plain', '<b>bold</b>']), colour: cube(3) };
  const study = new Study({ space, sampler: new RandomSampler(), direction: 'maximize', seed: 5, name: 'sweep <i>one</i>' });
  await study.optimize(
    (p, trial) => {
      if (trial.number % 9 === 4) throw new Error(`diverged ${XSS_IMG}`);
      const value = -((Math.log10(p.lr as number) + 2.5) ** 2) + 0.1 * (p.layers as number) + (p.mode === 'plain' ? 0.05 : 0);
      trial.report(1, value - 1);
      if (trial.number % 9 === 7) throw new TrialPruned();
      trial.setAttr('run', path.join(runsDir, `trial-${trial.number}`));
      trial.setAttr('metrics', { perplexity: Math.exp(-value), tokenF1: Math.max(0, 1 + value / 4) });
      trial.setAttr('responses', [
        { text: `plain answer ${trial.number}`, score: 0.1 },
        { text: XSS_SCRIPT, score: 0.9, scores: { tokenF1: 0.9 }, prompt: `question ${XSS_IMG}` },
        { text: XSS_IMG, score: 0.5 },
      ]);
      return value;
    },
    { trials: 30 },
  );
  return study;
}

const input = (study: Study): StudyReportInput => ({ study, objective: 'token F1 <est>', desired: 'desired <u>answer</u> & "quotes"', topK: 3 });

describe('study report HTML', () => {
  let study: Study;
  let html: string;
  const reportDir = path.join(os.tmpdir(), 'chromatune-report');
  beforeAll(async () => {
    study = await makeStudy(path.join(reportDir, 'runs'));
    html = renderStudyReport({ ...input(study), reportDir });
  });

  test('self-contained: no network addresses, no external resources, one inline script', () => {
    expect(html).not.toMatch(/(src|href)\s*=\s*["']?\s*(https?:)?\/\//i);
    expect(html).not.toMatch(/https?:\/\//i);
    expect(html).not.toMatch(/<link\b/i);
    expect(html).not.toMatch(/url\(\s*["']?(?!#)/i);
    expect(html.match(/<script\b/gi)).toHaveLength(1);
    expect(html).toMatch(/<script>\(function\(\)\{/);
    expect(html).not.toMatch(/<img\b/i);
  });

  test('a ranking row for every trial, best first, with states, errors and run links', () => {
    for (const t of study.trials) expect(html).toContain(`<tr data-trial="${t.number}"`);
    const order = [...html.matchAll(/<tr data-trial="(\d+)"/g)].map((m) => Number(m[1]));
    expect(order[0]).toBe(study.best!.number);
    const counts = { complete: 0, failed: 0, pruned: 0 };
    for (const t of study.trials) counts[t.state as keyof typeof counts]++;
    expect(counts.failed).toBeGreaterThan(0);
    expect(counts.pruned).toBeGreaterThan(0);
    expect(html).toContain(`${counts.complete} complete · ${counts.failed} failed · ${counts.pruned} pruned`);
    for (const t of study.trials.filter((t) => t.state === 'complete')) expect(html).toContain(`<a href="runs/trial-${t.number}/"`);
    // Metric columns from attrs.metrics.
    expect(html).toContain('data-key="metric:perplexity"');
    expect(html).toContain('data-key="metric:tokenF1"');
  });

  test('text from the data is escaped everywhere', () => {
    expect(html).not.toContain(XSS_SCRIPT);
    expect(html).not.toContain('<img src=x');
    expect(html).not.toContain('<b>bold</b>');
    expect(html).not.toContain('<i>one</i>');
    expect(html).not.toContain('<u>answer</u>');
    expect(html).not.toContain('<est>');
    expect(html).toContain('&lt;script&gt;window.__pwned = 1&lt;/script&gt;');
    expect(html).toContain('&quot;&gt;&lt;img src=x onerror=&quot;window.__pwned=2&quot;&gt;');
    expect(html).toContain('desired &lt;u&gt;answer&lt;/u&gt; &amp; &quot;quotes&quot;');
  });

  test('a heatmap with filled and empty cells, a legend and axis labels', () => {
    const svg = html.slice(html.indexOf('<svg class="heatmap"'), html.indexOf('</svg>', html.indexOf('<svg class="heatmap"')));
    expect(svg.length).toBeGreaterThan(0);
    const filled = svg.match(/<rect class="cell" /g) ?? [];
    const empty = svg.match(/<rect class="cell empty" /g) ?? [];
    expect(filled.length).toBeGreaterThan(0);
    // Trials in filled cells add up to the complete trials.
    const n = [...svg.matchAll(/data-n="(\d+)"/g)].reduce((s, m) => s + Number(m[1]), 0);
    expect(n).toBe(study.trials.filter((t) => t.state === 'complete').length);
    // lr (continuous: 8 bins) × layers (int 1..4: a bin per value): the whole grid is drawn.
    expect(filled.length + empty.length).toBe(8 * 4);
    expect(html).toContain('<svg class="legend"');
    // Default axes: numeric params; here lr (which drives the objective) and layers.
    expect(html).toMatch(/<h2>Heatmap: (lr × layers|layers × lr)<\/h2>/);
  });

  test('an explicit heatmap pair; a cube or unknown name is refused', () => {
    const withMode = renderStudyReport({ ...input(study), heatmap: ['mode', 'lr'] });
    expect(withMode).toContain('<h2>Heatmap: mode × lr</h2>');
    expect(withMode).toContain('&lt;b&gt;bold&lt;/b&gt;');
    expect(() => renderStudyReport({ ...input(study), heatmap: ['colour', 'lr'] })).toThrow(/cube/);
    expect(() => renderStudyReport({ ...input(study), heatmap: ['nope', 'lr'] })).toThrow(/not in the space/);
  });

  test('best responses beside the desired output, best score first', () => {
    const section = html.slice(html.indexOf('<h2>Best responses</h2>'), html.indexOf('<h2>Heatmap'));
    expect(section.match(/<div class="pair">/g)).toHaveLength(3);
    const first = section.indexOf('&lt;script&gt;');
    expect(first).toBeGreaterThan(0);
    expect(first).toBeLessThan(section.indexOf('plain answer'));
    expect(section).toContain('score 0.9 · tokenF1 0.9');
  });

  test('no responses section without a desired output; an empty study renders', () => {
    expect(renderStudyReport({ study })).not.toContain('Best responses');
    const empty = renderStudyReport({ study: { direction: 'minimize', space: { x: float(0, 1), y: float(0, 1) }, trials: [] } });
    expect(empty).toContain('none completed yet');
    expect(empty).toContain('<svg class="heatmap"');
  });
});

describe('study report in a real browser (Chromium)', () => {
  test('escaped text stays text, nothing leaves the page, headers sort the rows, the heatmap has cells', async () => {
    fs.rmSync(OUT, { recursive: true, force: true });
    const study = await makeStudy(path.join(OUT, 'runs'));
    for (const t of study.trials) if (typeof t.attrs.run === 'string') fs.mkdirSync(t.attrs.run, { recursive: true });
    const file = writeStudyReport(input(study), path.join(OUT, 'report.html'));
    expect(fs.readdirSync(OUT).sort()).toEqual(['report.html', 'runs']); // no temp file left behind

    const { browser, page, requests, errors } = await openTrackedPage({ consoleErrors: true });
    try {
      await page.goto(pathToFileURL(file).href);

      // Hostile responses and errors appear as visible text and never run.
      const text = await page.locator('body').innerText();
      expect(text).toContain(XSS_SCRIPT);
      expect(text).toContain(XSS_IMG);
      expect(await page.getByText(XSS_SCRIPT).first().isVisible()).toBe(true);
      expect(await page.evaluate('window.__pwned')).toBeUndefined();
      expect(await page.evaluate('document.scripts.length')).toBe(1);
      expect(await page.evaluate('document.images.length')).toBe(0);

      // Sorting by the value column: ascending, then descending, rows without a value last.
      const rowOrder = () => page.locator('#ranking tbody tr').evaluateAll((rows) => rows.map((r) => Number(r.getAttribute('data-trial'))));
      const valued = study.trials.filter((t) => typeof t.value === 'number');
      const ascending = [...valued].sort((a, b) => a.value! - b.value!).map((t) => t.number);
      const initial = await rowOrder();
      expect(initial[0]).toBe(study.best!.number);
      await page.click('#ranking th[data-key="value"]');
      const asc = await rowOrder();
      expect(asc.slice(0, valued.length)).toEqual(ascending);
      expect(asc).not.toEqual(initial);
      expect(await page.getAttribute('#ranking th[data-key="value"]', 'aria-sort')).toBe('ascending');
      await page.click('#ranking th[data-key="value"]');
      expect((await rowOrder()).slice(0, valued.length)).toEqual([...ascending].reverse());
      await page.click('#ranking th[data-key="trial"]');
      expect(await rowOrder()).toEqual(study.trials.map((t) => t.number));

      // The heatmap has coloured cells; run links resolve to the run folders.
      expect(await page.locator('svg.heatmap rect.cell:not(.empty)').count()).toBeGreaterThan(0);
      const href = await page.locator('#ranking a').first().getAttribute('href');
      expect(href).toMatch(/^runs\/trial-\d+\/$/);

      fs.mkdirSync(path.dirname(OUT), { recursive: true });
      await page.screenshot({ path: path.join(OUT, '..', 'study-report.png'), fullPage: true });
      expect(errors).toEqual([]);
      expect(requests.length).toBeGreaterThan(0);
      expect(requests.filter((u) => !u.startsWith('file://'))).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
