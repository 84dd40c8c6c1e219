/**
 * The execution side of the notebook kernel. tslab's executor compiles and runs each cell; this class
 * adds what the Jupyter protocol expects and tslab does not do: execution counts, the last value as
 * execute_result (a rich bundle for Displayable values), exceptions and type errors as error outputs,
 * the display and clear-output sinks, IPython's `?` pager, and history.
 */
import { TextDecoder } from 'util';
import { createConverter, type Converter } from 'tslab/dist/converter';
import { createExecutor, type ConverterSet, type Executor } from 'tslab/dist/executor';
import { printQuickInfo } from 'tslab/dist/inspect';
import * as tslabJupyter from 'tslab/dist/jupyter';
import { setDisplaySink, type DisplayOptions, type MimeBundle } from '../display/mime';
import { resultData, wireData } from './bundle';
import { diagnosticsContent, thrownContent, type CellDiagnostic } from './errors';
import { History } from './history';
import { setClearSink } from './output';
import { StreamBuffer } from './streams';
import type { DisplayContent, ErrorContent, ExecuteReply, ExecuteRequest, ExecutionOutput, HistoryRequest, IopubContent, MimeData } from './protocol';

/** What tslab's executor reports, for one cell, through the console it is given. */
interface CellReport {
  /** The last expression's value (the executor logs it, and only it, with console.log). */
  value?: { v: unknown };
  /** What the cell threw (logged with console.error). */
  thrown?: { e: unknown };
  /** Type errors (logged with console.error in this format). */
  diagnostics: CellDiagnostic[];
}

const DIAGNOSTIC_FORMAT = '%s%d:%d - %s';

type CellOutcome =
  | { kind: 'done'; result?: MimeData }
  | { kind: 'page'; text: string }
  | { kind: 'error'; error: ErrorContent };

/** `Math.floor?` or `?Math.floor`: neither is valid TypeScript, so IPython's help syntax is free to use. */
const PAGE_QUERY = /^\s*(?:\?\s*([\w$.]+)|([\w$.]+)\s*\?)\s*$/;

/** tslab's converter pair, created on first use (the browser one is rarely needed). */
function converters(): ConverterSet {
  let node: Converter | undefined;
  let browser: Converter | undefined;
  return {
    get node() {
      return (node ??= createConverter({ isJS: false, isBrowser: false }));
    },
    get browser() {
      return (browser ??= createConverter({ isJS: false, isBrowser: true }));
    },
    close() {
      node?.close();
      browser?.close();
    },
  };
}

const displayContent = (bundle: MimeBundle, o: DisplayOptions): DisplayContent => ({
  data: wireData(bundle),
  metadata: o.metadata ?? {},
  transient: o.displayId ? { display_id: o.displayId } : {},
});

export class NotebookKernel {
  readonly history = new History();
  private readonly executor: Executor;
  private readonly convs = converters();
  private report: CellReport = { diagnostics: [] };
  private count = 0;
  /** Where cell output goes: the running cell, or the last one (output written after a cell ends lands there, as in IPython). */
  private out: ExecutionOutput | null = null;
  private streams: StreamBuffer | null = null;

  constructor(rootDir: string = process.cwd()) {
    this.executor = createExecutor(rootDir, this.convs, {
      log: (v: unknown) => {
        this.report.value = { v };
      },
      error: (first: unknown, ...rest: unknown[]) => {
        if (first === DIAGNOSTIC_FORMAT) {
          const [file, line, column, message] = rest as [string, number, number, string];
          this.report.diagnostics.push({ fileName: file ? file.trim() : undefined, line, column, message });
        } else {
          this.report.thrown = { e: first };
        }
      },
    });
    void this.convs.node; // the converter takes seconds to start: now, not in the first cell
    this.installSinks();
  }

  private installSinks(): void {
    setDisplaySink({
      display: (bundle, o) => this.emit('display_data', displayContent(bundle, o)),
      update: (bundle, o) => this.emit('update_display_data', displayContent(bundle, o)),
    });
    setClearSink((wait) => this.emit('clear_output', { wait }));
    // tslab's own display API (import * as tslab from 'tslab') sends through this.
    (tslabJupyter as { lastWriteDisplayData: (data: DisplayContent, update: boolean) => void }).lastWriteDisplayData = (data, update) =>
      this.emit(update ? 'update_display_data' : 'display_data', data);
  }

  /** Output other than text, after the text written before it. */
  private emit<T extends 'display_data' | 'update_display_data' | 'clear_output'>(type: T, content: IopubContent[T]): void {
    this.streams?.flush();
    this.out?.publish(type, content);
  }

  /** Sends process.stdout/stderr (console.log included) to `out` as stream messages. */
  private attach(out: ExecutionOutput): void {
    this.streams?.flush(); // what the previous cell left belongs to it
    this.out = out;
    const streams = (this.streams = new StreamBuffer((name, text) => out.stream(name, text)));
    for (const name of ['stdout', 'stderr'] as const) {
      const decoder = new TextDecoder();
      process[name].write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
        streams.write(name, typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true }));
        const done = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
        if (done) process.nextTick(done);
        return true;
      }) as typeof process.stdout.write;
    }
  }

  async execute(req: ExecuteRequest, out: ExecutionOutput): Promise<ExecuteReply> {
    const silent = req.silent === true;
    const stored = !silent && req.store_history !== false;
    if (stored) this.history.add(++this.count, req.code);
    const count = this.count;
    if (!silent) out.publish('execute_input', { code: req.code, execution_count: count });
    this.attach(out);
    const outcome = await this.run(req.code);
    this.streams?.flush();
    switch (outcome.kind) {
      case 'error':
        if (!silent) out.publish('error', outcome.error);
        return { status: 'error', execution_count: count, ...outcome.error };
      case 'page':
        return { status: 'ok', execution_count: count, payload: [{ source: 'page', data: { 'text/plain': outcome.text }, start: 0 }], user_expressions: {} };
      case 'done':
        if (outcome.result && !silent) {
          out.publish('execute_result', { execution_count: count, data: outcome.result, metadata: {} });
          // Unstored requests (a widget's act() calls) reuse the last count: they must not overwrite its output.
          if (stored) this.history.setOutput(count, String(outcome.result['text/plain']));
        }
        return { status: 'ok', execution_count: count, payload: [], user_expressions: {} };
    }
  }

  private async run(code: string): Promise<CellOutcome> {
    const query = PAGE_QUERY.exec(code);
    if (query) return { kind: 'page', text: this.help(query[1] ?? query[2]) };
    const report: CellReport = (this.report = { diagnostics: [] });
    let ok: boolean;
    try {
      ok = await this.executor.execute(code);
    } catch (e) {
      return { kind: 'error', error: thrownContent(e) };
    }
    if (!ok) {
      if (report.diagnostics.length) return { kind: 'error', error: diagnosticsContent(report.diagnostics, code) };
      return { kind: 'error', error: thrownContent(report.thrown ? report.thrown.e : new Error('the cell failed')) };
    }
    // A module cell (//@module) is registered even with type errors: they are shown, not fatal.
    if (report.diagnostics.length) this.streams?.write('stderr', `${diagnosticsContent(report.diagnostics, code).traceback.join('\n')}\n`);
    if (!report.value) return { kind: 'done' };
    try {
      return { kind: 'done', result: resultData(report.value.v) };
    } catch (e) {
      return { kind: 'error', error: thrownContent(e) }; // a toMimeBundle() that throws, or one that is not JSON, is the cell's error
    }
  }

  /** What the TypeScript service knows of the name at the cursor (its type and documentation). */
  private quickInfo(code: string, cursorPos: number): string | undefined {
    const info = this.executor.inspect(code, cursorPos);
    return info ? printQuickInfo(info) : undefined;
  }

  private help(expr: string): string {
    return this.quickInfo(expr, expr.length) ?? `Nothing found for ${expr}.`;
  }

  inspect(code: string, cursorPos: number) {
    const text = this.quickInfo(code, cursorPos);
    return text === undefined
      ? { status: 'ok' as const, found: false, data: {}, metadata: {} }
      : { status: 'ok' as const, found: true, data: { 'text/plain': text }, metadata: {} };
  }

  complete(code: string, cursorPos: number) {
    const c = this.executor.complete(code, cursorPos);
    return { status: 'ok' as const, matches: c.candidates, cursor_start: c.start, cursor_end: c.end, metadata: {} };
  }

  historyReply(req: HistoryRequest) {
    return { status: 'ok' as const, history: this.history.query(req) };
  }

  /** Stops an awaiting cell (a blocking one is stopped by SIGINT itself: tslab runs cells with breakOnSigint). */
  interrupt(): void {
    this.executor.interrupt();
  }

  close(): void {
    this.executor.close();
  }
}
