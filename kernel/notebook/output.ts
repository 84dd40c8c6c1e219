/**
 * Clearing a cell's output from notebook code, e.g. to redraw a progress display in place of the old one.
 * The notebook kernel installs the sink; elsewhere clearOutput() does nothing.
 *
 *   import { clearOutput } from 'chromatune/notebook/output';
 */

export interface ClearOptions {
  /** Clear only when the next output arrives, so that a redraw does not flicker. */
  wait?: boolean;
}

let sink: ((wait: boolean) => void) | null = null;

/** Installed by the notebook kernel; null makes clearOutput() a no-op again. */
export function setClearSink(s: ((wait: boolean) => void) | null): void {
  sink = s;
}

export function clearOutput(o: ClearOptions = {}): void {
  sink?.(o.wait ?? false);
}
