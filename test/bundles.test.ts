/**
 * Notebook views: the session's HTML fallback (no script, no network, escaped, one cube per node,
 * legend, outliers, loss curves), the session bundle, the study/run/dataset bundles, and the live
 * progress display updated in place and throttled. The session fallback is also rendered in Chromium.
 */
import * as fs from 'fs';
import * as path from 'path';
import { pathToFileURL } from 'url';
import { colourScale, qualityColour } from '../kernel/chroma/colour';
import { cornerSubWeights, NODE_DEFS, NODE_NAMES, type Vec3 } from '../kernel/chroma/node';
import { MIME_TYPE, type ChromaPayload, type NodePayload } from '../kernel/chroma/payload';
import { ChromaSession } from '../kernel/chroma/session';
import { GPT2Model } from '../kernel/model/gpt2';
import { datasetBundle, runBundle, studyBundle } from '../kernel/display/bundles';
import { liveProgress } from '../kernel/display/liveProgress';
import { setDisplaySink, type DisplayOptions, type MimeBundle } from '../kernel/display/mime';
import { payloadBundle, sessionBundle, sessionHtml, sessionText } from '../kernel/display/sessionView';
import type { JobSummary } from '../kernel/run/job';
import type { ProgressEvent } from '../kernel/train/finetune';
import type { TrialRecord } from '../kernel/tune/types';
import { openTrackedPage } from './browser-helpers';
import { byteTokenizer, qaPairs, tinyConfig } from './engine-helpers';

const OUT = path.join(__dirname, '..', 'test-output');
const XSS = '<script>window.__pwned=1</script>';
const REASON = 'loss 4.2 nats/token, 3.1 robust SDs above the median & isolated <far>';

/** A smooth made-up field: quality rises along x + z. */
const fieldAt = (p: Vec3) => ({ mean: 0.15 + 0.35 * p[0] + 0.4 * p[2], sd: 0.05 + 0.2 * p[1] });

function node(name: (typeof NODE_NAMES)[number], position: Vec3, trail: Vec3[]): NodePayload {
  const def = NODE_DEFS[name];
  const samples: NodePayload['field']['samples'] = [];
  for (let k = 0; k < 5; k++) for (let j = 0; j < 5; j++) for (let i = 0; i < 5; i++) {
    const p: Vec3 = [i / 4, j / 4, k / 4];
    const f = fieldAt(p);
    samples.push({ p, ...f, colour: qualityColour(f.mean) });
  }
  const q = fieldAt(position);
  return {
    name, label: def.label, kind: def.kind, axes: def.axes, position,
    corners: cornerSubWeights(position),
    values: def.kind === 'training' ? { 'h0.attn': 2, 'h0.mlp': 4, 'h1.attn': 8, 'h1.mlp': 16 } : { [name]: 0.75 },
    quality: q, colour: qualityColour(q.mean),
    improvement: [0.66, 0, 0.75], slope: 0.53,
    field: { resolution: 5, samples },
    trail: trail.map((p, i) => ({ runId: `run-${i + 1}`, p, quality: fieldAt(p).mean })),
  };
}

function makePayload(): ChromaPayload {
  const trail: Vec3[] = [[0.5, 0.5, 0.5], [0.7, 0.4, 0.6], [0.8, 0.3, 0.85]];
  const nodes = NODE_NAMES.map((n, k) => node(n, k === 0 ? [0.8, 0.3, 0.85] : k === 5 ? [1, 0.5, 0.5] : [0.5, 0.5, 0.5], k < 2 ? trail : []));
  const runs = trail.map((_, i) => {
    const quality = [0.42, 0.71, 0.55][i];
    return {
      id: `run-${i + 1}`, positions: Object.fromEntries(NODE_NAMES.map((n) => [n, trail[i]])), quality, colour: qualityColour(quality),
      metrics: { valLoss: 2.1 - 0.3 * i, perplexity: Math.exp(2.1 - 0.3 * i), tokenF1: quality, seconds: 3.2 }, settings: { learningRate: 5e-3 },
    };
  });
  const outputs = [
    { id: 'run-3/q1', runId: 'run-3', question: 'Where is the Met?', text: XSS, reference: 'Fifth Avenue', quality: 0.9, autoQuality: 0.1, colour: qualityColour(0.9), rated: true },
    { id: 'run-3/q2', runId: 'run-3', question: 'How tall is the Chrysler Building?', text: '319 m', reference: '319 metres', quality: 0.67, autoQuality: 0.67, colour: qualityColour(0.67), rated: false },
    { id: 'run-1/q1', runId: 'run-1', question: 'Where is the Met?', text: 'in a park', reference: 'Fifth Avenue', quality: 0.05, autoQuality: 0.05, colour: qualityColour(0.05), rated: false },
  ];
  const input = (index: number, outlier: boolean, reasons: string[]) => ({
    index, id: `ex-${index}`, question: `Question ${index} "quoted"`, answer: `Answer ${index}`, quality: outlier ? 0.12 : 0.8, colour: qualityColour(outlier ? 0.12 : 0.8),
    loss: outlier ? 4.2 : 1.1, influence: outlier ? -0.4 : 0.2, isolation: 0.3, score: outlier ? 3.1 : 0.2, outlier, reasons,
  });
  return {
    version: 1, session: { id: 's1' }, scale: colourScale(), nodes, runs, outputs,
    inputs: [input(0, false, []), input(1, true, [REASON, 'pulls rated outputs away (influence -0.40)']), input(2, false, [])],
    lossCurves: runs.map((r, i) => ({
      runId: r.id,
      train: Array.from({ length: 12 }, (_, s) => [s + 1, 3 - 0.12 * s - 0.1 * i] as [number, number]),
      validation: [[4, 2.6 - 0.1 * i], [8, 2.3 - 0.1 * i], [12, 2.1 - 0.1 * i]] as Array<[number, number]>,
    })),
  };
}

const count = (s: string, needle: string | RegExp) => (typeof needle === 'string' ? s.split(needle).length - 1 : (s.match(needle) ?? []).length);

describe('session HTML fallback', () => {
  const payload = makePayload();
  const html = sessionHtml(payload);

  test('is self-contained: no script, nothing fetched, data escaped', () => {
    expect(html).not.toMatch(/<script/i);
    expect(html).not.toMatch(/https?:\/\//i);
    expect(html).not.toMatch(/url\(/i);
    expect(html).not.toMatch(/\son[a-z]+=/i);
    expect(html).toContain('&lt;script&gt;window.__pwned=1&lt;/script&gt;');
    expect(html).toContain('Question 1 &quot;quoted&quot;');
  });

  test('draws one cube per node with its axes, marker, corner lines, arrow and trail', () => {
    expect(count(html, '<svg class="ct-cube"')).toBe(payload.nodes.length);
    for (const n of payload.nodes) {
      expect(html).toContain(`data-node="${n.name}"`);
      expect(html).toContain(`fill="${n.colour}"`);
    }
    expect(html).toContain('depth →');
    expect(html).toContain('first layer → last layer');
    // 125 field points per node, 8 corner lines where no sub-weight is zero, and the run trail.
    expect(count(html, /<circle [^>]*opacity="0\.\d\d"\/>/g)).toBe(125 * payload.nodes.length);
    expect(count(html, /<title>corner \(/g)).toBe(8 * 5 + 4); // topP sits on a face: 4 sub-weights are 0
    expect(count(html, '<polyline points=')).toBe(2);
    expect(count(html, '<title>toward higher quality')).toBe(payload.nodes.length);
  });

  test('shows the legend, outputs by quality, outliers with their reasons and the loss curves', () => {
    const gradient = /linear-gradient\(to right, [^)]*\)/.exec(html)?.[0] ?? '';
    expect(gradient).toBe(`linear-gradient(to right, ${payload.scale.stops.map(([q, c]) => `${c} ${(100 * q).toFixed(1)}%`).join(', ')})`);
    expect(gradient).toContain('#440154 0.0%');
    expect(html).toContain('0 poor');
    expect(html).toContain('★ rated');
    expect(html.indexOf('run-3/q1')).toBeLessThan(html.indexOf('run-1/q1')); // newest run first
    expect(html).toContain('loss 4.2 nats/token, 3.1 robust SDs above the median &amp; isolated &lt;far&gt;');
    expect(html).toContain('pulls rated outputs away');
    expect(html).not.toContain('ex-0</td>'); // only outliers are listed
    expect(html).toContain('aria-label="loss curves"');
    expect(html).toContain('>run-3 training<');
    expect(html).toContain('>run-2 validation<');
    expect(html).toContain('run-3 newest · run-2 best');
  });

  test('a crafted colour cannot inject CSS', () => {
    const p = makePayload();
    p.outputs[0].colour = 'red;background-image:url(x)';
    p.nodes[0].colour = '"/><script>';
    const h = sessionHtml(p);
    expect(h).not.toContain('url(');
    expect(h).not.toMatch(/<script/i);
  });

  test('text/plain summarises runs, best quality, nodes and outliers', () => {
    const t = sessionText(payload);
    expect(t).toMatch(/^ChromaTune session: 3 runs, best quality 0\.710 \(run-2\)/);
    expect(t).toMatch(/learningRate\s+at \(0\.80, 0\.30, 0\.85\)\s+quality 0\.770 ± 0\.110/);
    expect(t).toContain('1 outlier');
    expect(t.split('\n')).toHaveLength(2 + payload.nodes.length);
  });

  test('the bundle carries the payload object itself and both fallbacks', () => {
    const b = payloadBundle(payload);
    expect(Object.keys(b).sort()).toEqual([MIME_TYPE, 'text/html', 'text/plain'].sort());
    expect(b[MIME_TYPE]).toBe(payload);
    expect(b['text/html']).toBe(html);
  });

  test('sessionBundle of a fresh session (no runs yet)', () => {
    const session = new ChromaSession({ model: GPT2Model.random(tinyConfig(), 1), tokenizer: byteTokenizer(), train: qaPairs(3), evaluation: qaPairs(2, 10) });
    const b = sessionBundle(session);
    const p = b[MIME_TYPE] as ChromaPayload;
    expect(p.nodes).toHaveLength(6);
    expect(b['text/plain']).toMatch(/^ChromaTune session: 0 runs, no runs yet/);
    const h = b['text/html'] as string;
    expect(count(h, '<svg class="ct-cube"')).toBe(6);
    expect(h).toContain('Inputs not judged yet');
    expect(h).not.toMatch(/<script|https?:\/\//i);
  });
});

describe('study, run and dataset bundles', () => {
  const trial = (number: number, value: number | undefined, state: TrialRecord['state'] = 'complete'): TrialRecord => ({
    number, params: { lr: 10 ** -(number + 2), name: number === 2 ? '<b>bold</b>' : 'plain', rank: [0.5, 0.25, 1] }, state, value, intermediate: [], attrs: {}, startedAt: '',
  });

  test('study: ranking best first, escaped, with text', () => {
    const b = studyBundle({ name: 'sweep <1>', direction: 'minimize', sampler: { name: 'tpe' }, trials: [trial(0, 2.5), trial(1, 1.5), trial(2, 1.9), trial(3, undefined, 'failed')] });
    const h = b['text/html'] as string;
    expect(h).toContain('Study sweep &lt;1&gt;');
    expect(h).toContain('&lt;b&gt;bold&lt;/b&gt;');
    expect(h).not.toMatch(/<script|https?:\/\//i);
    const order = [...h.matchAll(/<td class="num">#(\d+)<\/td>/g)].map((m) => Number(m[1]));
    expect(order).toEqual([1, 2, 0]);
    expect(h).toContain('(0.50, 0.25, 1.00)');
    expect(b['text/plain']).toMatch(/best: #1 = 1\.5 with lr=0\.001, name=plain/);
    expect(b['text/plain']).toContain('1 failed');
  });

  test('run: metric table and headline numbers', () => {
    const m = (perplexity: number, f1: number, recited: number) => ({ examples: 20, loss: Math.log(perplexity), perplexity, exactMatch: f1 / 2, tokenF1: f1, rougeL: f1, recited });
    const s = {
      title: 'NYC <QA>', run: 'runs/x', model: 'tiny', backend: {}, method: 'lora', settings: {}, train_examples: 100, truncated_train_examples: 0, validation_examples: 20, steps: 40,
      interrupted: false, stopped_early: false, trainable_parameters: 12345, seconds: { base_eval: 1, training: 30, finetuned_eval: 1, total: 32 },
      final_train_loss: 0.8, best_val_loss: 1.2, restored_best_step: null, averaged_from: null, metrics: { validation: { base: m(12, 0.1, 0), finetuned: m(4, 0.6, 0.35) } }, l_score: null, output: '',
    } as JobSummary;
    const b = runBundle(s);
    const h = b['text/html'] as string;
    expect(h).toContain('NYC &lt;QA&gt;');
    expect(h).toContain('<td class="num ct-up">4</td>'); // perplexity fell: better
    expect(h).toContain('<td class="num ct-up">60.0</td>');
    expect(h).toContain('<td class="num ct-down">35.0</td>'); // more recited answers: worse
    expect(b['text/plain']).toContain('validation (20): perplexity 12 → 4, token F1 10.0% → 60.0%, recited 0.0% → 35.0%');
  });

  test('dataset: first rows and counts', () => {
    const rows = [...qaPairs(14), { question: '<img src=x onerror=alert(1)>', answer: 'a & b', source: { file: 'd.jsonl', line: 15 } }];
    rows.unshift(rows.pop()!);
    const b = datasetBundle(rows, 'nyc <qa>', { rows: 5 });
    const h = b['text/html'] as string;
    expect(h).toContain('15 examples');
    expect(count(h, '<tr><td class="num">')).toBe(5);
    expect(h).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(h).not.toMatch(/<img/i);
    expect(h).toContain('first 5 of 15');
    expect(b['text/plain']).toMatch(/^Dataset nyc <qa>: 15 examples/);
  });
});

describe('live progress', () => {
  afterEach(() => setDisplaySink(null));

  test('one display, then throttled in-place updates with the same id, and a final summary', () => {
    const calls: Array<{ op: 'display' | 'update'; bundle: MimeBundle; o: DisplayOptions }> = [];
    setDisplaySink({ display: (bundle, o) => calls.push({ op: 'display', bundle, o }), update: (bundle, o) => calls.push({ op: 'update', bundle, o }) });
    let t = 1000;
    const live = liveProgress('Fine-tuning <tiny>', { minIntervalMs: 500, now: () => t });
    const ev = (step: number, kind: ProgressEvent['kind'] = 'step'): ProgressEvent => ({
      kind, step, totalSteps: 20, epoch: step / 10, loss: kind === 'step' ? 3 - step * 0.1 : undefined, valLoss: kind === 'eval' ? 2.5 - step * 0.05 : undefined,
      tokensPerSecond: 1234.4, elapsedSeconds: step * 0.5, etaSeconds: (20 - step) * 4,
    });
    expect(calls).toHaveLength(1);
    expect(calls[0].op).toBe('display');
    const id = calls[0].o.displayId;
    expect(id).toBe(live.displayId);

    for (let s = 1; s <= 20; s++) {
      live.onProgress(ev(s)); // 100 ms apart: one update in every 5 steps
      if (s % 10 === 0) live.onProgress(ev(s, 'eval'));
      t += 100;
    }
    const updates = calls.slice(1);
    expect(updates.length).toBeGreaterThanOrEqual(4);
    expect(updates.length).toBeLessThanOrEqual(5);
    for (const u of updates) {
      expect(u.op).toBe('update');
      expect(u.o.displayId).toBe(id);
    }
    const first = updates[0].bundle['text/html'] as string;
    expect(first).toContain('Fine-tuning &lt;tiny&gt;');
    expect(first).toContain('step <b>1/20</b>');
    expect(first).toContain('width:5.0%');
    expect(first).toContain('ETA <b>1m 16s</b>');
    expect(first).toContain('tokens/s <b>1234</b>');
    expect(first).not.toMatch(/<script|https?:\/\//i);
    expect(updates[0].bundle['text/plain']).toMatch(/^Fine-tuning <tiny>: 5%\nstep 1\/20/);

    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    live.done({ steps: 20, best_val_loss: 1.5, note: '<ok>', client: cyclic });
    const last = calls.at(-1)!;
    expect(last.op).toBe('update');
    expect(last.o.displayId).toBe(id);
    const h = last.bundle['text/html'] as string;
    expect(h).toContain('finished');
    expect(h).toContain('width:100.0%');
    expect(h).toContain('<th>best_val_loss</th><td>1.5</td>');
    expect(h).toContain('&lt;ok&gt;');
    expect(h).toContain('validation loss'); // both curves in the chart
    expect(last.bundle['text/plain']).toContain('steps: 20, best_val_loss: 1.5, note: <ok>, client: [Object]');
    const n = calls.length;
    live.onProgress(ev(20));
    live.done('again');
    expect(calls).toHaveLength(n);
  });

  test('a failed or interrupted run says so and keeps its bar where it stopped', () => {
    for (const outcome of ['failed', 'interrupted'] as const) {
      const calls: MimeBundle[] = [];
      setDisplaySink({ display: (b) => calls.push(b), update: (b) => calls.push(b) });
      const live = liveProgress('run', { now: () => 0 });
      live.onProgress({ kind: 'step', step: 3, totalSteps: 12, epoch: 0.5, loss: 2, tokensPerSecond: 10, elapsedSeconds: 1, etaSeconds: 3 });
      live.done('loss became NaN at step 4', outcome);
      const last = calls.at(-1)!;
      expect(last['text/plain']).toMatch(new RegExp(`^run: ${outcome}\n`));
      expect(last['text/html']).toContain('width:25.0%');
      expect(last['text/html']).not.toContain('finished');
    }
    // Failing before any progress leaves the bar empty, not full.
    const calls: MimeBundle[] = [];
    setDisplaySink({ display: (b) => calls.push(b), update: (b) => calls.push(b) });
    liveProgress('run').done('no such file', 'failed');
    expect(calls.at(-1)!['text/html']).toContain('width:0.0%');
  });

  test('without a notebook, prints the start and the summary', () => {
    const lines: string[] = [];
    const spy = jest.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => (lines.push(String(s)), true));
    try {
      const live = liveProgress('run', { now: () => 0 });
      live.onProgress({ kind: 'step', step: 1, totalSteps: 2, epoch: 0.5, loss: 2, tokensPerSecond: 10, elapsedSeconds: 1, etaSeconds: 1 });
      live.done('all done');
    } finally {
      spy.mockRestore();
    }
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^run: starting…/);
    expect(lines[1]).toMatch(/^run: finished\n.*\nall done\n$/);
  });
});

describe('session fallback in a real browser (Chromium)', () => {
  test('renders without script or requests; the cubes have size; text stays text', async () => {
    fs.mkdirSync(OUT, { recursive: true });
    const file = path.join(OUT, 'session-fallback.html');
    // Two copies: the notebook's light page, and JupyterLab's dark theme marker on an ancestor.
    const body = sessionHtml(makePayload());
    fs.writeFileSync(file, `<!doctype html><html><head><meta charset="utf-8"><title>session</title></head><body style="margin:16px;background:#fff">${body}<div data-jp-theme-light="false" style="background:#111;padding:12px;margin-top:12px">${body}</div></body></html>`);
    const { browser, page, requests, errors } = await openTrackedPage({ viewport: { width: 1000, height: 900 } });
    try {
      await page.goto(pathToFileURL(file).href);
      expect(await page.evaluate('document.scripts.length')).toBe(0);
      expect(await page.evaluate('window.__pwned')).toBeUndefined();
      expect(await page.getByText(XSS).first().isVisible()).toBe(true);
      const boxes = await page.locator('svg.ct-cube').evaluateAll((els) => els.map((el) => el.getBoundingClientRect()).map((r) => [r.width, r.height]));
      expect(boxes).toHaveLength(12);
      for (const [w, h] of boxes) expect(w * h).toBeGreaterThan(200 * 150);
      // The component paints its own colours: light by default, dark under the dark-theme marker.
      const bgs = await page.evaluate("[...document.querySelectorAll('.chromatune')].map((el) => getComputedStyle(el).backgroundColor)");
      expect(bgs).toEqual(['rgb(251, 251, 252)', 'rgb(29, 32, 37)']);
      await page.screenshot({ path: path.join(OUT, 'session-fallback.png'), fullPage: true });
      expect(errors).toEqual([]);
      expect(requests.filter((u) => !u.startsWith('file://'))).toEqual([]);
    } finally {
      await browser.close();
    }
  });
});
