/**
 * Outlier inputs: can the input judging find corrupted training rows? 5% of nyc-qa's training answers
 * are swapped in pairs between unrelated facts (different fact and category, seeded); the embedded base
 * model is fine-tuned with LoRA on the corrupted set, the inputs are scored with held-out references
 * (other phrasings of the facts) as targets, and the benchmark measures the share of corrupted rows
 * among the top 10% flagged (recall), against ranking by per-example loss alone in the same run.
 *
 * fact_id and category are used only to corrupt and to measure; the scoring sees questions and answers.
 */
import * as fs from 'fs';
import * as path from 'path';
import { performance } from 'perf_hooks';
import * as tf from '../kernel/backend/tf';
import { type BackendChoice, initBackend } from '../kernel/backend';
import { loadExamples } from '../kernel/data/load';
import type { QAExample } from '../kernel/data/example';
import { loadModel } from '../kernel/model/io';
import { finetune, type ProgressEvent } from '../kernel/train/finetune';
import { projectPath } from '../kernel/paths';
import { GradientCache } from '../kernel/chroma/influence';
import { type InputScore, rankOutliers, scoreInputs, SIGNALS, type Signal, tracinCheckpoints } from '../kernel/chroma/inputs';

export interface OutlierBenchOptions {
  epochs?: number;
  seed?: number;
  /** Share of training rows corrupted (default 0.05). */
  corruptFraction?: number;
  /** Share flagged (default 0.1). */
  topFraction?: number;
  dataset?: string;
  model?: string;
  backend?: BackendChoice;
  onProgress?: (e: ProgressEvent) => void;
  log?: (line: string) => void;
}

interface LabelledRow {
  fact_id: string;
  category: string;
  answer: string;
}

function readLabels(file: string): LabelledRow[] {
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as LabelledRow);
}

/** mulberry32: a tiny seeded PRNG in [0, 1). */
function prng(seed: number): () => number {
  let t = seed >>> 0;
  return () => {
    t = (t + 0x6d2b79f5) >>> 0;
    let r = Math.imul(t ^ (t >>> 15), t | 1);
    r ^= r + Math.imul(r ^ (r >>> 7), r | 61);
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Swaps the answers of round(fraction·n / 2) pairs of rows from different facts, different categories
 * and with different answers. Returns the corrupted copy, the corrupted rows' indices (sorted) and the
 * swapped pairs.
 */
export function corruptBySwapping(
  examples: QAExample[],
  labels: LabelledRow[],
  fraction: number,
  seed: number,
): { examples: QAExample[]; corrupted: number[]; pairs: Array<[number, number]> } {
  if (examples.length !== labels.length) throw new Error(`corrupt: ${examples.length} examples but ${labels.length} labels`);
  if (!(fraction > 0 && fraction <= 0.5)) throw new RangeError(`corruptFraction must be in (0, 0.5], got ${fraction}`);
  const pairs = Math.max(1, Math.round((fraction * examples.length) / 2));
  const rnd = prng(seed * 7919 + 17);
  const out = examples.map((e) => ({ ...e }));
  const used = new Set<number>();
  const swapped: Array<[number, number]> = [];
  for (let tries = 0; used.size < 2 * pairs; tries++) {
    if (tries > 100_000) throw new Error('corrupt: cannot find enough unrelated pairs');
    const i = Math.floor(rnd() * examples.length);
    const j = Math.floor(rnd() * examples.length);
    if (i === j || used.has(i) || used.has(j)) continue;
    const [a, b] = [labels[i], labels[j]];
    if (a.fact_id === b.fact_id || a.category === b.category || examples[i].answer === examples[j].answer) continue;
    used.add(i);
    used.add(j);
    swapped.push([i, j]);
    [out[i].answer, out[j].answer] = [examples[j].answer, examples[i].answer];
  }
  return { examples: out, corrupted: [...used].sort((x, y) => x - y), pairs: swapped };
}

/** Share of `corrupted` among the top `k` of a ranking (indices, worst first). */
export function recallAt(ranking: number[], corrupted: number[], k: number): number {
  const top = new Set(ranking.slice(0, k));
  return corrupted.filter((i) => top.has(i)).length / corrupted.length;
}

export interface ReferenceSetResult {
  references: number;
  /** Share of corrupted rows among the flagged. */
  recall: number;
  /** Recall when ranking by one signal's z-score alone. */
  recall_by_signal_alone: Record<Signal, number>;
  /** Corrupted rows whose own fact has a reference (which then disagrees with the swapped answer). */
  corrupted_rows_whose_fact_has_a_reference: number;
  /** Corrupted rows with a reference for their own fact or for the fact their answer came from. */
  corrupted_rows_reachable: number;
  recall_among_reachable: number | null;
  seconds: number;
}

const rankBy = (values: number[]): number[] => values.map((v, i) => [v, i] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]).map(([, i]) => i);

export async function runOutlierBench(o: OutlierBenchOptions = {}) {
  const seed = o.seed ?? 0;
  const epochs = o.epochs ?? 8;
  const topFraction = o.topFraction ?? 0.1;
  const corruptFraction = o.corruptFraction ?? 0.05;
  const log = o.log ?? (() => {});
  const dataset = o.dataset ?? projectPath('datasets', 'nyc-qa');
  const backend = await initBackend(o.backend);
  const started = performance.now();
  const { model, tokenizer } = loadModel(o.model ?? projectPath('models', 'chromatune-base'));
  try {
    const file = (name: string) => path.join(dataset, `${name}.jsonl`);
    const clean = loadExamples(file('train'));
    const labels = readLabels(file('train'));
    const validation = loadExamples(file('validation'));
    const test = loadExamples(file('test'));
    const { examples: train, corrupted, pairs } = corruptBySwapping(clean, labels, corruptFraction, seed);
    log(`corrupted ${corrupted.length} of ${train.length} training rows (answers swapped in pairs)`);

    // Fine-tune as the main job does (rank 32, alpha 32, lr 5e-3, batch 16), for fewer epochs.
    const training = { epochs, batchSize: 16, learningRate: 5e-3, warmupSteps: 10, lora: { r: 32, alpha: 32, dropout: 0.1 }, seed };
    const tracin = tracinCheckpoints(model);
    const t0 = performance.now();
    const result = await finetune({
      model, tokenizer, train, ...training,
      onProgress: (e) => {
        tracin.onProgress(e);
        o.onProgress?.(e);
      },
    });
    const trainSeconds = (performance.now() - t0) / 1000;
    result.client.dispose();
    log(`fine-tuned ${result.steps} steps in ${trainSeconds.toFixed(0)} s; TracIn checkpoints at steps ${tracin.steps.join(', ')}`);

    const n = train.length;
    const k = Math.ceil(topFraction * n);
    const cache = new GradientCache();
    const configs: Record<string, QAExample[]> = { validation, 'validation+test': [...validation, ...test] };
    const results: Record<string, ReferenceSetResult> = {};
    const byConfig: Record<string, InputScore[]> = {};
    const partner = new Map(pairs.flatMap(([i, j]) => [[i, j], [j, i]] as Array<[number, number]>));
    for (const [name, references] of Object.entries(configs)) {
      const t1 = performance.now();
      const scores = scoreInputs({ model, tokenizer, train, references, checkpoints: tracin.checkpoints, topFraction, cache });
      const seconds = (performance.now() - t1) / 1000;
      byConfig[name] = scores;
      const covered = new Set(references.map((r) => r.id?.replace(/-q\d+$/, '')));
      const coveredRows = corrupted.filter((i) => covered.has(labels[i].fact_id));
      const reachable = corrupted.filter((i) => covered.has(labels[i].fact_id) || covered.has(labels[partner.get(i)!].fact_id));
      const ranking = rankOutliers(scores).map((s) => s.index);
      const signalRecall = Object.fromEntries(SIGNALS.map((s) => [s, recallAt(rankBy(scores.map((x) => x.z[s])), corrupted, k)])) as Record<Signal, number>;
      results[name] = {
        references: references.length,
        recall: recallAt(ranking, corrupted, k),
        recall_by_signal_alone: signalRecall,
        corrupted_rows_whose_fact_has_a_reference: coveredRows.length,
        corrupted_rows_reachable: reachable.length,
        recall_among_reachable: reachable.length ? recallAt(ranking, reachable, k) : null,
        seconds,
      };
      log(`${name}: recall ${results[name].recall.toFixed(2)} in ${seconds.toFixed(0)} s`);
    }
    // Baseline: per-example loss under the fine-tuned model, nothing else (the loss every scoring reports).
    const baseline = recallAt(rankBy(byConfig.validation.map((s) => s.loss)), corrupted, k);
    const flagged = (name: string) =>
      rankOutliers(byConfig[name]).slice(0, k).map((s) => ({ index: s.index, id: s.id, corrupted: corrupted.includes(s.index), question: s.question, answer: s.answer, reasons: s.reasons }));
    return {
      date: new Date().toISOString(),
      backend: backend.choice,
      config: {
        dataset: path.relative(projectPath(), dataset) || dataset,
        train_rows: n,
        corrupted_rows: corrupted.length,
        flagged: k,
        ...training,
        tracin_checkpoint_steps: tracin.steps,
        total_steps: result.steps,
      },
      baseline_loss_only_recall: baseline,
      results,
      chance_recall: k / n,
      seconds: { fine_tune: trainSeconds, total: (performance.now() - started) / 1000 },
      flagged: Object.fromEntries(Object.keys(configs).map((name) => [name, flagged(name)])),
      tensors_alive: tf.memory().numTensors,
    };
  } finally {
    model.dispose();
  }
}
