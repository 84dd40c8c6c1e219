/**
 * The payload this widget renders (application/vnd.chromatune.v1+json), as the kernel's
 * kernel/chroma/payload.schema.json describes it, and its validation. The checks cover everything the
 * view reads, so a payload that passes renders, and one that fails shows which field is wrong instead
 * of a blank output.
 */

export const MIME_TYPE = 'application/vnd.chromatune.v1+json';
/** The newest payload version this widget knows. */
export const PAYLOAD_VERSION = 1;
const WIDGET_NAME = 'chromatune-widget';

export type Vec3 = [number, number, number];

/** Corner c of the unit cube: bits (bx, by, bz) with c = bx + 2·by + 4·bz, the order of NodePayload.corners. */
export const cornerOf = (c: number): Vec3 => [c & 1, (c >> 1) & 1, (c >> 2) & 1];

export interface Axis {
  name: string;
  low: string;
  high: string;
}

export interface ColourScale {
  name: string;
  domain: [number, number];
  /** [position in the domain, '#rrggbb'], ascending. */
  stops: Array<[number, string]>;
  /** Legend ticks: [quality, label]. */
  ticks: Array<[number, string]>;
  title: string;
}

export interface FieldSample {
  p: Vec3;
  mean: number;
  sd: number;
  colour: string;
}

export interface TrailPoint {
  runId: string;
  p: Vec3;
  quality: number;
}

export interface NodePayload {
  name: string;
  label: string;
  kind: 'training' | 'decoding';
  /** x, y and z, in order. */
  axes: Axis[];
  /** Position in the node's unit cube. */
  position: Vec3;
  /** Sub-weights s_c of the 8 corners, corner c = bx + 2·by + 4·bz. */
  corners: number[];
  /** Effective settings at the position, e.g. per-group learning rates. */
  values: Record<string, number>;
  quality: { mean: number; sd: number };
  colour: string;
  /** Unit vector toward higher quality (zeros when flat), and how steep. */
  improvement: Vec3;
  slope: number;
  field: { resolution: number; samples: FieldSample[] };
  /** Positions of the runs, in order. */
  trail: TrailPoint[];
}

export interface RunPayload {
  id: string;
  positions: Record<string, Vec3>;
  quality: number;
  colour: string;
  metrics: Record<string, number | null>;
  settings: Record<string, unknown>;
}

export interface OutputPayload {
  id: string;
  runId: string;
  question: string;
  text: string;
  reference: string;
  quality: number;
  autoQuality: number;
  colour: string;
  /** A person's rating overrides the automatic quality. */
  rated: boolean;
}

export interface InputPayload {
  index: number;
  id: string | null;
  question: string;
  answer: string;
  quality: number;
  colour: string;
  /** null where it cannot be measured (an answer the context cuts off entirely has no loss). */
  loss: number | null;
  influence: number | null;
  isolation: number | null;
  /** Outlier score: higher is more suspicious. */
  score: number;
  outlier: boolean;
  reasons: string[];
}

/** [step, value] pairs. */
export type Curve = Array<[number, number]>;

export interface LossCurves {
  runId: string;
  train: Curve;
  validation: Curve;
}

export interface ChromaPayload {
  version: number;
  /** The live session in the kernel, named in act() calls. */
  session: { id: string };
  scale: ColourScale;
  nodes: NodePayload[];
  runs: RunPayload[];
  outputs: OutputPayload[];
  inputs: InputPayload[];
  lossCurves: LossCurves[];
}

export type Validation = { ok: true; payload: ChromaPayload } | { ok: false; message: string };

/* ------------------------------------------------------------ checking */

/** Thrown by a check with the path of the field and what it must be. */
class Problem extends Error {}

type Check = (v: unknown, at: string) => void;

const kindOf = (v: unknown): string => (v === undefined ? 'nothing' : v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : typeof v === 'string' ? `the string ${JSON.stringify(clip(v, 24))}` : `${typeof v} ${String(v)}`);
const clip = (s: string, n: number): string => (s.length > n ? `${s.slice(0, n - 1)}…` : s);
const fail = (at: string, must: string, v: unknown): never => {
  throw new Problem(`${at} must be ${must}, got ${kindOf(v)}`);
};

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const num: Check = (v, at) => {
  if (!isNum(v)) fail(at, 'a number', v);
};
const quality: Check = (v, at) => {
  if (!isNum(v) || v < 0 || v > 1) fail(at, 'a quality in [0, 1]', v);
};
const str: Check = (v, at) => {
  if (typeof v !== 'string') fail(at, 'a string', v);
};
const bool: Check = (v, at) => {
  if (typeof v !== 'boolean') fail(at, 'true or false', v);
};
const COLOUR = /^#[0-9a-fA-F]{6}$/;
const colour: Check = (v, at) => {
  if (typeof v !== 'string' || !COLOUR.test(v)) fail(at, "a colour '#rrggbb'", v);
};
const vec3: Check = (v, at) => {
  if (!Array.isArray(v) || v.length !== 3 || !v.every(isNum)) fail(at, '3 numbers', v);
};
const pair = (a: Check, b: Check): Check => (v, at) => {
  if (!Array.isArray(v) || v.length !== 2) fail(at, 'a pair', v);
  a((v as unknown[])[0], `${at}[0]`);
  b((v as unknown[])[1], `${at}[1]`);
};
const array = (item: Check, length?: number): Check => (v, at) => {
  if (!Array.isArray(v)) fail(at, length === undefined ? 'an array' : `an array of ${length}`, v);
  const a = v as unknown[];
  if (length !== undefined && a.length !== length) throw new Problem(`${at} must have ${length} entries, got ${a.length}`);
  a.forEach((x, i) => item(x, `${at}[${i}]`));
};
const record = (item: Check): Check => (v, at) => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(at, 'an object', v);
  for (const [k, x] of Object.entries(v as object)) item(x, `${at}.${k}`);
};
/** An object with these fields (others are allowed and ignored). */
const object = (fields: Record<string, Check>): Check => (v, at) => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(at, 'an object', v);
  const o = v as Record<string, unknown>;
  for (const [k, check] of Object.entries(fields)) {
    if (!(k in o)) throw new Problem(`${at}.${k} is missing`);
    check(o[k], `${at}.${k}`);
  }
};
const nullable = (c: Check): Check => (v, at) => {
  if (v !== null) c(v, at);
};
const oneOf = (...values: string[]): Check => (v, at) => {
  if (typeof v !== 'string' || !values.includes(v)) fail(at, `one of ${values.join(', ')}`, v);
};
const any: Check = () => undefined;

const axis = object({ name: str, low: str, high: str });

const scale: Check = (v, at) => {
  object({ name: str, domain: pair(num, num), stops: array(pair(num, colour)), ticks: array(pair(num, str)), title: str })(v, at);
  const s = v as ColourScale;
  if (!(s.domain[1] > s.domain[0])) throw new Problem(`${at}.domain must rise, got [${s.domain.join(', ')}]`);
  if (s.stops.length < 2) throw new Problem(`${at}.stops must have at least 2 stops, got ${s.stops.length}`);
  s.stops.forEach(([q], i) => {
    if (i > 0 && q <= s.stops[i - 1][0]) throw new Problem(`${at}.stops must rise, but stop ${i} (${q}) follows ${s.stops[i - 1][0]}`);
  });
};

const node = object({
  name: str,
  label: str,
  kind: oneOf('training', 'decoding'),
  axes: array(axis, 3),
  position: vec3,
  corners: array(num, 8),
  values: record(num),
  quality: object({ mean: quality, sd: num }),
  colour,
  improvement: vec3,
  slope: num,
  field: object({ resolution: num, samples: array(object({ p: vec3, mean: quality, sd: num, colour })) }),
  trail: array(object({ runId: str, p: vec3, quality })),
});

const run = object({ id: str, positions: record(vec3), quality, colour, metrics: record(nullable(num)), settings: record(any) });
const output = object({ id: str, runId: str, question: str, text: str, reference: str, quality, autoQuality: quality, colour, rated: bool });
const input = object({ index: num, id: nullable(str), question: str, answer: str, quality, colour, loss: nullable(num), influence: nullable(num), isolation: nullable(num), score: num, outlier: bool, reasons: array(str) });
const curve = array(pair(num, num));
const lossCurve = object({ runId: str, train: curve, validation: curve });

const payloadCheck = object({
  session: object({ id: str }),
  scale,
  nodes: array(node),
  runs: array(run),
  outputs: array(output),
  inputs: array(input),
  lossCurves: array(lossCurve),
});

/** The message a person sees in place of the view. */
export const viewMessage = (text: string): string => `ChromaTune view: ${text}`;

/**
 * Checks data received under the MIME type. A newer version gets its own message (the person
 * needs a newer widget, not a fixed payload); anything else names the first field that is wrong.
 */
export function validatePayload(data: unknown): Validation {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    return { ok: false, message: viewMessage(`invalid payload: expected an object, got ${kindOf(data)}`) };
  }
  const version = (data as { version?: unknown }).version;
  if (version === undefined) return { ok: false, message: viewMessage('invalid payload: version is missing') };
  if (!isNum(version) || !Number.isInteger(version) || version < 1) {
    return { ok: false, message: viewMessage(`invalid payload: version must be a positive integer, got ${kindOf(version)}`) };
  }
  if (version > PAYLOAD_VERSION) {
    return { ok: false, message: viewMessage(`payload version ${version} is newer than this widget (${PAYLOAD_VERSION}); update ${WIDGET_NAME}`) };
  }
  try {
    payloadCheck(data, 'payload');
  } catch (e) {
    if (!(e instanceof Problem)) throw e;
    // Paths read as the schema's: nodes[0].position, not payload.nodes[0].position.
    return { ok: false, message: viewMessage(`invalid payload: ${e.message.replace(/^payload\./, '')}`) };
  }
  return { ok: true, payload: data as ChromaPayload };
}
