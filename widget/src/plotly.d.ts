/** The parts of plotly.js the view calls (the dist bundle ships no types). */
declare module 'plotly.js-gl3d-dist-min' {
  export interface PlotlyStatic {
    react(root: HTMLElement, data: unknown[], layout?: unknown, config?: unknown): Promise<HTMLElement>;
    purge(root: HTMLElement): void;
    Plots: { resize(root: HTMLElement): Promise<void> };
  }
  const Plotly: PlotlyStatic;
  export default Plotly;
}
