/**
 * chromatune-widget: the JupyterLab 4 mime-renderer extension for application/vnd.chromatune.v1+json.
 * One renderer (ChromaView) and one factory, as JupyterLab's mime-renderer examples have it.
 */
import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { sessionContextKernel, type KernelLocator } from './kernel';
import { MIME_TYPE } from './payload';
import { ChromaView } from './view';

export { MIME_TYPE, PAYLOAD_VERSION, validatePayload } from './payload';
export { sessionContextKernel, type KernelLocator } from './kernel';
export { ChromaView } from './view';

export interface FactoryOptions {
  /** Finds the kernel an output's actions run in (default: its notebook's or console's). */
  kernel?: KernelLocator;
}

/** A renderer factory; hosts other than JupyterLab pass their own kernel locator. */
export function createRendererFactory(o: FactoryOptions = {}): IRenderMime.IRendererFactory {
  const locate = o.kernel ?? sessionContextKernel;
  return {
    // The view draws data only as text and plotly data, and runs kernel code only on a person's
    // click, built from checked JSON literals: safe to show in untrusted notebooks.
    safe: true,
    mimeTypes: [MIME_TYPE],
    createRenderer: (options) => new ChromaView(options, locate),
  };
}

export const rendererFactory = createRendererFactory();

const extension: IRenderMime.IExtension = {
  id: 'chromatune-widget:session',
  description: 'Renders ChromaTune sessions: parameter nodes in 3-D with quality as colour, rating and moving in the kernel.',
  rendererFactory,
  // Ahead of the bundle's text/html fallback.
  rank: 0,
  dataType: 'json',
};

export default extension;
