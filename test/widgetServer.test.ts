/**
 * The widget against a real Jupyter server, end to end: Debian's `jupyter server` runs the
 * `chromatune` kernel; the widget's page (JupyterLab's own rendermime/outputarea/services with the
 * built extension, see widget/page) starts a kernel session there through @jupyterlab/services and
 * executes a cell that trains a tiny model and shows the session. In Chromium it checks the WebGL scene
 * drew coloured pixels and the legend and outlier list are there; then it recolours an output through
 * the widget as a person would, and checks the act() round trip through the same kernel re-rendered
 * the node's colour and the inputs, and that the kernel's session holds the rating.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Page } from 'playwright-core';
import { buildWidgetPage, launchChromium, openPage, requireBuiltExtension, requireChromium, ROOT_DIR, servePage, type Browser, type PageServer } from '../widget/page/harness';
import { kernelPrefix, requireJupyterServer, startJupyterServer, type JupyterServer } from '../widget/page/jupyter';
import { colouredPixels, sceneScreenshot } from '../widget/page/pixels';

// Page code runs in the browser, where these exist; the root build has no DOM types.
declare const document: any;
declare const window: any;

const MIME = 'application/vnd.chromatune.v1+json';
const OUT = path.join(ROOT_DIR, 'test-output');
const PAGE_DIR = path.join(OUT, 'widget-server-page');

/** The notebook cell: the public library only, as a person writes it. */
const SESSION_CELL = `
import { byteLevelTokenizerJSON, ChromaSession, GPT2Model, initBackend, makeConfig, Tokenizer, type QAExample } from 'chromatune';
await initBackend('wasm');
const facts = [
  ['What colour is the sky?', 'blue'], ['What is the capital of France?', 'Paris'], ['How many legs does a spider have?', 'eight'],
  ['Which planet is red?', 'Mars'], ['What do bees make?', 'honey'], ['What is frozen water?', 'ice'],
  ['Which animal barks?', 'a dog'], ['What is the opposite of hot?', 'cold'], ['What season follows winter?', 'spring'],
  ['What gas do we breathe?', 'oxygen'], ['Which metal is yellow?', 'gold'], ['What shape has three sides?', 'a triangle'],
];
const pairs: QAExample[] = facts.map(([question, answer], i) => ({ question, answer: \`It is \${answer}\`, source: { file: 'cell', line: i + 1 } }));
const session = new ChromaSession({
  model: GPT2Model.random(makeConfig({ vocab_size: 257, n_positions: 96, n_embd: 32, n_layer: 2, n_head: 4 }), 7),
  tokenizer: Tokenizer.fromJSON(byteLevelTokenizerJSON({ specialTokens: ['<|endoftext|>'] })),
  train: pairs,
  evaluation: pairs, // the questions it trained on: every input has outputs to be judged by
  // Greedy decoding and a faster B factor: answers start to match the references ("It is …").
  nodes: { temperature: [0, 0.5, 0.5], learningRate: [0.5, 0.5, 1] },
  training: { epochs: 40, learningRate: 0.05, batchSize: 6 },
  maxTokens: 8,
  outlierFraction: 0.25,
  seed: 3,
});
await session.run();
session.moveNode('rank', [0.8, 0.3, 0.7]);
await session.run();
session.judgeInputs();
session`;

let prefix: string;
let rootDir: string;
let jupyter: JupyterServer | undefined;
let server: PageServer | undefined;
let browser: Browser | undefined;
let page: Page;
const pageErrors: string[] = [];

/** What a person sees of the view and the node selected in it. */
interface ViewState {
  views: number;
  header: string;
  nodeChip: { text: string; colour: string };
  nodeMarker: string;
  outputs: { id: string; chip: string; colour: string; rated: boolean }[];
  outliers: { input: string; score: string; colour: string }[];
  status: string;
}

const viewState = (): Promise<ViewState> =>
  page.evaluate(() => {
    const v = document.querySelector('.ct-view');
    const chip = v.querySelector('.ct-node-info .ct-node-head .ct-chip');
    return {
      views: document.querySelectorAll('#outputs .ct-view').length,
      header: v.querySelector('.ct-sub').textContent,
      nodeChip: { text: chip.textContent, colour: chip.style.background },
      nodeMarker: String(v.querySelector('.ct-scene').data.find((t: any) => t.meta?.role === 'node').marker.color[0]),
      outputs: [...v.querySelectorAll('.ct-output')].map((li: any) => ({
        id: li.dataset.output,
        chip: li.querySelector('.ct-chip').textContent,
        colour: li.style.borderLeftColor,
        rated: li.classList.contains('ct-rated'),
      })),
      outliers: [...v.querySelectorAll('.ct-outlier')].map((li: any) => ({ input: li.dataset.input, score: li.querySelector('.ct-score').textContent, colour: li.style.borderLeftColor })),
      status: v.querySelector('.ct-status').textContent,
    };
  });

/**
 * Screenshots under test-output/: the page, the outlier inputs (scrolled into view in their column)
 * and the scene's own pixels (left of the colour bar), whose coloured pixels are counted.
 */
async function screenshots(name: string) {
  const shot = await sceneScreenshot(page);
  fs.writeFileSync(path.join(OUT, `${name}-scene.png`), shot);
  await page.screenshot({ path: path.join(OUT, `${name}.png`), fullPage: true });
  await page.locator('.ct-view .ct-outliers').screenshot({ path: path.join(OUT, `${name}-outliers.png`) });
  return colouredPixels(page, shot);
}

/** Runs code in the page's output area `area` (a cell); the reply's status and the area's outputs. */
const executeIn = (area: string, code: string) =>
  page.evaluate(
    async ([area, code]: string[]) => {
      const mounted = window[area];
      const reply = await mounted.execute(code);
      return { status: reply?.content.status as string, outputs: mounted.model.toJSON() as any[] };
    },
    [area, code],
  );

/** A failed cell's text, for the assertion message. */
const cellText = (outputs: any[]) => outputs.map((o) => o.text ?? o.traceback?.join('\n') ?? o.data?.['text/plain'] ?? '').join('\n');

beforeAll(async () => {
  // Fail, never skip: CI installs both (.ci/run).
  requireJupyterServer();
  requireChromium();
  requireBuiltExtension();
  const kernel = kernelPrefix('widget-server');
  prefix = kernel.dir;
  // Under the project, as notebooks are: the kernel resolves 'chromatune' from its folder upward.
  fs.mkdirSync(OUT, { recursive: true });
  rootDir = fs.mkdtempSync(path.join(OUT, 'widget-server-root-'));

  await buildWidgetPage(PAGE_DIR);
  server = await servePage(PAGE_DIR);
  jupyter = await startJupyterServer({ jupyterPath: [kernel.jupyterPath], rootDir, allowOrigin: server.url });
  browser = await launchChromium();
  page = await openPage(browser, pageErrors);
  await page.goto(`${server.url}/`);

  // The page connects as JupyterLab does: a session for a notebook path, its kernel in the panel's session context.
  const connect = page.evaluate(
    async ({ ext, baseUrl, wsUrl, token }: Record<string, string>) => {
      const P = window.chromaPage;
      const loaded = await P.loadLabExtension(ext);
      window.rendermime = P.createRendermime(loaded.extensions);
      const { ServerConnection, KernelManager, SessionManager } = P.services;
      // The page's origin differs from the server's: the token travels with the websocket URL too.
      const serverSettings = ServerConnection.makeSettings({ baseUrl, wsUrl, token, appendToken: true });
      const kernelManager = new KernelManager({ serverSettings });
      window.sessionManager = new SessionManager({ serverSettings, kernelManager });
      await window.sessionManager.ready;
      const session = await window.sessionManager.startNew({ path: 'widget-server.ipynb', type: 'notebook', name: 'widget-server.ipynb', kernel: { name: 'chromatune' } });
      window.session = session;
      const info = await session.kernel.info;
      const sessionContext = { session };
      window.mounted = P.mountOutputArea(window.rendermime, document.getElementById('outputs'), sessionContext);
      const second = document.createElement('div');
      second.id = 'follow-up';
      document.body.appendChild(second);
      window.followUp = P.mountOutputArea(window.rendermime, second, sessionContext);
      return { kernel: session.kernel.name, language: info.language_info.name, path: session.path };
    },
    { ext: `${server.url}/ext`, baseUrl: `${jupyter.url}/`, wsUrl: `${jupyter.wsUrl}/`, token: jupyter.token },
  );
  const started = await connect.catch((e: Error) => {
    throw new Error(`the page could not start a chromatune kernel session: ${e.message}\njupyter server log:\n${jupyter!.log().slice(-4000)}`);
  });
  expect(started).toEqual({ kernel: 'chromatune', language: 'typescript', path: 'widget-server.ipynb' });
}, 150_000);

afterAll(async () => {
  // Each step on its own: a failure in one still releases the rest.
  const steps: (() => unknown)[] = [
    // The kernel session, as closing a notebook does; the server shuts down any kernel left over.
    () => page && Promise.race([page.evaluate(() => window.session?.shutdown()), new Promise((r) => setTimeout(r, 5000).unref())]),
    () => browser?.close(),
    () => server?.close(),
    () => jupyter?.stop(),
    () => [prefix, rootDir].forEach((d) => d && fs.rmSync(d, { recursive: true, force: true })),
  ];
  for (const step of steps) await Promise.resolve().then(step).catch(() => undefined);
}, 60_000);

describe('the widget with a chromatune kernel behind a real jupyter server', () => {
  let before: ViewState;

  test('a cell trains a tiny model and its session renders: WebGL scene, legend, outputs, outliers', async () => {
    const ran = await executeIn('mounted', SESSION_CELL);
    expect({ status: ran.status, text: ran.status === 'ok' ? '' : cellText(ran.outputs) }).toEqual({ status: 'ok', text: '' });
    const result = ran.outputs.find((o) => o.output_type === 'execute_result');
    expect(Object.keys(result?.data ?? {})).toEqual(expect.arrayContaining([MIME, 'text/html', 'text/plain']));
    const payload = result.data[MIME];

    await page.waitForSelector('.ct-view .ct-scene.js-plotly-plot canvas', { timeout: 60_000 });
    // The node moved between the runs: its field runs across the scale.
    await page.click('.ct-view .ct-node-tab[data-node=rank]');
    await page.waitForFunction(() => document.querySelector('.ct-view .ct-scene').layout?.uirevision === 'rank', undefined, { timeout: 20_000 });
    await page.waitForTimeout(1500); // gl3d draws on animation frames

    const dom = await page.evaluate(() => {
      const scene = document.querySelector('.ct-view .ct-scene');
      return {
        webgl: !!scene.querySelector('canvas').getContext('webgl2') || !!scene.querySelector('canvas').getContext('webgl'),
        colorbar: scene.querySelectorAll('.colorbar').length,
        colorbarTitle: scene.querySelector('.colorbar .cbtitle')?.textContent ?? null,
        outlierList: document.querySelectorAll('.ct-view .ct-outlier-list').length,
        reasons: [...document.querySelectorAll('.ct-view .ct-outlier')].map((li: any) => li.querySelectorAll('.ct-reasons li').length),
      };
    });
    const outliers = payload.inputs.filter((i: any) => i.outlier).length;
    expect(payload.runs).toHaveLength(2);
    expect(payload.inputs).toHaveLength(12);
    expect(outliers).toBeGreaterThan(0);
    expect(dom).toMatchObject({ webgl: true, colorbar: 1, colorbarTitle: 'quality', outlierList: 1 });
    expect(dom.reasons).toHaveLength(outliers);
    for (const n of dom.reasons) expect(n).toBeGreaterThan(0);

    before = await viewState();
    expect(before.views).toBe(1);
    expect(before.outputs).toHaveLength(24); // 12 questions × 2 runs
    expect(before.header).toMatch(new RegExp(`^2 runs · best run-\\d \\d\\.\\d\\d · 24 outputs \\(0 rated\\) · ${outliers} outlier inputs?$`));

    const px = await screenshots('widget-server-before');
    console.log(`widget with a jupyter server: scene ${px.coloured} coloured pixels of ${px.total} (${px.hues} hue buckets); node ${before.nodeChip.text} ${before.nodeChip.colour}`);
    expect(px.coloured).toBeGreaterThan(2000);
    expect(px.hues).toBeGreaterThanOrEqual(3);
    expect(pageErrors).toEqual([]);
  }, 120_000);

  test('recolouring an output in the widget runs act() in the kernel and re-renders the node and the inputs', async () => {
    expect(before).toBeDefined();
    // The newest run's first output, rated with the swatch farthest from its quality.
    const target = before.outputs[0];
    await page.evaluate(() => (document.querySelector('.ct-view').dataset.marker = 'first'));
    await page.click(`.ct-view .ct-output[data-output="${target.id}"] .ct-output-row`);
    const swatches = await page.locator('.ct-view .ct-palette .ct-swatch').evaluateAll((bs: any[]) => bs.map((b) => Number(b.dataset.quality)));
    expect(swatches.length).toBeGreaterThan(2);
    const current = Number(target.chip);
    const pick = swatches.reduce((best, q, i) => (Math.abs(q - current) > Math.abs(swatches[best] - current) ? i : best), 0);
    const quality = swatches[pick];
    await page.click(`.ct-view .ct-palette .ct-swatch >> nth=${pick}`);
    // Done or failed: a failure's message then shows in the assertion below.
    await page.waitForFunction(() => !document.querySelector('.ct-view .ct-status').classList.contains('ct-status-busy'), undefined, { timeout: 60_000 });
    // The scene redraws from the new payload after the status says done; then gl3d draws on animation frames.
    await page.waitForFunction(
      () => {
        const node = window.mounted.model.toJSON()[0].data['application/vnd.chromatune.v1+json'].nodes.find((n: any) => n.name === 'rank');
        return document.querySelector('.ct-view .ct-scene').data.find((t: any) => t.meta?.role === 'node')?.marker.color[0] === node.colour;
      },
      undefined,
      { timeout: 20_000 },
    );
    await page.waitForTimeout(1000);
    const after = await viewState();
    expect(after.status).toBe(`rating ${target.id} as ${quality.toFixed(2)}: done`);
    expect(after.views).toBe(1);
    expect(await page.evaluate(() => document.querySelector('.ct-view').dataset.marker)).toBe('first'); // re-rendered in place

    // The output: rated, in the picked colour.
    const rated = after.outputs.find((o) => o.id === target.id)!;
    expect(rated).toMatchObject({ rated: true, chip: quality.toFixed(2) });
    expect(rated.colour).not.toBe(target.colour);
    expect(after.header).toMatch(/· 24 outputs \(1 rated\) ·/);
    // The node: its quality and colour moved, in the info chip and in the scene's marker alike.
    expect(after.nodeChip.text).not.toBe(before.nodeChip.text);
    expect(after.nodeChip.colour).not.toBe(before.nodeChip.colour);
    expect(after.nodeMarker).not.toBe(before.nodeMarker);
    // The inputs: judged again against the rated outputs.
    expect(after.outliers.length).toBeGreaterThan(0);
    expect(after.outliers).not.toEqual(before.outliers);
    // The output area holds the new state (saved with the notebook).
    const saved = await page.evaluate((id: string) => window.mounted.model.toJSON()[0].data['application/vnd.chromatune.v1+json'].outputs.find((o: any) => o.id === id), target.id);
    expect(saved).toMatchObject({ rated: true, quality });

    const px = await screenshots('widget-server-after');
    console.log(
      `recoloured ${target.id}: ${target.chip} ${target.colour} → ${rated.chip} ${rated.colour}; node ${before.nodeChip.text} ${before.nodeChip.colour} → ${after.nodeChip.text} ${after.nodeChip.colour}; ` +
        `outlier scores ${before.outliers.map((o) => o.score.slice(6)).join(',')} → ${after.outliers.map((o) => o.score.slice(6)).join(',')}; scene ${px.coloured} coloured pixels`,
    );
    expect(px.coloured).toBeGreaterThan(2000);

    // The kernel's own session holds the rating: a follow-up cell in the same kernel.
    const check = await executeIn('followUp', `const o = session.outputs.get(${JSON.stringify(target.id)})!;\nconsole.log(JSON.stringify({ rating: o.rating, colour: o.colour }));`);
    expect({ status: check.status, text: check.status === 'ok' ? '' : cellText(check.outputs) }).toEqual({ status: 'ok', text: '' });
    const printed = JSON.parse(check.outputs.filter((o) => o.output_type === 'stream' && o.name === 'stdout').map((o) => o.text).join(''));
    expect(printed.rating).toBeCloseTo(quality, 10);
    expect(pageErrors).toEqual([]);
  }, 90_000);
});
