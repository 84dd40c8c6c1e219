/**
 * MIME bundles on the wire: what display() and a cell's last value become in display_data and
 * execute_result messages.
 */
import { inspect } from 'util';
import { isDisplayable, type MimeBundle } from '../display/mime';
import type { MimeData } from './protocol';

/** application/json and every +json type carry a JSON value, not its text (the protocol says so). */
const isJsonType = (mime: string): boolean => mime === 'application/json' || mime.endsWith('+json');

function jsonValue(v: unknown): unknown {
  if (typeof v !== 'string') return v;
  try {
    return JSON.parse(v);
  } catch {
    return v; // not JSON text: a JSON string is still a valid value
  }
}

/**
 * JSON types as JSON values, bytes (images) as base64, everything else as text. A JSON value that cannot
 * be serialised (a BigInt, a cycle) is an error here, naming `what`: found only when the message is
 * encoded, it would fail after the reply was due and leave the front end waiting forever.
 */
export function wireData(bundle: MimeBundle, what = 'the displayed value'): MimeData {
  const data: MimeData = {};
  for (const [mime, v] of Object.entries(bundle)) {
    if (v === undefined || v === null) continue;
    if (isJsonType(mime)) {
      data[mime] = jsonValue(v);
      try {
        JSON.stringify(data[mime]);
      } catch (e) {
        throw new Error(`${what} cannot be sent to the notebook as JSON: ${mime}: ${(e as Error).message}`);
      }
    } else if (v instanceof Uint8Array) data[mime] = Buffer.from(v).toString('base64');
    else data[mime] = typeof v === 'string' ? v : String(v);
  }
  return data;
}

/** A cell's last value: its own bundle when it is Displayable, else its text as the Node REPL shows it. text/plain is always there (consoles need it). */
export function resultData(value: unknown): MimeData {
  if (!isDisplayable(value)) return { 'text/plain': inspect(value, { colors: false, depth: 4 }) };
  const data = wireData(value.toMimeBundle(), "the cell's value");
  if (typeof data['text/plain'] !== 'string') data['text/plain'] = inspect(value, { colors: false, depth: 0 });
  return data;
}
