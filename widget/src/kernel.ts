/**
 * The kernel an output belongs to, and running an action there.
 *
 * A mime renderer is not handed a session. In JupyterLab its widget sits inside the panel that
 * owns the kernel: notebook outputs under a NotebookPanel, console outputs under a ConsolePanel,
 * both with a `sessionContext`. The default locator walks the Lumino parents to it when a person
 * acts, so an output always talks to its own notebook's kernel, even in a notebook in the background
 * or after the kernel was changed. Hosts without such a panel (a page rendering outputs itself) pass
 * their own locator to the renderer factory.
 */
import type { Kernel, KernelMessage } from '@jupyterlab/services';
import type { Widget } from '@lumino/widgets';
import { ActionAnswer, actionCode, type ActionResult, type SessionAction } from './action';

export type KernelLocator = (widget: Widget) => Kernel.IKernelConnection | null | undefined;

/** The parts of an ISessionContext read here. */
export interface SessionContextLike {
  session: { kernel: Kernel.IKernelConnection | null } | null;
}

const hasSessionContext = (w: unknown): w is { sessionContext: SessionContextLike } => {
  const sc = (w as { sessionContext?: unknown } | null)?.sessionContext;
  return typeof sc === 'object' && sc !== null && 'session' in sc;
};

/** The kernel of the nearest ancestor with a session context (notebook or console panel). */
export const sessionContextKernel: KernelLocator = (widget) => {
  for (let w: Widget | null = widget.parent; w; w = w.parent) {
    if (hasSessionContext(w)) return w.sessionContext.session?.kernel ?? null;
  }
  return null;
};

/**
 * Runs act() for an action in the kernel and waits for the display bundle it answers with. The
 * request stays out of the history and the cell counter's sight (store_history false): it is the
 * widget's, not the person's.
 */
export async function applyAction(kernel: Kernel.IKernelConnection, sessionId: string, action: SessionAction): Promise<ActionResult> {
  const code = actionCode(sessionId, action);
  const answer = new ActionAnswer();
  const future = kernel.requestExecute({ code, silent: false, store_history: false, allow_stdin: false, stop_on_error: false });
  future.onIOPub = (msg: KernelMessage.IIOPubMessage) => answer.add(msg as unknown as Parameters<ActionAnswer['add']>[0]);
  const reply = await future.done;
  return answer.result(String(reply?.content?.status ?? 'ok'));
}
