/**
 * Failures as Jupyter error outputs (ename, evalue, traceback lines): exceptions thrown by a cell and
 * TypeScript diagnostics that stop a cell from compiling.
 */
import { inspect } from 'util';
import type { ErrorContent } from './protocol';

/** A TypeScript diagnostic as tslab's executor reports it: 1-based line and column within the cell (or a file beside it). */
export interface CellDiagnostic {
  /** A file imported from the notebook's folder; absent for the cell itself. */
  fileName?: string;
  line: number;
  column: number;
  message: string;
}

/** Frames of the kernel's own machinery (tslab's executor, this folder, Node's internals) say nothing about the cell. */
const INTERNAL_FRAME = /[\\/]node_modules[\\/]tslab[\\/]|[\\/]kernel[\\/]notebook[\\/]|\(node:|at node:/;

/** tslab runs a cell as "evalmachine.<anonymous>"; its line numbers are those of the compiled JavaScript, so they are dropped. */
const CELL_LOCATION = /evalmachine\.<anonymous>(:\d+)*/g;

const INTERRUPT_CODES = new Set(['ERR_SCRIPT_EXECUTION_INTERRUPTED']);

interface ErrorLike {
  name?: unknown;
  message: string;
  stack?: unknown;
  code?: unknown;
}

const isErrorLike = (e: unknown): e is ErrorLike =>
  typeof e === 'object' && e !== null && typeof (e as ErrorLike).message === 'string';

function errorName(e: ErrorLike): string {
  const name = typeof e.name === 'string' && e.name ? e.name : 'Error';
  // A subclass that does not set `name` still says what it is through its constructor.
  const ctor = (e as { constructor?: { name?: string } }).constructor?.name;
  return name === 'Error' && ctor && ctor !== 'Object' ? ctor : name;
}

/** Stack frames that belong to the user's code, with cell locations named plainly. */
function userFrames(stack: unknown): string[] {
  if (typeof stack !== 'string') return [];
  return stack
    .split('\n')
    .filter((l) => /^\s+at /.test(l) && !INTERNAL_FRAME.test(l))
    .map((l) => l.replace(CELL_LOCATION, '<cell>'));
}

/** What a cell threw. Interrupts (Ctrl-C, the stop button) read as such rather than as an error in the cell. */
export function thrownContent(thrown: unknown): ErrorContent {
  if (!isErrorLike(thrown)) {
    const evalue = inspect(thrown, { colors: false, depth: 2 });
    return { ename: 'Uncaught', evalue, traceback: [`Uncaught ${evalue}`] };
  }
  if (INTERRUPT_CODES.has(String(thrown.code)) || thrown.message === 'Interrupted asynchronously') {
    return { ename: 'Interrupted', evalue: 'execution interrupted', traceback: ['Interrupted: execution interrupted'] };
  }
  const ename = errorName(thrown);
  return { ename, evalue: thrown.message, traceback: [`${ename}: ${thrown.message}`, ...userFrames(thrown.stack)] };
}

/** Type errors: each with its position and, for the cell itself, the offending line with a caret under it. */
export function diagnosticsContent(diagnostics: CellDiagnostic[], code: string): ErrorContent {
  const lines = code.split('\n');
  const where = (d: CellDiagnostic) => `${d.fileName ?? 'cell'}:${d.line}:${d.column}`;
  const summary = diagnostics.map((d) => `${where(d)} - ${d.message}`);
  const traceback = diagnostics.flatMap((d, i) => {
    const src = d.fileName === undefined ? lines[d.line - 1] : undefined;
    const shown = [`TypeScriptError: ${summary[i]}`];
    if (src !== undefined) shown.push(`    ${src}`, `    ${' '.repeat(Math.max(0, d.column - 1))}^`);
    return shown;
  });
  return { ename: 'TypeScriptError', evalue: summary.join('\n'), traceback };
}
