/**
 * What a person does in the view, as kernel code, and what the kernel answers. The widget applies an
 * action in the notebook's own kernel with `(await import('chromatune')).act(sessionId, action)`; the
 * cell's result is the session's display bundle, whose payload the view renders in place.
 *
 * Every value reaches the code as a JSON literal built here from checked fields, so ids from a
 * payload (which a notebook file can carry from anywhere) cannot add code.
 */
import { MIME_TYPE, type Vec3 } from './payload';

export type RateAction = { kind: 'rate'; output: string; quality: number } | { kind: 'rate'; output: string; colour: string };
export type MoveAction = { kind: 'move'; node: string; position: Vec3 };
export type SessionAction = RateAction | MoveAction;

const inUnit = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= 1;

export function rateAction(output: string, quality: number): RateAction {
  return checkAction({ kind: 'rate', output, quality }) as RateAction;
}

export function moveAction(node: string, position: Vec3): MoveAction {
  return checkAction({ kind: 'move', node, position }) as MoveAction;
}

/** A fresh action holding only the fields act() reads, or a RangeError saying what is wrong. */
export function checkAction(action: SessionAction): SessionAction {
  const a = action as unknown as Record<string, unknown>;
  if (a?.kind === 'rate') {
    if (typeof a.output !== 'string') throw new RangeError(`a rate action needs an output id, got ${JSON.stringify(a.output)}`);
    if ('colour' in a && a.colour !== undefined) {
      if (typeof a.colour !== 'string' || !/^#[0-9a-fA-F]{6}$/.test(a.colour)) throw new RangeError(`colour must be '#rrggbb', got ${JSON.stringify(a.colour)}`);
      return { kind: 'rate', output: a.output, colour: a.colour };
    }
    if (!inUnit(a.quality)) throw new RangeError(`quality must be in [0, 1], got ${JSON.stringify(a.quality)}`);
    return { kind: 'rate', output: a.output, quality: a.quality };
  }
  if (a?.kind === 'move') {
    if (typeof a.node !== 'string') throw new RangeError(`a move action needs a node name, got ${JSON.stringify(a.node)}`);
    const p = a.position;
    if (!Array.isArray(p) || p.length !== 3 || !p.every(inUnit)) throw new RangeError(`position must be [x, y, z] with each in [0, 1], got ${JSON.stringify(p)}`);
    return { kind: 'move', node: a.node, position: [p[0], p[1], p[2]] };
  }
  throw new RangeError(`unknown action ${JSON.stringify(action)}; kinds: rate, move`);
}

/**
 * JSON as a JavaScript/TypeScript literal. JSON escapes quotes, backslashes and control characters;
 * the two line separators are escaped too, for parsers that predate ES2019.
 */
const literal = (v: unknown): string => JSON.stringify(v).replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');

/** The cell code that applies an action to a live session. */
export function actionCode(sessionId: string, action: SessionAction): string {
  if (typeof sessionId !== 'string' || !sessionId) throw new RangeError(`session id must be a non-empty string, got ${JSON.stringify(sessionId)}`);
  return `(await import('chromatune')).act(${literal(sessionId)}, ${literal(checkAction(action))})`;
}

/** A short line for the status bar: what was asked. */
export function describeAction(a: SessionAction): string {
  if (a.kind === 'rate') return `rating ${a.output} as ${'quality' in a ? a.quality.toFixed(2) : a.colour}`;
  return `moving ${a.node} to (${a.position.map((v) => v.toFixed(2)).join(', ')})`;
}

/* ------------------------------------------------- the kernel's answer */

/** The parts of a Jupyter iopub message read here. */
export interface IOPubMessage {
  header: { msg_type: string };
  content: Record<string, unknown>;
}

export type ActionResult = { ok: true; bundle: Record<string, unknown> } | { ok: false; message: string };

/**
 * Collects what an act() request's iopub messages carry: the display bundle with the payload, and
 * any error (an `error` message, or stderr text from kernels that print exceptions there).
 */
export class ActionAnswer {
  private bundle: Record<string, unknown> | null = null;
  private errors: string[] = [];
  private stderr = '';

  add(msg: IOPubMessage): void {
    const c = msg.content;
    switch (msg.header.msg_type) {
      case 'execute_result':
      case 'display_data':
      case 'update_display_data': {
        const data = c.data as Record<string, unknown> | undefined;
        if (data && typeof data === 'object' && MIME_TYPE in data) this.bundle = data;
        break;
      }
      case 'error':
        this.errors.push(`${String(c.ename ?? 'Error')}: ${String(c.evalue ?? '')}`.trim());
        break;
      case 'stream':
        if (c.name === 'stderr' && typeof c.text === 'string') this.stderr += c.text;
        break;
    }
  }

  /**
   * The outcome once the execute reply came (`status` is its content.status). stderr alone is not a
   * failure (libraries log there), but it explains a missing display on kernels that print exceptions.
   */
  result(status: string): ActionResult {
    const failed = (detail: string) => ({ ok: false as const, message: `the kernel could not apply it${detail ? `: ${detail}` : ` (reply status ${status})`}` });
    const stderr = this.stderr.trim() ? lastLines(this.stderr, 3) : '';
    if (status !== 'ok' || this.errors.length) return failed(this.errors[0] ?? stderr);
    if (this.bundle) return { ok: true, bundle: this.bundle };
    if (stderr) return failed(stderr);
    return { ok: false, message: `the kernel's answer had no ${MIME_TYPE} display (does this kernel's chromatune export act()?)` };
  }
}

// ANSI colour codes from kernels' tracebacks do not belong in a status line.
const lastLines = (s: string, n: number): string =>
  s.replace(/\u001b\[[0-9;]*m/g, '').trim().split('\n').slice(-n).join(' ').slice(0, 400);
