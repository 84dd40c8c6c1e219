/**
 * Reader and writer for Hugging Face's safetensors format (model.safetensors, adapter_model.safetensors).
 *
 * Layout: u64 little-endian header length N, N bytes of UTF-8 JSON header
 * `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {string: string}}`, then the byte
 * buffer; offsets are relative to the buffer's start. Files come from outside (downloads, other tools),
 * so every size is checked against the real file before anything is allocated from it.
 */
import * as fs from 'fs';
import * as os from 'os';
import { writeFileAtomic } from '../io/atomic';

export const DTYPES = ['F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U8', 'BOOL'] as const;
export type Dtype = (typeof DTYPES)[number];

const DTYPE_SIZE: Record<Dtype, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

/** Headers beyond this are refused (the reference implementation uses the same 100 MB cap). */
export const MAX_HEADER_BYTES = 100_000_000;

/** On read, floating dtypes become Float32Array and integer/bool dtypes Int32Array. */
export interface TensorEntry {
  dtype: Dtype;
  shape: number[];
  data: Float32Array | Int32Array;
}

export interface WritableTensor {
  shape: number[];
  data: Float32Array | Int32Array;
  dtype?: 'F32' | 'I32';
}

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

interface Slot {
  name: string;
  dtype: Dtype;
  shape: number[];
  begin: number;
  end: number;
}

const LITTLE_ENDIAN_HOST = os.endianness() === 'LE';

/** Validate the 8-byte prefix against the total size; returns N as a number only once it is known to be sane. */
function checkHeaderLength(prefix: Uint8Array, totalSize: number, name: string): number {
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  // Compare as BigInt: a crafted length like 2^60 must be rejected before any Number conversion/allocation.
  if (n === 0n) throw new SafetensorsError(`${name}: header length is 0`);
  if (n > BigInt(MAX_HEADER_BYTES)) throw new SafetensorsError(`${name}: header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  if (n > BigInt(totalSize - 8)) {
    throw new SafetensorsError(`${name}: header length ${n} is beyond the file size (${totalSize} bytes, ${totalSize - 8} after the length prefix)`);
  }
  return Number(n);
}

const isNonNegInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Parse and validate the JSON header against the data region's length; returns slots sorted by offset. */
function parseHeader(headerBytes: Uint8Array, dataLength: number, name: string): { slots: Slot[]; metadata: Record<string, string> } {
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (err) {
    throw new SafetensorsError(`${name}: header is not valid UTF-8 JSON (${(err as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new SafetensorsError(`${name}: header must be a JSON object`);
  }
  const metadata: Record<string, string> = {};
  const slots: Slot[] = [];
  for (const [key, value] of Object.entries(header as Record<string, unknown>)) {
    if (key === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new SafetensorsError(`${name}: __metadata__ must be an object of strings`);
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') throw new SafetensorsError(`${name}: __metadata__.${k} must be a string, got ${typeof v}`);
        metadata[k] = v;
      }
      continue;
    }
    const where = `${name}: tensor "${key}"`;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new SafetensorsError(`${where}: entry must be an object`);
    const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
    if (typeof dtype !== 'string' || !(DTYPES as readonly string[]).includes(dtype)) {
      throw new SafetensorsError(`${where}: unknown dtype ${JSON.stringify(dtype)} (valid: ${DTYPES.join(', ')})`);
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegInt)) {
      throw new SafetensorsError(`${where}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegInt) || offsets[0] > offsets[1]) {
      throw new SafetensorsError(`${where}: data_offsets must be two non-negative integers [begin, end] with begin <= end, got ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as number[];
    if (end > dataLength) throw new SafetensorsError(`${where}: data_offsets [${begin}, ${end}] end beyond the data buffer (${dataLength} bytes)`);
    const expected = shape.reduce((a: number, b: number) => a * b, 1) * DTYPE_SIZE[dtype as Dtype];
    if (expected !== end - begin) {
      throw new SafetensorsError(`${where}: shape ${JSON.stringify(shape)} of ${dtype} needs ${expected} bytes but data_offsets span ${end - begin} bytes`);
    }
    slots.push({ name: key, dtype: dtype as Dtype, shape: shape as number[], begin, end });
  }
  // The spec requires the buffer to be covered exactly: no overlaps (aliasing) and no gaps (hidden data).
  slots.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  for (const s of slots) {
    if (s.begin < pos) throw new SafetensorsError(`${name}: tensor "${s.name}" [${s.begin}, ${s.end}] overlaps the previous tensor (which ends at ${pos})`);
    if (s.begin > pos) throw new SafetensorsError(`${name}: gap in the data buffer between byte ${pos} and ${s.begin} (before tensor "${s.name}")`);
    pos = s.end;
  }
  if (pos !== dataLength) throw new SafetensorsError(`${name}: data buffer has ${dataLength} bytes but tensors cover only ${pos}`);
  return { slots, metadata };
}

/** IEEE 754 half -> number (handles subnormals, infinities and NaN). */
function f16ToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

function decode(s: Slot, data: Uint8Array, name: string): Float32Array | Int32Array {
  const bytes = data.subarray(s.begin, s.end);
  const n = (s.end - s.begin) / DTYPE_SIZE[s.dtype];
  // Tensors need not be aligned within the file, so read through a DataView (or copy, for F32 fast path).
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (s.dtype) {
    case 'F32': {
      const out = new Float32Array(n);
      if (LITTLE_ENDIAN_HOST) new Uint8Array(out.buffer).set(bytes);
      else for (let i = 0; i < n; i++) out[i] = dv.getFloat32(i * 4, true);
      return out;
    }
    case 'F64': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = dv.getFloat64(i * 8, true);
      return out;
    }
    case 'F16': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = f16ToNumber(dv.getUint16(i * 2, true));
      return out;
    }
    case 'BF16': {
      // bfloat16 is the top half of a float32.
      const u = new Uint32Array(n);
      for (let i = 0; i < n; i++) u[i] = dv.getUint16(i * 2, true) << 16;
      return new Float32Array(u.buffer);
    }
    case 'I64': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const v = dv.getBigInt64(i * 8, true);
        if (v < -2147483648n || v > 2147483647n) throw new SafetensorsError(`${name}: tensor "${s.name}" (I64) value ${v} at index ${i} does not fit in int32`);
        out[i] = Number(v);
      }
      return out;
    }
    case 'I32': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = dv.getInt32(i * 4, true);
      return out;
    }
    case 'I16': {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = dv.getInt16(i * 2, true);
      return out;
    }
    case 'I8':
      return Int32Array.from(new Int8Array(bytes.buffer, bytes.byteOffset, n));
    case 'U8':
    case 'BOOL':
      return Int32Array.from(bytes);
  }
}

function decodeAll(slots: Slot[], data: Uint8Array, name: string): Map<string, TensorEntry> {
  const tensors = new Map<string, TensorEntry>();
  for (const s of slots) tensors.set(s.name, { dtype: s.dtype, shape: s.shape, data: decode(s, data, name) });
  return tensors;
}

/** Parse a safetensors image held in memory. `name` appears in error messages. */
export function parseSafetensors(buf: Buffer | Uint8Array, name = '<buffer>'): { tensors: Map<string, TensorEntry>; metadata: Record<string, string> } {
  if (buf.byteLength < 8) throw new SafetensorsError(`${name}: file is truncated (${buf.byteLength} bytes, need at least 8 for the header length)`);
  const n = checkHeaderLength(buf.subarray(0, 8), buf.byteLength, name);
  const { slots, metadata } = parseHeader(buf.subarray(8, 8 + n), buf.byteLength - 8 - n, name);
  return { tensors: decodeAll(slots, buf.subarray(8 + n), name), metadata };
}

function readFully(fd: number, length: number, position: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let got = 0;
  while (got < length) {
    const r = fs.readSync(fd, out, got, length - got, position + got);
    if (r === 0) throw new Error(`unexpected end of file at byte ${position + got}`);
    got += r;
  }
  return out;
}

/**
 * Read a safetensors file: the 8-byte prefix and header first, validated against the size from fstat,
 * then the data region (whose size is derived from the file, never from the header).
 */
export function readSafetensors(file: string): { tensors: Map<string, TensorEntry>; metadata: Record<string, string> } {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    if (size < 8) throw new SafetensorsError(`${file}: file is truncated (${size} bytes, need at least 8 for the header length)`);
    const n = checkHeaderLength(readFully(fd, 8, 0), size, file);
    const dataLength = size - 8 - n;
    const { slots, metadata } = parseHeader(readFully(fd, n, 8), dataLength, file);
    return { tensors: decodeAll(slots, readFully(fd, dataLength, 8 + n), file), metadata };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Write tensors as safetensors (F32 or I32), atomically. Keys are sorted so output is reproducible;
 * the header is padded with spaces to a multiple of 8 so the buffer starts 8-byte aligned.
 */
export function writeSafetensors(
  file: string,
  tensors: Map<string, WritableTensor> | Record<string, WritableTensor>,
  metadata?: Record<string, string>,
): void {
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new SafetensorsError(`${file}: metadata "${k}" must be a string`);
    }
    header.__metadata__ = metadata;
  }
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [key, t] of entries) {
    if (key === '__metadata__') throw new SafetensorsError(`${file}: "__metadata__" is reserved and cannot name a tensor`);
    const dtype = t.dtype ?? (t.data instanceof Int32Array ? 'I32' : 'F32');
    if ((dtype === 'F32') !== (t.data instanceof Float32Array)) throw new SafetensorsError(`${file}: tensor "${key}" dtype ${dtype} does not match its ${t.data.constructor.name}`);
    if (!t.shape.every(isNonNegInt)) throw new SafetensorsError(`${file}: tensor "${key}" shape must be non-negative integers, got ${JSON.stringify(t.shape)}`);
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) throw new SafetensorsError(`${file}: tensor "${key}" shape ${JSON.stringify(t.shape)} needs ${count} values, data has ${t.data.length}`);
    let bytes: Uint8Array;
    if (LITTLE_ENDIAN_HOST) bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    else {
      const dv = new DataView(new ArrayBuffer(t.data.byteLength));
      t.data.forEach((v, i) => (dtype === 'F32' ? dv.setFloat32(i * 4, v, true) : dv.setInt32(i * 4, v, true)));
      bytes = new Uint8Array(dv.buffer);
    }
    header[key] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] };
    chunks.push(bytes);
    offset += bytes.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json, 'utf8') % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.byteLength));
  writeFileAtomic(file, [prefix, headerBytes, ...chunks]);
}
