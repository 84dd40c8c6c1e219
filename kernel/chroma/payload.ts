/**
 * The session as data for the JupyterLab widget and the HTML fallback: MIME type
 * application/vnd.chromatune.v1+json, described by payload.schema.json beside this file.
 */
import { type ChromaPayload, MIME_TYPE, type NodePayload, PAYLOAD_VERSION } from '../../widget/src/payload';
import { colourScale, qualityColour } from './colour';
import { cornerSubWeights, decodingSettings, DEFAULT_LEARNING_RATE, NODE_DEFS, NODE_NAMES, trainingSettings, type NodeName } from './node';
import type { ChromaSession } from './session';

export { MIME_TYPE, PAYLOAD_VERSION };

// One definition of the payload's shape, shared with the widget that renders it.
export type { ChromaPayload, NodePayload };

/** JSON has no NaN: a value that could not be measured is sent as null. */
const finiteOrNull = (x: number): number | null => (Number.isFinite(x) ? x : null);

/** Effective values of every node at its position, as flat name → number pairs per node. */
function nodeValues(session: ChromaSession): Record<NodeName, Record<string, number>> {
  const ts = trainingSettings(session.positions, session.model.config);
  const ds = decodingSettings(session.positions);
  const base = session.runs.at(-1)?.settings.learningRate ?? DEFAULT_LEARNING_RATE;
  return {
    learningRate: Object.fromEntries(Object.entries(ts.groupScales).map(([k, m]) => [k, base * m])),
    rank: ts.lora.rankPattern,
    alpha: ts.lora.alphaPattern,
    dropout: ts.lora.dropoutPattern,
    temperature: { temperature: ds.temperature },
    topP: { topP: ds.topP },
  };
}

export function sessionPayload(session: ChromaSession): ChromaPayload {
  const values = nodeValues(session);
  const nodes: NodePayload[] = NODE_NAMES.map((name) => {
    const f = session.field(name);
    const def = NODE_DEFS[name];
    return {
      name,
      label: def.label,
      kind: def.kind,
      axes: def.axes,
      position: session.positions[name],
      corners: cornerSubWeights(session.positions[name]),
      values: values[name],
      quality: { mean: f.value.mean, sd: f.value.sd },
      colour: qualityColour(f.value.mean),
      improvement: f.improvement,
      slope: f.slope,
      field: { resolution: f.resolution, samples: f.samples.map((s) => ({ ...s, colour: qualityColour(s.mean) })) },
      trail: session.runs.map((r) => ({ runId: r.id, p: r.positions[name], quality: r.quality })),
    };
  });
  return {
    version: PAYLOAD_VERSION,
    session: { id: session.id },
    scale: colourScale(),
    nodes,
    runs: session.runs.map((r) => ({ id: r.id, positions: r.positions, quality: r.quality, colour: r.colour, metrics: r.metrics, settings: r.settings })),
    outputs: [...session.outputs.values()].map((o) => ({ id: o.id, runId: o.runId, question: o.question, text: o.text, reference: o.reference, quality: o.quality, autoQuality: o.autoQuality, colour: o.colour, rated: o.rating !== null })),
    inputs: session.inputs.map((i) => ({
      index: i.index, id: i.id ?? null, question: i.question, answer: i.answer, quality: i.quality, colour: qualityColour(i.quality),
      loss: finiteOrNull(i.loss), influence: finiteOrNull(i.influence), isolation: finiteOrNull(i.isolation), score: i.score, outlier: i.outlier, reasons: i.reasons,
    })),
    lossCurves: session.runs.map((r) => ({ runId: r.id, train: r.lossCurve, validation: r.valCurve })),
  };
}
