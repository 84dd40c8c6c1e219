/**
 * The session's input history, answering history_request (tail, range, search) as IPython's kernel
 * does, so that frontends' history navigation works. In memory only: one kernel process is one session.
 */
import type { HistoryEntry, HistoryRequest } from './protocol';

interface Line {
  line: number;
  input: string;
  /** The execute_result's text/plain, when the cell had one. */
  output: string | null;
}

/** sqlite's GLOB, as IPython's history search uses it: * and ? wildcards over the whole input. */
function globRegExp(pattern: string): RegExp {
  const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[\\s\\S]*').replace(/\?/g, '[\\s\\S]');
  return new RegExp(`^${body}$`);
}

export class History {
  private readonly lines: Line[] = [];

  /** The number clients see for this session; 0 in a range request also means the current one. */
  constructor(readonly session = 1) {}

  add(line: number, input: string): void {
    this.lines.push({ line, input, output: null });
  }

  setOutput(line: number, text: string): void {
    const l = this.lines.find((x) => x.line === line);
    if (l) l.output = text;
  }

  query(req: HistoryRequest): HistoryEntry[] {
    return this.select(req).map((l) => [this.session, l.line, req.output ? [l.input, l.output] : l.input]);
  }

  private select(req: HistoryRequest): Line[] {
    switch (req.hist_access_type) {
      case 'tail':
        return this.lines.slice(-(req.n ?? 10));
      case 'range': {
        if (req.session !== undefined && req.session !== 0 && req.session !== this.session) return [];
        const start = req.start ?? 1;
        const stop = req.stop ?? Infinity;
        return this.lines.filter((l) => l.line >= start && l.line < stop);
      }
      case 'search': {
        const re = globRegExp(req.pattern ?? '*');
        let found = this.lines.filter((l) => re.test(l.input));
        if (req.unique) {
          // Keep each input's latest occurrence, in order.
          const last = new Map(found.map((l) => [l.input, l]));
          found = found.filter((l) => last.get(l.input) === l);
        }
        return req.n ? found.slice(-req.n) : found;
      }
      default:
        return [];
    }
  }
}
