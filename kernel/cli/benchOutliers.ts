/** `chromatune bench outliers`: recall of corrupted training rows among the flagged inputs (bench/outliers). */
import type { Command } from 'commander';
import { Option } from 'commander';
import { BACKEND_CHOICES } from '../backend';
import { num, positiveInt } from './common';
import { progressBar } from './progress';

export function registerBenchOutliers(bench: Command): Command {
  return bench
    .command('outliers')
    .description("swap 5% of nyc-qa's training answers, fine-tune, judge the inputs: recall of the swapped rows among the top 10%, against loss alone")
    .option('--epochs <n>', 'fine-tuning epochs', positiveInt('--epochs'), 8)
    .option('--seed <n>', 'seed of the corruption and the fine-tune', num('--seed'), 0)
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend').choices([...BACKEND_CHOICES]))
    .option('--json', 'print only the JSON (figures are also printed as text otherwise)')
    .action(async (o) => {
      const { runOutlierBench } = await import('../../bench/outliers');
      const bar = progressBar('fine-tune');
      let r: Awaited<ReturnType<typeof runOutlierBench>>;
      try {
        r = await runOutlierBench({
          epochs: o.epochs, seed: o.seed, backend: o.backend,
          onProgress: (e) => bar.update(e),
          log: (line) => {
            bar.stop();
            process.stderr.write(line + '\n');
          },
        });
      } finally {
        bar.stop();
      }
      if (!o.json) {
        const lines = [
          `${r.config.corrupted_rows} of ${r.config.train_rows} rows corrupted; top ${r.config.flagged} flagged (chance recall ${r.chance_recall.toFixed(2)})`,
          `loss alone (baseline): recall ${r.baseline_loss_only_recall.toFixed(2)}`,
          ...Object.entries(r.results).map(([name, x]) => `${name} references (${x.references}): recall ${x.recall.toFixed(2)}; ${x.corrupted_rows_reachable} corrupted rows reachable through a reference, recall among them ${x.recall_among_reachable?.toFixed(2) ?? '-'}`),
          `time: fine-tune ${r.seconds.fine_tune.toFixed(0)} s, total ${r.seconds.total.toFixed(0)} s`,
          '',
        ];
        process.stderr.write(lines.join('\n'));
      }
      process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    });
}
