/** The `chromatune` command line. Every subcommand has --help; --json prints machine-readable output. */
import * as fs from 'fs';
import * as path from 'path';
import { Command, Option } from 'commander';
import { BACKEND_CHOICES, describeBackend, initBackend } from '../backend';
import { loadExamples } from '../data/load';
import { splitValidation } from '../data/batch';
import { formatPrompt } from '../data/example';
import { TrainingClient } from '../train/client';
import { evaluate } from '../eval';
import { createRunDir, prepareResume, runPaths } from '../run';
import { MAIN_JOB_DEFAULTS, metricTable, runJob } from '../run/job';
import type { QAExample } from '../data/example';
import { projectPath } from '../paths';
import { progressBar } from './progress';
import { registerDecode } from './decode';
import { registerSweep } from './sweep';
import { registerBenchSearch } from './benchSearch';
import { registerOutliers } from './outliers';
import { registerBenchOutliers } from './benchOutliers';
import { DEFAULT_MODEL, dataOptions, list, type ModelOpts, modelOptions, num, openModel, print, stopOnInterrupt } from './common';

export { DEFAULT_MODEL, stopOnInterrupt };

const CONTINUE_ADAPTER = 'LoRA adapter folder (PEFT format) to continue training (its rank, alpha, dropout and targets are used)';

function trainingOptions(cmd: Command, d: Partial<typeof MAIN_JOB_DEFAULTS> = {}): Command {
  return cmd
    .addOption(new Option('--method <m>', 'LoRA or full fine-tuning').choices(['lora', 'full']).default('lora'))
    .option('--epochs <n>', 'passes over the training data', num('--epochs'), d.epochs ?? 3)
    .option('--batch-size <n>', 'examples per step', num('--batch-size'), d.batchSize ?? 8)
    .option('--max-steps <n>', 'stop after this many steps', num('--max-steps'))
    .option('--lr <x>', d.lr ? 'peak learning rate for LoRA (full fine-tuning: 2e-4 unless given)' : 'peak learning rate (default 2e-3 LoRA, 2e-4 full)', num('--lr'), d.lr)
    .addOption(new Option('--schedule <s>', 'decay after warmup').choices(['cosine', 'linear', 'constant']).default('cosine'))
    .option('--warmup <n>', 'warmup steps', num('--warmup'), d.warmup ?? 0)
    .option('--rank <r>', 'LoRA rank', num('--rank'), d.rank ?? 8)
    .option('--alpha <a>', 'LoRA alpha, the update scaled by alpha/r (default: 2 × rank)', num('--alpha'), d.alpha)
    .option('--dropout <p>', 'LoRA dropout', num('--dropout'), d.dropout ?? 0)
    .option('--word-vectors <scale>', 'train a vector per word of the training questions beside LoRA, added to the input embedding of the word\'s tokens times this scale (0: off)', num('--word-vectors'), d.wordVectors ?? 0)
    .option('--word-bag <rms>', 'with --word-vectors: a second vector per word; the question\'s mean of them, weighted by each word\'s inverse document frequency and scaled to this root mean square, is added to the input embedding of the prompt\'s "\\nAnswer:", where the answer is read (0: off)', num('--word-bag'), d.wordBag ?? 0)
    .option('--answer-memory <weight>', 'with --word-bag: one key and one value vector per distinct training answer; the question\'s bag mean is matched by cosine to the keys, the values weighted by the softmax of those matches are added where the answer is read, and a cross-entropy on the example\'s answer, times this weight, is trained beside the loss (0: off)', num('--answer-memory'), d.answerMemory ?? 0)
    .option('--word-dropout <p>', 'question augmentation: drop each question word with this probability, in examples drawn afresh each epoch with --augment-probability (0: off)', num('--word-dropout'), d.wordDropout ?? 0)
    .option('--rare-word-dropout <p>', 'with --word-dropout: drop a word found in only one training question with this probability instead; commoner words go up to --word-dropout on a log scale (default: all words alike)', num('--rare-word-dropout'), d.rareWordDropout)
    .option('--augment-probability <f>', 'probability that an example\'s question is augmented in an epoch (default 0.75)', num('--augment-probability'), d.augmentProbability)
    .option('--group-by-length', 'batch examples of similar length: less padding, faster steps', d.groupByLength ?? false)
    .option('--no-group-by-length', 'batch examples in plain shuffled order')
    .option('--targets <list>', 'LoRA target modules: qkv,attn_out,mlp_in,mlp_out', list, ['qkv', 'attn_out', 'mlp_in', 'mlp_out'])
    .option('--weight-decay <x>', 'AdamW decoupled weight decay', num('--weight-decay'), 0)
    .option('--grad-clip <x>', 'clip the global gradient norm (0: off)', num('--grad-clip'), 1)
    .option('--eval-every <n>', 'validation loss every N steps (0: at the end)', num('--eval-every'), d.evalEvery ?? 0)
    .option('--patience <n>', 'early stopping after N evaluations without improvement', num('--patience'))
    .option('--ema <decay>', 'end on an exponential moving average of the trained weights, updated after every step from --ema-start on with this decay (0: off)', num('--ema'), d.ema ?? 0)
    .option('--ema-start <n>', 'the step the average starts from', num('--ema-start'), d.emaStart ?? 1)
    .option('--seed <n>', 'random seed', num('--seed'), 0)
    .option('--runs <dir>', 'parent folder of run folders', 'runs')
    .option('--out <dir>', 'run folder (default: <runs>/<timestamp>)')
    .option('--resume <dir>', 'continue the run in this folder from its checkpoint')
    .option('--json', 'print the summary as JSON');
}

/** Shared by `finetune` and `nyc`: opens the model, runs the job with a progress bar, prints the results. */
async function runJobCommand(o: Record<string, any>, cmd: Command, title: string, train: QAExample[], validation: QAExample[], evalSplits: Record<string, QAExample[]>) {
  if (o.adapter) {
    if (o.method === 'full') throw new Error('--adapter continues training a LoRA adapter; it cannot be combined with --method full');
    const given = ['rank', 'alpha', 'dropout', 'targets', 'wordVectors', 'wordBag', 'answerMemory'].filter((k) => cmd.getOptionValueSource(k) === 'cli');
    if (given.length > 0) throw new Error(`--adapter trains the adapter with its own LoRA settings; leave out ${given.map((k) => cmd.options.find((opt) => opt.attributeName() === k)!.long).join(', ')}`);
  }
  if (o.patience !== undefined && o.ema > 0) {
    throw new Error(`--patience and --ema cannot be combined: early stopping ends on the weights of the best validation loss, --ema on an average; ${cmd.getOptionValueSource('ema') === 'cli' ? 'leave out one of them' : 'add --ema 0 to stop early'}`);
  }
  if (!o.resume && o.out && fs.existsSync(o.out) && fs.readdirSync(o.out).length > 0) {
    throw new Error(`${o.out} already holds files; continue its run with --resume ${o.out}, or choose another --out`);
  }
  const { model, tokenizer } = await openModel(o as ModelOpts, o.json);
  // With --adapter, training continues that adapter (loaded under its folder's name) instead of a fresh one.
  const adapterName = o.adapter ? model.activeAdapter!.name : undefined;
  const run = o.resume ? runPaths(o.resume) : o.out ? runPaths(o.out) : createRunDir(o.runs);
  fs.mkdirSync(run.dir, { recursive: true });
  if (o.resume) prepareResume(run);
  const log = (line: string) => process.stderr.write(line + '\n');
  log(`run folder: ${run.dir}`);
  const bar = progressBar('fine-tune');
  const stop = stopOnInterrupt();
  try {
    const { summary, answers } = await runJob({
      run, model, tokenizer, modelDir: o.model, title, train, validation, evalSplits, log,
      resume: Boolean(o.resume),
      shouldStop: stop.requested,
      onProgress: (e) => bar.update(e),
      training: {
        method: o.method,
        adapterName,
        lora: adapterName ? undefined : { r: o.rank, alpha: o.alpha, dropout: o.dropout, targetModules: o.targets, wordVectors: o.wordVectors, wordBag: o.wordBag, answerMemory: o.answerMemory },
        epochs: o.epochs, batchSize: o.batchSize, maxSteps: o.maxSteps, learningRate: o.lr, schedule: o.schedule,
        warmupSteps: o.warmup, weightDecay: o.weightDecay, augment: { wordDropout: o.wordDropout, rareWordDropout: o.rareWordDropout, probability: o.augmentProbability }, gradClipNorm: o.gradClip, evalEvery: o.evalEvery,
        groupByLength: o.groupByLength,
        earlyStopping: o.patience !== undefined ? { patience: o.patience } : undefined,
        ema: o.ema > 0 ? { decay: o.ema, startStep: o.emaStart } : undefined,
        seed: o.seed, checkpointEvery: o.evalEvery || 50,
      },
    });
    bar.stop();
    if (summary.interrupted) {
      log(`interrupted at step ${summary.steps}; continue with the same command and --resume ${run.dir}`);
      process.exitCode = 130;
      return;
    }
    const samples = (answers.test ?? answers.validation)?.finetuned.answers.slice(0, 8) ?? [];
    const base = (answers.test ?? answers.validation)?.base.answers ?? [];
    print(o.json, summary, () =>
      [
        '',
        metricTable(summary),
        '',
        'sample answers (question / reference / base / fine-tuned):',
        ...samples.map((a, i) => `  Q: ${a.question}\n     reference:  ${a.reference}\n     base:       ${base[i]?.answer}\n     fine-tuned: ${a.answer}`),
        '',
        `run folder: ${run.dir} (adapter, metrics.jsonl, summary.json, answers.jsonl, report.html)`,
        `time: ${summary.seconds.total.toFixed(0)} s (training ${summary.seconds.training.toFixed(0)} s)`,
      ].join('\n'),
    );
  } finally {
    bar.stop();
    stop.dispose();
  }
}


export function buildProgram(): Command {
  const program = new Command('chromatune')
    .description('Fine-tune small GPT-2-style language models with LoRA, and see tuning as colour.')
    .showHelpAfterError();

  trainingOptions(modelOptions(program.command('finetune').description('fine-tune a model with LoRA (or fully) on your question/answer file; writes a run folder'), CONTINUE_ADAPTER))
    .requiredOption('--data <file>', 'training data: .jsonl, .json (array) or .csv/.tsv with a question/answer field pair')
    .option('--validation <file>', 'validation data (default: split off --val-fraction of --data)')
    .option('--val-fraction <x>', 'fraction of --data held out for validation when --validation is not given', num('--val-fraction'), 0.1)
    .option('--question-field <name>', 'field holding the question (default: detected)')
    .option('--answer-field <name>', 'field holding the answer (default: detected)')
    .action(async (o, cmd: Command) => {
      const data = loadExamples(o.data, dataOptions(o));
      const split = o.validation ? { train: data, validation: loadExamples(o.validation, dataOptions(o)) } : splitValidation(data, o.valFraction, o.seed, o.data);
      await runJobCommand(o, cmd, `Fine-tuning on ${path.basename(o.data)}`, split.train, split.validation, { validation: split.validation });
    });

  trainingOptions(modelOptions(program.command('nyc').description('the main job: LoRA fine-tuning of the embedded base model on nyc-qa, evaluated against the base model'), CONTINUE_ADAPTER), MAIN_JOB_DEFAULTS)
    .option('--dataset <dir>', 'nyc-qa folder', projectPath('datasets', 'nyc-qa'))
    .action(async (o, cmd: Command) => {
      // The main job's learning rate is tuned for LoRA; full fine-tuning keeps its own default unless --lr is given.
      if (o.method === 'full' && cmd.getOptionValueSource('lr') === 'default') o.lr = undefined;
      const load = (name: string) => loadExamples(path.join(o.dataset, `${name}.jsonl`));
      const validation = load('validation');
      await runJobCommand(o, cmd, 'LoRA fine-tuning on nyc-qa', load('train'), validation, { validation, test: load('test'), held_out_facts: load('held_out_facts') });
    });

  modelOptions(program.command('eval').description('perplexity of the reference answers; exact match, token F1 and ROUGE-L of greedy answers (with --train, the share that recite a training answer)'))
    .requiredOption('--data <file>', 'question/answer file')
    .option('--question-field <name>', 'field holding the question')
    .option('--answer-field <name>', 'field holding the answer')
    .option('--limit <n>', 'evaluate only the first N examples', num('--limit'))
    .option('--train <file>', 'the training data: also report the share of answers that recite one of its answers for another question')
    .option('--json', 'print JSON')
    .action(async (o) => {
      const { model, tokenizer } = await openModel(o, o.json);
      const examples = loadExamples(o.data, dataOptions(o)).slice(0, o.limit);
      const trainAnswers = o.train ? loadExamples(o.train, dataOptions(o)).map((ex) => ex.answer) : undefined;
      const r = evaluate(new TrainingClient(model, tokenizer, 'none'), examples, { trainAnswers });
      const recited = r.recited === undefined ? '' : `  recited ${(100 * r.recited).toFixed(1)}%`;
      print(o.json, r, () => `examples ${r.examples}  loss ${r.loss.toFixed(4)}  perplexity ${r.perplexity.toFixed(2)}  exact match ${(100 * r.exactMatch).toFixed(1)}%  token F1 ${r.tokenF1.toFixed(3)}  ROUGE-L ${r.rougeL.toFixed(3)}${recited}`);
    });

  modelOptions(program.command('sample').description('generate completions for a prompt'))
    .option('--prompt <text>', 'raw prompt text')
    .option('--question <text>', 'a question, wrapped as "Question: ...\\nAnswer:"')
    .option('--max-tokens <n>', 'tokens to generate', num('--max-tokens'), 64)
    .option('--temperature <t>', '0 is greedy', num('--temperature'), 1)
    .option('--top-p <p>', 'nucleus sampling threshold', num('--top-p'))
    .option('--top-k <k>', 'keep the k most likely tokens', num('--top-k'))
    .option('--stop <s...>', 'stop strings (default: newline when --question is used)')
    .option('--num-samples <n>', 'independent samples', num('--num-samples'), 1)
    .option('--seed <n>', 'random seed', num('--seed'), 0)
    .option('--json', 'print JSON')
    .action(async (o) => {
      if ((o.prompt === undefined) === (o.question === undefined)) throw new Error('sample: give exactly one of --prompt or --question');
      const { model, tokenizer } = await openModel(o, o.json);
      const prompt = o.question !== undefined ? formatPrompt(o.question) : o.prompt;
      const stop = o.stop ?? (o.question !== undefined ? ['\n'] : []);
      const r = new TrainingClient(model, tokenizer, 'none').sample(prompt, {
        maxTokens: o.maxTokens, temperature: o.temperature, topP: o.topP, topK: o.topK, stop, numSamples: o.numSamples, seed: o.seed,
      });
      print(o.json, { prompt, ...r }, () => r.samples.map((s, i) => `[${i}] ${s.text} (${s.finishReason})`).join('\n'));
    });

  modelOptions(program.command('logprobs').description("token ids of a prompt and completion, and each completion token's logprob"))
    .requiredOption('--prompt <text>', 'prompt text')
    .requiredOption('--completion <text>', 'completion text scored given the prompt')
    .option('--json', 'print JSON')
    .action(async (o) => {
      const { model, tokenizer } = await openModel(o, o.json);
      const r = new TrainingClient(model, tokenizer, 'none').computeLogprobs(o.prompt, o.completion);
      const out = { prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, logprobs: r.logprobs, total_logprob: r.total };
      print(o.json, out, () =>
        r.completionTokens.map((t, i) => `${JSON.stringify(tokenizer.decode([t]))}\t${t}\t${r.logprobs[i].toFixed(4)}`).join('\n') + `\ntotal\t${r.total.toFixed(4)}`,
      );
    });

  program
    .command('pretrain')
    .description('pretrain the embedded base model on the WordNet corpus, from scratch or further with --from (resumable: run again to continue)')
    .option('--out <dir>', 'model folder to write when the run finishes (replaced whole)', DEFAULT_MODEL)
    .option('--work <dir>', 'work folder: tokenizer, token cache and checkpoint', path.join('runs', 'pretrain'))
    .option('--steps <n>', 'optimizer steps in the whole run', num('--steps'), 6000)
    .option('--minutes <m>', 'stop with a checkpoint after this many minutes', num('--minutes'))
    .option('--batch-size <n>', 'sequences per step', num('--batch-size'), 16)
    .option('--lr <x>', 'peak learning rate', num('--lr'), 1e-3)
    .option('--warmup <n>', 'linear warmup steps before the cosine decay', num('--warmup'), 200)
    .option('--from <dir>', 'pretrain this finished model folder further (a new stage on the same corpus split) instead of starting from scratch')
    .option('--max-documents <n>', 'use only this many corpus documents (quick runs)', num('--max-documents'))
    .option('--naming-questions', 'also ask training synsets the other way round: the definition as the question, the word as the answer')
    .option('--seed <n>', 'random seed: corpus split, initial weights and data order (with --from, the data order)', num('--seed'), 0)
    .addOption(new Option('--backend <name>', 'TensorFlow.js backend').choices([...BACKEND_CHOICES]))
    .action(async (o) => {
      const info = await initBackend(o.backend);
      process.stderr.write(`backend: ${describeBackend(info)}\n`);
      const { pretrain } = await import('../pretrain');
      const bar = progressBar('pretrain');
      const stop = stopOnInterrupt();
      try {
        const r = await pretrain({
          out: o.out, workDir: o.work, steps: o.steps, maxMinutes: o.minutes, batchSize: o.batchSize, learningRate: o.lr,
          warmupSteps: o.warmup, from: o.from, maxDocuments: o.maxDocuments, namingQuestions: o.namingQuestions === true, seed: o.seed, onProgress: (e) => bar.update(e), shouldStop: stop.requested,
          log: (line) => process.stderr.write(`${line}\n`),
        });
        bar.stop();
        process.stdout.write(
          r.finished
            ? `finished: ${r.steps} steps, ${r.tokensSeen} tokens, held-out perplexity ${r.heldOutPerplexity.toFixed(2)}; model in ${o.out}\n`
            : `paused: ${r.steps} of ${o.steps} steps, ${r.tokensSeen} tokens; ${o.out} is unchanged; run the same command again to resume\n`,
        );
      } finally {
        bar.stop();
        stop.dispose();
      }
    });

  registerSweep(program);
  registerDecode(program);
  registerOutliers(program);

  const bench = program.command('bench').description('benchmarks (print one JSON object)');
  bench
    .command('train')
    .description('training and sampling tokens/s, matmul GFLOP/s and MFU, against the cpu backend and PyTorch (if installed)')
    .option('--seconds <s>', 'time per measurement', num('--seconds'), 4)
    .option('--cases <list>', 'a: 2-layer d=128 byte-vocabulary model; b: the embedded base model architecture', list, ['a', 'b'])
    .option('--backends <list>', 'main backend then its peer', list, ['wasm', 'cpu'])
    .option('--no-torch', 'skip the PyTorch peer')
    .option('--no-main-job', 'skip one epoch of the main job\'s training step on nyc-qa (its five variants)')
    .option('--json', 'print JSON (the only output format)')
    .action(async (o) => {
      for (const c of o.cases) if (c !== 'a' && c !== 'b') throw new Error(`--cases: unknown case "${c}"; valid: a, b`);
      for (const b of o.backends) if (!BACKEND_CHOICES.includes(b)) throw new Error(`--backends: unknown backend "${b}"; valid: ${BACKEND_CHOICES.join(', ')}`);
      const { runTrainBench } = await import('../../bench/train');
      const r = await runTrainBench({ seconds: o.seconds, cases: o.cases, backends: o.backends, torch: o.torch, mainJob: o.mainJob });
      process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    });
  registerBenchSearch(bench);
  registerBenchOutliers(bench);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  await buildProgram().parseAsync(argv);
}
