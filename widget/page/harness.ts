/**
 * The Node side of the widget's browser page: bundles host.ts with esbuild, serves the page and the
 * built labextension folder over HTTP (the extension's chunks load relative to its remoteEntry, as
 * under a jupyter server), and launches Debian's Chromium through playwright-core with software WebGL.
 */
import * as fs from 'fs';
import * as http from 'http';
import type { AddressInfo } from 'net';
import * as os from 'os';
import * as path from 'path';
import { build } from 'esbuild';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const WIDGET_DIR = path.resolve(__dirname, '..');
export const ROOT_DIR = path.resolve(WIDGET_DIR, '..');
/** The prebuilt extension: the builder's outputDir from widget/package.json. */
export const LABEXTENSION_DIR = path.join(WIDGET_DIR, JSON.parse(fs.readFileSync(path.join(WIDGET_DIR, 'package.json'), 'utf8')).jupyterlab.outputDir);
export const CHROMIUM = '/usr/bin/chromium';

/** Packages the page shares with extensions (see SHARED in host.ts), with their installed versions. */
const SHARED_PACKAGES = ['@lumino/widgets'];

const installedVersion = (pkg: string): string => JSON.parse(fs.readFileSync(path.join(ROOT_DIR, 'node_modules', pkg, 'package.json'), 'utf8')).version;

/** JupyterLab's theme variables the view reads, light and dark, for a page without JupyterLab's themes. */
const THEME_CSS = `
:root, body[data-jp-theme-light="true"] {
  --jp-layout-color0: #ffffff; --jp-layout-color1: #ffffff; --jp-layout-color2: #eeeeee; --jp-layout-color3: #bdbdbd;
  --jp-ui-font-color0: rgba(0,0,0,1); --jp-ui-font-color1: rgba(0,0,0,0.87); --jp-ui-font-color2: rgba(0,0,0,0.54);
  --jp-content-font-color1: rgba(0,0,0,0.87); --jp-border-color1: #bdbdbd; --jp-border-color2: #e0e0e0;
  --jp-brand-color1: #1976d2; --jp-error-color1: #d32f2f; --jp-warn-color1: #f57c00; --jp-rendermime-error-background: #fdd;
  --jp-ui-font-family: system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif;
  --jp-code-font-family: Menlo, Consolas, 'DejaVu Sans Mono', monospace;
  --jp-ui-font-size0: 11px; --jp-ui-font-size1: 13px; --jp-ui-font-size2: 15px; --jp-code-font-size: 13px;
}
body[data-jp-theme-light="false"] {
  --jp-layout-color0: #111111; --jp-layout-color1: #212121; --jp-layout-color2: #424242; --jp-layout-color3: #616161;
  --jp-ui-font-color0: rgba(255,255,255,1); --jp-ui-font-color1: rgba(255,255,255,0.87); --jp-ui-font-color2: rgba(255,255,255,0.54);
  --jp-content-font-color1: rgba(255,255,255,0.87); --jp-border-color1: #616161; --jp-border-color2: #424242;
  --jp-brand-color1: #64b5f6; --jp-rendermime-error-background: #4a1f1f;
}
body { margin: 12px; background: var(--jp-layout-color0); color: var(--jp-ui-font-color1); font-family: var(--jp-ui-font-family); }
#outputs { width: 1180px; }
`;

/** Throws, saying how to build it, when the prebuilt extension is missing. */
export function requireBuiltExtension(): void {
  if (!fs.existsSync(path.join(LABEXTENSION_DIR, 'package.json'))) {
    throw new Error(`the built extension is missing at ${LABEXTENSION_DIR}: run \`npm run build:widget\` (npm install runs it through prepare)`);
  }
}

/** Bundles the page into `outDir` (index.html, host.js, host.css). */
export async function buildWidgetPage(outDir: string): Promise<string> {
  fs.mkdirSync(outDir, { recursive: true });
  const versions = Object.fromEntries(SHARED_PACKAGES.map((p) => [p, installedVersion(p)]));
  await build({
    entryPoints: [path.join(WIDGET_DIR, 'page', 'host.ts')],
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: 'es2021',
    outdir: outDir,
    logLevel: 'error',
    define: { SHARED_VERSIONS: JSON.stringify(versions), 'process.env.NODE_ENV': '"production"' },
    loader: { '.svg': 'dataurl', '.png': 'dataurl', '.gif': 'dataurl', '.woff': 'dataurl', '.woff2': 'dataurl', '.ttf': 'dataurl', '.eot': 'dataurl' },
  });
  fs.writeFileSync(
    path.join(outDir, 'index.html'),
    `<!doctype html><html><head><meta charset="utf-8"><title>ChromaTune outputs</title><link rel="stylesheet" href="host.css"><style>${THEME_CSS}</style></head>` +
      `<body data-jp-theme-light="true" data-jp-theme-name="JupyterLab Light"><div id="outputs"></div><script src="host.js"></script></body></html>`,
  );
  return outDir;
}

const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.json': 'application/json', '.map': 'application/json' };

export interface PageServer {
  /** e.g. http://127.0.0.1:PORT; the page is at `${url}/`, the extension at `${url}/ext/`. */
  url: string;
  close(): Promise<void>;
}

/** Serves the page folder at / and the labextension folder at /ext/, on a free local port. */
export function servePage(pageDir: string, extensionDir = LABEXTENSION_DIR): Promise<PageServer> {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const [base, rel] = url.pathname.startsWith('/ext/') ? [extensionDir, url.pathname.slice(5)] : [pageDir, url.pathname.slice(1) || 'index.html'];
    const file = path.resolve(base, decodeURIComponent(rel));
    if (!file.startsWith(path.resolve(base) + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({ url: `http://127.0.0.1:${port}`, close: () => new Promise((r) => server.close(() => r())) });
    });
  });
}

export interface Browser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** Throws, saying how to install it, when Chromium is missing. */
export function requireChromium(): void {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`Chromium is missing at ${CHROMIUM}: the widget's page tests run in a real browser. Install it with: apt-get install chromium`);
}

/** Chromium with WebGL through SwiftShader, in a fresh profile removed on close. */
export async function launchChromium(viewport = { width: 1240, height: 1100 }): Promise<Browser> {
  requireChromium();
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chromatune-widget-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--use-angle=swiftshader', '--enable-unsafe-swiftshader'],
  });
  return {
    context,
    close: async () => {
      await context.close();
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/** The browser's page (its first tab), with the page's uncaught errors collected into `errors`. */
export async function openPage(browser: Browser, errors: string[]): Promise<Page> {
  const page = browser.context.pages()[0] ?? (await browser.context.newPage());
  page.on('pageerror', (e) => errors.push(e.message));
  return page;
}
