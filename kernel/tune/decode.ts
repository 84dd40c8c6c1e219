/**
 * Decoding optimisation: which temperature, top-p, top-k, prompt wording and system prompt bring a
 * model's responses closest to a desired output? Every combination is a study trial; it generates
 * N seeded samples per prompt, scores each response against the desired output (embedding cosine,
 * token F1, ROUGE-L) and reports the mean of the chosen objective. Every response is kept.
 *
 * Output folder (all optional; without `out` the study runs in memory):
 *   config.json      the validated configuration (a resumed study must use the same)
 *   study.jsonl      the study file: running the same command again resumes it
 *   responses.jsonl  one line per response: trial, params, prompt, desired, text, scores
 *   ranking.json     complete trials, best first
 *   report.html      the study report
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import type { GPT2Model } from '../model/gpt2';
import type { NamedArrays } from '../model/tensor';
import { peftTensors, wordVectorTensors } from '../lora/peft';
import type { Tokenizer } from '../tokenizer';
import { generateMany } from '../sample/generate';
import { scoreAnswer } from '../eval/metrics';
import { writeFileAtomic } from '../io/atomic';
import { writeStudyReport } from '../display/studyReport';
import { categorical, float, int, type Param, type Params, type Space } from './space';
import { Study } from './study';
import { makeSampler, SAMPLER_NAMES } from './samplers';
import { gridSize } from './grid';
import type { TrialRecord } from './types';
import { cosineSimilarity, EmbeddingCache } from './embedding';
import { differingKeys } from '../io/differingKeys';

// ---- configuration -------------------------------------------------------------------------------

export const OBJECTIVES = ['cosine', 'tokenF1', 'rougeL', 'combined'] as const;
/**
 * cosine: embedding cosine similarity (meaning); tokenF1: bag-of-words overlap; rougeL: longest common
 * subsequence (word order); combined: the equal-weight mean of those three.
 */
export type Objective = (typeof OBJECTIVES)[number];
const OBJECTIVE_LABELS: Record<Objective, string> = {
  cosine: 'embedding cosine similarity',
  tokenF1: 'token F1',
  rougeL: 'ROUGE-L',
  combined: 'mean of cosine, token F1 and ROUGE-L',
};

/** A searched range, a list of values to try, or one fixed value. */
export type RangeSpec = number | number[] | { low: number; high: number; step?: number };

export interface DecodeSpaceSpec {
  /** Default { low: 0, high: 1.5 } (0 = greedy). */
  temperature?: RangeSpec;
  /** Default { low: 0.5, high: 1 } (1 = off). */
  topP?: RangeSpec;
  /** Default 0 (off). */
  topK?: RangeSpec;
}

/** Vars fill the template's {{placeholders}}; vars the template does not use are allowed. */
export interface PromptSpec {
  template: string;
  vars?: Record<string, string>;
}

/** The decode configuration, as plain JSON. */
export interface DecodeConfig {
  description?: string;
  /** The prompts; a string is a template without vars. Or give `template` and `vars` instead. */
  prompts?: Array<PromptSpec | string>;
  /** One template filled with each of `vars` (one prompt per variable set). */
  template?: string;
  vars?: Array<Record<string, string>>;
  /** The desired output; its {{placeholders}} are filled from each prompt's vars. */
  desired: string;
  /** Alternatives prepended to every prompt (followed by a newline); searched as `systemPrompt`. Include "" to try none. */
  systemPrompts?: string[];
  /** Alternative templates, filled with each prompt's vars; `promptVariant` 0 is each prompt's own template, k is promptVariants[k-1]. */
  promptVariants?: string[];
  space?: DecodeSpaceSpec;
  /** Samples per prompt in each combination (default 4). */
  samplesPerCombination?: number;
  /** Tokens per response (default 32). */
  maxTokens?: number;
  /** Responses end at these strings (default ["\n"]: one answer line). */
  stop?: string[];
  /** Seeds the samples (the same in every combination, so combinations differ by settings, not luck) and the study. */
  seed?: number;
  /** Default 'combined'. */
  objective?: Objective;
  /** Default 'grid'. */
  sampler?: string;
  /** Grid spacing in unit coordinates of ranges without a step (default 0.25: five points per range). */
  interval?: number;
  /** Trials to run (default: the whole grid; 20 for other samplers). */
  trials?: number;
}

/** A configuration with every default filled in and every field checked. */
export interface ResolvedDecodeConfig {
  description: string;
  prompts: Array<{ template: string; vars: Record<string, string> }>;
  desired: string;
  systemPrompts: string[] | null;
  promptVariants: string[] | null;
  space: Required<DecodeSpaceSpec>;
  samplesPerCombination: number;
  maxTokens: number;
  stop: string[];
  seed: number;
  objective: Objective;
  sampler: string;
  interval: number;
  trials: number | null;
}

export class DecodeConfigError extends Error {
  override name = 'DecodeConfigError';
}

const FIELDS = [
  'description', 'prompts', 'template', 'vars', 'desired', 'systemPrompts', 'promptVariants', 'space', 'samplesPerCombination',
  'maxTokens', 'stop', 'seed', 'objective', 'sampler', 'interval', 'trials',
];
const DEFAULT_SPACE: Required<DecodeSpaceSpec> = { temperature: { low: 0, high: 1.5 }, topP: { low: 0.5, high: 1 }, topK: 0 };

const PLACEHOLDER = /\{\{\s*([^{}\s]+)\s*\}\}/g;

/** The {{placeholder}} names of a template, in order of first use. */
export function placeholders(template: string): string[] {
  return [...new Set([...template.matchAll(PLACEHOLDER)].map((m) => m[1]))];
}

/** Fills {{name}} from vars; a placeholder without a value is an error naming it and the template. */
export function fillTemplate(template: string, vars: Record<string, string> = {}, where?: string): string {
  for (const name of placeholders(template)) {
    if (!Object.prototype.hasOwnProperty.call(vars, name)) {
      const given = Object.keys(vars);
      throw new DecodeConfigError(
        `${where ? `${where}: ` : ''}template ${JSON.stringify(template)} uses {{${name}}} but no value was given for "${name}"; vars given: ${given.length ? given.join(', ') : '(none)'}`,
      );
    }
  }
  // A typo such as "{{county}" or "{{first name}}" would otherwise reach the model as literal text.
  const stray = /\{\{|\}\}/.exec(template.replace(PLACEHOLDER, ''));
  if (stray) {
    throw new DecodeConfigError(
      `${where ? `${where}: ` : ''}template ${JSON.stringify(template)} has a "${stray[0]}" that is not part of a {{name}} placeholder (names have no spaces or braces)`,
    );
  }
  // A function replacement keeps `$&`-style patterns in the values literal.
  return template.replace(PLACEHOLDER, (_, name: string) => vars[name]);
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const fail = (msg: string): never => {
  throw new DecodeConfigError(msg);
};

function checkString(x: unknown, field: string, nonEmpty = true): string {
  if (typeof x !== 'string') fail(`${field} must be a string, got ${JSON.stringify(x)}`);
  if (nonEmpty && (x as string).trim() === '') fail(`${field} must not be empty`);
  return x as string;
}

function checkStrings(x: unknown, field: string, nonEmpty: boolean): string[] {
  if (!Array.isArray(x)) return fail(`${field} must be an array of strings, got ${JSON.stringify(x)}`);
  if (x.length === 0) fail(`${field} is empty; give at least one string or leave the field out`);
  return x.map((s, i) => checkString(s, `${field}[${i}]`, nonEmpty));
}

function checkVars(x: unknown, field: string): Record<string, string> {
  if (x === undefined) return {};
  if (!isObject(x)) return fail(`${field} must be an object of placeholder values, e.g. {"borough": "Queens"}, got ${JSON.stringify(x)}`);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(x)) {
    if (!/^[^{}\s]+$/.test(k)) fail(`${field}: "${k}" cannot be a placeholder name (no spaces or braces), e.g. "${k.trim().replace(/[{}]/g, '').replace(/\s+/g, '_') || 'name'}"`);
    if (!['string', 'number', 'boolean'].includes(typeof v)) fail(`${field}.${k} must be a string (or number), got ${JSON.stringify(v)}`);
    out[k] = String(v);
  }
  return out;
}

function checkInt(x: unknown, field: string, min: number, fallback: number): number {
  if (x === undefined) return fallback;
  if (!(typeof x === 'number' && Number.isInteger(x) && x >= min)) fail(`${field} must be an integer >= ${min}, got ${JSON.stringify(x)}`);
  return x as number;
}

/**
 * The checks of the scalar fields, each on its own value: resolveDecodeConfig applies them, and
 * loadDecodeConfig applies them to command-line overrides first, so that an error names the override.
 */
const SCALAR_FIELDS = {
  objective: (x: unknown): Objective => {
    const o = (x ?? 'combined') as Objective;
    if (!OBJECTIVES.includes(o)) fail(`objective must be one of ${OBJECTIVES.join(', ')}, got ${JSON.stringify(x)}`);
    return o;
  },
  sampler: (x: unknown): string => {
    const s = (x ?? 'grid') as string;
    if (!(SAMPLER_NAMES as readonly string[]).includes(s)) fail(`sampler must be one of ${SAMPLER_NAMES.join(', ')}, got ${JSON.stringify(x)}`);
    return s;
  },
  interval: (x: unknown): number => {
    const v = x ?? 0.25;
    if (!(typeof v === 'number' && v > 0 && v <= 1)) fail(`interval must be a number in (0, 1] (0.25: five points per range), got ${JSON.stringify(v)}`);
    return v as number;
  },
  seed: (x: unknown): number => {
    if (x !== undefined && !(typeof x === 'number' && Number.isInteger(x))) fail(`seed must be an integer, got ${JSON.stringify(x)}`);
    return (x as number | undefined) ?? 0;
  },
  samplesPerCombination: (x: unknown) => checkInt(x, 'samplesPerCombination', 1, 4),
  maxTokens: (x: unknown) => checkInt(x, 'maxTokens', 1, 32),
  trials: (x: unknown) => (x === undefined ? null : checkInt(x, 'trials', 1, 1)),
} satisfies Partial<Record<keyof DecodeConfig, (x: unknown) => unknown>>;

/** Valid values of each sampling parameter, for checks and error messages. */
const RANGES: Record<keyof DecodeSpaceSpec, { ok: (v: number) => boolean; valid: string; integer: boolean }> = {
  temperature: { ok: (v) => Number.isFinite(v) && v >= 0, valid: 'numbers >= 0 (0 = greedy)', integer: false },
  topP: { ok: (v) => v > 0 && v <= 1, valid: 'numbers in (0, 1] (1 = off)', integer: false },
  topK: { ok: (v) => Number.isInteger(v) && v >= 0, valid: 'integers >= 0 (0 = off)', integer: true },
};

function checkRange(name: keyof DecodeSpaceSpec, x: unknown): RangeSpec {
  const field = `space.${name}`;
  const { ok, valid } = RANGES[name];
  const value = (v: unknown, where: string) => {
    if (typeof v !== 'number' || !ok(v)) fail(`${where} must be one of the valid values, ${valid}; got ${JSON.stringify(v)}`);
    return v as number;
  };
  if (typeof x === 'number') return value(x, field);
  if (Array.isArray(x)) {
    if (x.length === 0) fail(`${field} is an empty list; give values (${valid}), a range { "low", "high", "step"? } or one number`);
    const vs = x.map((v, i) => value(v, `${field}[${i}]`));
    if (new Set(vs).size !== vs.length) fail(`${field} repeats a value: ${JSON.stringify(vs)}`);
    return vs;
  }
  if (!isObject(x)) return fail(`${field} must be a number, a list of numbers or a range { "low", "high", "step"? } of ${valid}; got ${JSON.stringify(x)}`);
  const unknown = Object.keys(x).filter((k) => !['low', 'high', 'step'].includes(k));
  if (unknown.length) fail(`${field}: unknown field "${unknown[0]}"; a range has low, high and optionally step`);
  const low = value(x.low, `${field}.low`);
  const high = value(x.high, `${field}.high`);
  if (low > high) fail(`${field}: low ${low} > high ${high}; give low <= high`);
  if (x.step !== undefined && !(typeof x.step === 'number' && x.step > 0 && (!RANGES[name].integer || Number.isInteger(x.step)))) {
    fail(`${field}.step must be ${RANGES[name].integer ? 'an integer' : 'a number'} > 0, got ${JSON.stringify(x.step)}`);
  }
  return x.step === undefined ? { low, high } : { low, high, step: x.step as number };
}

/** Checks a configuration (parsed JSON) and fills in the defaults; errors name the field and the valid values. */
export function resolveDecodeConfig(raw: unknown): ResolvedDecodeConfig {
  if (!isObject(raw)) return fail(`the decode configuration must be a JSON object, got ${JSON.stringify(raw)?.slice(0, 60)}`);
  const unknown = Object.keys(raw).filter((k) => !FIELDS.includes(k));
  if (unknown.length) fail(`unknown field "${unknown[0]}" in the decode configuration; valid fields: ${FIELDS.join(', ')}`);
  const c = raw as Record<string, unknown>;

  let prompts: ResolvedDecodeConfig['prompts'];
  if (c.prompts !== undefined && (c.template !== undefined || c.vars !== undefined)) fail('give either prompts or template (with vars), not both');
  if (c.prompts !== undefined) {
    if (!Array.isArray(c.prompts)) return fail(`prompts must be an array of { "template", "vars" } objects, got ${JSON.stringify(c.prompts)}`);
    prompts = c.prompts.map((p, i) => {
      if (typeof p === 'string') return { template: checkString(p, `prompts[${i}]`), vars: {} };
      if (!isObject(p)) return fail(`prompts[${i}] must be { "template": "...", "vars": { ... } } or a string, got ${JSON.stringify(p)}`);
      const extra = Object.keys(p).filter((k) => k !== 'template' && k !== 'vars');
      if (extra.length) fail(`prompts[${i}]: unknown field "${extra[0]}"; valid: template, vars`);
      return { template: checkString(p.template, `prompts[${i}].template`), vars: checkVars(p.vars, `prompts[${i}].vars`) };
    });
  } else if (c.template !== undefined) {
    const template = checkString(c.template, 'template');
    if (c.vars === undefined) prompts = [{ template, vars: {} }];
    else if (!Array.isArray(c.vars)) return fail(`vars must be an array of variable sets, e.g. [{"borough": "Queens"}], got ${JSON.stringify(c.vars)}`);
    else prompts = c.vars.map((v, i) => ({ template, vars: checkVars(v, `vars[${i}]`) }));
  } else return fail('no prompts: give prompts [{ "template", "vars" }] or a template with a list of vars');
  if (prompts.length === 0) fail('prompts is empty; give at least one prompt (with template and vars)');

  const desired = checkString(c.desired, 'desired');
  const systemPrompts = c.systemPrompts === undefined ? null : checkStrings(c.systemPrompts, 'systemPrompts', false);
  const promptVariants = c.promptVariants === undefined ? null : checkStrings(c.promptVariants, 'promptVariants', true);

  if (c.space !== undefined && !isObject(c.space)) fail(`space must be an object with temperature, topP, topK, got ${JSON.stringify(c.space)}`);
  const spaceIn = (c.space ?? {}) as Record<string, unknown>;
  const badParam = Object.keys(spaceIn).find((k) => !(k in DEFAULT_SPACE));
  if (badParam) fail(`space: unknown parameter "${badParam}"; valid: ${Object.keys(DEFAULT_SPACE).join(', ')}`);
  const space = {} as Required<DecodeSpaceSpec>;
  for (const k of Object.keys(DEFAULT_SPACE) as Array<keyof DecodeSpaceSpec>) space[k] = checkRange(k, spaceIn[k] ?? DEFAULT_SPACE[k]);

  const objective = SCALAR_FIELDS.objective(c.objective);
  const sampler = SCALAR_FIELDS.sampler(c.sampler);
  const interval = SCALAR_FIELDS.interval(c.interval);
  const seed = SCALAR_FIELDS.seed(c.seed);

  const resolved: ResolvedDecodeConfig = {
    description: c.description === undefined ? 'decoding study' : checkString(c.description, 'description'),
    prompts,
    desired,
    systemPrompts,
    promptVariants,
    space,
    samplesPerCombination: SCALAR_FIELDS.samplesPerCombination(c.samplesPerCombination),
    maxTokens: SCALAR_FIELDS.maxTokens(c.maxTokens),
    stop: c.stop === undefined ? ['\n'] : Array.isArray(c.stop) && c.stop.length === 0 ? [] : checkStrings(c.stop, 'stop', false),
    seed,
    objective,
    sampler,
    interval,
    trials: SCALAR_FIELDS.trials(c.trials),
  };
  // Every prompt must fill in every variant now, not halfway through a study.
  for (let p = 0; p < prompts.length; p++) {
    for (let v = 0; v <= (promptVariants?.length ?? 0); v++) for (let s = 0; s < (systemPrompts?.length ?? 1); s++) renderPrompt(resolved, p, v, s);
    desiredFor(resolved, p);
  }
  return resolved;
}

/** Reads and resolves a JSON configuration file; defined `overrides` (e.g. command-line flags) replace its fields. */
export function loadDecodeConfig(
  file: string,
  overrides: Partial<DecodeConfig> = {},
  /** How the caller names each override, e.g. { samplesPerCombination: '--samples' }, so its errors point there. */
  overrideNames: Partial<Record<keyof DecodeConfig, string>> = {},
): ResolvedDecodeConfig {
  if (!fs.existsSync(file)) throw new DecodeConfigError(`${file}: not found`);
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new DecodeConfigError(`${file}: invalid JSON (${(e as Error).message})`);
  }
  const set = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined));
  // An override is checked on its own first: its error names the override, not the file that did not hold it.
  for (const [k, v] of Object.entries(set)) {
    if (!Object.hasOwn(SCALAR_FIELDS, k)) continue;
    prefixErrors(`${overrideNames[k as keyof DecodeConfig] ?? k} (overrides ${file})`, () => SCALAR_FIELDS[k as keyof typeof SCALAR_FIELDS](v));
  }
  return prefixErrors(file, () => resolveDecodeConfig(isObject(raw) ? { ...raw, ...set } : raw));
}

/** Runs `f`; a DecodeConfigError it throws gets `where: ` in front of its message. */
function prefixErrors<T>(where: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof DecodeConfigError) e.message = `${where}: ${e.message}`;
    throw e;
  }
}

// ---- prompts and the search space ----------------------------------------------------------------

/** The text given to the model: system prompt (if any), a newline, then the filled template. */
export function renderPrompt(c: ResolvedDecodeConfig, promptIndex: number, variant = 0, system = 0): string {
  const p = c.prompts[promptIndex];
  const template = variant === 0 ? p.template : c.promptVariants![variant - 1];
  const body = fillTemplate(template, p.vars, variant === 0 ? `prompts[${promptIndex}]` : `promptVariants[${variant - 1}] for prompts[${promptIndex}]`);
  if (!c.systemPrompts) return body;
  const sys = fillTemplate(c.systemPrompts[system], p.vars, `systemPrompts[${system}] for prompts[${promptIndex}]`);
  return sys === '' ? body : sys.endsWith('\n') ? sys + body : `${sys}\n${body}`;
}

/** The desired output for one prompt (its placeholders filled from that prompt's vars). */
export function desiredFor(c: ResolvedDecodeConfig, promptIndex: number): string {
  return fillTemplate(c.desired, c.prompts[promptIndex].vars, `desired for prompts[${promptIndex}]`);
}

function rangeParam(name: keyof DecodeSpaceSpec, r: RangeSpec): Param {
  if (typeof r === 'number') return categorical([r]);
  if (Array.isArray(r)) return categorical(r);
  const o = r.step === undefined ? {} : { step: r.step };
  return RANGES[name].integer ? int(r.low, r.high, o) : float(r.low, r.high, o);
}

/**
 * The study's space: temperature, topP, topK (a fixed value is a one-choice categorical, so every
 * trial records every setting), plus promptVariant and systemPrompt indices when there are variants.
 */
export function decodeSpace(c: ResolvedDecodeConfig): Space {
  const space: Space = {
    temperature: rangeParam('temperature', c.space.temperature),
    topP: rangeParam('topP', c.space.topP),
    topK: rangeParam('topK', c.space.topK),
  };
  if (c.promptVariants) space.promptVariant = categorical(Array.from({ length: c.promptVariants.length + 1 }, (_, i) => i));
  if (c.systemPrompts) space.systemPrompt = categorical(c.systemPrompts.map((_, i) => i));
  return space;
}

// ---- scoring -------------------------------------------------------------------------------------

export interface ResponseScores {
  cosine: number;
  tokenF1: number;
  rougeL: number;
  exactMatch: number;
  /** Mean of cosine, tokenF1 and rougeL. */
  combined: number;
  [k: string]: number;
}

/** Text scores of a response against the desired output; `cosine` comes from the embeddings. */
export function scoreResponse(text: string, desired: string, cosine: number): ResponseScores {
  const { exactMatch, tokenF1, rougeL } = scoreAnswer(text, desired);
  return { cosine, tokenF1, rougeL, exactMatch, combined: (cosine + tokenF1 + rougeL) / 3 };
}

/** One response as stored in a trial's attrs.responses. */
export interface StoredResponse {
  text: string;
  prompt: string;
  desired: string;
  promptIndex: number;
  sample: number;
  /** The objective's value for this response. */
  score: number;
  scores: ResponseScores;
  finishReason: string;
}

// ---- running a study -----------------------------------------------------------------------------

export interface DecodePaths {
  dir: string;
  config: string;
  study: string;
  responses: string;
  ranking: string;
  report: string;
}

export const decodePaths = (dir: string): DecodePaths => ({
  dir,
  config: path.join(dir, 'config.json'),
  study: path.join(dir, 'study.jsonl'),
  responses: path.join(dir, 'responses.jsonl'),
  ranking: path.join(dir, 'ranking.json'),
  report: path.join(dir, 'report.html'),
});

export interface RankingEntry {
  rank: number;
  trial: number;
  value: number;
  params: Params;
  /** The settings generation used (topK 0 and topP 1 mean off). */
  sampling: { temperature: number; topP: number; topK: number };
  /** The alternative template, when promptVariant > 0. */
  template?: string;
  systemPrompt?: string;
  metrics: Record<string, number>;
}

export interface DecodeProgress {
  /** Trials finished (a resumed study counts those already in its file). */
  done: number;
  /** Trials this study will run in all. */
  total: number;
  trial: TrialRecord;
  best?: TrialRecord;
  /** Tokens generated per second in this process. */
  tokensPerSecond: number;
  elapsedSeconds: number;
  etaSeconds: number;
}

export interface DecodeOptions {
  model: GPT2Model;
  tokenizer: Tokenizer;
  config: ResolvedDecodeConfig;
  /** Output folder; omit for an in-memory study that writes nothing. */
  out?: string;
  onTrial?: (p: DecodeProgress) => void;
}

export interface DecodeResult {
  study: Study;
  /** Complete trials, best first. */
  ranking: RankingEntry[];
  best?: RankingEntry;
  /** Trials the study runs in all (the grid's size for the grid sampler). */
  total: number;
  paths?: DecodePaths;
}

const samplingOf = (params: Params) => ({ temperature: Number(params.temperature), topP: Number(params.topP), topK: Number(params.topK) });

/** Complete trials, best (highest value) first; ties go to the earlier trial. */
export function rankTrials(study: Study, c: ResolvedDecodeConfig): RankingEntry[] {
  return study.ranking().map((t, i) => {
    const variant = Number(t.params.promptVariant ?? 0);
    const entry: RankingEntry = { rank: i + 1, trial: t.number, value: t.value!, params: t.params, sampling: samplingOf(t.params), metrics: (t.attrs.metrics ?? {}) as Record<string, number> };
    if (variant > 0) entry.template = c.promptVariants![variant - 1];
    if (c.systemPrompts) entry.systemPrompt = c.systemPrompts[Number(t.params.systemPrompt ?? 0)];
    return entry;
  });
}

/** Hashes of the base weights and of the active adapter's factors and word vectors (null without one). */
function weightsFingerprint(model: GPT2Model): { model: string; adapter: string | null } {
  const digest = (arrays: NamedArrays) => {
    const h = createHash('sha256');
    for (const [name, { data }] of arrays) h.update(name).update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    return `sha256 ${h.digest('hex').slice(0, 16)}`;
  };
  const adapter = model.activeAdapter;
  return { model: digest(model.weightArrays()), adapter: adapter ? digest(new Map([...peftTensors(adapter), ...wordVectorTensors(adapter)])) : null };
}

/** A resumed study's folder must hold the same configuration (the trial count may grow). */
function prepareFolder(paths: DecodePaths, c: ResolvedDecodeConfig): void {
  fs.mkdirSync(paths.dir, { recursive: true });
  const { trials: _, ...kept } = c;
  const text = JSON.stringify(kept, null, 2) + '\n';
  if (fs.existsSync(paths.config)) {
    const held = fs.readFileSync(paths.config, 'utf8');
    if (held !== text) {
      let fields: string[] = [];
      try {
        fields = differingKeys(JSON.parse(held) as Record<string, unknown>, kept);
      } catch {
        // an unreadable config.json: the message below still says what to do
      }
      const differ = fields.length ? `; these fields differ: ${fields.join(', ')}` : '';
      throw new DecodeConfigError(`${paths.dir} holds a study of another configuration (${paths.config})${differ}; use the same configuration to resume it, or another output folder`);
    }
  } else writeFileAtomic(paths.config, text);
}

/** Responses of trials left unfinished by a crash are dropped: those trials run again. */
function keepFinishedResponses(paths: DecodePaths, study: Study): void {
  if (!fs.existsSync(paths.responses)) return;
  const finished = new Set(study.trials.filter((t) => t.state !== 'running').map((t) => t.number));
  const lines = fs.readFileSync(paths.responses, 'utf8').split('\n').filter((l) => l.trim());
  const kept = lines.filter((l) => {
    try {
      return finished.has(JSON.parse(l).trial);
    } catch {
      return false; // a line torn by a crash
    }
  });
  if (kept.length !== lines.length) writeFileAtomic(paths.responses, kept.map((l) => l + '\n').join(''));
}

/**
 * Runs (or resumes) the study: each trial generates samplesPerCombination seeded responses per
 * prompt with its settings and is valued by the mean objective score. Writes the output folder
 * when `out` is given and returns the ranking.
 */
export async function runDecode(o: DecodeOptions): Promise<DecodeResult> {
  const { model, tokenizer, config: c } = o;
  const n = c.samplesPerCombination;
  const space = decodeSpace(c);
  const grid = c.sampler === 'grid' ? gridSize(space, c.interval) : Infinity;
  const total = Math.min(c.trials ?? (c.sampler === 'grid' ? grid : 20), grid);
  // A prompt that leaves no room to generate would fail every trial: say so before starting.
  for (let p = 0; p < c.prompts.length; p++) {
    for (let v = 0; v <= (c.promptVariants?.length ?? 0); v++) {
      for (let s = 0; s < (c.systemPrompts?.length ?? 1); s++) {
        const len = tokenizer.encode(renderPrompt(c, p, v, s)).length;
        if (len === 0 || len >= model.config.n_positions) {
          throw new DecodeConfigError(`prompts[${p}] (variant ${v}, system prompt ${s}) has ${len} tokens; it must have 1 to ${model.config.n_positions - 1} (the model's context is ${model.config.n_positions})`);
        }
      }
    }
  }
  const paths = o.out ? decodePaths(o.out) : undefined;
  if (paths) prepareFolder(paths, c);
  const study = new Study({
    space,
    sampler: makeSampler(c.sampler, c.sampler === 'grid' ? { interval: c.interval } : {}),
    direction: 'maximize',
    seed: c.seed,
    name: c.description,
    path: paths?.study,
    // Responses of another model or adapter would not compare: a resume with them is refused.
    context: paths ? weightsFingerprint(model) : undefined,
  });
  const desired = c.prompts.map((_, p) => desiredFor(c, p));
  try {
    if (paths) keepFinishedResponses(paths, study);
    const embeddings = new EmbeddingCache(model, tokenizer);
    const started = Date.now();
    let tokens = 0;
    let trialsHere = 0;

    await study.optimize(
      (params, trial) => {
        const sampling = samplingOf(params);
        const variant = Number(params.promptVariant ?? 0);
        const system = Number(params.systemPrompt ?? 0);
        const prompts = c.prompts.map((_, p) => renderPrompt(c, p, variant, system));
        // Prompt p's sample k is row p·n + k: its seed is the same in every trial.
        const rows = prompts.flatMap((text) => Array.from({ length: n }, () => text));
        const samples = generateMany(model, tokenizer, rows, { ...sampling, maxTokens: c.maxTokens, stop: c.stop, seed: c.seed });
        tokens += samples.reduce((s, x) => s + x.tokens.length, 0);
        const texts = samples.map((s) => s.text.trim());
        const textVecs = embeddings.embed(texts);
        const desiredVecs = embeddings.embed(desired);
        const responses: StoredResponse[] = samples.map((s, i) => {
          const p = Math.floor(i / n);
          const scores = scoreResponse(texts[i], desired[p], cosineSimilarity(textVecs[i], desiredVecs[p]));
          return { text: texts[i], prompt: prompts[p], desired: desired[p], promptIndex: p, sample: i % n, score: scores[c.objective], scores, finishReason: s.finishReason };
        });
        const metrics: Record<string, number> = {};
        for (const k of Object.keys(responses[0].scores)) metrics[k] = responses.reduce((a, r) => a + r.scores[k], 0) / responses.length;
        trial.setAttr('responses', responses);
        trial.setAttr('metrics', metrics);
        trial.setAttr('sampling', sampling);
        if (paths) {
          const lines = responses.map((r) => JSON.stringify({ trial: trial.number, params, ...r }) + '\n').join('');
          fs.appendFileSync(paths.responses, lines);
        }
        return metrics[c.objective];
      },
      {
        trials: total,
        onTrial: (t, s) => {
          trialsHere++;
          const elapsed = (Date.now() - started) / 1000;
          const done = s.finished;
          o.onTrial?.({
            done,
            total,
            trial: t,
            best: s.best,
            tokensPerSecond: elapsed > 0 ? tokens / elapsed : 0,
            elapsedSeconds: elapsed,
            etaSeconds: (elapsed / trialsHere) * Math.max(0, total - done),
          });
        },
      },
    );
  } finally {
    study.close();
  }
  const ranking = rankTrials(study, c);
  if (paths) {
    writeFileAtomic(paths.ranking, JSON.stringify({ description: c.description, objective: c.objective, direction: 'maximize', trials: study.trials.length, ranking }, null, 2) + '\n');
    // With per-prompt placeholders the desired outputs differ: the report shows the template and its values.
    const shown = new Set(desired).size === 1 ? desired[0] : [c.desired, ...desired.map((d, p) => `prompts[${p}]: ${d}`)].join('\n');
    writeStudyReport({ study, title: c.description, objective: OBJECTIVE_LABELS[c.objective], desired: shown }, paths.report);
  }
  return { study, ranking, best: ranking[0], total, paths };
}
