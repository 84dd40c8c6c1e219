/** `chromatune decode`: search decoding settings and prompt wordings for responses closest to a desired output. */
import * as path from 'path';
import { Command, Option } from 'commander';
import { createRunDir } from '../run';
import { loadDecodeConfig, type Objective, OBJECTIVES, type RankingEntry, runDecode, type StoredResponse } from '../tune/decode';
import { SAMPLER_NAMES } from '../tune/samplers';
import { type ModelOpts, modelOptions, num, openModel, positiveInt } from './common';
import { progressBar } from './progress';

export interface DecodeCliOptions extends ModelOpts {
  config: string;
  sampler?: string;
  interval?: number;
  trials?: number;
  samples?: number;
  objective?: string;
  out?: string;
  top: number;
  json?: boolean;
}

const short = (x: number) => String(Number(x.toFixed(3)));
const fmt = (x: number | undefined, digits = 3) => (x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits));

/** The top rows of a ranking as an aligned text table. */
export function rankingTable(ranking: readonly RankingEntry[], top = 10): string {
  const variants = ranking.some((r) => 'promptVariant' in r.params);
  const systems = ranking.some((r) => 'systemPrompt' in r.params);
  const head = ['rank', 'trial', 'value', 'temp', 'topP', 'topK', ...(variants ? ['variant'] : []), ...(systems ? ['system'] : []), 'cosine', 'F1', 'ROUGE-L'];
  const rows = ranking.slice(0, top).map((r) => [
    String(r.rank),
    String(r.trial),
    fmt(r.value),
    short(r.sampling.temperature),
    r.sampling.topP === 1 ? 'off' : short(r.sampling.topP),
    r.sampling.topK === 0 ? 'off' : String(r.sampling.topK),
    ...(variants ? [String(r.params.promptVariant)] : []),
    ...(systems ? [String(r.params.systemPrompt)] : []),
    fmt(r.metrics.cosine),
    fmt(r.metrics.tokenF1),
    fmt(r.metrics.rougeL),
  ]);
  const widths = head.map((h, j) => Math.max(h.length, ...rows.map((r) => r[j].length)));
  const line = (cells: string[]) => cells.map((c, j) => c.padStart(widths[j])).join('  ');
  return [line(head), ...rows.map(line)].join('\n');
}

/** Adds `decode` to the program. */
export function registerDecode(program: Command): Command {
  return modelOptions(
    program
      .command('decode')
      .description('search temperature, top-p, top-k, prompt variants and system prompts for responses closest to a desired output; resumable'),
  )
    .requiredOption('--config <file>', 'decode configuration (JSON): prompts or template+vars, desired, space, samplesPerCombination, ... (see datasets/decode-example.json)')
    .addOption(new Option('--sampler <name>', 'search strategy (default: the config\'s, else grid)').choices([...SAMPLER_NAMES]))
    .option('--interval <x>', 'grid spacing in unit coordinates of each range (0.25: five points per range)', num('--interval'))
    .option('--trials <n>', 'trials to run (default: the whole grid; 20 for other samplers)', positiveInt('--trials'))
    .option('--samples <n>', 'samples per prompt in each combination (overrides samplesPerCombination)', positiveInt('--samples'))
    .addOption(new Option('--objective <name>', 'what a trial maximises (combined: mean of cosine, tokenF1, rougeL)').choices([...OBJECTIVES]))
    .option('--out <dir>', 'output folder; an existing one is resumed (default: runs/decode/<timestamp>)')
    .option('--top <n>', 'rows of the ranking to print', positiveInt('--top'), 10)
    .option('--json', 'print the result as JSON')
    .action(async (o: DecodeCliOptions) => {
      const config = loadDecodeConfig(o.config, {
        sampler: o.sampler,
        interval: o.interval,
        trials: o.trials,
        samplesPerCombination: o.samples,
        objective: o.objective as Objective | undefined,
      }, { sampler: '--sampler', interval: '--interval', trials: '--trials', samplesPerCombination: '--samples', objective: '--objective' });
      const { model, tokenizer } = await openModel(o, o.json);
      const log = (line: string) => process.stderr.write(line + '\n');
      const out = o.out ?? createRunDir(path.join('runs', 'decode')).dir;
      log(`output folder: ${out}`);
      const bar = progressBar('decode');
      let result;
      try {
        result = await runDecode({
          model,
          tokenizer,
          config,
          out,
          onTrial: (p) =>
            bar.update({ kind: 'step', step: p.done, totalSteps: p.total, epoch: 0, tokensPerSecond: p.tokensPerSecond, elapsedSeconds: p.elapsedSeconds, etaSeconds: p.etaSeconds }),
        });
      } finally {
        bar.stop();
        model.dispose();
      }
      const { study, ranking, paths } = result;
      const failed = study.trials.filter((t) => t.state === 'failed');
      if (o.json) {
        const summary = { out, objective: config.objective, sampler: config.sampler, trials: study.trials.length, failed: failed.length, best: ranking[0] ?? null, ranking, files: paths };
        process.stdout.write(JSON.stringify(summary, null, 2) + '\n');
        return;
      }
      const best = ranking[0] && (study.trials[ranking[0].trial].attrs.responses as StoredResponse[] | undefined);
      const lines = [
        '',
        `${config.description}: ${study.trials.length} trials, objective ${config.objective} (higher is better)${failed.length ? `, ${failed.length} failed (first: ${failed[0].error})` : ''}`,
        '',
        ranking.length ? rankingTable(ranking, o.top) : 'no trial completed',
        ...(best ? ['', `best trial's responses (first ${Math.min(4, best.length)} of ${best.length}):`, ...best.slice(0, 4).map((r) => `  [${fmt(r.score, 2)}] ${JSON.stringify(r.text)}`)] : []),
        ...(ranking[0]?.template ? [`best template: ${JSON.stringify(ranking[0].template)}`] : []),
        ...(ranking[0]?.systemPrompt !== undefined ? [`best system prompt: ${JSON.stringify(ranking[0].systemPrompt)}`] : []),
        '',
        `report: ${paths!.report}`,
        `files: ${paths!.responses}, ${paths!.ranking}, ${paths!.study} (run again with --out ${out} to resume)`,
      ];
      process.stdout.write(lines.join('\n') + '\n');
    });
}
