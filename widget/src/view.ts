/**
 * The ChromaTune view: a Lumino widget rendering one payload. Left, the selected parameter node's
 * 3-D scene (plotly gl3d) with its legend, the node selector and x/y/z sliders to move it; right,
 * the outputs coloured by quality (click one to rate it on the scale) and the outlier inputs with
 * their reasons; below, the loss curves. A person's action runs in the notebook's own kernel and the
 * answer re-renders the view in place and updates the output, so the saved notebook holds the new
 * state.
 */
import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import type { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';
import type { PlotlyStatic } from 'plotly.js-gl3d-dist-min';
import { describeAction, moveAction, rateAction, type ActionResult, type SessionAction } from './action';
import { ratingPalette, textOn } from './colour';
import { applyAction, type KernelLocator } from './kernel';
import { MIME_TYPE, validatePayload, viewMessage, type ChromaPayload, type NodePayload, type Vec3 } from './payload';
import { themeFrom, type Theme } from './theme';
import { fmt, fmtVec, lossLayout, lossTraces, nodeTraces, sceneLayout } from './traces';

/** plotly is 1.75 MB: loaded with the first view, not with JupyterLab. */
let plotlyModule: Promise<PlotlyStatic> | null = null;
const loadPlotly = (): Promise<PlotlyStatic> =>
  (plotlyModule ??= import('plotly.js-gl3d-dist-min').then((m) => ((m as { default?: PlotlyStatic }).default ?? (m as unknown as PlotlyStatic))));

const PLOT_CONFIG = { displaylogo: false, responsive: false, displayModeBar: 'hover', modeBarButtonsToRemove: ['resetCameraLastSave3d'] };

/** Outputs listed, newest run first; outliers listed, worst first. */
const MAX_OUTPUTS = 40;
const MAX_OUTLIERS = 12;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, className = '', text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** A small swatch of a quality's colour with its value, readable on it. */
function chip(quality: number, colour: string, title?: string): HTMLElement {
  const c = el('span', 'ct-chip', quality.toFixed(2));
  c.style.background = colour;
  c.style.color = textOn(colour);
  if (title) c.title = title;
  return c;
}

/** Effective settings in one line: a single value, or the range over groups. */
function valuesLine(values: Record<string, number>): string {
  const v = Object.entries(values);
  if (!v.length) return '';
  if (v.length <= 2) return v.map(([k, x]) => `${k} ${fmt(x, 3)}`).join(', ');
  const xs = v.map(([, x]) => x);
  const [lo, hi] = [Math.min(...xs), Math.max(...xs)];
  return lo === hi ? `${fmt(lo, 3)} in all ${v.length} groups` : `${fmt(lo, 3)} … ${fmt(hi, 3)} over ${v.length} groups`;
}

export class ChromaView extends Widget implements IRenderMime.IRenderer {
  private readonly locate: KernelLocator;
  private model: IRenderMime.IMimeModel | null = null;
  private payload: ChromaPayload | null = null;
  /** The payload as JSON: an output area re-renders every output when one changes; same data, nothing to do. */
  private payloadJson = '';
  private selected: string | null = null;
  /** Where the sliders would move the selected node; null while they sit at its position. */
  private target: Vec3 | null = null;
  private ratingOutput: string | null = null;
  private busy = false;
  private plotly: PlotlyStatic | null = null;
  private readonly plotted = new Set<HTMLElement>();
  private themeObserver: MutationObserver | null = null;
  private resizeObserver: ResizeObserver | null = null;
  private resizeFrame = 0;

  private readonly message = el('div', 'ct-message');
  private readonly body = el('div', 'ct-body');
  private readonly header = el('div', 'ct-header');
  private readonly status = el('div', 'ct-status');
  private readonly nodeTabs = el('div', 'ct-node-tabs');
  private readonly scene = el('div', 'ct-scene');
  private readonly nodeInfo = el('div', 'ct-node-info');
  private readonly mover = el('div', 'ct-move');
  private readonly outputs = el('div', 'ct-outputs');
  private readonly outliers = el('div', 'ct-outliers');
  private readonly loss = el('div', 'ct-loss');
  private readonly lossPlot = el('div', 'ct-loss-plot');

  constructor(_options: IRenderMime.IRendererOptions, locate: KernelLocator) {
    super();
    this.locate = locate;
    this.addClass('ct-view');
    this.node.dataset.mimeType = MIME_TYPE;
    this.message.setAttribute('role', 'alert');
    this.status.setAttribute('aria-live', 'polite');
    const left = el('div', 'ct-left');
    left.append(this.nodeTabs, this.scene, this.mover, this.nodeInfo);
    const right = el('div', 'ct-right');
    right.append(this.outputs, this.outliers);
    const main = el('div', 'ct-main');
    main.append(left, right);
    this.loss.append(el('div', 'ct-h', 'Loss'), this.lossPlot);
    this.body.append(this.header, this.status, main, this.loss);
    this.node.append(this.message, this.body);
  }

  /** Renders the model's payload, or a readable message when it cannot be rendered. */
  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    this.model = model;
    const data = model.data[MIME_TYPE];
    const json = JSON.stringify(data) ?? '';
    if (this.payload && json === this.payloadJson) return;
    const v = validatePayload(data);
    if (!v.ok) return this.showMessage(v.message);
    this.payloadJson = json;
    await this.display(v.payload);
  }

  override dispose(): void {
    if (this.isDisposed) return;
    this.themeObserver?.disconnect();
    this.resizeObserver?.disconnect();
    cancelAnimationFrame(this.resizeFrame);
    this.purge();
    super.dispose();
  }

  protected override onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    // Rendered before attachment, plotly fell back to its default width.
    this.scheduleResize();
    this.themeObserver = new MutationObserver(() => requestAnimationFrame(() => void this.drawPlots()));
    this.themeObserver.observe(document.body, { attributes: true, attributeFilter: ['data-jp-theme-name', 'data-jp-theme-light'] });
    if (typeof ResizeObserver !== 'undefined') {
      this.resizeObserver = new ResizeObserver(() => this.scheduleResize());
      this.resizeObserver.observe(this.node);
    }
  }

  protected override onBeforeDetach(msg: Message): void {
    this.themeObserver?.disconnect();
    this.resizeObserver?.disconnect();
    super.onBeforeDetach(msg);
  }

  protected override onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.scheduleResize();
  }

  protected override onResize(msg: Widget.ResizeMessage): void {
    super.onResize(msg);
    this.scheduleResize();
  }

  /* ------------------------------------------------------------ states */

  private showMessage(text: string): void {
    this.purge();
    this.payload = null;
    this.payloadJson = '';
    this.message.textContent = text;
    this.node.classList.add('ct-invalid');
  }

  private setStatus(text: string, kind: 'info' | 'busy' | 'error' = 'info'): void {
    this.status.textContent = text;
    this.status.className = `ct-status ct-status-${kind}`;
  }

  private async display(payload: ChromaPayload): Promise<void> {
    const previous = this.payload;
    this.payload = payload;
    this.message.textContent = '';
    this.node.classList.remove('ct-invalid');
    if (!payload.nodes.some((n) => n.name === this.selected)) this.selected = payload.nodes[0]?.name ?? null;
    // A new state of the session: sliders start again from the node's position.
    if (previous !== payload) this.target = null;
    this.renderHeader(payload);
    this.renderNodeTabs(payload);
    this.renderNode();
    this.renderOutputs(payload);
    this.renderOutliers(payload);
    await this.drawPlots();
  }

  private get selectedNode(): NodePayload | null {
    return this.payload?.nodes.find((n) => n.name === this.selected) ?? null;
  }

  /* ------------------------------------------------------------- plots */

  private theme(): Theme {
    const style = getComputedStyle(this.node);
    return themeFrom((name) => style.getPropertyValue(name));
  }

  private drawing: Promise<void> | null = null;
  private redraw = false;

  /** Draws the plots; calls while a draw runs (a slider dragged) coalesce into one more draw. */
  private drawPlots(): Promise<void> {
    if (this.drawing) {
      this.redraw = true;
      return this.drawing;
    }
    this.drawing = (async () => {
      do {
        this.redraw = false;
        await this.drawOnce();
      } while (this.redraw && !this.isDisposed);
    })().finally(() => {
      this.drawing = null;
    });
    return this.drawing;
  }

  private async drawOnce(): Promise<void> {
    const payload = this.payload;
    if (!payload || this.isDisposed) return;
    let plotly: PlotlyStatic;
    try {
      plotly = this.plotly ??= await loadPlotly();
    } catch (e) {
      this.setStatus(viewMessage(`plotly could not be loaded: ${(e as Error).message}`), 'error');
      return;
    }
    if (this.isDisposed || this.payload !== payload) return;
    const theme = this.theme();
    const node = this.selectedNode;
    try {
      if (node) {
        await plotly.react(this.scene, nodeTraces(payload, node, theme, { target: this.target ?? undefined }), sceneLayout(node, theme), PLOT_CONFIG);
        this.plotted.add(this.scene);
      } else {
        this.purgeOne(this.scene);
        this.scene.textContent = 'This session has no parameter nodes.';
      }
      const curves = lossTraces(payload);
      this.loss.hidden = curves.length === 0;
      if (curves.length) {
        await plotly.react(this.lossPlot, curves, lossLayout(theme), PLOT_CONFIG);
        this.plotted.add(this.lossPlot);
      } else this.purgeOne(this.lossPlot);
    } catch (e) {
      this.setStatus(viewMessage(`the plots could not be drawn: ${(e as Error).message}`), 'error');
    }
  }

  private scheduleResize(): void {
    cancelAnimationFrame(this.resizeFrame);
    this.resizeFrame = requestAnimationFrame(() => {
      if (!this.plotly || this.isDisposed || !this.isAttached) return;
      for (const div of this.plotted) this.plotly.Plots.resize(div).catch(() => undefined); // hidden plots refuse; they resize when shown
    });
  }

  private purgeOne(div: HTMLElement): void {
    if (this.plotted.delete(div)) this.plotly?.purge(div);
    div.textContent = '';
  }

  /** Releases plotly's WebGL contexts and listeners. */
  private purge(): void {
    for (const div of [...this.plotted]) this.purgeOne(div);
  }

  /* ------------------------------------------------------------ panels */

  private renderHeader(p: ChromaPayload): void {
    const best = p.runs.reduce<ChromaPayload['runs'][number] | null>((b, r) => (!b || r.quality > b.quality ? r : b), null);
    const rated = p.outputs.filter((o) => o.rated).length;
    const outliers = p.inputs.filter((i) => i.outlier).length;
    const sub = el('div', 'ct-sub');
    sub.append(`${p.runs.length} run${p.runs.length === 1 ? '' : 's'}`);
    if (best) sub.append(` · best ${best.id} `, chip(best.quality, best.colour, `quality of ${best.id}`));
    else sub.append(' · no runs yet');
    sub.append(` · ${p.outputs.length} outputs (${rated} rated) · ${outliers} outlier input${outliers === 1 ? '' : 's'}`);
    const title = el('div', 'ct-title', 'ChromaTune session');
    title.title = `session ${p.session.id}`;
    this.header.replaceChildren(title, sub);
  }

  private renderNodeTabs(p: ChromaPayload): void {
    this.nodeTabs.replaceChildren(
      ...p.nodes.map((n) => {
        const b = el('button', `ct-node-tab${n.name === this.selected ? ' ct-selected' : ''}`);
        b.type = 'button';
        b.dataset.node = n.name;
        b.setAttribute('aria-pressed', String(n.name === this.selected));
        b.title = `${n.label}: quality ${n.quality.mean.toFixed(3)} ± ${n.quality.sd.toFixed(3)}`;
        const dot = el('span', 'ct-dot');
        dot.style.background = n.colour;
        b.append(dot, n.label);
        b.onclick = () => {
          if (this.selected === n.name) return;
          this.selected = n.name;
          this.target = null;
          this.renderNodeTabs(p);
          this.renderNode();
          void this.drawPlots();
        };
        return b;
      }),
    );
  }

  private renderNode(): void {
    const node = this.selectedNode;
    this.mover.replaceChildren();
    this.nodeInfo.replaceChildren();
    if (!node) return;
    const at = this.target ?? node.position;
    const values: number[] = [...at];
    const sliders = node.axes.map((axis, i) => {
      const row = el('label', 'ct-axis');
      const input = el('input');
      input.type = 'range';
      input.min = '0';
      input.max = '1';
      input.step = '0.01';
      input.value = String(at[i]);
      input.dataset.axis = 'xyz'[i];
      input.setAttribute('aria-label', `${node.label}: ${axis.name}`);
      const value = el('span', 'ct-axis-value', at[i].toFixed(2));
      input.oninput = () => {
        values[i] = Number(input.value);
        value.textContent = values[i].toFixed(2);
        this.target = [values[0], values[1], values[2]];
        apply.disabled = reset.disabled = false;
        void this.drawPlots();
      };
      row.append(el('span', 'ct-axis-name', `${'xyz'[i]} · ${axis.name}`), el('span', 'ct-axis-end', axis.low), input, el('span', 'ct-axis-end', axis.high), value);
      return row;
    });
    const apply = el('button', 'ct-apply', 'Move node');
    apply.type = 'button';
    apply.disabled = this.target === null;
    apply.onclick = () => {
      if (this.target) void this.apply(moveAction(node.name, this.target));
    };
    const reset = el('button', 'ct-reset', 'Reset');
    reset.type = 'button';
    reset.disabled = this.target === null;
    reset.onclick = () => {
      this.target = null;
      this.renderNode();
      void this.drawPlots();
    };
    const buttons = el('div', 'ct-move-buttons');
    buttons.append(apply, reset);
    this.mover.append(...sliders, buttons);

    const head = el('div', 'ct-node-head');
    head.append(el('b', '', node.label), ' ', chip(node.quality.mean, node.colour, `quality ${node.quality.mean.toFixed(3)} ± ${node.quality.sd.toFixed(3)}`), ` ± ${node.quality.sd.toFixed(2)}`);
    const settings = valuesLine(node.values);
    this.nodeInfo.append(
      head,
      el('div', 'ct-note', `at ${fmtVec(node.position)} · slope ${fmt(node.slope, 2)}${settings ? ` · settings: ${settings}` : ''}`),
      el('div', 'ct-note', 'Lines toward the corners: sub-weights · red arrow: toward higher quality · dashed: runs so far'),
    );
  }

  private renderOutputs(p: ChromaPayload): void {
    const order = new Map(p.runs.map((r, i) => [r.id, i]));
    const shown = p.outputs
      .map((o, i) => ({ o, i }))
      .sort((a, b) => (order.get(b.o.runId) ?? -1) - (order.get(a.o.runId) ?? -1) || a.i - b.i)
      .slice(0, MAX_OUTPUTS)
      .map(({ o }) => o);
    const rated = p.outputs.filter((o) => o.rated).length;
    const h = el('div', 'ct-h', 'Outputs');
    h.append(el('span', 'ct-count', `${p.outputs.length} · ${rated} rated${p.outputs.length > shown.length ? ` · newest ${shown.length}` : ''} · click one to rate it`));
    if (!shown.length) {
      this.outputs.replaceChildren(h, el('div', 'ct-note', 'No outputs yet: a run samples them.'));
      return;
    }
    const list = el('ul', 'ct-output-list');
    for (const o of shown) {
      const li = el('li', `ct-output${o.rated ? ' ct-rated' : ''}`);
      li.dataset.output = o.id;
      li.style.borderLeftColor = o.colour;
      const row = el('button', 'ct-output-row');
      row.type = 'button';
      row.title = `${o.id}: quality ${o.quality.toFixed(3)}${o.rated ? ` (rated; automatic ${o.autoQuality.toFixed(3)})` : ' (automatic)'} · reference: ${o.reference}`;
      row.append(chip(o.quality, o.colour));
      if (o.rated) row.append(el('span', 'ct-rated-mark', '★'));
      const text = el('span', 'ct-output-text');
      text.append(el('span', 'ct-question', o.question), el('span', 'ct-answer', o.text || '(empty)'));
      row.append(text, el('span', 'ct-id', o.runId));
      row.onclick = () => {
        this.ratingOutput = this.ratingOutput === o.id ? null : o.id;
        this.renderOutputs(p);
      };
      li.append(row);
      if (this.ratingOutput === o.id) li.append(this.palette(p, o.id, o.quality));
      list.append(li);
    }
    this.outputs.replaceChildren(h, list);
  }

  /** The scale's colours to pick a rating from. */
  private palette(p: ChromaPayload, outputId: string, current: number): HTMLElement {
    const box = el('div', 'ct-palette');
    box.setAttribute('role', 'group');
    box.setAttribute('aria-label', `rate ${outputId}`);
    const [lowTick, highTick] = [p.scale.ticks[0]?.[1] ?? '', p.scale.ticks[p.scale.ticks.length - 1]?.[1] ?? ''];
    box.append(el('span', 'ct-palette-end', lowTick));
    for (const { quality, colour } of ratingPalette(p.scale)) {
      const b = el('button', `ct-swatch${Math.abs(quality - current) < 0.05 ? ' ct-current' : ''}`);
      b.type = 'button';
      b.style.background = colour;
      b.title = `quality ${quality.toFixed(2)}`;
      b.dataset.quality = String(quality);
      b.onclick = () => void this.apply(rateAction(outputId, quality));
      box.append(b);
    }
    box.append(el('span', 'ct-palette-end', highTick));
    return box;
  }

  private renderOutliers(p: ChromaPayload): void {
    const h = el('div', 'ct-h', 'Outlier inputs');
    if (!p.inputs.length) {
      this.outliers.replaceChildren(h, el('div', 'ct-note', 'Inputs not judged yet.'));
      return;
    }
    const flagged = p.inputs.filter((i) => i.outlier).sort((a, b) => b.score - a.score);
    h.append(el('span', 'ct-count', `${flagged.length} of ${p.inputs.length}`));
    if (!flagged.length) {
      this.outliers.replaceChildren(h, el('div', 'ct-note', `None of ${p.inputs.length} inputs flagged.`));
      return;
    }
    const list = el('ul', 'ct-outlier-list');
    for (const i of flagged.slice(0, MAX_OUTLIERS)) {
      const li = el('li', 'ct-outlier');
      li.style.borderLeftColor = i.colour;
      li.dataset.input = String(i.index);
      const top = el('div', 'ct-outlier-head');
      top.append(chip(i.quality, i.colour, `quality ${i.quality.toFixed(3)}`), el('span', 'ct-id', i.id ?? `#${i.index}`), el('span', 'ct-score', `score ${fmt(i.score, 3)}`));
      const qa = el('div', 'ct-output-text');
      qa.append(el('span', 'ct-question', i.question), el('span', 'ct-answer', i.answer));
      const reasons = el('ul', 'ct-reasons');
      reasons.append(...i.reasons.map((r) => el('li', '', r)));
      li.append(top, qa, reasons);
      list.append(li);
    }
    this.outliers.replaceChildren(h, list);
    if (flagged.length > MAX_OUTLIERS) this.outliers.append(el('div', 'ct-note', `worst ${MAX_OUTLIERS} of ${flagged.length}`));
  }

  /* -------------------------------------------------------- interaction */

  /** Applies an action in the kernel and shows the session it answers with. */
  private async apply(action: SessionAction): Promise<void> {
    const payload = this.payload;
    if (!payload || this.busy) return;
    const kernel = this.locate(this);
    if (!kernel) {
      this.setStatus(viewMessage('no running kernel for this output: open its notebook with the kernel that ran it, then try again'), 'error');
      return;
    }
    this.busy = true;
    this.node.classList.add('ct-busy');
    this.setStatus(`${describeAction(action)} …`, 'busy');
    let result: ActionResult;
    try {
      result = await applyAction(kernel, payload.session.id, action);
    } catch (e) {
      result = { ok: false, message: `the request failed: ${(e as Error).message}` };
    } finally {
      this.busy = false;
      this.node.classList.remove('ct-busy');
    }
    if (this.isDisposed) return;
    if (!result.ok) {
      this.setStatus(viewMessage(result.message), 'error');
      return;
    }
    const v = validatePayload(result.bundle[MIME_TYPE]);
    if (!v.ok) {
      this.setStatus(v.message, 'error');
      return;
    }
    this.ratingOutput = null;
    this.setStatus(`${describeAction(action)}: done`, 'info');
    // Updating the output's data saves the new state with the notebook; an output area re-renders
    // this same widget from it (renderModel). Hosts that do not are rendered here.
    const data = { ...result.bundle } as IRenderMime.IMimeModel['data'];
    const before = this.payload;
    try {
      this.model?.setData({ data });
    } catch {
      // A read-only model: the view still shows the new state.
    }
    if (this.payload === before && !this.isDisposed) {
      this.payloadJson = JSON.stringify(v.payload);
      await this.display(v.payload);
    }
  }
}
