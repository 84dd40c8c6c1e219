/** `chromatune bench search`: search samplers on test functions, with Optuna as a same-run peer. */
import type { Command } from 'commander';
import { positiveInt } from './common';

export function registerBenchSearch(bench: Command): Command {
  return bench
    .command('search')
    .description('median best-found regret of the search samplers on Branin and Hartmann-6 over seeds, against random search and Optuna (if installed)')
    .option('--seeds <n>', 'studies per function and sampler (seeds 0..n-1)', positiveInt('--seeds'), 20)
    .option('--trials <n>', 'trials per study', positiveInt('--trials'), 30)
    .option('--peer', 'run the Optuna peer, bench/optuna_peer.py (default)')
    .option('--no-peer', 'skip the Optuna peer')
    .option('--json', 'print one JSON object instead of tables')
    .action(async (o: { seeds: number; trials: number; peer?: boolean; json?: boolean }) => {
      if (o.trials < 2) throw new Error(`--trials expects an integer >= 2, got ${o.trials}`);
      const { formatSearchBench, runSearchBench } = await import('../../bench/search');
      const r = await runSearchBench({ seeds: o.seeds, trials: o.trials, peer: o.peer !== false, log: (line) => process.stderr.write(`${line}\n`) });
      process.stdout.write(o.json ? JSON.stringify(r, null, 2) + '\n' : formatSearchBench(r) + '\n');
    });
}
