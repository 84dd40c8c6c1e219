/**
 * Rich display: objects that know how to show themselves as a MIME bundle, and one public way to
 * send a bundle (or update one in place) from a notebook. The notebook kernel installs the sink at
 * startup; anywhere else (a script, a test) display() falls back to printing text/plain.
 */

/** MIME type → data: strings for text types, JSON-able objects for +json types. */
export type MimeBundle = Record<string, unknown>;

/** Anything with a rich representation; the kernel shows a cell's last value this way. */
export interface Displayable {
  toMimeBundle(): MimeBundle;
}

export const isDisplayable = (v: unknown): v is Displayable =>
  typeof v === 'object' && v !== null && typeof (v as Displayable).toMimeBundle === 'function';

export interface DisplayOptions {
  /** A display id: a later update with the same id replaces this output in place. */
  displayId?: string;
  metadata?: Record<string, unknown>;
}

/** What the kernel provides: send a display_data message, or an update_display_data one. */
export interface DisplaySink {
  display(bundle: MimeBundle, o: DisplayOptions): void;
  update(bundle: MimeBundle, o: DisplayOptions & { displayId: string }): void;
}

let sink: DisplaySink | null = null;

/** Installed by the notebook kernel; null restores the plain-text fallback. */
export function setDisplaySink(s: DisplaySink | null): void {
  sink = s;
}

export const hasDisplaySink = (): boolean => sink !== null;

const bundleOf = (v: Displayable | MimeBundle): MimeBundle => (isDisplayable(v) ? v.toMimeBundle() : v);

let nextId = 0;

export interface DisplayHandle {
  readonly displayId: string;
  update(v: Displayable | MimeBundle): void;
}

/** Shows a bundle in the notebook (or its text/plain on stdout); returns a handle to update it in place. */
export function display(v: Displayable | MimeBundle, o: DisplayOptions = {}): DisplayHandle {
  const displayId = o.displayId ?? `chromatune-${process.pid}-${++nextId}`;
  const show = (b: MimeBundle, update: boolean) => {
    if (sink) {
      if (update) sink.update(b, { ...o, displayId });
      else sink.display(b, { ...o, displayId });
    } else if (!update && typeof b['text/plain'] === 'string') process.stdout.write(`${b['text/plain']}\n`);
  };
  show(bundleOf(v), false);
  return { displayId, update: (next) => show(bundleOf(next), true) };
}
