import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parseSafetensors, readSafetensors, SafetensorsError, writeSafetensors } from '../kernel/model/safetensors';
import { replaceDirAtomic, writeFileAtomic } from '../kernel/io/atomic';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-test-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Build a safetensors image by hand; `len` overrides the header length prefix. */
function build(header: unknown, data: Buffer = Buffer.alloc(0), len?: bigint): Buffer {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(len ?? BigInt(json.length));
  return Buffer.concat([prefix, json, data]);
}

/** Independent decoder for F32/I32 files, written against the format description only. */
function decodeByHand(buf: Buffer): { header: Record<string, any>; values: Record<string, number[]>; n: number } {
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const values: Record<string, number[]> = {};
  for (const [k, v] of Object.entries<any>(header)) {
    if (k === '__metadata__') continue;
    const [b, e] = v.data_offsets;
    const out: number[] = [];
    for (let p = 8 + n + b; p < 8 + n + e; p += 4) out.push(v.dtype === 'F32' ? buf.readFloatLE(p) : buf.readInt32LE(p));
    values[k] = out;
  }
  return { header, values, n };
}

const writeTmp = (name: string, buf: Buffer): string => {
  const f = path.join(dir, name);
  fs.writeFileSync(f, buf);
  return f;
};

describe('safetensors round trip', () => {
  test('F32 and I32 with metadata', () => {
    const f = path.join(dir, 'm.safetensors');
    const w = new Float32Array([1.5, -2, 0.25, 3e-8, 1e6, -0]);
    const ids = new Int32Array([7, -1, 2147483647]);
    writeSafetensors(f, { 'b.weight': { shape: [2, 3], data: w }, 'a.ids': { shape: [3], data: ids, dtype: 'I32' } }, { format: 'pt' });
    const { tensors, metadata } = readSafetensors(f);
    expect(metadata).toEqual({ format: 'pt' });
    expect([...tensors.keys()].sort()).toEqual(['a.ids', 'b.weight']);
    expect(tensors.get('b.weight')).toEqual({ dtype: 'F32', shape: [2, 3], data: w });
    expect(tensors.get('a.ids')).toEqual({ dtype: 'I32', shape: [3], data: ids });
    expect(fs.readdirSync(dir)).toEqual(['m.safetensors']); // no temp left behind
  });

  test('written file decodes with an independent decoder; keys sorted, header padded to 8', () => {
    const f = path.join(dir, 'x.safetensors');
    writeSafetensors(f, new Map([['z', { shape: [2], data: new Float32Array([0.5, -4]) }], ['a', { shape: [1, 1], data: new Int32Array([42]) }], ['scalar', { shape: [], data: new Float32Array([9]) }]]));
    const buf = fs.readFileSync(f);
    const { header, values, n } = decodeByHand(buf);
    expect(n % 8).toBe(0);
    expect(Object.keys(header)).toEqual(['a', 'scalar', 'z']);
    expect(header.a).toEqual({ dtype: 'I32', shape: [1, 1], data_offsets: [0, 4] });
    expect(values).toEqual({ a: [42], scalar: [9], z: [0.5, -4] });
    expect(buf.length).toBe(8 + n + 16);
  });

  test('parseSafetensors reads an in-memory image', () => {
    const data = Buffer.alloc(8);
    data.writeFloatLE(3.25, 0);
    data.writeInt32LE(-9, 4);
    const { tensors } = parseSafetensors(build({ f: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, i: { dtype: 'I32', shape: [1], data_offsets: [4, 8] } }, data));
    expect(Array.from(tensors.get('f')!.data)).toEqual([3.25]);
    expect(Array.from(tensors.get('i')!.data)).toEqual([-9]);
  });

  test('writer rejects a shape that does not match the data', () => {
    expect(() => writeSafetensors(path.join(dir, 'bad.safetensors'), { t: { shape: [3], data: new Float32Array(2) } })).toThrow(/"t".*needs 3 values, data has 2/);
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});

describe('hand-built files', () => {
  test('F16, BF16, F64, I64, I16, I8, U8, BOOL decode to known values', () => {
    const parts: Buffer[] = [];
    const header: Record<string, unknown> = { __metadata__: { note: 'hand' } };
    let off = 0;
    const add = (name: string, dtype: string, shape: number[], bytes: Buffer) => {
      header[name] = { dtype, shape, data_offsets: [off, off + bytes.length] };
      parts.push(bytes);
      off += bytes.length;
    };
    const u16 = (...xs: number[]) => {
      const b = Buffer.alloc(xs.length * 2);
      xs.forEach((x, i) => b.writeUInt16LE(x, i * 2));
      return b;
    };
    // F16: 1.0 = 0x3C00, -2.5 = 0xC100, 0.1 ~ 0x2E66 (= 0.0999755859375), 2^-24 subnormal = 0x0001, +inf = 0x7C00.
    add('h', 'F16', [5], u16(0x3c00, 0xc100, 0x2e66, 0x0001, 0x7c00));
    // BF16: 1.0 = 0x3F80, -2.5 = 0xC020, 0.1 ~ 0x3DCD (= 0.10009765625).
    add('bf', 'BF16', [3], u16(0x3f80, 0xc020, 0x3dcd));
    const f64 = Buffer.alloc(16);
    f64.writeDoubleLE(0.1, 0);
    f64.writeDoubleLE(-7, 8);
    add('d', 'F64', [2], f64);
    const i64 = Buffer.alloc(16);
    i64.writeBigInt64LE(-5n, 0);
    i64.writeBigInt64LE(123456789n, 8);
    add('l', 'I64', [2, 1], i64);
    add('s', 'I16', [2], u16(0xffff, 300)); // -1, 300
    add('b', 'I8', [2], Buffer.from([0xfe, 0x7f])); // -2, 127
    add('u', 'U8', [2], Buffer.from([0xfe, 0x7f])); // 254, 127
    add('m', 'BOOL', [2], Buffer.from([1, 0]));
    const f = writeTmp('hand.safetensors', build(header, Buffer.concat(parts)));
    const { tensors, metadata } = readSafetensors(f);
    expect(metadata).toEqual({ note: 'hand' });
    const get = (k: string) => Array.from(tensors.get(k)!.data);
    expect(get('h')).toEqual([1, -2.5, 0.0999755859375, 2 ** -24, Infinity]);
    expect(get('bf')).toEqual([1, -2.5, 0.10009765625]);
    expect(tensors.get('h')!.data).toBeInstanceOf(Float32Array);
    expect(get('d')).toEqual([Math.fround(0.1), -7]);
    expect(tensors.get('l')).toEqual({ dtype: 'I64', shape: [2, 1], data: new Int32Array([-5, 123456789]) });
    expect(get('s')).toEqual([-1, 300]);
    expect(get('b')).toEqual([-2, 127]);
    expect(get('u')).toEqual([254, 127]);
    expect(get('m')).toEqual([1, 0]);
  });

  test('I64 outside int32 is an error', () => {
    const d = Buffer.alloc(8);
    d.writeBigInt64LE(2n ** 40n);
    const f = writeTmp('big.safetensors', build({ t: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, d));
    expect(() => readSafetensors(f)).toThrow(/"t".*does not fit in int32/);
  });
});

describe('validation', () => {
  const f4 = Buffer.alloc(4);
  const expectError = (buf: Buffer, re: RegExp) => {
    const f = writeTmp('bad.safetensors', buf);
    let err: unknown;
    try {
      readSafetensors(f);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SafetensorsError);
    expect((err as Error).message).toContain(f);
    expect((err as Error).message).toMatch(re);
  };

  test('truncated file', () => expectError(Buffer.from([1, 2, 3]), /truncated \(3 bytes/));
  test('header length 0', () => expectError(build('', Buffer.alloc(0), 0n), /header length is 0/));
  test('header length beyond the file', () => expectError(build('{}', Buffer.alloc(0), 500n), /header length 500 is beyond the file size \(10 bytes/));
  test('header length over 100 MB', () => expectError(build('{}', Buffer.alloc(0), 200_000_000n), /exceeds the 100000000-byte limit/));
  test('header not JSON', () => expectError(build('{nope'), /not valid UTF-8 JSON/));
  test('header not an object', () => expectError(build('[1,2]'), /must be a JSON object/));
  test('unknown dtype lists the valid ones', () =>
    expectError(build({ t: { dtype: 'F8', shape: [1], data_offsets: [0, 1] } }, Buffer.alloc(1)), /"t": unknown dtype "F8" \(valid: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL\)/));
  test('bad shape', () => expectError(build({ t: { dtype: 'F32', shape: [1.5], data_offsets: [0, 4] } }, f4), /"t": shape must be an array of non-negative integers/));
  test('negative shape', () => expectError(build({ t: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, f4), /shape must be/));
  test('offsets not two integers', () => expectError(build({ t: { dtype: 'F32', shape: [1], data_offsets: [0] } }, f4), /data_offsets must be two/));
  test('begin > end', () => expectError(build({ t: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, f4), /begin <= end/));
  test('offsets out of range', () => expectError(build({ t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, f4), /"t": data_offsets \[0, 8\] end beyond the data buffer \(4 bytes\)/));
  test('shape/size mismatch names tensor and byte counts', () =>
    expectError(build({ w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 12] } }, Buffer.alloc(12)), /"w": shape \[2,2\] of F32 needs 16 bytes but data_offsets span 12 bytes/));
  test('overlapping tensors', () =>
    expectError(build({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, Buffer.alloc(12)), /"b" \[4, 12\] overlaps/));
  test('gap between tensors', () =>
    expectError(build({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, Buffer.alloc(12)), /gap in the data buffer between byte 4 and 8/));
  test('trailing bytes not covered', () => expectError(build({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, Buffer.alloc(8)), /8 bytes but tensors cover only 4/));
  test('bad metadata', () => expectError(build({ __metadata__: { a: 1 } }), /__metadata__\.a must be a string/));

  test('a 2^60-byte header length throws without allocating', () => {
    const buf = build('{}', Buffer.alloc(0), 2n ** 60n);
    const f = writeTmp('huge.safetensors', buf);
    const sizes: number[] = [];
    const spies = (['alloc', 'allocUnsafe', 'allocUnsafeSlow'] as const).map((m) => {
      const orig = Buffer[m].bind(Buffer);
      return jest.spyOn(Buffer, m).mockImplementation(((size: number, ...rest: any[]) => {
        sizes.push(size);
        return (orig as any)(size, ...rest);
      }) as any);
    });
    try {
      expect(() => readSafetensors(f)).toThrow(/header length 1152921504606846976 exceeds/);
      expect(() => parseSafetensors(buf, 'mem')).toThrow(/mem: header length 1152921504606846976 exceeds/);
    } finally {
      spies.forEach((s) => s.mockRestore());
    }
    expect(Math.max(0, ...sizes)).toBeLessThanOrEqual(buf.length);
  });
});

describe('atomic writes', () => {
  test('writeFileAtomic replaces content and leaves no temp files', () => {
    const f = path.join(dir, 'a.txt');
    writeFileAtomic(f, 'one');
    writeFileAtomic(f, Buffer.from('two'));
    writeFileAtomic(f, [Buffer.from('thr'), Buffer.from('ee')]);
    expect(fs.readFileSync(f, 'utf8')).toBe('three');
    expect(fs.readdirSync(dir)).toEqual(['a.txt']);
  });

  test('writeFileAtomic removes its temp on failure', () => {
    // Target is an existing folder: the rename fails after the temp was written.
    fs.mkdirSync(path.join(dir, 'target'));
    fs.writeFileSync(path.join(dir, 'target', 'keep'), 'x');
    expect(() => writeFileAtomic(path.join(dir, 'target'), 'data')).toThrow();
    expect(fs.readdirSync(dir)).toEqual(['target']);
  });

  test('replaceDirAtomic swaps in the new folder', () => {
    const d = path.join(dir, 'model');
    fs.mkdirSync(d);
    fs.writeFileSync(path.join(d, 'old.txt'), 'old');
    replaceDirAtomic(d, (tmp) => fs.writeFileSync(path.join(tmp, 'new.txt'), 'new'));
    expect(fs.readdirSync(d)).toEqual(['new.txt']);
    expect(fs.readdirSync(dir)).toEqual(['model']); // no temp or backup left
    replaceDirAtomic(path.join(dir, 'fresh'), (tmp) => fs.writeFileSync(path.join(tmp, 'f'), ''));
    expect(fs.readdirSync(dir).sort()).toEqual(['fresh', 'model']);
  });

  test('replaceDirAtomic keeps the old folder when build throws', () => {
    const d = path.join(dir, 'adapter');
    fs.mkdirSync(d);
    fs.writeFileSync(path.join(d, 'old.txt'), 'old');
    expect(() =>
      replaceDirAtomic(d, (tmp) => {
        fs.writeFileSync(path.join(tmp, 'half.txt'), 'half');
        throw new Error('build failed');
      }),
    ).toThrow('build failed');
    expect(fs.readdirSync(d)).toEqual(['old.txt']);
    expect(fs.readFileSync(path.join(d, 'old.txt'), 'utf8')).toBe('old');
    expect(fs.readdirSync(dir)).toEqual(['adapter']);
  });
});
