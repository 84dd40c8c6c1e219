/**
 * A run folder: runs/<timestamp>/ with the adapter (PEFT format), metrics.jsonl (one JSON object per
 * step or evaluation, appended as training goes), summary.json and the training checkpoint.
 */
import * as fs from 'fs';
import * as path from 'path';
import { writeFileAtomic } from '../io/atomic';
import { checkpointState, hasCheckpoint, type TrainerState } from '../train/checkpoint';

export interface RunPaths {
  dir: string;
  adapter: string;
  model: string;
  checkpoint: string;
  metrics: string;
  summary: string;
}

export const runPaths = (dir: string): RunPaths => ({
  dir,
  adapter: path.join(dir, 'adapter'),
  model: path.join(dir, 'model'),
  checkpoint: path.join(dir, 'checkpoint'),
  metrics: path.join(dir, 'metrics.jsonl'),
  summary: path.join(dir, 'summary.json'),
});

/** A new folder named by the UTC time (suffixed if two runs start in the same second). */
export function createRunDir(parent = 'runs'): RunPaths {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
  fs.mkdirSync(parent, { recursive: true });
  for (let i = 0; ; i++) {
    const dir = path.join(parent, i ? `${stamp}-${i}` : stamp);
    try {
      fs.mkdirSync(dir);
      return runPaths(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
}

export function appendMetric(run: RunPaths, record: Record<string, unknown>): void {
  fs.appendFileSync(run.metrics, JSON.stringify(record) + '\n');
}

/** Before resuming the run in `run`: it must have a checkpoint, and its metrics are cut back to that step. Returns the checkpoint's state. */
export function prepareResume(run: RunPaths): TrainerState {
  if (!hasCheckpoint(run.checkpoint)) throw new Error(`${run.checkpoint}: no checkpoint to resume from`);
  const state = checkpointState(run.checkpoint);
  truncateMetrics(run, state.step);
  return state;
}

/** On resume, metrics past the checkpoint's step are dropped so the file matches the restored state. */
export function truncateMetrics(run: RunPaths, step: number): void {
  if (!fs.existsSync(run.metrics)) return;
  const kept = fs
    .readFileSync(run.metrics, 'utf8')
    .split('\n')
    .filter((l) => l.trim() && (JSON.parse(l).step ?? 0) <= step);
  writeFileAtomic(run.metrics, kept.map((l) => l + '\n').join(''));
}

/**
 * A run that starts afresh in a folder used before: the old run's metrics, summary, answers and report
 * would otherwise sit beside (or be appended to by) the new run's.
 */
export function startFresh(run: RunPaths): void {
  for (const f of [run.metrics, run.summary, path.join(run.dir, 'answers.jsonl'), path.join(run.dir, 'report.html')]) fs.rmSync(f, { force: true });
}

export function writeSummary(run: RunPaths, summary: Record<string, unknown>): void {
  writeFileAtomic(run.summary, JSON.stringify(summary, null, 2) + '\n');
}
