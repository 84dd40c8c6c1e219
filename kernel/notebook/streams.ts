/**
 * stdout and stderr, coalesced into fewer stream messages as ipykernel does: a loop printing a line at a
 * time would otherwise send a message per line, which frontends render slowly and a busy iopub socket
 * drops. Text goes out at least every FLUSH_MS (also during a blocking loop), before any other output of
 * the cell (order is kept), and when the cell ends.
 */
const FLUSH_MS = 50;
const MAX_CHARS = 64 * 1024;

export type StreamName = 'stdout' | 'stderr';

export class StreamBuffer {
  private name: StreamName | null = null;
  private text = '';
  private lastFlush = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly send: (name: StreamName, text: string) => void) {}

  write(name: StreamName, text: string): void {
    if (this.name !== name) this.flush();
    this.name = name;
    this.text += text;
    if (this.text.length >= MAX_CHARS || Date.now() - this.lastFlush >= FLUSH_MS) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), FLUSH_MS);
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.name && this.text) this.send(this.name, this.text);
    this.name = null;
    this.text = '';
    this.lastFlush = Date.now();
  }
}
