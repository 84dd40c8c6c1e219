/**
 * A browser page that renders notebook outputs the way JupyterLab does, outside JupyterLab: a
 * RenderMimeRegistry with the standard renderers plus the built chromatune-widget extension (loaded
 * from its labextension folder through module federation, as JupyterLab loads prebuilt extensions),
 * and output areas inside a panel that carries a session context, as a notebook panel does.
 *
 * Bundled with esbuild (see harness.ts); everything is on `window.chromaPage` for the page's driver.
 * A driver with a kernel (e.g. one connected through `services` to a jupyter server) passes it as
 * the output area's session context; the widget finds it by walking its Lumino parents.
 */
import * as luminoWidgets from '@lumino/widgets';
import { Panel, Widget } from '@lumino/widgets';
import * as services from '@jupyterlab/services';
import { OutputArea, OutputAreaModel } from '@jupyterlab/outputarea';
import { RenderMimeRegistry, standardRendererFactories } from '@jupyterlab/rendermime';
import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import '@jupyterlab/outputarea/style/index.js';
import type { SessionContextLike } from '../src/kernel';

/** Versions of the packages this page shares with extensions, set by the bundler. */
declare const SHARED_VERSIONS: Record<string, string>;

/** What an extension's remoteEntry registers: a module-federation container. */
interface Container {
  init(scope: ShareScope): Promise<void> | void;
  get(module: string): Promise<() => unknown>;
}
type ShareScope = Record<string, Record<string, { get: () => Promise<() => unknown>; from: string; eager: boolean; loaded?: number }>>;

/** The modules this page provides to extensions: the singletons JupyterLab would provide. */
const SHARED: Record<string, unknown> = { '@lumino/widgets': luminoWidgets };

function shareScope(): ShareScope {
  const scope: ShareScope = {};
  for (const [name, module] of Object.entries(SHARED)) {
    scope[name] = { [SHARED_VERSIONS[name]]: { get: () => Promise.resolve(() => module), from: 'chromatune-page', eager: false, loaded: 1 } };
  }
  return scope;
}

function loadScript(url: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = document.createElement('script');
    s.src = url;
    s.onload = () => resolve();
    s.onerror = () => reject(new Error(`could not load ${url}`));
    document.head.appendChild(s);
  });
}

export interface LoadedExtension {
  name: string;
  extensions: IRenderMime.IExtension[];
}

/**
 * Loads a prebuilt extension from its folder (the builder's outputDir, served at `baseUrl`): reads
 * package.json's jupyterlab._build, runs the remoteEntry, and takes its mime extension and style.
 */
export async function loadLabExtension(baseUrl: string): Promise<LoadedExtension> {
  const base = baseUrl.replace(/\/$/, '');
  const pkg = await (await fetch(`${base}/package.json`)).json();
  const build = pkg?.jupyterlab?._build;
  if (!build?.load || !build.mimeExtension) throw new Error(`${base}/package.json has no jupyterlab._build with a mime extension: build the extension first`);
  await loadScript(`${base}/${build.load}`);
  const container = (window as unknown as { _JUPYTERLAB: Record<string, Container> })._JUPYTERLAB?.[pkg.name];
  if (!container) throw new Error(`${build.load} did not register _JUPYTERLAB[${JSON.stringify(pkg.name)}]`);
  await container.init(shareScope());
  if (build.style) (await container.get(build.style))();
  const mod = (await container.get(build.mimeExtension))() as { default?: IRenderMime.IExtension | IRenderMime.IExtension[] };
  const ext = mod.default ?? (mod as IRenderMime.IExtension);
  return { name: pkg.name, extensions: Array.isArray(ext) ? ext : [ext] };
}

/** The standard renderers plus the extensions' renderer factories at their ranks, as JupyterLab registers them. */
export function createRendermime(extensions: IRenderMime.IExtension[]): RenderMimeRegistry {
  const rendermime = new RenderMimeRegistry({ initialFactories: standardRendererFactories });
  for (const e of extensions) rendermime.addFactory(e.rendererFactory, e.rank ?? 0);
  return rendermime;
}

/** A panel holding output areas with a session context, as a notebook panel holds its cells. */
export class KernelPanel extends Panel {
  sessionContext: SessionContextLike;
  constructor(sessionContext: SessionContextLike = { session: null }) {
    super();
    this.sessionContext = sessionContext;
    this.addClass('ct-page-panel');
  }

  /** Points the panel (and every output in it) at a kernel. */
  setKernel(kernel: services.Kernel.IKernelConnection | null): void {
    this.sessionContext = { session: kernel ? { kernel } : null };
  }
}

export interface MountedArea {
  panel: KernelPanel;
  area: OutputArea;
  model: OutputAreaModel;
  /** Shows one output, as a kernel's display_data would. */
  display(data: Record<string, unknown>): void;
  /** Runs code in the panel's kernel, its outputs in this area (as a cell does). */
  execute(code: string): Promise<services.KernelMessage.IExecuteReplyMsg | undefined>;
}

/** An output area in a kernel panel, attached under `host`. */
export function mountOutputArea(rendermime: RenderMimeRegistry, host: HTMLElement, sessionContext?: SessionContextLike): MountedArea {
  const panel = new KernelPanel(sessionContext);
  const model = new OutputAreaModel({ trusted: true });
  const area = new OutputArea({ model, rendermime });
  panel.addWidget(area);
  Widget.attach(panel, host);
  window.addEventListener('resize', () => panel.update());
  return {
    panel,
    area,
    model,
    display: (data) => model.add({ output_type: 'display_data', data: data as never, metadata: {} }),
    execute: (code) => OutputArea.execute(code, area, panel.sessionContext as never),
  };
}

/** JupyterLab's theme switch: the body attributes its theme manager sets, which the widget observes. */
export function setTheme(light: boolean): void {
  document.body.dataset.jpThemeLight = String(light);
  document.body.dataset.jpThemeName = light ? 'JupyterLab Light' : 'JupyterLab Dark';
}

const page = { loadLabExtension, createRendermime, mountOutputArea, setTheme, KernelPanel, OutputArea, OutputAreaModel, services, Widget };
export type ChromaPage = typeof page;
(window as unknown as { chromaPage: ChromaPage }).chromaPage = page;
