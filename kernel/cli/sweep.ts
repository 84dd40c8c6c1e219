/** `chromatune sweep`: a training search on nyc-qa (or your data), one run folder per trial, a ranked report. */
import * as path from 'path';
import { Command, Option } from 'commander';
import { loadExamples } from '../data/load';
import { splitValidation } from '../data/batch';
import { projectPath } from '../paths';
import { createRunDir } from '../run';
import { makeSampler, SAMPLER_NAMES } from '../tune/samplers';
import { SWEEP_OBJECTIVES, sweep, sweepSpace, type SweepObjective } from '../tune/sweep';
import { gridSize } from '../tune/grid';
import { type Study, StudyStopped } from '../tune/study';
import { dataOptions, modelOptions, num, openModel, print, stopOnInterrupt } from './common';
import { progressBar } from './progress';

/** Quick mode: a slice of the data and 1-2 epochs, so a whole sweep takes about a minute. */
const QUICK = { train: 48, validation: 16, trials: 4 };

export function registerSweep(program: Command): void {
  modelOptions(program.command('sweep').description('hyperparameter search over LoRA rank, alpha, learning rate, batch size, epochs and dropout; one run folder per trial'), null)
    .option('--data <file>', 'training data (default: nyc-qa train, validated on nyc-qa validation)')
    .option('--validation <file>', 'validation data (default: nyc-qa validation, or split off --data)')
    .option('--question-field <name>', 'field holding the question (default: detected)')
    .option('--answer-field <name>', 'field holding the answer (default: detected)')
    .addOption(new Option('--objective <name>', 'what to optimise on the validation split').choices([...SWEEP_OBJECTIVES]).default('val-loss'))
    .addOption(new Option('--sampler <name>', 'search strategy').choices([...SAMPLER_NAMES]).default('bayes'))
    .option('--interval <x>', 'grid interval in unit coordinates (grid sampler)', num('--interval'), 0.5)
    .option('--trials <n>', 'trials to finish (a resumed sweep counts those already done)', num('--trials'))
    .option('--seed <n>', 'random seed', num('--seed'), 0)
    .option('--quick', `small and fast: ${QUICK.train} training and ${QUICK.validation} validation examples, 1-2 epochs, ${QUICK.trials} trials`)
    .option('--no-prune', 'do not prune trials whose validation loss is above the median')
    .option('--out <dir>', 'sweep folder; an existing one is resumed (default: runs/sweep/<timestamp>)')
    .option('--json', 'print the ranking as JSON')
    .action(async (o) => {
      const { model, tokenizer } = await openModel(o, o.json);
      const nyc = (name: string) => loadExamples(projectPath('datasets', 'nyc-qa', `${name}.jsonl`));
      let train = o.data ? loadExamples(o.data, dataOptions(o)) : nyc('train');
      let validation = o.validation ? loadExamples(o.validation, dataOptions(o)) : o.data ? undefined : nyc('validation');
      if (!validation) ({ train, validation } = splitValidation(train, 0.1, o.seed, o.data));
      if (o.quick) {
        train = train.slice(0, QUICK.train);
        validation = validation!.slice(0, QUICK.validation);
      }
      const dir = o.out ?? createRunDir(path.join('runs', 'sweep')).dir;
      const trials = o.trials ?? (o.quick ? QUICK.trials : 12);
      const log = (line: string) => process.stderr.write(line + '\n');
      log(`sweep folder: ${dir} (${o.sampler} sampler, objective ${o.objective}, ${trials} trials)`);
      // Fewer trials than grid points: in nested-loop order they would all share the first parameters'
      // first values, so visit the points in a seeded random order (as Optuna's GridSampler does).
      const points = o.sampler === 'grid' ? gridSize(sweepSpace(Boolean(o.quick)), o.interval) : 0;
      const shuffle = points > trials;
      if (shuffle) log(`the grid has ${points} points and the sweep runs ${trials}: visiting them in a seeded random order`);
      const stop = stopOnInterrupt();
      let bar = progressBar('trial');
      let study: Study | undefined;
      try {
        study = await sweep({
          model, tokenizer, modelDir: o.model, train, validation: validation!, dir,
          objective: o.objective as SweepObjective,
          sampler: makeSampler(o.sampler, o.sampler === 'grid' ? { interval: o.interval, shuffle } : {}),
          trials, seed: o.seed, quick: Boolean(o.quick), prune: o.prune,
          evalsPerTrial: o.quick ? 2 : 4,
          shouldStop: stop.requested,
          onTrialStart: (t) => {
            bar.stop();
            log(`trial ${t.number}: ${JSON.stringify(t.params)}`);
            bar = progressBar(`trial ${t.number}`);
          },
          onProgress: (e) => bar.update(e),
          onTrial: (t) => {
            bar.stop();
            log(`trial ${t.number} ${t.state}${t.value !== undefined ? `: ${o.objective} ${t.value.toFixed(4)}` : ''}${t.error ? ` (${t.error})` : ''}`);
          },
        });
      } catch (e) {
        if (e instanceof StudyStopped) {
          log(`stopped; run the same command with --out ${dir} to resume`);
          process.exitCode = 130;
          return;
        }
        throw e;
      } finally {
        bar.stop();
        stop.dispose();
      }
      const ranking = study.ranking();
      const report = path.join(dir, 'report.html');
      print(o.json, { dir, report, best: study.best, ranking }, () =>
        [
          '',
          `rank  trial  ${o.objective.padStart(10)}  params`,
          ...ranking.slice(0, 10).map((t, i) => `${String(i + 1).padStart(4)}  ${String(t.number).padStart(5)}  ${t.value!.toFixed(4).padStart(10)}  ${JSON.stringify(t.params)}`),
          '',
          `report: ${report}`,
        ].join('\n'),
      );
    });
}
