/**
 * Datasets as notebooks see them: a named list of examples with an arquero table beside it, shown as a
 * rich table when it is a cell's last value. `openDataset('nyc-qa/train')` finds the shipped datasets;
 * a path opens any file loadExamples reads. Also two small views notebooks use: any arquero table as
 * an escaped, themed HTML table (tableView), and one example's token ids with their loss weights
 * (maskedTokens: prompt masking made visible).
 */
import * as fs from 'fs';
import * as path from 'path';
import type { ColumnTable } from 'arquero';
import { clip, datasetBundle, fmtNum, themedBlock } from '../display/bundles';
import { escapeHtml as e } from '../display/html';
import type { Displayable, MimeBundle } from '../display/mime';
import { projectPath } from '../paths';
import type { QAExample } from './example';
import { DatasetError, examplesTable, FIELD_PAIRS, loadFile, type LoadOptions, type RawRecord } from './load';
import { type TextEncoder, tokenizeExample, type TokenizedExample } from './tokenize';

/** Extensions tried, in order, for a dataset given by name. */
const NAME_EXTENSIONS = ['.jsonl', '.json', '.csv', '.tsv'];

// Not a `require('arquero')` here: load.ts owns the ESM/UMD choice; examplesTable goes through it.
type Row = Record<string, unknown>;

export class Dataset implements Displayable {
  private cachedTable?: ColumnTable;

  constructor(
    readonly name: string,
    readonly examples: QAExample[],
    /** Fields of each row beyond question/answer/id (nyc-qa's category and fact_id), when the file is JSONL. */
    readonly extras: Row[] = [],
  ) {
    if (extras.length && extras.length !== examples.length) throw new RangeError(`extras has ${extras.length} rows for ${examples.length} examples`);
  }

  get length(): number {
    return this.examples.length;
  }

  /** Columns id, question, answer, file, line and the file's other fields (built on first use). */
  get table(): ColumnTable {
    if (!this.cachedTable) {
      let t = examplesTable(this.examples);
      const names = [...new Set(this.extras.flatMap((r) => Object.keys(r)))].filter((k) => !t.columnNames().includes(k));
      if (names.length) t = t.assign(Object.fromEntries(names.map((k) => [k, this.extras.map((r) => r[k] ?? null)])));
      this.cachedTable = t;
    }
    return this.cachedTable;
  }

  /** The first n examples (or those from start to end) as a new dataset. */
  slice(start?: number, end?: number): Dataset {
    return new Dataset(this.name, this.examples.slice(start, end), this.extras.slice(start, end));
  }

  /** Examples for which `keep` is true, with their extra fields. */
  filter(keep: (x: QAExample, extra: Row, i: number) => boolean): Dataset {
    const idx = this.examples.map((x, i) => (keep(x, this.extras[i] ?? {}, i) ? i : -1)).filter((i) => i >= 0);
    return new Dataset(this.name, idx.map((i) => this.examples[i]), this.extras.length ? idx.map((i) => this.extras[i]) : []);
  }

  toMimeBundle(): MimeBundle {
    return datasetBundle(this.examples, this.name);
  }
}

/** The shipped datasets by name, e.g. nyc-qa/train, nyc-qa/validation. */
export function listDatasets(): string[] {
  const root = projectPath('datasets');
  if (!fs.existsSync(root)) return [];
  const out: string[] = [];
  for (const dir of fs.readdirSync(root, { withFileTypes: true })) {
    if (!dir.isDirectory()) continue;
    for (const f of fs.readdirSync(path.join(root, dir.name))) {
      const ext = path.extname(f);
      if (NAME_EXTENSIONS.includes(ext)) out.push(`${dir.name}/${path.basename(f, ext)}`);
    }
  }
  return out.sort();
}

const isRegularFile = (p: string): boolean => fs.existsSync(p) && fs.statSync(p).isFile();

/** A file path as it is, else a name under the project's datasets/ folder (with or without extension), relative to the working folder. */
export function resolveDataset(fileOrName: string): string {
  if (isRegularFile(fileOrName)) return fileOrName;
  const base = projectPath('datasets', fileOrName);
  for (const candidate of [base, ...NAME_EXTENSIONS.map((x) => base + x)]) {
    // Relative to the working folder, so that displays and error messages name it briefly.
    if (isRegularFile(candidate)) return path.relative(process.cwd(), candidate) || candidate;
  }
  throw new DatasetError(`no dataset "${fileOrName}": not a file, and not a shipped dataset (${listDatasets().join(', ') || 'none found'})`);
}

/** The fields of each row beyond those the examples already carry (`used`, lower-case). */
const extraFields = (records: RawRecord[], used: string[]): Row[] =>
  records.map((r) => Object.fromEntries(Object.entries(r.fields).filter(([k]) => !used.includes(k.toLowerCase()))));

export interface OpenOptions extends LoadOptions {
  /** Shown in the display; default the name given, or the file's name. */
  name?: string;
}

/**
 * Opens a dataset: `openDataset('nyc-qa/train')` (a shipped one) or `openDataset('my.csv', {
 * questionField: 'query', answerField: 'reply' })`. Loading is all or nothing, as loadExamples is.
 */
export function openDataset(fileOrName: string, o: OpenOptions = {}): Dataset {
  const file = resolveDataset(fileOrName);
  const { name, ...load } = o;
  const { format, records, examples } = loadFile(file, load);
  const isFile = path.resolve(file) === path.resolve(fileOrName);
  // Fields the examples already carry: the loader's id and question/answer names, or those given.
  const used = ['id', ...FIELD_PAIRS.flat(), load.questionField, load.answerField, load.idField]
    .filter((k): k is string => !!k)
    .map((k) => k.toLowerCase());
  const extras = format === 'jsonl' ? extraFields(records, used) : [];
  return new Dataset(name ?? (isFile ? path.basename(file) : fileOrName), examples, extras);
}

/* ------------------------------------------------------------------ views */

export interface TableViewOptions {
  /** Rows shown (default 20). */
  limit?: number;
  title?: string;
  /** Cells longer than this are cut with an ellipsis (default 120 characters). */
  maxChars?: number;
}

const cell = (v: unknown, max: number): string =>
  v === null || v === undefined ? '' : typeof v === 'number' ? fmtNum(v) : clip(typeof v === 'string' ? v : JSON.stringify(v) ?? String(v), max);

/** An arquero table (or plain rows) as a themed HTML table with a text fallback; every value escaped. */
export function tableView(table: ColumnTable | Row[], o: TableViewOptions = {}): Displayable {
  const limit = o.limit ?? 20;
  const max = o.maxChars ?? 120;
  const rows: Row[] = Array.isArray(table) ? table : (table.objects({ limit }) as Row[]);
  const total = Array.isArray(table) ? table.length : table.numRows();
  const names = Array.isArray(table) ? [...new Set(table.flatMap((r) => Object.keys(r)))] : table.columnNames();
  const shown = rows.slice(0, limit);
  const numeric = names.map((k) => shown.length > 0 && shown.every((r) => r[k] === null || r[k] === undefined || typeof r[k] === 'number'));
  return {
    toMimeBundle() {
      const head = names.map((k, i) => `<th${numeric[i] ? ' class="num"' : ''}>${e(k)}</th>`).join('');
      const body = shown.map((r) => `<tr>${names.map((k, i) => `<td${numeric[i] ? ' class="num"' : ''}>${e(cell(r[k], max))}</td>`).join('')}</tr>`).join('');
      const more = total > shown.length ? `<div class="ct-note">first ${shown.length} of ${total} rows</div>` : '';
      const html = themedBlock('ct-table', '', `${o.title ? `<div class="ct-title">${e(o.title)}</div>` : ''}<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>${more}`);
      const widths = names.map((k) => Math.min(40, Math.max(k.length, ...shown.map((r) => cell(r[k], 40).length))));
      const line = (vals: string[]) => vals.map((v, i) => (numeric[i] ? v.padStart(widths[i]) : v.padEnd(widths[i]))).join('  ').trimEnd();
      const text = [
        ...(o.title ? [o.title] : []),
        line(names.map((k) => clip(k, 40))),
        ...shown.map((r) => line(names.map((k) => cell(r[k], 40)))),
        ...(total > shown.length ? [`(first ${shown.length} of ${total} rows)`] : []),
      ].join('\n');
      return { 'text/html': html, 'text/plain': text };
    },
  };
}

/** A tokenized example with the text of each token; shows the prompt (weight 0) and the answer (weight 1). */
export interface MaskedTokens extends TokenizedExample, Displayable {
  tokens: string[];
}

const TOKENS_CSS = `
.R .ct-toks{display:flex;flex-wrap:wrap;gap:3px;margin:6px 0}
.R .ct-tok{display:inline-flex;flex-direction:column;align-items:center;border:1px solid var(--ct-line);border-radius:4px;padding:1px 4px;min-width:22px}
.R .ct-tok code{background:transparent;padding:0;white-space:pre}
.R .ct-tok small{color:var(--ct-muted);font-size:10px;font-variant-numeric:tabular-nums}
.R .ct-w1{background:#35b77933;border-color:#35b779}
`;

/** How a token's text is shown: spaces as ·, newlines as ⏎, so that both stay visible. */
const visible = (s: string): string => s.replace(/ /g, '·').replace(/\n/g, '⏎');

/** Prompt masking of one example, as the trainer sees it: token ids, token texts and loss weights. */
export function maskedTokens(tokenizer: TextEncoder & { decode(ids: number[]): string }, example: { question: string; answer: string }, maxTokens?: number): MaskedTokens {
  const t = tokenizeExample(tokenizer, example, maxTokens);
  const tokens = t.ids.map((id) => tokenizer.decode([id]));
  return {
    ...t,
    tokens,
    toMimeBundle() {
      const chips = t.ids
        .map((id, i) => `<span class="ct-tok${t.weights[i] ? ' ct-w1' : ''}" title="weight ${t.weights[i]}"><code>${e(visible(tokens[i]))}</code><small>${id}</small><small>w=${t.weights[i]}</small></span>`)
        .join('');
      const counts = `${t.ids.length} tokens: ${t.promptLength} prompt (weight 0), ${t.ids.length - t.promptLength} answer (weight 1)${t.truncated ? ', truncated' : ''}`;
      const html = themedBlock('ct-masked', TOKENS_CSS, `<div class="ct-sub">${e(counts)}</div><div class="ct-toks">${chips}</div><div class="ct-note">green: tokens the loss counts; · is a space, ⏎ a newline</div>`);
      const text = [counts, `ids:     [${t.ids.join(', ')}]`, `weights: [${t.weights.join(', ')}]`].join('\n');
      return { 'text/html': html, 'text/plain': text };
    },
  };
}
