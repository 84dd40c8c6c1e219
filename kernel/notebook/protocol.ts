/**
 * The parts of the Jupyter messaging protocol (5.3) that the notebook kernel reads and writes.
 * https://jupyter-client.readthedocs.io/en/latest/messaging.html
 */

export const PROTOCOL_VERSION = '5.3';

/** MIME type → data, as it goes on the wire: strings, or JSON values for +json types. */
export type MimeData = Record<string, unknown>;

export interface ExecuteRequest {
  code: string;
  silent?: boolean;
  store_history?: boolean;
  user_expressions?: Record<string, string>;
  allow_stdin?: boolean;
  /** Absent means true: an error aborts the requests queued behind it. */
  stop_on_error?: boolean;
}

/** The fields of an `error` iopub message, repeated in an execute_reply with status "error". */
export interface ErrorContent {
  ename: string;
  evalue: string;
  traceback: string[];
}

/** A pager payload: what `Math.floor?` shows (IPython's `?`). */
export interface PagePayload {
  source: 'page';
  data: MimeData;
  start: number;
}

export type ExecuteReply =
  | { status: 'ok'; execution_count: number; payload: PagePayload[]; user_expressions: Record<string, unknown> }
  | ({ status: 'error'; execution_count: number } & ErrorContent)
  | { status: 'aborted' };

export interface DisplayContent {
  data: MimeData;
  metadata: Record<string, unknown>;
  transient?: { display_id?: string };
}

/** iopub messages other than streams and status, by type. */
export interface IopubContent {
  execute_input: { code: string; execution_count: number };
  execute_result: DisplayContent & { execution_count: number };
  display_data: DisplayContent;
  update_display_data: DisplayContent;
  clear_output: { wait: boolean };
  error: ErrorContent;
}

/** Where one execution's output goes: its iopub messages, with the request as their parent. */
export interface ExecutionOutput {
  stream(name: 'stdout' | 'stderr', text: string): void;
  publish<T extends keyof IopubContent>(msgType: T, content: IopubContent[T]): void;
}

export interface HistoryRequest {
  output: boolean;
  raw: boolean;
  hist_access_type: 'range' | 'tail' | 'search';
  session?: number;
  start?: number;
  stop?: number;
  n?: number;
  pattern?: string;
  unique?: boolean;
}

/** (session, line, input) or, with output requested, (session, line, [input, output]). */
export type HistoryEntry = [number, number, string | [string, string | null]];
