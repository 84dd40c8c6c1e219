/**
 * The built JupyterLab extension in a real browser: a page bundled from @jupyterlab/rendermime and
 * @jupyterlab/outputarea loads widget/labextension through module federation (as JupyterLab loads a
 * prebuilt extension) and renders a real session's bundle in an output area. Checks the WebGL scene
 * drew coloured pixels, the legend, outputs and outlier list are there, the theme switch recolours
 * the plots, a rating goes to the kernel as act() code and its answer re-renders the same widget and
 * updates the output's data, bad payloads show a readable message, and disposal releases WebGL.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Page } from 'playwright-core';
import { initBackend } from '../kernel/backend';
import { MIME_TYPE } from '../kernel/chroma/payload';
import { ChromaSession } from '../kernel/chroma/session';
import { GPT2Model } from '../kernel/model/gpt2';
import type { MimeBundle } from '../kernel/display/mime';
import { sessionBundle } from '../kernel/display/sessionView';
import { buildWidgetPage, launchChromium, openPage, requireBuiltExtension, servePage, type Browser, type PageServer } from '../widget/page/harness';
import { byteTokenizer, qaPairs, tinyConfig } from './engine-helpers';
import { colouredPixels, sceneScreenshot } from '../widget/page/pixels';

// Page code runs in the browser, where these exist; the root build has no DOM types.
declare const document: any;
declare const window: any;

const OUT = path.join(__dirname, '..', 'test-output');
const PAGE_DIR = path.join(OUT, 'widget-page');

let bundle: MimeBundle;
let payload: any;
/** A session before its first run. */
let fresh: MimeBundle;
let server: PageServer;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];

beforeAll(async () => {
  requireBuiltExtension();
  // A real session on a tiny model: one run, judged inputs, one rated output.
  await initBackend('wasm');
  const options = {
    model: GPT2Model.random(tinyConfig({ n_positions: 96 }), 7),
    tokenizer: byteTokenizer(),
    train: qaPairs(10),
    evaluation: qaPairs(3),
    training: { epochs: 1, batchSize: 5 },
    maxTokens: 6,
    outlierFraction: 0.2,
    seed: 3,
  };
  fresh = sessionBundle(new ChromaSession(options));
  const session = new ChromaSession(options);
  await session.run();
  session.moveNode('rank', [0.8, 0.3, 0.7]);
  await session.run();
  session.judgeInputs();
  // A person's ratings: the first run poor, the second good but for one output left to rate in the page.
  for (const id of session.runs[0].outputIds) session.rate(id, 0.05);
  for (const id of session.runs[1].outputIds.slice(0, -1)) session.rate(id, 0.95);
  bundle = sessionBundle(session);
  payload = bundle[MIME_TYPE];

  await buildWidgetPage(PAGE_DIR);
  server = await servePage(PAGE_DIR);
  browser = await launchChromium();
  page = await openPage(browser, pageErrors);
  await page.goto(`${server.url}/`);
  await page.evaluate(async (ext: string) => {
    const P = window.chromaPage;
    const loaded = await P.loadLabExtension(ext);
    window.loaded = loaded;
    window.rendermime = P.createRendermime(loaded.extensions);
    window.mounted = P.mountOutputArea(window.rendermime, document.getElementById('outputs'));
  }, `${server.url}/ext`);
}, 240000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

describe('the built extension in Chromium', () => {
  test('loads like a prebuilt JupyterLab extension and is preferred over the HTML fallback', async () => {
    const info = await page.evaluate(() => ({
      name: window.loaded.name,
      ids: window.loaded.extensions.map((e: any) => e.id),
      preferred: window.rendermime.preferredMimeType({ 'text/html': '<b>x</b>', 'text/plain': 'x', 'application/vnd.chromatune.v1+json': {} }, 'ensure'),
      style: [...document.styleSheets].some((s: any) => [...s.cssRules].some((r: any) => String(r.selectorText).includes('.ct-view'))),
    }));
    expect(info).toEqual({ name: 'chromatune-widget', ids: ['chromatune-widget:session'], preferred: MIME_TYPE, style: true });
  });

  test('renders the session: WebGL scene with coloured pixels, legend, outputs, outliers, loss curves', async () => {
    await page.evaluate((b: any) => window.mounted.display(b), bundle);
    await page.waitForSelector('.ct-view .ct-scene.js-plotly-plot canvas', { timeout: 60000 });
    await page.waitForSelector('.ct-view .ct-loss-plot.js-plotly-plot .scatterlayer .trace', { timeout: 60000 });
    await page.waitForTimeout(1500); // gl3d draws on animation frames

    const dom = await page.evaluate(() => {
      const v = document.querySelector('.ct-view');
      const scene = v.querySelector('.ct-scene');
      const canvas = scene.querySelector('canvas');
      return {
        webgl: !!(canvas.getContext('webgl2') || canvas.getContext('webgl')),
        sceneWidth: scene.getBoundingClientRect().width,
        colorbar: scene.querySelectorAll('.colorbar').length,
        colorbarTitle: scene.querySelector('.colorbar .cbtitle')?.textContent ?? null,
        colorbarTicks: [...scene.querySelectorAll('.colorbar .cbaxis text')].map((t: any) => t.textContent),
        nodeTabs: [...v.querySelectorAll('.ct-node-tab')].map((b: any) => b.dataset.node),
        outputs: v.querySelectorAll('.ct-output').length,
        rated: v.querySelectorAll('.ct-output.ct-rated .ct-rated-mark').length,
        outliers: [...v.querySelectorAll('.ct-outlier')].map((li: any) => ({ reasons: li.querySelectorAll('.ct-reasons li').length, colour: li.style.borderLeftColor })),
        lossTraces: v.querySelectorAll('.ct-loss-plot .scatterlayer .trace').length,
        header: v.querySelector('.ct-sub').textContent,
        invalid: v.classList.contains('ct-invalid'),
        sliders: v.querySelectorAll('.ct-move input[type=range]').length,
      };
    });
    const outliers = payload.inputs.filter((i: any) => i.outlier);
    const rated = payload.outputs.filter((o: any) => o.rated).length;
    expect(dom).toMatchObject({
      webgl: true,
      colorbar: 1,
      colorbarTitle: 'quality',
      nodeTabs: payload.nodes.map((n: any) => n.name),
      outputs: payload.outputs.length,
      rated,
      lossTraces: 4, // two runs, training and validation each
      invalid: false,
      sliders: 3,
    });
    expect(dom.sceneWidth).toBeGreaterThan(500); // sized to the output area, not plotly's 700 px default
    expect(dom.colorbarTicks).toEqual(['0 poor', '0.5 fair', '1 good']);
    expect(outliers.length).toBeGreaterThan(0);
    expect(dom.outliers).toHaveLength(outliers.length);
    for (const o of dom.outliers) expect(o.reasons).toBeGreaterThan(0);
    expect(dom.header).toMatch(new RegExp(`^2 runs · best run-\\d \\d\\.\\d\\d · ${payload.outputs.length} outputs \\(${rated} rated\\) · ${outliers.length} outlier inputs?$`));

    // The rank node moved between the poor run and the good one: its field runs across the scale.
    await page.click('.ct-view .ct-node-tab[data-node=rank]');
    await page.waitForFunction(() => document.querySelector('.ct-view .ct-scene').layout.uirevision === 'rank', undefined, { timeout: 20000 });
    await page.waitForTimeout(1500);
    // The scene's own pixels (left of the colour bar): WebGL drew the coloured field, node and trail.
    const shot = await sceneScreenshot(page);
    const px = await colouredPixels(page, shot);
    console.log(`ChromaTune scene: ${px.coloured} coloured pixels of ${px.total} (${px.hues} hue buckets)`);
    fs.mkdirSync(OUT, { recursive: true });
    fs.writeFileSync(path.join(OUT, 'widget-render-scene.png'), shot);
    await page.screenshot({ path: path.join(OUT, 'widget-render.png'), fullPage: true });
    expect(px.coloured).toBeGreaterThan(2000);
    expect(px.hues).toBeGreaterThanOrEqual(3);
    expect(pageErrors).toEqual([]);
  }, 120000);

  test("follows JupyterLab's dark theme", async () => {
    const colour = () => page.evaluate(() => document.querySelector('.ct-view .ct-scene')._fullLayout.font.color);
    expect(await colour()).toBe('rgba(0,0,0,0.87)');
    await page.evaluate(() => window.chromaPage.setTheme(false));
    await page.waitForFunction(() => document.querySelector('.ct-view .ct-scene')._fullLayout.font.color === 'rgba(255,255,255,0.87)', undefined, { timeout: 20000 });
    await page.waitForTimeout(1000);
    await page.screenshot({ path: path.join(OUT, 'widget-render-dark.png'), fullPage: true });
    await page.evaluate(() => window.chromaPage.setTheme(true));
    await page.waitForFunction(() => document.querySelector('.ct-view .ct-scene')._fullLayout.font.color === 'rgba(0,0,0,0.87)', undefined, { timeout: 20000 });
  }, 60000);

  test('a rating runs act() in the kernel; the answer re-renders the same widget and updates the output data', async () => {
    const unrated = '.ct-view .ct-output:not(.ct-rated) .ct-output-row';
    const outputId = (await page.getAttribute('.ct-view .ct-output:not(.ct-rated)', 'data-output'))!;
    const ratedBefore = payload.outputs.filter((o: any) => o.rated).length;
    const index = payload.outputs.findIndex((o: any) => o.id === outputId);
    expect(payload.outputs[index].rated).toBe(false);

    // Without a kernel the view says so, and the palette stays open to try again.
    await page.click(unrated);
    expect(await page.locator('.ct-view .ct-palette .ct-swatch').count()).toBe(payload.scale.stops.length);
    await page.click('.ct-view .ct-palette .ct-swatch >> nth=8');
    await page.waitForSelector('.ct-view .ct-status-error');
    expect(await page.textContent('.ct-view .ct-status')).toBe('ChromaTune view: no running kernel for this output: open its notebook with the kernel that ran it, then try again');

    // A kernel that answers act() with the next state of the session, as the chromatune kernel does.
    const next = JSON.parse(JSON.stringify(bundle));
    const target = next[MIME_TYPE].outputs[index];
    Object.assign(target, { rated: true, quality: payload.scale.stops[8][0], colour: payload.scale.stops[8][1] });
    await page.evaluate(async (answer: any) => {
      const codes: string[] = [];
      const kernel = {
        requestExecute(content: any) {
          codes.push(content.code);
          const future: any = { onIOPub: null };
          future.done = new Promise((resolve) =>
            setTimeout(() => {
              future.onIOPub({ header: { msg_type: 'execute_result' }, content: { data: answer, metadata: {}, execution_count: 1 } });
              resolve({ content: { status: 'ok' } });
            }, 50),
          );
          return future;
        },
      };
      window.codes = codes;
      document.querySelector('.ct-view').dataset.marker = 'first';
      window.mounted.panel.setKernel(kernel);
    }, next);
    await page.click('.ct-view .ct-palette .ct-swatch >> nth=8');
    await page.waitForFunction(() => document.querySelector('.ct-view .ct-status')?.textContent?.endsWith(': done'), undefined, { timeout: 20000 });
    const after = await page.evaluate(() => ({
      codes: window.codes,
      sameWidget: document.querySelector('.ct-view')?.dataset.marker === 'first',
      views: document.querySelectorAll('.ct-view').length,
      rated: [...document.querySelectorAll('.ct-view .ct-output.ct-rated')].map((li: any) => li.dataset.output),
      palette: document.querySelectorAll('.ct-view .ct-palette').length,
      saved: window.mounted.model.toJSON()[0].data['application/vnd.chromatune.v1+json'].outputs,
      savedHtml: typeof window.mounted.model.toJSON()[0].data['text/html'],
    }));
    const q = payload.scale.stops[8][0];
    expect(after.codes).toEqual([`(await import('chromatune')).act(${JSON.stringify(payload.session.id)}, {"kind":"rate","output":${JSON.stringify(outputId)},"quality":${q}})`]);
    expect(after.sameWidget).toBe(true);
    expect(after.views).toBe(1);
    expect(after.rated).toHaveLength(ratedBefore + 1);
    expect(after.rated).toContain(outputId);
    expect(after.palette).toBe(0);
    expect(after.saved[index]).toEqual(target);
    expect(after.savedHtml).toBe('string');

    // Moving a node: the sliders preview the target, the button sends the move.
    await page.locator('.ct-view .ct-move input[data-axis=x]').fill('0.2');
    await page.waitForFunction(() => document.querySelector('.ct-view .ct-scene').data.some((t: any) => t.meta?.role === 'target'), undefined, { timeout: 20000 });
    await page.click('.ct-view .ct-apply');
    await page.waitForFunction(() => window.codes.length === 2, undefined, { timeout: 20000 });
    const node = payload.nodes.find((n: any) => n.name === 'rank'); // the node selected above
    expect(await page.evaluate(() => window.codes[1])).toBe(
      `(await import('chromatune')).act(${JSON.stringify(payload.session.id)}, {"kind":"move","node":"${node.name}","position":[0.2,${node.position[1]},${node.position[2]}]})`,
    );
    expect(pageErrors).toEqual([]);
  }, 60000);

  test('bad payloads show a readable message, not a blank output', async () => {
    await page.evaluate((b: any) => {
      const newer = { ...b['application/vnd.chromatune.v1+json'], version: 2 };
      const broken = JSON.parse(JSON.stringify(b['application/vnd.chromatune.v1+json']));
      broken.nodes[0].position = [0.5, 0.5];
      window.mounted.display({ 'application/vnd.chromatune.v1+json': newer, 'text/plain': 'session' });
      window.mounted.display({ 'application/vnd.chromatune.v1+json': broken, 'text/plain': 'session' });
    }, bundle);
    await page.waitForFunction(() => document.querySelectorAll('.ct-view.ct-invalid').length === 2, undefined, { timeout: 20000 });
    const messages = await page.locator('.ct-view.ct-invalid .ct-message').allTextContents();
    expect(messages).toEqual([
      'ChromaTune view: payload version 2 is newer than this widget (1); update chromatune-widget',
      'ChromaTune view: invalid payload: nodes[0].position must be 3 numbers, got an array',
    ]);
    for (const m of await page.locator('.ct-view.ct-invalid .ct-message').all()) expect(await m.isVisible()).toBe(true);
    await page.locator('.ct-view.ct-invalid').first().scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(OUT, 'widget-render-invalid.png'), fullPage: true });
  }, 60000);

  test('a session before its first run shows its nodes and says what is missing', async () => {
    await page.evaluate((b: any) => window.mounted.display(b), fresh);
    await page.waitForFunction(() => document.querySelectorAll('.ct-view .ct-scene.js-plotly-plot').length === 2, undefined, { timeout: 60000 });
    const last = await page.evaluate(() => {
      const views = document.querySelectorAll('.ct-view');
      const v = views[views.length - 1];
      return {
        header: v.querySelector('.ct-sub').textContent,
        notes: [...v.querySelectorAll('.ct-right .ct-note')].map((n: any) => n.textContent),
        lossHidden: v.querySelector('.ct-loss').hidden,
        status: v.querySelector('.ct-status').textContent,
        traces: v.querySelector('.ct-scene').data.map((t: any) => t.meta.role),
      };
    });
    expect(last.header).toBe('0 runs · no runs yet · 0 outputs (0 rated) · 0 outlier inputs');
    expect(last.notes).toEqual(['No outputs yet: a run samples them.', 'Inputs not judged yet.']);
    expect(last.lossHidden).toBe(true);
    expect(last.status).toBe('');
    expect(last.traces).not.toContain('trail');
    expect(last.traces).toContain('field');
    expect(pageErrors).toEqual([]);
  }, 60000);

  test("clearing the outputs disposes the views and releases plotly's WebGL", async () => {
    expect(await page.evaluate(() => document.querySelectorAll('#outputs canvas').length)).toBeGreaterThan(0);
    await page.evaluate(() => window.mounted.model.clear());
    const left = await page.evaluate(() => ({ views: document.querySelectorAll('.ct-view').length, canvases: document.querySelectorAll('#outputs canvas').length }));
    expect(left).toEqual({ views: 0, canvases: 0 });
    expect(pageErrors).toEqual([]);
  });
});
