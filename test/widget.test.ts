/**
 * The JupyterLab widget's pure logic: payload validation (readable messages for malformed and newer
 * payloads), payload → plotly traces (colours straight from the payload, corner lines toward the
 * cube's corners with lengths ∝ sub-weights, the legend's colorscale from the scale's stops), theme
 * colours in the layouts, and actions → kernel code (exact strings; ids cannot add code).
 */
import * as fs from 'fs';
import * as path from 'path';
import Ajv from 'ajv';
import { colourScale, qualityColour } from '../kernel/chroma/colour';
import { cornerSubWeights, NODE_DEFS, NODE_NAMES, type Vec3 } from '../kernel/chroma/node';
import { MIME_TYPE as KERNEL_MIME_TYPE, PAYLOAD_VERSION as KERNEL_VERSION, type ChromaPayload as KernelPayload, type NodePayload as KernelNodePayload } from '../kernel/chroma/payload';
import { ActionAnswer, actionCode, checkAction, describeAction, moveAction, rateAction, type SessionAction } from '../widget/src/action';
import { colourAt, plotlyColorscale, ratingPalette, textOn } from '../widget/src/colour';
import { MIME_TYPE, PAYLOAD_VERSION, validatePayload, type ChromaPayload } from '../widget/src/payload';
import { LIGHT, themeFrom, type Theme } from '../widget/src/theme';
import { CORNER_LENGTH, CORNER_WIDTH, cornerOf, cornerSegment, escapeText, improvementLength, lossLayout, lossTraces, nodeTraces, sceneLayout, type Scatter3dTrace, type SceneTrace } from '../widget/src/traces';

const schema = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'kernel', 'chroma', 'payload.schema.json'), 'utf8'));
const validateSchema = new Ajv({ allErrors: true, strict: false }).compile(schema);

const fieldAt = (p: Vec3) => ({ mean: 0.15 + 0.35 * p[0] + 0.4 * p[2], sd: 0.05 + 0.2 * p[1] });

function node(name: (typeof NODE_NAMES)[number], position: Vec3, trail: Vec3[]): KernelNodePayload {
  const def = NODE_DEFS[name];
  const samples: KernelNodePayload['field']['samples'] = [];
  for (let k = 0; k < 4; k++) for (let j = 0; j < 4; j++) for (let i = 0; i < 4; i++) {
    const p: Vec3 = [i / 3, j / 3, k / 3];
    samples.push({ p, ...fieldAt(p), colour: qualityColour(fieldAt(p).mean) });
  }
  const q = fieldAt(position);
  return {
    name, label: def.label, kind: def.kind, axes: def.axes, position, corners: cornerSubWeights(position),
    values: { 'h0.attn': 2, 'h1.mlp': 16 }, quality: q, colour: qualityColour(q.mean),
    improvement: [0.6, 0, 0.8], slope: 0.4, field: { resolution: 4, samples },
    trail: trail.map((p, i) => ({ runId: `run-${i + 1}`, p, quality: fieldAt(p).mean })),
  };
}

/** A payload as the kernel's own types build it: the widget's types must accept it unchanged. */
function kernelPayload(): KernelPayload {
  const trail: Vec3[] = [[0.5, 0.5, 0.5], [0.8, 0.3, 0.85]];
  const runs = trail.map((p, i) => ({
    id: `run-${i + 1}`, positions: Object.fromEntries(NODE_NAMES.map((n) => [n, p])), quality: [0.3, 0.7][i], colour: qualityColour([0.3, 0.7][i]),
    metrics: { valLoss: 2 - i, perplexity: null, tokenF1: 0.5, seconds: 1 }, settings: {},
  }));
  return {
    version: KERNEL_VERSION, session: { id: 's1' }, scale: colourScale(),
    nodes: [node('learningRate', [0.8, 0.3, 0.85], trail), node('rank', [0.5, 0.5, 0.5], []), node('topP', [1, 0.5, 0.5], [])],
    runs,
    outputs: [{ id: 'run-2/0', runId: 'run-2', question: 'What is 0?', text: 'It is red 0', reference: 'It is red 0', quality: 0.9, autoQuality: 1, colour: qualityColour(0.9), rated: true }],
    inputs: [{ index: 0, id: null, question: 'q', answer: 'a', quality: 0.1, colour: qualityColour(0.1), loss: 4, influence: -0.3, isolation: 0.2, score: 3, outlier: true, reasons: ['high loss'] }],
    lossCurves: runs.map((r, i) => ({ runId: r.id, train: [[1, 3 - i], [2, 2.5 - i]], validation: [[2, 2.7 - i]] })),
  };
}

const fixture = (): ChromaPayload => kernelPayload(); // compiles only while the kernel's payload type fits the widget's
const copy = <T>(v: T): T => JSON.parse(JSON.stringify(v));
const byRole = (traces: SceneTrace[], role: string) => traces.filter((t) => t.meta.role === role);
const one = (traces: SceneTrace[], role: string) => {
  const found = byRole(traces, role);
  expect(found).toHaveLength(1);
  return found[0];
};
const dist = (a: number[], b: number[]) => Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);

describe('payload', () => {
  test('the widget reads the kernel payload: same MIME type and version, schema-valid fixture accepted as is', () => {
    expect(MIME_TYPE).toBe(KERNEL_MIME_TYPE);
    expect(PAYLOAD_VERSION).toBe(KERNEL_VERSION);
    const p = fixture();
    expect(validateSchema(p)).toBe(true);
    const v = validatePayload(p);
    expect(v).toEqual({ ok: true, payload: p });
    if (v.ok) expect(v.payload).toBe(p);
  });

  test('a newer version asks for a newer widget', () => {
    expect(validatePayload({ ...fixture(), version: 2 })).toEqual({ ok: false, message: 'ChromaTune view: payload version 2 is newer than this widget (1); update chromatune-widget' });
    // Even when the rest has changed beyond recognition.
    expect(validatePayload({ version: 7, something: 'else' })).toEqual({ ok: false, message: 'ChromaTune view: payload version 7 is newer than this widget (1); update chromatune-widget' });
  });

  test('malformed payloads name the first wrong field', () => {
    const bad = (edit: (p: Record<string, any>) => void): string => {
      const p = copy(fixture()) as Record<string, any>;
      edit(p);
      const v = validatePayload(p);
      expect(v.ok).toBe(false);
      return v.ok ? '' : v.message;
    };
    expect(validatePayload(null)).toEqual({ ok: false, message: 'ChromaTune view: invalid payload: expected an object, got null' });
    expect(validatePayload('{"version":1}')).toEqual({ ok: false, message: 'ChromaTune view: invalid payload: expected an object, got the string "{\\"version\\":1}"' });
    expect(validatePayload(undefined)).toEqual({ ok: false, message: 'ChromaTune view: invalid payload: expected an object, got nothing' });
    expect(validatePayload([])).toEqual({ ok: false, message: 'ChromaTune view: invalid payload: expected an object, got an array' });
    expect(bad((p) => delete p.version)).toBe('ChromaTune view: invalid payload: version is missing');
    expect(bad((p) => (p.version = '1'))).toBe('ChromaTune view: invalid payload: version must be a positive integer, got the string "1"');
    expect(bad((p) => (p.version = 0))).toBe('ChromaTune view: invalid payload: version must be a positive integer, got number 0');
    expect(bad((p) => (p.nodes[0].position = [0.5, 0.5]))).toBe('ChromaTune view: invalid payload: nodes[0].position must be 3 numbers, got an array');
    expect(bad((p) => (p.nodes[0].position = [0.5, '0.5', 0.5]))).toBe('ChromaTune view: invalid payload: nodes[0].position must be 3 numbers, got an array');
    expect(bad((p) => delete p.outputs)).toBe('ChromaTune view: invalid payload: outputs is missing');
    expect(bad((p) => (p.session = { id: 3 }))).toBe('ChromaTune view: invalid payload: session.id must be a string, got number 3');
    expect(bad((p) => (p.nodes[1].colour = 'red'))).toBe(`ChromaTune view: invalid payload: nodes[1].colour must be a colour '#rrggbb', got the string "red"`);
    expect(bad((p) => p.nodes[0].corners.pop())).toBe('ChromaTune view: invalid payload: nodes[0].corners must have 8 entries, got 7');
    expect(bad((p) => (p.nodes[2].field.samples[5].mean = 1.5))).toBe('ChromaTune view: invalid payload: nodes[2].field.samples[5].mean must be a quality in [0, 1], got number 1.5');
    expect(bad((p) => (p.outputs[0].rated = 'yes'))).toBe('ChromaTune view: invalid payload: outputs[0].rated must be true or false, got the string "yes"');
    expect(bad((p) => (p.inputs[0].reasons = 'high loss'))).toBe('ChromaTune view: invalid payload: inputs[0].reasons must be an array, got the string "high loss"');
    expect(bad((p) => (p.lossCurves[1].train[0] = [1]))).toBe('ChromaTune view: invalid payload: lossCurves[1].train[0] must be a pair, got an array');
    expect(bad((p) => (p.scale.stops = [[0, '#440154']]))).toBe('ChromaTune view: invalid payload: scale.stops must have at least 2 stops, got 1');
    expect(bad((p) => p.scale.stops.reverse())).toMatch(/^ChromaTune view: invalid payload: scale\.stops must rise, but stop 1 \(0\.9\) follows 1$/);
    expect(bad((p) => (p.nodes[0].values = { 'h0.attn': 'fast' }))).toBe('ChromaTune view: invalid payload: nodes[0].values.h0.attn must be a number, got the string "fast"');
    expect(bad((p) => (p.runs[0].metrics.valLoss = NaN))).toBe('ChromaTune view: invalid payload: runs[0].metrics.valLoss must be a number, got number NaN');
  });
});

describe('payload → plotly traces', () => {
  const p = fixture();
  const theme: Theme = { ...LIGHT, foreground: '#101010', muted: '#505050', grid: '#c0c0c0', accent: '#d1495b' };

  test('one scene per node: cube, field, trail, 8 corner lines, improvement, node, legend', () => {
    const t = nodeTraces(p, p.nodes[0], theme);
    expect(t.map((x) => x.meta.role)).toEqual(['cube', 'field', 'trail', ...Array(8).fill('corner'), 'improvement', 'improvement-head', 'node', 'legend']);
    // No runs: no trail. On a face of the cube (topP at x = 1): the 4 corners at x = 0 weigh 0.
    expect(nodeTraces(p, p.nodes[1], theme).map((x) => x.meta.role).filter((r) => r === 'trail')).toEqual([]);
    const face = byRole(nodeTraces(p, p.nodes[2], theme), 'corner');
    expect(face.map((x) => x.meta.corner)).toEqual([1, 3, 5, 7]);
    // Flat field: no arrow. A pending move: a target trace.
    const flat = { ...p.nodes[1], improvement: [0, 0, 0] as Vec3 };
    expect(byRole(nodeTraces(p, flat, theme), 'improvement')).toEqual([]);
    const target = one(nodeTraces(p, p.nodes[1], theme, { target: [0.1, 0.2, 0.3] }), 'target') as Scatter3dTrace;
    expect([target.x[1], target.y[1], target.z[1]]).toEqual([0.1, 0.2, 0.3]);
  });

  test("colours are the payload's own", () => {
    const n = p.nodes[0];
    const t = nodeTraces(p, n, theme);
    const field = one(t, 'field') as Scatter3dTrace;
    expect(field.marker!.color).toEqual(n.field.samples.map((s) => s.colour));
    expect(field.x).toEqual(n.field.samples.map((s) => s.p[0]));
    expect(field.z).toEqual(n.field.samples.map((s) => s.p[2]));
    const marker = one(t, 'node') as Scatter3dTrace;
    expect(marker.marker!.color).toEqual([n.colour]);
    expect([marker.x[0], marker.y[0], marker.z[0]]).toEqual(n.position);
    const trail = one(t, 'trail') as Scatter3dTrace;
    expect(trail.marker!.color).toEqual(p.runs.map((r) => r.colour));
    expect(trail.x).toEqual(n.trail.map((s) => s.p[0]));
    // The cube's edges: 12, each from one corner to a neighbour.
    const cube = one(t, 'cube') as Scatter3dTrace;
    expect(cube.x.filter((v) => v === null)).toHaveLength(12);
    expect(cube.line!.color).toBe(theme.grid);
  });

  test('the legend: colorscale equals the scale stops, ticks and title from the payload', () => {
    const legend = one(nodeTraces(p, p.nodes[0], theme), 'legend') as Scatter3dTrace;
    const m = legend.marker!;
    expect(m.colorscale).toEqual(p.scale.stops);
    expect(m.colorscale).toEqual(colourScale().stops);
    expect([m.cmin, m.cmax]).toEqual(p.scale.domain);
    expect(m.showscale).toBe(true);
    expect(m.colorbar!.title.text).toBe('quality');
    expect(m.colorbar!.tickvals).toEqual([0, 0.5, 1]);
    expect(m.colorbar!.ticktext).toEqual(['0 poor', '0.5 fair', '1 good']);
    expect(m.opacity).toBe(0);
    // A scale over another domain is rescaled to plotly's [0, 1].
    expect(plotlyColorscale({ ...p.scale, domain: [0, 2], stops: [[0, '#000000'], [1, '#808080'], [2, '#ffffff']] })).toEqual([[0, '#000000'], [0.5, '#808080'], [1, '#ffffff']]);
  });

  test('corner lines run from the node toward each corner, length ∝ sub-weight, ending on the corner when nearer', () => {
    // At the centre every sub-weight is 1: 8 equal lines toward the 8 corners.
    const centre = p.nodes[1];
    const lines = byRole(nodeTraces(p, centre, theme), 'corner') as Scatter3dTrace[];
    expect(lines).toHaveLength(8);
    for (const l of lines) {
      const c = l.meta.corner!;
      const from = [l.x[0]!, l.y[0]!, l.z[0]!];
      const to = [l.x[1]!, l.y[1]!, l.z[1]!];
      expect(from).toEqual(centre.position);
      expect(dist(from, to)).toBeCloseTo(CORNER_LENGTH * 1, 12);
      // Collinear with the corner, on the near side: |p→to| + |to→corner| = |p→corner|.
      expect(dist(from, to) + dist(to, cornerOf(c))).toBeCloseTo(dist(from, cornerOf(c)), 12);
      expect(l.line!.width).toBeCloseTo(CORNER_WIDTH.base + CORNER_WIDTH.perWeight, 12);
    }
    // Off-centre: lengths follow the kernel's sub-weights; lines that would pass a corner end on it.
    const n = p.nodes[0];
    const s = cornerSubWeights(n.position);
    const off = byRole(nodeTraces(p, n, theme), 'corner') as Scatter3dTrace[];
    let capped = 0;
    let free = 0;
    for (const l of off) {
      const c = l.meta.corner!;
      expect(l.meta.subWeight).toBe(s[c]);
      const from = [l.x[0]!, l.y[0]!, l.z[0]!];
      const to = [l.x[1]!, l.y[1]!, l.z[1]!];
      const toCorner = dist(from, cornerOf(c));
      expect(dist(from, to) + dist(to, cornerOf(c))).toBeCloseTo(toCorner, 12);
      if (CORNER_LENGTH * s[c] >= toCorner) {
        expect(to).toEqual(cornerOf(c));
        capped++;
      } else {
        expect(dist(from, to) / s[c]).toBeCloseTo(CORNER_LENGTH, 12);
        free++;
      }
      expect(l.line!.width).toBeCloseTo(CORNER_WIDTH.base + CORNER_WIDTH.perWeight * s[c], 12);
    }
    expect(capped).toBeGreaterThan(0); // corner 5 = (1, 0, 1): the node sits near it
    expect(free).toBeGreaterThan(0);
    // The heaviest corner gets the widest line.
    const widest = off.reduce((a, b) => (b.line!.width > a.line!.width ? b : a));
    expect(widest.meta.corner).toBe(s.indexOf(Math.max(...s)));
    expect(cornerSegment([1, 0, 1], 5, 8)).toBeNull(); // on the corner: nothing to draw
    expect(cornerSegment([0.5, 0.5, 0.5], 0, 0)).toBeNull();
  });

  test('the improvement arrow points along the improvement, longer with the slope', () => {
    const n = p.nodes[0];
    const [shaft, head] = [one(nodeTraces(p, n, theme), 'improvement') as Scatter3dTrace, one(nodeTraces(p, n, theme), 'improvement-head')];
    const tip = [shaft.x[1]!, shaft.y[1]!, shaft.z[1]!];
    expect(dist(n.position, tip)).toBeCloseTo(improvementLength(n.slope), 12);
    expect(tip.map((v, i) => (v - n.position[i]) / improvementLength(n.slope))).toEqual([0.6, 0, 0.8].map((v) => expect.closeTo(v, 12)));
    expect(head.type).toBe('cone');
    expect(shaft.line!.color).toBe(theme.accent);
    expect(improvementLength(0)).toBeLessThan(improvementLength(0.3));
    expect(improvementLength(10)).toBe(0.42);
  });

  test('loss curves: training and validation per run, in the run colour', () => {
    const t = lossTraces(p);
    expect(t.map((x) => [x.meta.role, x.meta.runId])).toEqual([['train', 'run-1'], ['validation', 'run-1'], ['train', 'run-2'], ['validation', 'run-2']]);
    expect(t.map((x) => x.line.color)).toEqual([p.runs[0].colour, p.runs[0].colour, p.runs[1].colour, p.runs[1].colour]);
    expect([t[2].x, t[2].y]).toEqual([[1, 2], [2, 1.5]]);
    expect(t[1].line.dash).toBe('dot');
  });

  test('layouts take their colours from the theme; hover text stays literal', () => {
    const dark = themeFrom((name) => ({ '--jp-ui-font-color1': ' #eeeeee', '--jp-ui-font-color2': '#aaaaaa', '--jp-border-color1': '#444444', '--jp-ui-font-size1': '13px' })[name] ?? '');
    expect(dark).toMatchObject({ foreground: '#eeeeee', muted: '#aaaaaa', grid: '#444444', fontSize: 13, background: LIGHT.background, fontFamily: LIGHT.fontFamily });
    const scene = sceneLayout(p.nodes[0], dark);
    expect(scene.font.color).toBe('#eeeeee');
    expect(scene.scene.xaxis.gridcolor).toBe('#444444');
    expect(scene.scene.xaxis.ticktext).toEqual(['first layer', '', 'last layer']);
    expect(scene.scene.zaxis.title.text).toBe('z · factor');
    expect(scene.paper_bgcolor).toBe('rgba(0,0,0,0)');
    expect(scene.uirevision).toBe('learningRate');
    expect(lossLayout(dark).xaxis.gridcolor).toBe('#444444');
    expect(escapeText('<b>a & b</b>')).toBe('&lt;b&gt;a &amp; b&lt;/b&gt;');
    const hostile = { ...p.nodes[0], label: '<img src=x onerror=alert(1)>' };
    expect(one(nodeTraces(p, hostile, dark), 'node').hoverinfo).toBe('text');
    expect((one(nodeTraces(p, hostile, dark), 'node') as Scatter3dTrace).hovertext).toMatch(/^&lt;img src=x onerror=alert\(1\)&gt; at/);
  });

  test('colours between stops, the rating palette, readable text on colours', () => {
    const scale = p.scale;
    for (const [q, c] of scale.stops) expect(colourAt(scale, q)).toBe(c);
    expect(colourAt(scale, -1)).toBe(scale.stops[0][1]);
    expect(colourAt(scale, 2)).toBe(scale.stops[scale.stops.length - 1][1]);
    expect(colourAt({ ...scale, stops: [[0, '#000000'], [1, '#ffffff']] }, 0.5)).toBe('#808080');
    expect(ratingPalette(scale)).toEqual(scale.stops.map(([quality, colour]) => ({ quality, colour })));
    expect(textOn(qualityColour(0))).toBe('#ffffff'); // dark purple
    expect(textOn(qualityColour(1))).toBe('#000000'); // yellow
  });
});

describe('actions → kernel code', () => {
  const PREFIX = "(await import('chromatune')).act(";
  /** The call's arguments, read back as JSON: the code is one act() call and nothing else. */
  const args = (code: string): unknown[] => {
    expect(code.startsWith(PREFIX) && code.endsWith(')')).toBe(true);
    return JSON.parse(`[${code.slice(PREFIX.length, -1)}]`);
  };

  test('exact code for a rating and a move', () => {
    expect(actionCode('s1', rateAction('run-1/q1', 0.7))).toBe(`(await import('chromatune')).act("s1", {"kind":"rate","output":"run-1/q1","quality":0.7})`);
    expect(actionCode('s2', moveAction('rank', [0.25, 0.5, 1]))).toBe(`(await import('chromatune')).act("s2", {"kind":"move","node":"rank","position":[0.25,0.5,1]})`);
    expect(actionCode('s1', { kind: 'rate', output: 'o', colour: '#fde725' })).toBe(`(await import('chromatune')).act("s1", {"kind":"rate","output":"o","colour":"#fde725"})`);
    expect(describeAction(rateAction('run-1/q1', 0.7))).toBe('rating run-1/q1 as 0.70');
    expect(describeAction(moveAction('rank', [0.25, 0.5, 1]))).toBe('moving rank to (0.25, 0.50, 1.00)');
  });

  test('hostile ids stay data: JSON-escaped, one call, arguments read back unchanged', () => {
    const id = `s1", {}); require('child_process').execSync('touch /tmp/pwned'); ("`;
    const output = "o'); process.exit(1); //\n\u2028\u2029`${x}`\\";
    const code = actionCode(id, rateAction(output, 0.25));
    expect(code).toBe(`(await import('chromatune')).act(${JSON.stringify(id)}, {"kind":"rate","output":${JSON.stringify(output).replace('\u2028', '\\u2028').replace('\u2029', '\\u2029')},"quality":0.25})`);
    expect(code).not.toMatch(/[\n\u2028\u2029]/);
    expect(args(code)).toEqual([id, { kind: 'rate', output, quality: 0.25 }]);
    // And as JavaScript: evaluating the arguments yields the same values, no side effects.
    const evaluated = new Function(`return [${code.slice(PREFIX.length, -1)}]`)();
    expect(evaluated).toEqual([id, { kind: 'rate', output, quality: 0.25 }]);
    const move = actionCode('</script><script>alert(1)</script>', moveAction('rank"]', [0, 0.5, 1]));
    expect(args(move)).toEqual(['</script><script>alert(1)</script>', { kind: 'move', node: 'rank"]', position: [0, 0.5, 1] }]);
  });

  test('only the fields act() reads are sent; bad actions are refused before reaching the kernel', () => {
    const extra = { kind: 'rate', output: 'o', quality: 0.5, toString: 'x', __proto__: { polluted: true }, code: 'process.exit()' } as unknown as SessionAction;
    expect(checkAction(extra)).toEqual({ kind: 'rate', output: 'o', quality: 0.5 });
    expect(args(actionCode('s1', extra))[1]).toEqual({ kind: 'rate', output: 'o', quality: 0.5 });
    expect(() => rateAction('o', 1.5)).toThrow('quality must be in [0, 1], got 1.5');
    expect(() => rateAction('o', NaN)).toThrow('quality must be in [0, 1], got null');
    expect(() => moveAction('rank', [0, 0.5, 2])).toThrow('position must be [x, y, z] with each in [0, 1], got [0,0.5,2]');
    expect(() => moveAction('rank', [0, 0.5] as unknown as Vec3)).toThrow('position must be [x, y, z]');
    expect(() => checkAction({ kind: 'delete' } as unknown as SessionAction)).toThrow('unknown action {"kind":"delete"}; kinds: rate, move');
    expect(() => checkAction({ kind: 'rate', output: 'o', colour: 'red; process.exit()' })).toThrow("colour must be '#rrggbb'");
    expect(() => actionCode('', rateAction('o', 0.5))).toThrow('session id must be a non-empty string');
    expect(() => actionCode(3 as unknown as string, rateAction('o', 0.5))).toThrow('session id must be a non-empty string, got 3');
  });

  test("the kernel's answer: the payload bundle, or the error it raised", () => {
    const msg = (msg_type: string, content: Record<string, unknown>) => ({ header: { msg_type }, content });
    const bundle = { [MIME_TYPE]: fixture(), 'text/plain': 'ChromaTune session' };

    const ok = new ActionAnswer();
    ok.add(msg('status', { execution_state: 'busy' }));
    ok.add(msg('stream', { name: 'stderr', text: 'a library warning\n' })); // logging is not failing
    ok.add(msg('execute_result', { data: bundle, metadata: {}, execution_count: 3 }));
    expect(ok.result('ok')).toEqual({ ok: true, bundle });

    const raised = new ActionAnswer();
    raised.add(msg('error', { ename: 'RangeError', evalue: 'no ChromaTune session "s9" in this kernel', traceback: [] }));
    expect(raised.result('error')).toEqual({ ok: false, message: 'the kernel could not apply it: RangeError: no ChromaTune session "s9" in this kernel' });

    // Kernels that print exceptions to stderr instead of sending an error message.
    const printed = new ActionAnswer();
    printed.add(msg('stream', { name: 'stderr', text: '\u001b[31mRangeError: no output "x"\u001b[0m\n' }));
    expect(printed.result('ok')).toEqual({ ok: false, message: 'the kernel could not apply it: RangeError: no output "x"' });

    const silent = new ActionAnswer();
    silent.add(msg('execute_result', { data: { 'text/plain': '42' } }));
    expect(silent.result('ok')).toEqual({ ok: false, message: `the kernel's answer had no ${MIME_TYPE} display (does this kernel's chromatune export act()?)` });
    expect(new ActionAnswer().result('aborted')).toEqual({ ok: false, message: 'the kernel could not apply it (reply status aborted)' });
  });
});
