/**
 * What the kernel tells frontends about its language: kernel_info_reply, and whether a piece of code is
 * complete (consoles ask before running what was typed).
 */
import { createRequire } from 'module';
import * as fs from 'fs';
import { isCompleteCode } from 'tslab/dist/converter';
import { projectPath } from '../paths';
import { PROTOCOL_VERSION } from './protocol';

/** The parts of tslab's own TypeScript compiler (the one that compiles cells) used here. */
interface TslabTypeScript {
  version: string;
  ScriptTarget: { Latest: number };
  ScriptKind: { TS: number };
  createSourceFile(name: string, text: string, target: number, setParents?: boolean, kind?: number): { parseDiagnostics?: unknown[] };
}

const ts = createRequire(require.resolve('tslab/package.json'))('@tslab/typescript-for-tslab') as TslabTypeScript;
const versionOf = (pkgJson: string): string => JSON.parse(fs.readFileSync(pkgJson, 'utf8')).version;

export function kernelInfo() {
  const version = versionOf(projectPath('package.json'));
  const tslab = versionOf(require.resolve('tslab/package.json'));
  return {
    status: 'ok' as const,
    protocol_version: PROTOCOL_VERSION,
    implementation: 'chromatune',
    implementation_version: version,
    language_info: {
      name: 'typescript',
      version: ts.version,
      mimetype: 'text/typescript',
      file_extension: '.ts',
      pygments_lexer: 'typescript',
      // Notebook and JupyterLab highlight TypeScript from this combination (as tslab sends it).
      codemirror_mode: { mode: 'typescript', name: 'javascript', typescript: true },
    },
    banner: `ChromaTune ${version}: TypeScript ${ts.version} on Node ${process.version} (tslab ${tslab})`,
    help_links: [{ text: 'TypeScript handbook', url: 'https://www.typescriptlang.org/docs/handbook/intro.html' }],
  };
}

export type IsCompleteReply = { status: 'complete' | 'invalid' } | { status: 'incomplete'; indent: string };

/** tslab says when more input is expected; code that still does not parse is "invalid" (consoles then run it to show the error). */
export function isComplete(code: string): IsCompleteReply {
  const r = isCompleteCode(code);
  if (!r.completed) return { status: 'incomplete', indent: r.indent ?? '' };
  const parsed = ts.createSourceFile('cell.ts', code, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  return { status: parsed.parseDiagnostics?.length ? 'invalid' : 'complete' };
}
