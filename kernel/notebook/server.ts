/**
 * The kernel's side of the Jupyter sockets. tslab's ZmqServer opens and binds them (shell, control,
 * iopub, stdin, heartbeat) and feeds every shell and control message to handleShellMessage; this
 * subclass replaces that handler, so that the protocol is answered as ipykernel answers it:
 * - shell requests are handled one at a time, in order, with status busy/idle around each;
 * - execute_input, execute_result and error messages, and replies carrying execution_count;
 * - an error aborts the queued execute requests only when the request asked for it (stop_on_error),
 *   so `jupyter nbconvert --execute --allow-errors` runs the cells after a failing one;
 * - history, interrupt and comm_info requests, and replies that all carry a status.
 */
import { ZmqServer } from 'tslab/dist/jupyter';
import { kernelInfo, isComplete } from './language';
import type { NotebookKernel } from './kernel';
import type { ExecuteReply, ExecuteRequest, ExecutionOutput, HistoryRequest } from './protocol';
import { Wire, type Message } from './wire';

type TslabHandler = ConstructorParameters<typeof ZmqServer>[0];
type Socket = Parameters<ZmqServer['handleShellMessage']>[0];

/**
 * After an error, ipykernel aborts the execute requests waiting in its socket. Here "waiting" reads
 * the request's header date: one sent before the error (queued here, or still on its way, as a "run
 * all" sent while a blocking cell ran) is aborted; one sent after the client saw the error reply runs.
 * Dates come from the client's clock, so the rule only holds for this long after the error: skewed
 * clocks cannot make it abort later work.
 */
const ABORT_WINDOW_MS = 2000;

export class NotebookServer extends ZmqServer {
  private wire: Wire | null = null;
  private shellQueue: Promise<void> = Promise.resolve();
  /** When the last error that asked for stop_on_error happened (kernel clock, ms). */
  private failedAt = -Infinity;

  constructor(
    private readonly kernel: NotebookKernel,
    configPath: string,
  ) {
    // The base class only calls close() on its handler: the kernel has one.
    super(kernel as unknown as TslabHandler, configPath);
  }

  private get codec(): Wire {
    // connInfo is read by init(), before any message can arrive.
    return (this.wire ??= new Wire(this.connInfo.key, this.connInfo.signature_scheme));
  }

  override async handleShellMessage(sock: Socket, ...frames: Buffer[]): Promise<void> {
    let msg: Message;
    try {
      msg = this.codec.decode(frames);
    } catch (e) {
      logToJupyter(`chromatune kernel: dropped a message: ${(e as Error).message}`);
      return;
    }
    if (sock === this.control) return this.dispatch(sock, msg);
    const done = this.shellQueue.then(() => this.dispatch(sock, msg));
    this.shellQueue = done.catch((e) => logToJupyter(`chromatune kernel: ${(e as Error).stack ?? e}`));
    return done;
  }

  private send(sock: unknown, msgType: string, content: unknown, parent: Message, identities: Buffer[] = []): void {
    const frames = this.codec.encode(msgType, content, parent, identities);
    (sock as { send(frames: Buffer[]): Promise<void> }).send(frames).catch((e) => logToJupyter(`chromatune kernel: ${msgType} not sent: ${(e as Error).message}`));
  }

  private status(state: 'busy' | 'idle', parent: Message): void {
    this.send(this.iopub, 'status', { execution_state: state }, parent);
  }

  private async dispatch(sock: Socket, msg: Message): Promise<void> {
    const reply = (type: string, content: unknown) => this.send(sock, type, content, msg, msg.identities);
    const c = msg.content;
    this.status('busy', msg);
    try {
      switch (msg.header.msg_type) {
        case 'execute_request':
          return reply('execute_reply', this.sentBeforeError(msg) ? { status: 'aborted' } : await this.execute(msg));
        case 'kernel_info_request':
          return reply('kernel_info_reply', kernelInfo());
        case 'is_complete_request':
          return reply('is_complete_reply', isComplete(String(c.code)));
        case 'complete_request':
          return reply('complete_reply', this.kernel.complete(String(c.code), Number(c.cursor_pos)));
        case 'inspect_request':
          return reply('inspect_reply', this.kernel.inspect(String(c.code), Number(c.cursor_pos)));
        case 'history_request':
          return reply('history_reply', this.kernel.historyReply(c as unknown as HistoryRequest));
        case 'comm_info_request':
          return reply('comm_info_reply', { status: 'ok', comms: {} }); // no comms (widgets) yet
        case 'interrupt_request':
          this.kernel.interrupt();
          return reply('interrupt_reply', { status: 'ok' });
        case 'shutdown_request':
          reply('shutdown_reply', { status: 'ok', restart: c.restart === true });
          return this.shutdown();
        case 'comm_open':
        case 'comm_msg':
        case 'comm_close':
          return;
        default:
          logToJupyter(`chromatune kernel: unknown message type ${msg.header.msg_type}`);
      }
    } finally {
      this.status('idle', msg);
    }
  }

  private async execute(msg: Message): Promise<ExecuteReply> {
    const req = msg.content as unknown as ExecuteRequest;
    const out: ExecutionOutput = {
      stream: (name, text) => this.send(this.iopub, 'stream', { name, text }, msg),
      publish: (type: string, content: unknown) => this.send(this.iopub, type, content, msg),
    };
    const r = await this.kernel.execute(req, out);
    if (r.status === 'error' && req.silent !== true && req.stop_on_error !== false) {
      this.failedAt = Date.now();
    }
    return r;
  }

  private sentBeforeError(msg: Message): boolean {
    if (Date.now() > this.failedAt + ABORT_WINDOW_MS) return false;
    const sent = Date.parse(msg.header.date);
    return Number.isNaN(sent) || sent < this.failedAt;
  }

  private shutdown(): void {
    // Let the reply and the idle status go out, then stop, whatever timers the notebook left running.
    setTimeout(() => {
      this.close();
      setTimeout(() => process.exit(0), 100).unref();
    }, 50);
  }
}

/** The kernel's own messages go to the terminal running Jupyter, never into a cell. */
const realStderr = process.stderr.write.bind(process.stderr);
export const logToJupyter = (text: string): void => {
  realStderr(`${text}\n`);
};
