/**
 * The notebooks in notebooks/ run top to bottom: each is executed by `jupyter nbconvert --execute`
 * with the `chromatune` kernel (installed into a temporary prefix) in quick mode (CHROMATUNE_QUICK=1),
 * two at a time, from a copy under test-output/ so that the committed notebooks and their full-run
 * outputs are never touched. A notebook fails on any error output, and on a code cell without output
 * unless its source starts with `// no output`. The committed notebooks are checked as they are too:
 * executed, without errors, on the chromatune kernel, with the QUICK switch in their first code cell.
 */
import * as fs from 'fs';
import * as path from 'path';
import { kernelPrefix, requireJupyter, runPython } from '../widget/page/jupyter';

const ROOT = path.resolve(__dirname, '..');
const NOTEBOOKS = path.join(ROOT, 'notebooks');
const NAMES = fs.readdirSync(NOTEBOOKS).filter((f) => f.endsWith('.ipynb')).sort();
/** A code cell that legitimately shows nothing says so in its first line. */
const NO_OUTPUT = /^\s*\/\/\s*no output\b/i;
const QUICK_SWITCH = "const QUICK = process.env.CHROMATUNE_QUICK === '1';";
/** Notebooks executed at once (2 cores: training is single-threaded). */
const PARALLEL = 2;
/** Per notebook, in quick mode; each takes well under a minute. */
const NOTEBOOK_TIMEOUT_S = 300;

interface Cell {
  cell_type: 'code' | 'markdown' | 'raw';
  source: string | string[];
  outputs?: Array<Record<string, any>>;
  execution_count?: number | null;
}

interface Notebook {
  metadata: { kernelspec?: { name: string; language?: string } };
  cells: Cell[];
}

const text = (s: string | string[]): string => (Array.isArray(s) ? s.join('') : s);
const readNotebook = (file: string): Notebook => JSON.parse(fs.readFileSync(file, 'utf8'));

/** Problems of an executed notebook: error outputs, and code cells that should have shown something. */
function problems(nb: Notebook): string[] {
  const out: string[] = [];
  nb.cells.forEach((c, i) => {
    if (c.cell_type !== 'code') return;
    const src = text(c.source);
    const where = `cell ${i} (${JSON.stringify(src.split('\n')[0].slice(0, 60))})`;
    for (const o of c.outputs ?? []) {
      if (o.output_type === 'error') out.push(`${where}: ${o.ename}: ${o.evalue}`);
    }
    if ((c.outputs ?? []).length === 0 && !NO_OUTPUT.test(src)) out.push(`${where}: no output`);
  });
  return out;
}

/** Runs tasks `width` at a time, in order; each result settles on its own. */
function pool<T>(tasks: Array<() => Promise<T>>, width: number): Array<Promise<T>> {
  const slots = tasks.map(() => {
    const s = {} as { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void };
    s.promise = new Promise<T>((resolve, reject) => Object.assign(s, { resolve, reject }));
    return s;
  });
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++;
      try {
        slots[i].resolve(await tasks[i]());
      } catch (e) {
        slots[i].reject(e);
      }
    }
  };
  for (let w = 0; w < width; w++) void worker();
  return slots.map((s) => s.promise);
}

describe('committed notebooks', () => {
  test('there are six, each listed in notebooks/README.md', () => {
    expect(NAMES).toHaveLength(6);
    const readme = fs.readFileSync(path.join(NOTEBOOKS, 'README.md'), 'utf8');
    for (const name of NAMES) expect(readme).toContain(`](${name})`);
  });

  test.each(NAMES)('%s: chromatune kernel, the QUICK switch first, executed in full without errors', (name) => {
    const nb = readNotebook(path.join(NOTEBOOKS, name));
    expect(nb.metadata.kernelspec).toMatchObject({ name: 'chromatune', language: 'typescript' });
    const code = nb.cells.filter((c) => c.cell_type === 'code');
    expect(text(code[0].source)).toContain(QUICK_SWITCH);
    expect(problems(nb)).toEqual([]);
    // Executed in order, from a fresh kernel.
    expect(code.map((c) => c.execution_count)).toEqual(code.map((_, i) => i + 1));
  });
});

describe('notebooks executed in quick mode', () => {
  let work: string;
  let prefix: string;
  let executed: Map<string, Promise<{ nb: Notebook; seconds: number }>>;

  beforeAll(async () => {
    requireJupyter(['nbconvert', 'jupyter_client'], 'these tests execute the notebooks for real', ['jupyter-notebook', 'jupyter-nbconvert', 'python3-nbconvert', 'jupyter-client']);
    const kernel = kernelPrefix('notebooks');
    prefix = kernel.dir;
    const env = { ...kernel.env, CHROMATUNE_QUICK: '1' };
    // Under the project, so that `import ... from 'chromatune'` resolves as it does for notebooks/.
    fs.mkdirSync(path.join(ROOT, 'test-output'), { recursive: true });
    work = fs.mkdtempSync(path.join(ROOT, 'test-output', 'notebooks-'));
    for (const name of NAMES) fs.copyFileSync(path.join(NOTEBOOKS, name), path.join(work, name));
    const tasks = NAMES.map((name) => async () => {
      const args = ['-m', 'nbconvert', '--to', 'notebook', '--execute', '--allow-errors', `--ExecutePreprocessor.timeout=${NOTEBOOK_TIMEOUT_S}`, '--output-dir', path.join(work, 'executed'), name];
      const r = await runPython(args, { cwd: work, env });
      if (r.code !== 0) throw new Error(`nbconvert failed on ${name}:\n${r.stderr.slice(-3000)}`);
      return { nb: readNotebook(path.join(work, 'executed', name)), seconds: r.seconds };
    });
    const results = pool(tasks, PARALLEL);
    results.forEach((p) => p.catch(() => undefined)); // each surfaces in its own test
    executed = new Map(NAMES.map((name, i) => [name, results[i]]));
  }, 180_000);

  afterAll(async () => {
    await Promise.allSettled([...(executed?.values() ?? [])]);
    if (work) fs.rmSync(work, { recursive: true, force: true });
    if (prefix) fs.rmSync(prefix, { recursive: true, force: true });
  }, NAMES.length * NOTEBOOK_TIMEOUT_S * 1000);

  test.each(NAMES)(
    '%s runs top to bottom: no error output, and every code cell shows something',
    async (name) => {
      const { nb, seconds } = await executed.get(name)!;
      expect(problems(nb)).toEqual([]);
      const code = nb.cells.filter((c) => c.cell_type === 'code');
      expect(code.every((c) => typeof c.execution_count === 'number')).toBe(true);
      // Quick mode keeps a notebook to about a minute, even sharing the machine with another.
      expect(seconds).toBeLessThan(NOTEBOOK_TIMEOUT_S);
    },
    NAMES.length * NOTEBOOK_TIMEOUT_S * 1000,
  );
});
