/** Pieces every command shares: number flags, model options and loading, JSON or text output, Ctrl-C. */
import * as fs from 'fs';
import { Command, Option } from 'commander';
import { type BackendChoice, BACKEND_CHOICES, backendNotes, describeBackend, initBackend } from '../backend';
import type { LoadOptions } from '../data/load';
import { loadModel } from '../model/io';
import { loadAdapter } from '../lora/peft';
import { projectPath } from '../paths';

export const DEFAULT_MODEL = projectPath('models', 'chromatune-base');

export const num = (flag: string) => (v: string) => {
  const x = Number(v);
  if (v.trim() === '' || Number.isNaN(x)) throw new Error(`${flag} expects a number, got "${v}"`);
  return x;
};
/** A flag that must be a whole number >= 1 (counts: trials, seeds, epochs, samples). */
export const positiveInt = (flag: string) => (v: string) => {
  const x = num(flag)(v);
  if (!Number.isInteger(x) || x < 1) throw new Error(`${flag} expects an integer >= 1, got "${v}"`);
  return x;
};
export const list = (v: string) => v.split(',').map((s) => s.trim()).filter(Boolean);

export interface ModelOpts {
  model: string;
  adapter?: string;
  backend?: BackendChoice;
}

/** --model, --backend and (unless adapterHelp is null, for commands that train fresh adapters only) --adapter. */
export function modelOptions(cmd: Command, adapterHelp: string | null = 'LoRA adapter folder (PEFT format) to apply'): Command {
  cmd.option('--model <dir>', 'base model folder (Hugging Face layout)', DEFAULT_MODEL);
  if (adapterHelp !== null) cmd.option('--adapter <dir>', adapterHelp);
  return cmd
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend (default: best available; env CHROMATUNE_BACKEND)').choices([...BACKEND_CHOICES]));
}

export async function openModel(o: ModelOpts, json = false) {
  const info = await initBackend(o.backend);
  if (!json) process.stderr.write(`backend: ${describeBackend(info)}\n`);
  // Always (on stderr, so --json output stays clean): why a run is slower than it could be.
  for (const n of backendNotes(info)) process.stderr.write(`note: ${n}\n`);
  if (!fs.existsSync(o.model)) throw new Error(`model folder ${o.model} not found (pass --model DIR)`);
  const { model, tokenizer } = loadModel(o.model);
  if (o.adapter) loadAdapter(model, o.adapter, undefined, tokenizer);
  return { model, tokenizer, info };
}

export function dataOptions(o: { questionField?: string; answerField?: string }): LoadOptions {
  return { questionField: o.questionField, answerField: o.answerField };
}

/** The first Ctrl-C asks the training loop to checkpoint and return; a second one exits at once. */
export function stopOnInterrupt(): { requested: () => boolean; dispose: () => void } {
  let requested = false;
  const onSigint = () => {
    if (requested) process.exit(130);
    requested = true;
    process.stderr.write('\nstopping after this step (checkpoint will be saved); Ctrl-C again to quit now\n');
  };
  process.on('SIGINT', onSigint);
  return { requested: () => requested, dispose: () => process.off('SIGINT', onSigint) };
}

/** JSON on stdout with --json, else the text. */
export const print = (json: boolean, value: unknown, text: () => string) => process.stdout.write(json ? JSON.stringify(value, null, 2) + '\n' : text() + '\n');
