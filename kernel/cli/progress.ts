/** Terminal progress bar for training (stderr, so --json output on stdout stays clean). */
import * as cliProgress from 'cli-progress';
import type { ProgressEvent } from '../train/finetune';

const fmt = (s: number) => (Number.isFinite(s) ? `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s` : '--');

export function progressBar(label: string): { update: (e: ProgressEvent) => void; stop: () => void } {
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {value}/{total} steps | loss {loss} | val {val} | {tps} tok/s | ETA {eta_h}`,
      stream: process.stderr,
      noTTYOutput: true,
      notTTYSchedule: 5000,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  let val = '-';
  let loss = '-';
  return {
    update(e) {
      if (!started) {
        bar.start(e.totalSteps, 0, { loss: '-', val, tps: '-', eta_h: '--' });
        started = true;
      }
      if (e.valLoss !== undefined) val = e.valLoss.toFixed(3);
      if (e.loss !== undefined) loss = e.loss.toFixed(3);
      bar.update(e.step, {
        loss,
        val,
        tps: e.tokensPerSecond.toFixed(0),
        eta_h: fmt(e.etaSeconds),
      });
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
