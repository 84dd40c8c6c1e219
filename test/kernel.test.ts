/**
 * The `chromatune` Jupyter kernel, run for real: jupyter_kernel_test's standard checks, requests driven
 * through jupyter_client (stop_on_error, execution counts, displays), and a notebook executed by
 * `jupyter nbconvert --execute --allow-errors`. Jupyter comes from Debian (see .ci/run). The kernel runs
 * from dist/, rebuilt here when a source is newer; the three kernels run side by side.
 */
import * as fs from 'fs';
import * as path from 'path';
import { resultData, wireData } from '../kernel/notebook/bundle';
import { diagnosticsContent, thrownContent } from '../kernel/notebook/errors';
import { History } from '../kernel/notebook/history';
import { kernelPrefix, requireJupyter, runPython, type Ran } from '../widget/page/jupyter';

const ROOT = path.resolve(__dirname, '..');
const HERE = path.join(ROOT, 'test', 'kernel');

/** A request as drive_kernel.py sends it; a batch is sent at once, as a frontend's "run all" does. */
interface Request {
  code: string;
  stop_on_error?: boolean;
}

interface Driven {
  reply: Record<string, unknown> & { status: string };
  iopub: { msg_type: string; content: Record<string, any> }[];
}

type Output = Record<string, any>;

const BATCHES: Request[][] = [
  // 0: stop_on_error (the default): the request queued behind a failure is aborted.
  [{ code: "throw new Error('first')" }, { code: "console.log('queued')" }],
  // 1: stop_on_error false: the next request runs.
  [{ code: "throw new TypeError('second')", stop_on_error: false }, { code: "console.log('ran'); 'still running'" }],
  // 2: requests sent while a blocking cell runs are aborted after its error, and only those.
  [{ code: "const t0 = Date.now(); while (Date.now() - t0 < 300) {}\nthrow new RangeError('blocked')" }, { code: "'x'" }, { code: "'y'" }],
  // 3: sent after that error's reply: runs.
  [{ code: '1 + 1' }],
  // 4: a live display: shown, then updated in place; a rich last value.
  [
    {
      code: [
        "import { display } from 'chromatune/display/mime';",
        "const h = display({ 'text/plain': 'step 0' }, { displayId: 'progress' });",
        "h.update({ 'text/plain': 'step 1', 'application/vnd.chromatune.nodes+json': '{\"n\": 3}' });",
        "({ toMimeBundle: () => ({ 'text/plain': 'swatch', 'image/svg+xml': '<svg/>', 'application/vnd.chromatune.swatch+json': { hex: '#f80' } }) })",
      ].join('\n'),
    },
  ],
  // 5: a type error, then a cell that still runs.
  [{ code: "const n: number = 'one'", stop_on_error: false }, { code: "'next ran'" }],
  // 6: the last value is not printed to stdout as well.
  [{ code: "const s = 'once'; s" }],
  // 7: a last value whose JSON MIME data cannot be serialised (a BigInt) is an error reply, not a hang.
  [{ code: "({ toMimeBundle: () => ({ 'text/plain': 'big', 'application/vnd.chromatune.big+json': { n: BigInt(10) } }) })", stop_on_error: false }, { code: "'after'" }],
];

/** The notebook nbconvert executes. */
const CELLS = [
  "const n: number = 'one'",
  "throw new Error('boom')",
  "import { display } from 'chromatune/display/mime';\nconst live = display({ 'text/plain': 'step 0' }, { displayId: 'progress' });\nconsole.log('after the errors');\n'still running'",
  "live.update({ 'text/plain': 'step 9', 'text/html': '<b>step 9</b>' })",
  "class Swatch {\n  toMimeBundle() {\n    return { 'text/plain': 'swatch #ff8800', 'text/html': '<div>#ff8800</div>', 'application/vnd.chromatune.swatch+json': { hex: '#ff8800' } };\n  }\n}\nnew Swatch()",
  // The library by name, with its types: a wrong type is caught against the real declaration.
  "import { PRESETS } from 'chromatune';\nconst wrong: number = PRESETS",
  "import { PRESETS } from 'chromatune';\ntypeof PRESETS.tiny",
];

let prefix: string;
let env: NodeJS.ProcessEnv;
let checks: Promise<Ran>;
let driven: Promise<Driven[][]>;
let executed: Promise<{ outputs: Output[][]; counts: (number | null)[] }>;

async function drive(): Promise<Driven[][]> {
  const r = await runPython([path.join(HERE, 'drive_kernel.py')], { cwd: HERE, env, input: JSON.stringify(BATCHES) });
  if (r.code !== 0) throw new Error(`drive_kernel.py failed:\n${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** nbformat stores text as a list of lines; joined here. JSON types keep their values. */
function joined(o: Output): Output {
  const text = (v: unknown) => (Array.isArray(v) ? v.join('') : v);
  const data = o.data && Object.fromEntries(Object.entries(o.data).map(([mime, v]) => [mime, /json$/.test(mime) ? v : text(v)]));
  return { ...o, ...(o.text !== undefined && { text: text(o.text) }), ...(data && { data }) };
}

async function executeNotebook(): Promise<{ outputs: Output[][]; counts: (number | null)[] }> {
  // Under the project, as notebooks are: 'chromatune' resolves from the notebook's folder upward.
  fs.mkdirSync(path.join(ROOT, 'test-output'), { recursive: true });
  const dir = fs.mkdtempSync(path.join(ROOT, 'test-output', 'kernel-notebook-'));
  try {
    const nb = {
      nbformat: 4,
      nbformat_minor: 5,
      metadata: { kernelspec: { name: 'chromatune', display_name: 'TypeScript (ChromaTune)', language: 'typescript' } },
      cells: CELLS.map((source, i) => ({ id: `c${i}`, cell_type: 'code', source, metadata: {}, outputs: [], execution_count: null })),
    };
    fs.writeFileSync(path.join(dir, 'cells.ipynb'), JSON.stringify(nb));
    const args = ['-m', 'nbconvert', '--to', 'notebook', '--execute', '--allow-errors', '--output', 'executed.ipynb', 'cells.ipynb'];
    const r = await runPython(args, { cwd: dir, env });
    if (r.code !== 0) throw new Error(`nbconvert failed:\n${r.stderr}`);
    const cells: { outputs: Output[]; execution_count: number | null }[] = JSON.parse(fs.readFileSync(path.join(dir, 'executed.ipynb'), 'utf8')).cells;
    return { outputs: cells.map((c) => c.outputs.map(joined)), counts: cells.map((c) => c.execution_count) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Started now, awaited by its test; a failure surfaces there, not as an unhandled rejection. */
function started<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

beforeAll(async () => {
  requireJupyter(
    ['jupyter_kernel_test', 'nbconvert', 'jupyter_client'],
    'these tests run the notebook kernel for real',
    ['jupyter-notebook', 'jupyter-nbconvert', 'python3-nbconvert', 'jupyter-client', 'jupyter-server', 'python3-ipykernel', 'python3-jupyter-kernel-test'],
  );
  ({ dir: prefix, env } = kernelPrefix('kernel'));
  const spec = JSON.parse(fs.readFileSync(path.join(prefix, 'share', 'jupyter', 'kernels', 'chromatune', 'kernel.json'), 'utf8'));
  expect(spec.argv).toEqual([process.execPath, path.join(ROOT, 'dist', 'kernel', 'notebook', 'main.js'), '{connection_file}']);
  expect(spec.language).toBe('typescript');
  checks = started(runPython(['-m', 'unittest', '-v', 'test_chromatune_kernel'], { cwd: HERE, env }));
  driven = started(drive());
  executed = started(executeNotebook());
}, 180_000);

afterAll(async () => {
  await Promise.allSettled([checks, driven, executed]);
  if (prefix) fs.rmSync(prefix, { recursive: true, force: true });
}, 180_000);

describe('jupyter_kernel_test standard checks', () => {
  test('every check runs and passes', async () => {
    const r = await checks;
    const report = r.stderr;
    const results = [...report.matchAll(/^(test_\w+) \(.*?\) \.\.\. (ok|FAIL|ERROR|skipped.*)$/gm)].map((m) => [m[1], m[2]]);
    expect(results.map(([name]) => name).sort()).toEqual([
      'test_clear_output',
      'test_completion',
      'test_display_data',
      'test_error',
      'test_execute_result',
      'test_execute_stderr',
      'test_execute_stdout',
      'test_history',
      'test_inspect',
      'test_is_complete',
      'test_kernel_info',
      'test_pager',
    ]);
    // Subtests report their own skips and failures on indented lines.
    expect(report).not.toMatch(/\.\.\. (skipped|FAIL|ERROR)/);
    expect(report).toMatch(/^Ran 12 tests in .*\n\nOK\s*$/m);
    expect(r.code).toBe(0);
  }, 180_000);
});

describe('the kernel driven through jupyter_client', () => {
  let results: Driven[][];

  beforeAll(async () => {
    results = await driven;
  }, 180_000);

  const types = (d: Driven) => d.iopub.map((m) => m.msg_type);
  const first = (d: Driven, type: string) => d.iopub.find((m) => m.msg_type === type)?.content;

  test('stop_on_error aborts the queued requests only when true', () => {
    expect(results[0].map((d) => d.reply.status)).toEqual(['error', 'aborted']);
    expect(types(results[0][1])).toEqual([]);
    expect(results[1].map((d) => d.reply.status)).toEqual(['error', 'ok']);
    expect(first(results[1][1], 'stream')).toEqual({ name: 'stdout', text: 'ran\n' });
    expect(first(results[1][1], 'execute_result')?.data).toEqual({ 'text/plain': "'still running'" });
    expect(results[2].map((d) => d.reply.status)).toEqual(['error', 'aborted', 'aborted']);
    expect(results[3][0].reply.status).toBe('ok');
  });

  test('exceptions are error messages and error replies with ename, evalue and traceback', () => {
    const [failed] = results[1];
    const error = first(failed, 'error');
    expect(error).toMatchObject({ ename: 'TypeError', evalue: 'second' });
    expect(error?.traceback[0]).toBe('TypeError: second');
    expect(failed.reply).toMatchObject({ status: 'error', ename: 'TypeError', evalue: 'second', traceback: error?.traceback });
    // Only the cell's frames: none from tslab or the kernel.
    expect(error?.traceback.join('\n')).not.toMatch(/tslab|notebook[\\/]|node:/);
    expect(first(results[2][0], 'error')).toMatchObject({ ename: 'RangeError', evalue: 'blocked' });
  });

  test('execution_count counts executions, in execute_input, execute_result and execute_reply', () => {
    const ran = results.flat().filter((d) => d.reply.status !== 'aborted');
    const counts = ran.map((d) => d.reply.execution_count);
    expect(counts).toEqual(counts.map((_, i) => i + 1));
    for (const d of ran) expect(first(d, 'execute_input')?.execution_count).toBe(d.reply.execution_count);
    expect(first(results[3][0], 'execute_result')).toMatchObject({ execution_count: results[3][0].reply.execution_count, data: { 'text/plain': '2' } });
  });

  test('display() sends display_data, its update update_display_data with the same display id, JSON as JSON', () => {
    const [d] = results[4];
    expect(types(d)).toEqual(['execute_input', 'display_data', 'update_display_data', 'execute_result']);
    expect(first(d, 'display_data')).toEqual({ data: { 'text/plain': 'step 0' }, metadata: {}, transient: { display_id: 'progress' } });
    expect(first(d, 'update_display_data')).toEqual({
      data: { 'text/plain': 'step 1', 'application/vnd.chromatune.nodes+json': { n: 3 } },
      metadata: {},
      transient: { display_id: 'progress' },
    });
    expect(first(d, 'execute_result')?.data).toEqual({
      'text/plain': 'swatch',
      'image/svg+xml': '<svg/>',
      'application/vnd.chromatune.swatch+json': { hex: '#f80' },
    });
  });

  test('a type error is a readable error output and the next cell runs', () => {
    const [bad, next] = results[5];
    const error = first(bad, 'error');
    expect(error?.ename).toBe('TypeScriptError');
    expect(error?.evalue).toBe("cell:1:7 - Type 'string' is not assignable to type 'number'.");
    expect(error?.traceback).toEqual([`TypeScriptError: ${error?.evalue}`, "    const n: number = 'one'", '          ^']);
    expect(bad.reply).toMatchObject({ status: 'error', ename: 'TypeScriptError', evalue: error?.evalue });
    expect(next.reply).toMatchObject({ status: 'ok', execution_count: (bad.reply.execution_count as number) + 1 });
    expect(first(next, 'execute_result')?.data).toEqual({ 'text/plain': "'next ran'" });
  });

  test('the last value is an execute_result, not also a stdout print', () => {
    expect(types(results[6][0])).toEqual(['execute_input', 'execute_result']);
  });

  test('a last value that cannot be sent as JSON is an error reply, and the kernel goes on', () => {
    const [bad, next] = results[7];
    expect(bad.reply).toMatchObject({ status: 'error' });
    expect(String(bad.reply.evalue)).toMatch(/^the cell's value cannot be sent to the notebook as JSON: .*BigInt/);
    expect(first(next, 'execute_result')?.data).toEqual({ 'text/plain': "'after'" });
  });
});

describe('jupyter nbconvert --execute --allow-errors', () => {
  let outputs: Output[][];
  let counts: (number | null)[];

  beforeAll(async () => {
    ({ outputs, counts } = await executed);
  }, 180_000);

  test('every cell runs, errors included, each with its execution count', () => {
    expect(counts).toEqual(CELLS.map((_, i) => i + 1));
  });

  test('a type error and an exception are readable error outputs', () => {
    expect(outputs[0]).toEqual([
      {
        output_type: 'error',
        ename: 'TypeScriptError',
        evalue: "cell:1:7 - Type 'string' is not assignable to type 'number'.",
        traceback: ["TypeScriptError: cell:1:7 - Type 'string' is not assignable to type 'number'.", "    const n: number = 'one'", '          ^'],
      },
    ]);
    expect(outputs[1]).toHaveLength(1);
    expect(outputs[1][0]).toMatchObject({ output_type: 'error', ename: 'Error', evalue: 'boom' });
    expect(outputs[1][0].traceback[0]).toBe('Error: boom');
  });

  test('the cells after the errors ran; a live display was updated in place by a later cell', () => {
    const [display, stream, result] = outputs[2];
    expect(display).toEqual({ output_type: 'display_data', data: { 'text/plain': 'step 9', 'text/html': '<b>step 9</b>' }, metadata: {} });
    expect(stream).toMatchObject({ output_type: 'stream', name: 'stdout' });
    expect(stream.text).toBe('after the errors\n');
    expect(result).toMatchObject({ output_type: 'execute_result', execution_count: 3, data: { 'text/plain': "'still running'" } });
    expect(outputs[2]).toHaveLength(3);
    expect(outputs[3]).toEqual([]); // the update went to cell 3's display, not here
  });

  test('a Displayable last value is an execute_result with all its MIME types', () => {
    expect(outputs[4]).toEqual([
      {
        output_type: 'execute_result',
        execution_count: 5,
        metadata: {},
        data: { 'text/plain': 'swatch #ff8800', 'text/html': '<div>#ff8800</div>', 'application/vnd.chromatune.swatch+json': { hex: '#ff8800' } },
      },
    ]);
  });

  test("import from 'chromatune' resolves, with the library's types", () => {
    expect(outputs[5]).toHaveLength(1);
    expect(outputs[5][0].ename).toBe('TypeScriptError');
    expect(outputs[5][0].evalue).toMatch(/^cell:2:7 - Type '.*' is not assignable to type 'number'\.$/);
    expect(outputs[6]).toEqual([{ output_type: 'execute_result', execution_count: 7, metadata: {}, data: { 'text/plain': "'object'" } }]);
  });
});

describe('kernel parts, in process', () => {
  test('bundles: JSON types carry JSON values, bytes go as base64, text stays text', () => {
    expect(wireData({ 'application/json': '[1,2]', 'application/vnd.x+json': { a: 1 }, 'image/png': new Uint8Array([1, 2, 3]), 'text/plain': 'hi' })).toEqual({
      'application/json': [1, 2],
      'application/vnd.x+json': { a: 1 },
      'image/png': 'AQID',
      'text/plain': 'hi',
    });
    expect(resultData('s')).toEqual({ 'text/plain': "'s'" });
    expect(resultData({ toMimeBundle: () => ({ 'text/html': '<i>x</i>' }) })['text/html']).toBe('<i>x</i>');
    expect(typeof resultData({ toMimeBundle: () => ({ 'text/html': '<i>x</i>' }) })['text/plain']).toBe('string');
  });

  test('errors: a subclass keeps its name, a thrown non-error is shown, diagnostics point at the code', () => {
    class DivergedError extends Error {}
    expect(thrownContent(new DivergedError('nan loss'))).toMatchObject({ ename: 'DivergedError', evalue: 'nan loss' });
    expect(thrownContent(42)).toEqual({ ename: 'Uncaught', evalue: '42', traceback: ['Uncaught 42'] });
    const e = diagnosticsContent([{ line: 2, column: 3, message: 'Nope.' }, { fileName: 'lib.ts', line: 9, column: 1, message: 'Also.' }], 'ok\n  bad');
    expect(e.evalue).toBe('cell:2:3 - Nope.\nlib.ts:9:1 - Also.');
    expect(e.traceback).toEqual(['TypeScriptError: cell:2:3 - Nope.', '      bad', '      ^', 'TypeScriptError: lib.ts:9:1 - Also.']);
  });

  test('history: tail, range and glob search with unique and n', () => {
    const h = new History();
    ['6*7', 'x', '6*7', '6+7'].forEach((code, i) => h.add(i + 1, code));
    h.setOutput(1, '42');
    expect(h.query({ hist_access_type: 'tail', n: 2, output: false, raw: true })).toEqual([[1, 3, '6*7'], [1, 4, '6+7']]);
    expect(h.query({ hist_access_type: 'range', session: 0, start: 1, stop: 2, output: true, raw: true })).toEqual([[1, 1, ['6*7', '42']]]);
    expect(h.query({ hist_access_type: 'range', session: 7, output: false, raw: true })).toEqual([]);
    expect(h.query({ hist_access_type: 'search', pattern: '6?7', output: false, raw: true })).toHaveLength(3);
    expect(h.query({ hist_access_type: 'search', pattern: '6?7', unique: true, output: false, raw: true })).toEqual([[1, 3, '6*7'], [1, 4, '6+7']]);
    expect(h.query({ hist_access_type: 'search', pattern: '6*', n: 1, output: false, raw: true })).toEqual([[1, 4, '6+7']]);
  });
});
