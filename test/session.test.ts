/**
 * A ChromaTune session on a tiny model: runs at node positions, outputs with automatic quality,
 * feedback flowing from a rating to the run, the node fields and the inputs, the swarm loop over
 * node positions, and the payload against its JSON schema.
 */
import * as fs from 'fs';
import * as path from 'path';
import Ajv from 'ajv';
import { initBackend } from '../kernel/backend';
import { GPT2Model } from '../kernel/model/gpt2';
import { act, ChromaSession } from '../kernel/chroma/session';
import { MIME_TYPE, sessionPayload } from '../kernel/chroma/payload';
import { validatePayload } from '../widget/src/payload';
import { qualityColour } from '../kernel/chroma/colour';
import { trainingSettings } from '../kernel/chroma/node';
import { scoreAnswer } from '../kernel/eval/metrics';
import { byteTokenizer, qaPairs, tinyConfig } from './engine-helpers';

const schema = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'kernel', 'chroma', 'payload.schema.json'), 'utf8'));
const validate = new Ajv({ allErrors: true, strict: false }).compile(schema);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

let session: ChromaSession;

beforeAll(async () => {
  await initBackend('wasm');
  const model = GPT2Model.random(tinyConfig({ n_positions: 96 }), 5);
  session = new ChromaSession({
    model,
    tokenizer: byteTokenizer(),
    train: qaPairs(12),
    evaluation: qaPairs(4), // questions shared with training, so influence has relevant targets
    training: { epochs: 2, batchSize: 4 },
    maxTokens: 8,
    seed: 1,
  });
});

describe('ChromaTune session', () => {
  test('a run trains at the node positions and scores its outputs against the references', async () => {
    session.moveNode('rank', [0.5, 0.5, 0]);
    const run = await session.run();
    expect(run.settings.lora.rankPattern).toEqual(trainingSettings(session.nodePositions(), session.model.config).lora.rankPattern);
    expect(session.model.adapters.get(session.adapterOf(run.id))!.layers.get('transformer.h.0.attn.c_attn')!.r).toBe(2);
    expect(run.outputIds).toHaveLength(4);
    for (const id of run.outputIds) {
      const o = session.outputs.get(id)!;
      expect(o.autoQuality).toBeCloseTo(scoreAnswer(o.text, o.reference).tokenF1, 12);
      expect(o.colour).toBe(qualityColour(o.quality));
    }
    expect(run.quality).toBeCloseTo(mean(run.outputIds.map((k) => session.outputs.get(k)!.quality)), 12);
    expect(run.lossCurve.length).toBe(2 * 3);
    expect(() => session.moveNode('warp', [0, 0, 0])).toThrow(/unknown parameter node "warp"; nodes: learningRate, rank/);
  });

  test('a failed run leaves no adapter; another session on the same model trains adapters of its own', async () => {
    const model = session.model;
    const before = [...model.adapters.keys()];
    const first = session.runs[0].id;
    const weights = () => model.adapters.get(session.adapterOf(first))!.layers.get('transformer.h.0.attn.c_attn')!.B.dataSync().slice();
    const w0 = weights();
    await expect(session.run({ learningRate: 1e30 })).rejects.toThrow(/loss became NaN|gradient norm became/);
    expect([...model.adapters.keys()]).toEqual(before);
    const other = new ChromaSession({ model, tokenizer: byteTokenizer(), train: qaPairs(12), evaluation: qaPairs(4), training: { epochs: 1, batchSize: 4 }, maxTokens: 4, seed: 2 });
    const run = await other.run();
    expect(run.id).toBe(first); // both sessions number their runs from run-1
    expect(other.adapterOf(run.id)).not.toBe(session.adapterOf(first));
    expect(weights()).toEqual(w0); // the first session's adapter was not trained further
    other.close();
    expect([...model.adapters.keys()]).toEqual(before);
    expect(() => act(other.id, { kind: 'rate', output: 'x', colour: qualityColour(0) })).toThrow(/no ChromaTune session/);
  });

  test('a rating flows to the output, its run, the node fields and the inputs', async () => {
    session.moveNode('rank', [0.5, 0.5, 1]);
    await session.run();
    session.judgeInputs('run-1');
    const inputsBefore = session.inputs.map((i) => i.influence);
    const run = session.runs[0];
    const fieldBefore = session.field('rank').value.mean;
    const target = run.outputIds[0];
    // Recolour with the scale's best colour: quality 1.
    const out = session.rate(target, qualityColour(1));
    expect(out.quality).toBeCloseTo(1, 2);
    expect(out.rating).not.toBeNull();
    expect(run.quality).toBeCloseTo(mean(run.outputIds.map((k) => session.outputs.get(k)!.quality)), 12);
    expect(session.field('rank').value.mean).not.toBeCloseTo(fieldBefore, 6);
    const inputsAfter = session.inputs.map((i) => i.influence);
    expect(inputsAfter).not.toEqual(inputsBefore);
    expect(() => session.rate(target, 1.5)).toThrow(/rating must be a quality in \[0, 1\] or a colour/);
    expect(() => session.rate('nope', 0.5)).toThrow(/no output "nope"/);
  });

  test('the swarm moves particles over node positions, updates live, and leaves the nodes at the best', async () => {
    const updates: number[] = [];
    const before = session.runs.length;
    const study = await session.swarm({ nodes: ['learningRate', 'temperature'], particles: 2, generations: 2, training: { epochs: 1 }, onUpdate: (r, s) => updates.push(s.field('learningRate').runs) });
    expect(session.runs.length).toBe(before + 4);
    expect(updates).toEqual([before + 1, before + 2, before + 3, before + 4]);
    const best = study.best!;
    expect(session.positions.learningRate).toEqual(best.params.learningRate);
    expect(best.value).toBe(Math.max(...study.trials.map((t) => t.value ?? -Infinity)));
    // Every particle's run trained at its own position.
    for (const t of study.trials) {
      const run = session.runs.find((r) => r.id === t.attrs.run)!;
      expect(run.positions.learningRate).toEqual(t.params.learningRate);
    }
  });

  test('the payload follows its JSON schema and carries every part', () => {
    const p = sessionPayload(session);
    const ok = validate(p);
    if (!ok) throw new Error(JSON.stringify(validate.errors?.slice(0, 3)));
    expect(MIME_TYPE).toBe('application/vnd.chromatune.v1+json');
    expect(p.nodes.map((n) => n.name)).toEqual(['learningRate', 'rank', 'alpha', 'dropout', 'temperature', 'topP']);
    expect(p.runs).toHaveLength(session.runs.length);
    expect(p.outputs.filter((o) => o.rated)).toHaveLength(1);
    expect(p.inputs).toHaveLength(12);
    expect(p.nodes[0].field.samples).toHaveLength(125);
    expect(p.nodes[0].trail).toHaveLength(session.runs.length);
    // A broken payload is caught by the schema.
    expect(validate({ ...p, version: 2 })).toBe(false);
    expect(validate({ ...p, outputs: [{ ...p.outputs[0], quality: 3 }] })).toBe(false);
  });
});

describe('an input whose answer the context cuts off', () => {
  test('is flagged with its reason, and the payload (null loss) passes the schema and the widget', async () => {
    const model = GPT2Model.random(tinyConfig({ n_positions: 96 }), 7);
    const train = qaPairs(8);
    train[3] = { ...train[3], question: 'x'.repeat(120) }; // byte tokenizer: 120 tokens, past the 96-token context
    const s = new ChromaSession({ model, tokenizer: byteTokenizer(), train, evaluation: qaPairs(3), training: { epochs: 1, batchSize: 4 }, maxTokens: 4, seed: 3 });
    await s.run();
    const inputs = s.judgeInputs();
    expect(Number.isNaN(inputs[3].loss)).toBe(true);
    expect(inputs[3].outlier).toBe(true);
    expect(inputs[3].reasons[0]).toBe("its answer lies beyond the model's context of 96 tokens, so training never sees it");
    expect(inputs.filter((i, k) => k !== 3).every((i) => Number.isFinite(i.loss))).toBe(true);
    // Sent as JSON, as the kernel sends it.
    const p = JSON.parse(JSON.stringify(sessionPayload(s)));
    expect(p.inputs[3].loss).toBeNull();
    if (!validate(p)) throw new Error(JSON.stringify(validate.errors?.slice(0, 3)));
    expect(validatePayload(p)).toMatchObject({ ok: true });
    s.close();
    model.dispose();
  });
});

describe('widget actions', () => {
  test('act() applies a rating or a move to the live session named in the payload', () => {
    const p = sessionPayload(session);
    const out = p.outputs[p.outputs.length - 1];
    const returned = act(p.session.id, { kind: 'rate', output: out.id, colour: qualityColour(0) });
    expect(returned).toBe(session);
    expect(session.outputs.get(out.id)!.quality).toBeCloseTo(0, 2);
    act(p.session.id, { kind: 'move', node: 'alpha', position: [0.1, 0.2, 0.3] });
    expect(sessionPayload(session).nodes.find((n) => n.name === 'alpha')!.position).toEqual([0.1, 0.2, 0.3]);
    expect(() => act('s999', { kind: 'move', node: 'alpha', position: [0, 0, 0] })).toThrow(/no ChromaTune session "s999" in this kernel/);
    expect(() => act(p.session.id, { kind: 'jump' } as never)).toThrow(/unknown action .* valid kinds: rate, move/);
  });
});
