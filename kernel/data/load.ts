/**
 * Dataset file (JSONL, JSON array, CSV/TSV) -> validated question/answer examples, each tagged with
 * the file and line it came from. Loading is all or nothing: the first malformed row stops it with
 * `file:line: reason`, so a training run never starts on a silently shortened dataset.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { ColumnTable } from 'arquero';
import type { QAExample } from './example';

export type DatasetFormat = 'jsonl' | 'json' | 'csv';

export interface LoadOptions {
  format?: DatasetFormat;
  questionField?: string;
  answerField?: string;
  idField?: string;
  /** CSV delimiter; defaults to tab for .tsv and comma otherwise. */
  delimiter?: string;
}

/** Accepted field pairs, in order of preference; matched exactly first, then case-insensitively. */
export const FIELD_PAIRS: ReadonlyArray<readonly [string, string]> = [
  ['question', 'answer'],
  ['input', 'output'],
  ['prompt', 'completion'],
  ['instruction', 'response'],
];

const EXTENSIONS: Record<string, { format: DatasetFormat; delimiter?: string }> = {
  '.jsonl': { format: 'jsonl' },
  '.ndjson': { format: 'jsonl' },
  '.json': { format: 'json' },
  '.csv': { format: 'csv', delimiter: ',' },
  '.tsv': { format: 'csv', delimiter: '\t' },
};

type Arquero = typeof import('arquero');
let arqueroModule: Arquero | undefined;
/**
 * arquero 8 ships ESM sources plus a UMD bundle. Node >= 20.19 can require() the ESM entry, but jest's
 * CommonJS runtime cannot, and there the UMD bundle (same code) is the one that loads. Loaded lazily so
 * JSON-only users never pay for it.
 */
function arquero(): Arquero {
  if (!arqueroModule) {
    try {
      arqueroModule = require('arquero') as Arquero;
    } catch {
      arqueroModule = require('arquero/dist/arquero.js') as Arquero;
    }
  }
  return arqueroModule;
}

/** One row of the file as parsed: its 1-based line and every field it has. */
export interface RawRecord {
  line: number;
  fields: Record<string, unknown>;
}

export class DatasetError extends Error {
  override name = 'DatasetError';
}

const describe = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);
const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A parsed dataset file: its format, every row with all its fields, and the examples read from them (same order). */
export interface LoadedFile {
  format: DatasetFormat;
  records: RawRecord[];
  examples: QAExample[];
}

export function loadExamples(file: string, opts: LoadOptions = {}): QAExample[] {
  return loadFile(file, opts).examples;
}

/** loadExamples, keeping the rows' other fields for callers that show them (openDataset). */
export function loadFile(file: string, opts: LoadOptions = {}): LoadedFile {
  const ext = path.extname(file).toLowerCase();
  const known = EXTENSIONS[ext];
  const format = opts.format ?? known?.format;
  if (!format) {
    throw new DatasetError(`${file}: unknown dataset extension "${ext}" (valid: ${Object.keys(EXTENSIONS).join(', ')}), or pass opts.format`);
  }
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8').replace(/^\uFEFF/, ''); // a BOM would break JSON and the first CSV header
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'a folder, not a file' : err.message;
    throw new DatasetError(`${file}: cannot read the dataset: ${why}`);
  }
  const { records, keys } =
    format === 'jsonl' ? readJsonl(file, text)
    : format === 'json' ? readJsonArray(file, text)
    : readDelimited(file, text, opts.delimiter ?? known?.delimiter ?? ',');
  if (records.length === 0) throw new DatasetError(`${file}: no examples found`);
  const { question, answer, id } = chooseFields(file, keys, opts);
  return { format, records, examples: records.map((r) => toExample(file, r, question, answer, id)) };
}

function readJsonl(file: string, text: string): { records: RawRecord[]; keys: string[] } {
  const records: RawRecord[] = [];
  text.split('\n').forEach((raw, i) => {
    const s = raw.trim();
    if (s === '') return; // blank lines (often a trailing one) are not rows
    let v: unknown;
    try {
      v = JSON.parse(s);
    } catch (err) {
      throw new DatasetError(`${file}:${i + 1}: invalid JSON (${(err as Error).message})`);
    }
    if (!isPlainObject(v)) throw new DatasetError(`${file}:${i + 1}: expected a JSON object, got ${describe(v)}`);
    records.push({ line: i + 1, fields: v });
  });
  return { records, keys: unionKeys(records) };
}

/** 1-based line of character offset `pos`. */
const lineAt = (text: string, pos: number): number => text.slice(0, pos).split('\n').length;

function readJsonArray(file: string, text: string): { records: RawRecord[]; keys: string[] } {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new DatasetError(`${file}${jsonErrorLocation(text, err as Error)}: invalid JSON (${(err as Error).message})`);
  }
  if (!Array.isArray(data)) throw new DatasetError(`${file}: expected a JSON array of examples, got ${describe(data)}`);
  // JSON.parse has already proven the text valid, so a light scan only has to find where each
  // top-level element starts; JSON.parse itself cannot report positions of values.
  const spans = arrayElements(text);
  if (spans.length !== data.length) throw new Error(`${file}: internal error: found ${spans.length} element starts for ${data.length} elements`);
  const records = data.map((v, i): RawRecord => {
    if (!isPlainObject(v)) throw new DatasetError(`${file}:${spans[i].line}: expected a JSON object, got ${describe(v)}`);
    return { line: spans[i].line, fields: v };
  });
  return { records, keys: unionKeys(records) };
}

/**
 * ":line" for a JSON.parse failure, or "" if unknown. V8 gives "position N" only for some errors, so
 * otherwise parse the top-level elements one by one and blame the first that fails (best effort: the
 * scan assumes the array's outline is intact; a structural error such as a trailing comma gets no line).
 */
function jsonErrorLocation(text: string, err: Error): string {
  const pos = /position (\d+)/.exec(err.message);
  if (pos) return `:${lineAt(text, Number(pos[1]))}`;
  for (const el of arrayElements(text)) {
    try {
      JSON.parse(text.slice(el.start, el.end));
    } catch {
      return `:${el.line}: in the array element starting on this line`;
    }
  }
  return '';
}

/**
 * Start line and [start, end) offsets of each element of the top-level array in JSON text. Tracks
 * string state so brackets and commas inside strings are ignored; raw newlines cannot occur inside
 * valid JSON strings, so every '\n' seen is a real line break.
 */
function arrayElements(text: string): Array<{ line: number; start: number; end: number }> {
  const out: Array<{ line: number; start: number; end: number }> = [];
  let line = 1;
  let depth = 0;
  let inString = false;
  let escaped = false;
  let expectElement = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '\n') line++;
    if (inString) {
      if (escaped) escaped = false;
      else if (c === '\\') escaped = true;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') continue;
    if (depth === 1 && (c === ',' || c === ']') && out.length && out[out.length - 1].end < 0) out[out.length - 1].end = i;
    if (depth === 1 && expectElement && c !== ']') {
      out.push({ line, start: i, end: -1 });
      expectElement = false;
    }
    if (c === '"') inString = true;
    else if (c === '[' || c === '{') {
      depth++;
      if (depth === 1) expectElement = true;
    } else if (c === ']' || c === '}') depth--;
    else if (c === ',' && depth === 1) expectElement = true;
  }
  return out.map((e) => ({ ...e, end: e.end < 0 ? text.length : e.end }));
}

/** Keys of all records in order of first appearance (an optional "id" may appear only in later rows). */
function unionKeys(records: RawRecord[]): string[] {
  const keys = new Set<string>();
  for (const r of records) for (const k of Object.keys(r.fields)) keys.add(k);
  return [...keys];
}

/** A record's shape as seen by a line-aware scan of delimited text. */
interface ScannedRow {
  line: number;
  columns: number;
  blank: boolean;
}

/**
 * Line-aware scan of delimited text. arquero parses the values but reports neither line numbers nor
 * column counts (it silently drops extra cells and leaves missing ones undefined), so this scan
 * follows the same tokenizing rules (quoted fields, "" escapes, one separator char consumed after a
 * closing quote, \n / \r\n / \r line ends) to give each record its start line and cell count.
 * A quote that is never closed is an error here: arquero would read the rest of the file into that
 * one field, silently turning every later row into part of an answer.
 */
function scanDelimited(file: string, text: string, delim: string): ScannedRow[] {
  const rows: ScannedRow[] = [];
  const n = text.length;
  let i = 0;
  let line = 1;
  while (i < n) {
    const start = line;
    const from = i;
    let columns = 1;
    let quoted = false;
    for (;;) {
      if (text[i] === '"') {
        quoted = true;
        const opened = line;
        i++;
        while (i < n && !(text[i] === '"' && text[i + 1] !== '"')) {
          if (text[i] === '"') i++; // escaped "" pair
          else if (text[i] === '\n') line++;
          i++;
        }
        if (i >= n) {
          throw new DatasetError(`${file}:${opened}: unterminated quoted field (a " opens a field that is never closed; write a " inside a quoted field as "")`);
        }
        i++; // closing quote
        if (i >= n) break;
        const c = text[i++]; // arquero treats whatever follows a closing quote as the separator
        if (c === '\n' || c === '\r') {
          if (c === '\r' && text[i] === '\n') i++;
          line++;
          break;
        }
        columns++;
        continue;
      }
      while (i < n && text[i] !== delim && text[i] !== '\n' && text[i] !== '\r') i++;
      if (i >= n) break;
      const c = text[i++];
      if (c === delim) {
        columns++;
        continue;
      }
      if (c === '\r' && text[i] === '\n') i++;
      line++;
      break;
    }
    rows.push({ line: start, columns, blank: !quoted && columns === 1 && text.slice(from, i).trim() === '' });
  }
  return rows;
}

function readDelimited(file: string, text: string, delimiter: string): { records: RawRecord[]; keys: string[] } {
  // arquero 8 keeps the quotes and "" escapes of a quoted field that ends the text with no line break
  // after it (`q,"a ""b"""` reads as the raw `"a ""b"""`); a final line break adds no row and avoids that.
  if (!/[\r\n]$/.test(text)) text += '\n';
  const scanned = scanDelimited(file, text, delimiter);
  if (scanned.length === 0) return { records: [], keys: [] };
  // autoType off: answers like "007" or "2024-01-01" must stay the exact strings in the file.
  const table = arquero().fromCSV(text, { delimiter, autoType: false });
  const [header, ...body] = scanned;
  const names = table.columnNames();
  if (new Set(names).size !== names.length) throw new DatasetError(`${file}:${header.line}: duplicate column names in header (${names.join(', ')})`);
  if (table.numRows() !== body.length || names.length !== header.columns) {
    throw new Error(`${file}: internal error: arquero read ${table.numRows()} rows x ${names.length} columns, line scan ${body.length} x ${header.columns}`);
  }
  const objects = table.objects() as Array<Record<string, unknown>>;
  const records: RawRecord[] = [];
  body.forEach((row, i) => {
    if (row.blank) return; // arquero turns an empty line into a row of nulls; it is not data
    if (row.columns !== header.columns) {
      throw new DatasetError(`${file}:${row.line}: expected ${header.columns} columns (as in the header), found ${row.columns}`);
    }
    // arquero reads empty cells as null; in CSV that just means "", which the empty-field check reports.
    const fields = Object.fromEntries(names.map((k) => [k, objects[i][k] ?? '']));
    records.push({ line: row.line, fields });
  });
  return { records, keys: names };
}

/** Exact key first, then case-insensitive (CSV headers are often "Question", "Answer"). */
function findKey(keys: string[], want: string): string | undefined {
  return keys.find((k) => k === want) ?? keys.find((k) => k.toLowerCase() === want.toLowerCase());
}

function chooseFields(file: string, keys: string[], opts: LoadOptions): { question: string; answer: string; id?: string } {
  const seen = `fields seen: ${keys.join(', ') || '(none)'}`;
  const named = (role: 'question' | 'answer' | 'id', want: string): string => {
    const k = findKey(keys, want);
    if (!k) throw new DatasetError(`${file}: ${role} field "${want}" not found; ${seen}`);
    return k;
  };
  const given = { question: opts.questionField && named('question', opts.questionField), answer: opts.answerField && named('answer', opts.answerField) };
  const id = opts.idField ? named('id', opts.idField) : findKey(keys, 'id');
  // A given field fixes its side of the pair; the other side comes from the first pair that fits.
  const pair = FIELD_PAIRS.map(([q, a]) => [given.question || findKey(keys, q), given.answer || findKey(keys, a)]).find(([q, a]) => q && a);
  if (!pair) {
    const missing = given.question ? `no answer field found to go with question field "${given.question}"` : given.answer ? `no question field found to go with answer field "${given.answer}"` : 'no question/answer field pair found';
    throw new DatasetError(
      `${file}: ${missing}; ${seen}; accepted pairs: ${FIELD_PAIRS.map((p) => p.join('/')).join(', ')} ` +
        '(or name the fields: questionField/answerField, or --question-field/--answer-field on the command line)',
    );
  }
  return { question: pair[0]!, answer: pair[1]!, id };
}

function textField(file: string, r: RawRecord, key: string, role: string): string {
  const where = `${file}:${r.line}`;
  if (!(key in r.fields) || r.fields[key] === undefined) {
    throw new DatasetError(`${where}: missing ${role} field "${key}" (fields: ${Object.keys(r.fields).join(', ')})`);
  }
  let v = r.fields[key];
  // Numbers are accepted and converted to their decimal string: arithmetic datasets often store
  // answers as JSON numbers. Other types (bool, null, object) are more likely mistakes, so they fail.
  if (typeof v === 'number' && Number.isFinite(v)) v = String(v);
  if (typeof v !== 'string') throw new DatasetError(`${where}: ${role} field "${key}" must be a string, got ${describe(v)}`);
  if (v.trim() === '') throw new DatasetError(`${where}: empty ${role} (field "${key}")`);
  return v;
}

function toExample(file: string, r: RawRecord, qKey: string, aKey: string, idKey?: string): QAExample {
  const ex: QAExample = {
    question: textField(file, r, qKey, 'question'),
    answer: textField(file, r, aKey, 'answer'),
    source: { file, line: r.line },
  };
  const id = idKey === undefined ? undefined : r.fields[idKey];
  if (id !== undefined && id !== null && id !== '') {
    if (typeof id !== 'string' && typeof id !== 'number') throw new DatasetError(`${file}:${r.line}: id field "${idKey}" must be a string or number, got ${describe(id)}`);
    ex.id = String(id);
  }
  return ex;
}

/** Examples as an arquero table (columns id, question, answer, file, line), for inspection in notebooks. */
export function examplesTable(examples: QAExample[]): ColumnTable {
  return arquero().from(
    examples.map((e) => ({ id: e.id ?? null, question: e.question, answer: e.answer, file: e.source.file, line: e.source.line })),
  );
}
