/**
 * Training checkpoints: one folder, replaced atomically (built beside it, then renamed), so an
 * interruption leaves either the previous checkpoint or the new one, never a mixture.
 *   trainer_state.json          step, history, early-stopping state, the run's fingerprint
 *   adapter_config.json + adapter_model.safetensors   (LoRA, PEFT format)   or   model.safetensors (full)
 *   optimizer.safetensors       AdamW moments
 *   best.safetensors            with early stopping: the trainable weights at the best validation loss
 *   average.safetensors         with ema: the running average of the trainable weights
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '../backend/tf';
import { replaceDirAtomic, restoreOrphanedDir, writeFileAtomic } from '../io/atomic';
import { readSafetensors, writeSafetensors } from '../model/safetensors';
import { assignAdapterWeights, writeAdapterFiles } from '../lora/peft';
import type { NamedArrays } from '../model/tensor';
import type { TrainingClient } from './client';
import { differingKeys } from '../io/differingKeys';

export interface StepRecord {
  step: number;
  epoch: number;
  loss: number;
  /** With an answer memory: its weighted cross-entropy, trained beside `loss`. */
  answerLoss?: number;
  lr: number;
  gradNorm: number;
  tokens: number;
  seconds: number;
}

export interface EvalRecord {
  step: number;
  valLoss: number;
}

export interface TrainerState {
  version: 1;
  step: number;
  history: StepRecord[];
  evals: EvalRecord[];
  bestValLoss: number | null;
  bestStep: number | null;
  evalsWithoutImprovement: number;
  /** Settings that must match for a resume to continue the same run. */
  fingerprint: Record<string, unknown>;
}

export const STATE_FILE = 'trainer_state.json';
const BEST_FILE = 'best.safetensors';
export const AVERAGE_FILE = 'average.safetensors';

const loadWeights = (dir: string, name: string): NamedArrays | undefined => {
  const file = path.join(dir, name);
  return fs.existsSync(file) ? (readSafetensors(file).tensors as NamedArrays) : undefined;
};

/** The best weights a checkpoint holds (early stopping), or undefined. */
export const loadBestWeights = (dir: string): NamedArrays | undefined => loadWeights(dir, BEST_FILE);

/** The averaged weights a checkpoint holds (ema), or undefined. */
export const loadAverageWeights = (dir: string): NamedArrays | undefined => loadWeights(dir, AVERAGE_FILE);

/** The trainer state a checkpoint folder holds (step, history, evaluations). */
export function checkpointState(dir: string): TrainerState {
  return JSON.parse(fs.readFileSync(path.join(dir, STATE_FILE), 'utf8')) as TrainerState;
}

/** The step a checkpoint folder holds. */
export const checkpointStep = (dir: string): number => checkpointState(dir).step;

/**
 * Also brings back a checkpoint that a crash in the middle of replacing it left as a backup (see
 * restoreOrphanedDir); every resume asks this first.
 */
export function hasCheckpoint(dir: string): boolean {
  restoreOrphanedDir(dir);
  return fs.existsSync(path.join(dir, STATE_FILE));
}

/** Weights kept beside the trained ones: the best so far (early stopping) and the running average (ema). */
export interface ExtraWeights {
  best?: NamedArrays;
  average?: NamedArrays;
}

export function saveCheckpoint(dir: string, client: TrainingClient, state: TrainerState, baseModel: string, extra: ExtraWeights = {}): void {
  replaceDirAtomic(dir, (tmp) => {
    if (extra.best) writeSafetensors(path.join(tmp, BEST_FILE), extra.best, { step: String(state.bestStep) });
    if (extra.average) writeSafetensors(path.join(tmp, AVERAGE_FILE), extra.average, { step: String(state.step) });
    const adapter = client.model.activeAdapter;
    if (client.mode === 'lora' && adapter) writeAdapterFiles(adapter, tmp, baseModel);
    else writeSafetensors(path.join(tmp, 'model.safetensors'), client.model.weightArrays(), { format: 'pt' });
    writeSafetensors(path.join(tmp, 'optimizer.safetensors'), client.optimizer.stateTensors(), { step: String(client.optimizer.step) });
    writeFileAtomic(path.join(tmp, STATE_FILE), JSON.stringify(state, null, 1) + '\n');
  });
}

/** Restores weights and optimizer into `client`; checks the fingerprint so a resume continues the same run. */
export function loadCheckpoint(dir: string, client: TrainingClient, fingerprint: Record<string, unknown>): TrainerState {
  const stateFile = path.join(dir, STATE_FILE);
  const state = checkpointState(dir);
  // Both sides' keys: settings fingerprinted only when set must also be refused when set before and unset now.
  const show = (v: unknown) => (v === undefined ? 'unset' : JSON.stringify(v));
  const [k] = differingKeys(state.fingerprint, fingerprint);
  if (k !== undefined) {
    throw new Error(
      `${stateFile}: cannot resume, ${k} was ${show(state.fingerprint[k])} and is now ${show(fingerprint[k])}; ` +
        'use a new checkpoint folder or the original settings',
    );
  }
  const adapter = client.model.activeAdapter;
  if (client.mode === 'lora' && adapter) assignAdapterWeights(adapter, dir);
  else {
    const file = path.join(dir, 'model.safetensors');
    const { tensors } = readSafetensors(file);
    for (const [name, v] of client.model.trainableVariables(client.mode)) {
      const t = tensors.get(name);
      if (!t) throw new Error(`${file}: missing tensor "${name}"`);
      tf.tidy(() => v.assign(tf.tensor(t.data as Float32Array, t.shape)));
    }
  }
  const opt = readSafetensors(path.join(dir, 'optimizer.safetensors'));
  client.optimizer.loadState(Number(opt.metadata.step), opt.tensors);
  return state;
}
