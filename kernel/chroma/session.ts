/**
 * A ChromaTune session: parameter nodes, the runs trained at their positions, the outputs those runs
 * gave (coloured by quality), and the training inputs judged from the outputs. Feedback flows one
 * way: rate(output) → the output's quality → its run's quality → every node's quality field and
 * colour → the inputs' quality (influence on the rated outputs) and the outlier list.
 */
import type { QAExample } from '../data/example';
import { formatPrompt } from '../data/example';
import type { GPT2Model } from '../model/gpt2';
import type { Tokenizer } from '../tokenizer';
import { scoreAnswer } from '../eval/metrics';
import { generateMany } from '../sample/generate';
import { finetune, type FinetuneResult, type ProgressEvent } from '../train/finetune';
import type { Sample } from '../sample/generate';
import { Study, type TrialHandle } from '../tune/study';
import { cube, type Space } from '../tune/space';
import { ParticleSwarmSampler } from '../tune/pso';
import type { TrialRecord } from '../tune/types';
import { colourToQuality, qualityColour } from './colour';
import { fieldAt, type FittedField, fitQuality, type QualityField } from './field';
import { checkNodeName, checkPosition, decodingSettings, DEFAULT_LEARNING_RATE, NODE_DEFS, NODE_NAMES, type NodeName, type NodePositions, trainingSettings, type Vec3 } from './node';
import { type InputScore, scoreInputs } from './inputs';
import { GradientCache } from './influence';
import { sessionBundle } from '../display/sessionView';
import type { MimeBundle } from '../display/mime';

/** How a run's quality in [0, 1] is measured. */
export const RUN_OBJECTIVES = ['outputs', 'perplexity'] as const;
export type RunObjective = (typeof RUN_OBJECTIVES)[number];

export interface ChromaOutput {
  id: string;
  runId: string;
  question: string;
  text: string;
  reference: string;
  /** Token F1 against the reference. */
  autoQuality: number;
  /** A person's rating, overriding autoQuality. */
  rating: number | null;
  quality: number;
  colour: string;
}

export interface ChromaRun {
  id: string;
  positions: Record<NodeName, Vec3>;
  /** Effective settings the trainer and sampler used. */
  settings: { learningRate: number; epochs: number; lora: ReturnType<typeof trainingSettings>['lora']; groupScales: Record<string, number>; temperature: number; topP: number };
  quality: number;
  colour: string;
  metrics: { valLoss: number | null; perplexity: number | null; tokenF1: number; seconds: number };
  lossCurve: Array<[number, number]>;
  valCurve: Array<[number, number]>;
  outputIds: string[];
}

export interface TrainOptions {
  epochs?: number;
  maxSteps?: number;
  learningRate?: number;
  batchSize?: number;
  onProgress?: (e: ProgressEvent) => void;
}

export interface SessionOptions {
  model: GPT2Model;
  tokenizer: Tokenizer;
  /** Training inputs: the examples judged and searched for outliers. */
  train: QAExample[];
  /** Evaluation questions whose answers become the outputs people rate. */
  evaluation: QAExample[];
  objective?: RunObjective;
  /** Node positions to start from (default: each node's start). */
  nodes?: NodePositions;
  /** Training defaults for every run. */
  training?: TrainOptions;
  /** Share of inputs flagged as outliers. */
  outlierFraction?: number;
  maxTokens?: number;
  seed?: number;
}

const mean = (xs: number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

/** Live sessions by id, so that a widget can address the session it shows (see act()). */
const SESSIONS = new Map<string, ChromaSession>();
let sessionCount = 0;

export class ChromaSession {
  /** Unique within the kernel process; carried in the payload. */
  readonly id: string;
  readonly model: GPT2Model;
  readonly tokenizer: Tokenizer;
  readonly train: QAExample[];
  readonly evaluation: QAExample[];
  readonly objective: RunObjective;
  readonly positions: Record<NodeName, Vec3>;
  readonly runs: ChromaRun[] = [];
  readonly outputs = new Map<string, ChromaOutput>();
  inputs: InputScore[] = [];
  /** Each node's field fitted on the runs; a move reads it at the new position, new runs or ratings refit it. */
  private readonly fits = new Map<NodeName, FittedField>();
  /** Each run's adapter. Names are unique per session and attempt, so a failed run or a second session on the same model never trains another's adapter. */
  private readonly adapters = new Map<string, string>();
  private attempts = 0;
  /** Per-example gradients by adapter weights: re-rating outputs reuses them. */
  private readonly gradients = new GradientCache();
  private readonly o: SessionOptions;

  constructor(o: SessionOptions) {
    if (o.train.length === 0) throw new RangeError('a ChromaTune session needs training examples');
    if (o.evaluation.length === 0) throw new RangeError('a ChromaTune session needs evaluation questions (their answers are the outputs people rate)');
    const objective = o.objective ?? 'outputs';
    if (!RUN_OBJECTIVES.includes(objective)) throw new RangeError(`objective must be one of ${RUN_OBJECTIVES.join(', ')}, got ${JSON.stringify(objective)}`);
    this.o = o;
    this.id = `s${++sessionCount}`;
    SESSIONS.set(this.id, this);
    this.model = o.model;
    this.tokenizer = o.tokenizer;
    this.train = o.train;
    this.evaluation = o.evaluation;
    this.objective = objective;
    this.positions = Object.fromEntries(NODE_NAMES.map((n) => [n, NODE_DEFS[n].start])) as Record<NodeName, Vec3>;
    for (const [name, p] of Object.entries(o.nodes ?? {})) this.positions[checkNodeName(name)] = checkPosition(name, p);
  }

  /** The name of the model adapter a run of this session trained. */
  adapterOf(runId: string): string {
    const name = this.adapters.get(runId);
    if (!name) throw new RangeError(`no run "${runId}" in session ${this.id}; runs: ${this.runs.map((r) => r.id).join(', ') || '(none yet)'}`);
    return name;
  }

  /** Frees the session: its runs' adapters leave the model, and widget actions no longer reach it. */
  close(): void {
    for (const name of this.adapters.values()) this.model.removeAdapter(name);
    this.adapters.clear();
    SESSIONS.delete(this.id);
  }

  /** Moves a node; the next run trains (or samples) there. */
  moveNode(name: string, position: Vec3): void {
    this.positions[checkNodeName(name)] = checkPosition(name, position);
  }

  /** Trains one LoRA run at the current node positions, samples the outputs and scores them. */
  async run(o: TrainOptions = {}): Promise<ChromaRun> {
    const t = { ...this.o.training, ...o };
    const id = `run-${this.runs.length + 1}`;
    const positions = { ...this.positions };
    const ts = trainingSettings(positions, this.model.config);
    const ds = decodingSettings(positions);
    const learningRate = t.learningRate ?? DEFAULT_LEARNING_RATE;
    const epochs = t.epochs ?? 4;
    const started = performance.now();
    const adapterName = `${this.id}/${id}/${++this.attempts}`;
    let result: FinetuneResult;
    let samples: Sample[];
    try {
      result = await finetune({
        model: this.model, tokenizer: this.tokenizer, train: this.train, validation: this.evaluation,
        method: 'lora', adapterName, lora: ts.lora, groupScales: ts.groupScales,
        learningRate, epochs, maxSteps: t.maxSteps, batchSize: t.batchSize ?? 16,
        warmupSteps: 0, evalEvery: 0, seed: (this.o.seed ?? 0) + this.runs.length, onProgress: t.onProgress,
      });
      // The optimizer's moments are not needed once trained, and tensors are not garbage-collected.
      result.client.dispose();
      samples = generateMany(this.model, this.tokenizer, this.evaluation.map((e) => formatPrompt(e.question)), {
        maxTokens: this.o.maxTokens ?? 32, stop: ['\n'], seed: (this.o.seed ?? 0) + this.runs.length, paramsAt: ds.paramsAt,
      });
    } catch (e) {
      // A failed run (divergence, bad settings) leaves no half-trained adapter behind.
      this.model.removeAdapter(adapterName);
      throw e;
    }
    this.adapters.set(id, adapterName);
    const outputIds: string[] = [];
    samples.forEach((s, i) => {
      const ex = this.evaluation[i];
      const text = s.text.trim();
      const autoQuality = scoreAnswer(text, ex.answer).tokenF1;
      const out: ChromaOutput = { id: `${id}/${ex.id ?? i}`, runId: id, question: ex.question, text, reference: ex.answer, autoQuality, rating: null, quality: autoQuality, colour: qualityColour(autoQuality) };
      this.outputs.set(out.id, out);
      outputIds.push(out.id);
    });
    const valLoss = result.evals.at(-1)?.valLoss ?? null;
    const run: ChromaRun = {
      id, positions,
      settings: { learningRate, epochs, lora: ts.lora, groupScales: ts.groupScales, temperature: ds.temperature, topP: ds.topP },
      quality: 0, colour: '',
      metrics: { valLoss, perplexity: valLoss === null ? null : Math.exp(valLoss), tokenF1: mean(outputIds.map((k) => this.outputs.get(k)!.autoQuality)), seconds: (performance.now() - started) / 1000 },
      lossCurve: result.history.map((h) => [h.step, h.loss]),
      valCurve: result.evals.map((e) => [e.step, e.valLoss]),
      outputIds,
    };
    this.runs.push(run);
    this.updateRunQuality(run);
    this.fits.clear();
    return run;
  }

  /**
   * A person's rating of an output: a quality in [0, 1], or a colour picked on the scale. Updates the
   * output, its run's quality, the node fields, and the inputs' quality.
   */
  rate(outputId: string, rating: number | string): ChromaOutput {
    const out = this.outputs.get(outputId);
    if (!out) throw new RangeError(`no output "${outputId}"; outputs of the latest run: ${this.runs.at(-1)?.outputIds.slice(0, 5).join(', ') ?? '(no runs yet)'}`);
    const q = typeof rating === 'string' ? colourToQuality(rating) : rating;
    if (typeof q !== 'number' || !(q >= 0 && q <= 1)) throw new RangeError(`rating must be a quality in [0, 1] or a colour, got ${JSON.stringify(rating)}`);
    out.rating = q;
    out.quality = q;
    out.colour = qualityColour(q);
    const run = this.runs.find((r) => r.id === out.runId)!;
    this.updateRunQuality(run);
    this.fits.clear();
    if (this.inputs.length) this.judgeInputs(run.id);
    return out;
  }

  /** The quality field of a node, fitted on every run's (position, quality). */
  field(name: NodeName): QualityField {
    let fit = this.fits.get(name);
    if (!fit) {
      fit = fitQuality(this.runs.map((r) => r.positions[name]), this.runs.map((r) => r.quality), { seed: this.o.seed ?? 0 });
      this.fits.set(name, fit);
    }
    return fieldAt(fit, this.positions[name]);
  }

  /**
   * Judges the training inputs against the outputs of a run (default: the latest): influence through
   * that run's adapter on its outputs, weighted by their quality, with loss and isolation.
   */
  judgeInputs(runId = this.runs.at(-1)?.id): InputScore[] {
    const run = this.runs.find((r) => r.id === runId);
    if (!run) throw new RangeError(runId ? `no run "${runId}"` : 'judgeInputs needs a run first: call run()');
    const previous = this.model.activeAdapter?.name ?? null;
    this.model.setActiveAdapter(this.adapterOf(run.id));
    try {
      this.inputs = scoreInputs({
        model: this.model,
        tokenizer: this.tokenizer,
        train: this.train,
        targets: run.outputIds.map((k) => {
          const o = this.outputs.get(k)!;
          return { question: o.question, text: o.text, quality: o.quality };
        }),
        // The evaluation questions' references are what good outputs look like: targets of quality 1.
        references: this.evaluation,
        topFraction: this.o.outlierFraction ?? 0.1,
        cache: this.gradients,
      });
    } finally {
      this.model.setActiveAdapter(previous);
    }
    return this.inputs;
  }

  /**
   * Swarming towards truth: a particle swarm over the chosen nodes' positions, each particle a short
   * LoRA run scored automatically; the fields update after every particle (onUpdate).
   */
  async swarm(o: { nodes?: NodeName[]; particles?: number; generations?: number; training?: TrainOptions; onUpdate?: (run: ChromaRun, session: ChromaSession) => void; studyPath?: string } = {}): Promise<Study> {
    const nodes = (o.nodes ?? (['learningRate', 'rank'] as NodeName[])).map(checkNodeName);
    const particles = o.particles ?? 4;
    const space: Space = Object.fromEntries(nodes.map((n) => [n, cube(3)]));
    const study = new Study({ space, sampler: new ParticleSwarmSampler({ particles }), direction: 'maximize', seed: this.o.seed ?? 0, name: 'swarm', path: o.studyPath });
    try {
      await study.optimize(
        async (params, trial: TrialHandle) => {
          for (const n of nodes) this.moveNode(n, params[n] as Vec3);
          const run = await this.run(o.training);
          trial.setAttr('run', run.id);
          o.onUpdate?.(run, this);
          return run.quality;
        },
        { trials: particles * (o.generations ?? 3) },
      );
    } finally {
      study.close();
    }
    // The swarm leaves the nodes at the best particle.
    const best: TrialRecord | undefined = study.best;
    if (best) for (const n of nodes) this.moveNode(n, best.params[n] as Vec3);
    return study;
  }

  private updateRunQuality(run: ChromaRun): void {
    run.quality =
      this.objective === 'outputs' || run.metrics.perplexity === null
        ? mean(run.outputIds.map((k) => this.outputs.get(k)!.quality))
        : 1 / run.metrics.perplexity;
    run.colour = qualityColour(run.quality);
  }

  /** The notebook view: the payload for the widget, an HTML fallback and a text summary. */
  toMimeBundle(): MimeBundle {
    return sessionBundle(this);
  }

  /** Current node positions as NodePositions. */
  nodePositions(): NodePositions {
    return { ...this.positions };
  }
}

/** What a person does in the widget: recolour an output, or move a node. */
export type SessionAction =
  | { kind: 'rate'; output: string; quality?: number; colour?: string }
  | { kind: 'move'; node: string; position: Vec3 };

/**
 * Applies a widget action to a live session and returns the session, whose display (the cell's
 * result) carries the recomputed payload back to the widget.
 */
export function act(sessionId: string, action: SessionAction): ChromaSession {
  const session = SESSIONS.get(sessionId);
  if (!session) throw new RangeError(`no ChromaTune session "${sessionId}" in this kernel (was the kernel restarted? run the notebook's cells again); live: ${[...SESSIONS.keys()].join(', ') || '(none)'}`);
  if (action?.kind === 'rate') {
    const rating = action.colour ?? action.quality;
    if (rating === undefined) throw new RangeError('a rate action needs quality (0..1) or colour');
    session.rate(action.output, rating);
  } else if (action?.kind === 'move') {
    session.moveNode(action.node, action.position);
  } else throw new RangeError(`unknown action ${JSON.stringify(action)}; valid kinds: rate, move`);
  return session;
}
