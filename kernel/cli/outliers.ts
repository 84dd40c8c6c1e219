/**
 * `chromatune outliers`: judges the training inputs of a question/answer file and lists the outliers.
 * Without --adapter it first fine-tunes a LoRA adapter briefly on the data (keeping TracIn
 * checkpoints); the model's greedy answers to the validation questions become rated outputs, with
 * token F1 against the reference as their quality, and the references themselves are targets too.
 */
import type { Command } from 'commander';
import { splitValidation } from '../data/batch';
import { formatPrompt, type QAExample } from '../data/example';
import { loadExamples } from '../data/load';
import { tokenF1 } from '../eval/metrics';
import { generateMany } from '../sample/generate';
import { finetune } from '../train/finetune';
import type { RatedOutput } from '../chroma/influence';
import { type InputScore, rankOutliers, scoreInputs, tracinCheckpoints } from '../chroma/inputs';
import { clip } from '../display/bundles';
import { dataOptions, type ModelOpts, modelOptions, num, openModel, print } from './common';
import { progressBar } from './progress';

/** The main job's LoRA settings, for the brief fine-tune. */
const TRAINING = { batchSize: 16, learningRate: 5e-3, warmupSteps: 10, lora: { r: 32, alpha: 32, dropout: 0.1 } };

/**
 * Progress of synchronous work on stderr (a timer-driven bar would not redraw until it ends): a line
 * rewritten in place on a terminal, else a line at every tenth.
 */
export function countProgress(label: string, unit: string): (done: number, total: number) => void {
  let shown = -1;
  return (done, total) => {
    const tenth = Math.floor((10 * done) / total);
    if (process.stderr.isTTY) {
      if (done === total || done % 10 === 0) process.stderr.write(`\r${label}: ${done}/${total} ${unit}`);
    } else if (tenth > shown) {
      shown = tenth;
      process.stderr.write(`${label}: ${done}/${total} ${unit}\n`);
    }
  };
}

/** The flagged inputs as a text table, worst first. */
export function outlierTable(scores: InputScore[]): string {
  const flagged = rankOutliers(scores).filter((s) => s.outlier);
  if (flagged.length === 0) return 'no outliers flagged';
  const lines = [`${'rank'.padEnd(5)}${'row'.padEnd(6)}${'id'.padEnd(16)}${'score'.padEnd(7)}${'quality'.padEnd(9)}example and reasons`];
  flagged.forEach((s, k) => {
    const pad = ' '.repeat(43);
    lines.push(`${String(k + 1).padEnd(5)}${String(s.index + 1).padEnd(6)}${clip(s.id ?? '-', 15).padEnd(16)}${s.score.toFixed(2).padEnd(7)}${s.quality.toFixed(2).padEnd(9)}Q: ${clip(s.question, 70)}`);
    lines.push(`${pad}A: ${clip(s.answer, 70)}`);
    for (const r of s.reasons) lines.push(`${pad}- ${r}`);
  });
  return lines.join('\n');
}

export function registerOutliers(program: Command): Command {
  return modelOptions(program.command('outliers').description('judge the training inputs of a question/answer file and list the outliers, with reasons'))
    .requiredOption('--data <file>', 'training data: .jsonl, .json or .csv/.tsv with a question/answer field pair')
    .option('--validation <file>', 'questions with reference answers (default: split off --val-fraction of --data)')
    .option('--val-fraction <x>', 'share of --data split off as references when --validation is not given', num('--val-fraction'), 0.1)
    .option('--epochs <n>', 'epochs of the brief fine-tune when no --adapter is given', num('--epochs'), 8)
    .option('--top <x>', 'share of inputs flagged as outliers, in (0, 1]', num('--top'), 0.1)
    .option('--max-tokens <n>', 'longest generated answer', num('--max-tokens'), 32)
    .option('--seed <n>', 'random seed', num('--seed'), 0)
    .option('--question-field <name>', 'field holding the question (default: detected)')
    .option('--answer-field <name>', 'field holding the answer (default: detected)')
    .option('--json', 'print every input\'s scores as JSON')
    .action(async (o) => {
      if (!(o.top > 0 && o.top <= 1)) throw new Error(`--top must be in (0, 1], got ${o.top}`);
      if (!Number.isInteger(o.epochs) || o.epochs < 1) throw new Error(`--epochs must be an integer >= 1, got ${o.epochs}`);
      const data = loadExamples(o.data, dataOptions(o));
      const split: { train: QAExample[]; validation: QAExample[] } = o.validation
        ? { train: data, validation: loadExamples(o.validation, dataOptions(o)) }
        : splitValidation(data, o.valFraction, o.seed, o.data);
      const { model, tokenizer } = await openModel(o as ModelOpts, o.json);
      const log = (line: string) => process.stderr.write(line + '\n');
      const { checkpoints, onProgress: recordCheckpoint } = tracinCheckpoints(model);
      if (!o.adapter) {
        const bar = progressBar('fine-tune');
        try {
          const r = await finetune({
            model, tokenizer, train: split.train, epochs: o.epochs, seed: o.seed, ...TRAINING,
            onProgress: (e) => {
              bar.update(e);
              recordCheckpoint(e);
            },
          });
          r.client.dispose();
        } finally {
          bar.stop();
        }
      }
      const samples = generateMany(model, tokenizer, split.validation.map((v) => formatPrompt(v.question)), { temperature: 0, maxTokens: o.maxTokens, stop: ['\n'] });
      const targets: RatedOutput[] = split.validation.map((v, i) => {
        const text = samples[i].text.trim();
        return { question: v.question, text, quality: tokenF1(text, v.answer) };
      });
      const meanF1 = targets.reduce((a, t) => a + t.quality, 0) / targets.length;
      log(`rated ${targets.length} greedy answers by token F1 (mean ${meanF1.toFixed(3)}); judging ${split.train.length} inputs`);
      const scores = scoreInputs({
        model, tokenizer, train: split.train, targets, references: split.validation, checkpoints, topFraction: o.top, seed: o.seed,
        onProgress: countProgress('judge inputs', 'gradients'),
      });
      if (process.stderr.isTTY) process.stderr.write('\n');
      print(
        o.json,
        {
          data: o.data,
          inputs: split.train.length,
          references: split.validation.length,
          rated_outputs_mean_quality: meanF1,
          checkpoints: checkpoints.length || 1,
          flagged: rankOutliers(scores).filter((s) => s.outlier),
          scores,
        },
        () => outlierTable(scores),
      );
      model.dispose();
    });
}
