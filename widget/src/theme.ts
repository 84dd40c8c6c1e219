/**
 * Colours and fonts of plotly's layouts, read from JupyterLab's --jp-* CSS variables so that the plots
 * follow the light and dark themes. plotly cannot use CSS variables itself: the view resolves them
 * (getComputedStyle) and passes the values here.
 */

export interface Theme {
  /** Text and axis lines. */
  foreground: string;
  /** Secondary text: tick labels, notes. */
  muted: string;
  /** Grid lines and the cube's edges. */
  grid: string;
  /** The output area's background (plotly's own backgrounds stay transparent over it). */
  background: string;
  /** The improvement arrow. */
  accent: string;
  fontFamily: string;
  fontSize: number;
}

/** JupyterLab's light theme, for hosts without the variables. */
export const LIGHT: Theme = {
  foreground: '#212121',
  muted: '#616161',
  grid: '#bdbdbd',
  background: '#ffffff',
  accent: '#d1495b',
  fontFamily: 'system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif',
  fontSize: 12,
};

/** The variables each field is read from, first one set wins. */
const THEME_VARIABLES: Record<Exclude<keyof Theme, 'accent'>, string[]> = {
  foreground: ['--jp-ui-font-color1', '--jp-content-font-color1'],
  muted: ['--jp-ui-font-color2', '--jp-content-font-color2'],
  grid: ['--jp-border-color1', '--jp-border-color2'],
  background: ['--jp-layout-color0', '--jp-layout-color1'],
  fontFamily: ['--jp-ui-font-family'],
  fontSize: ['--jp-ui-font-size1'],
};

/** A theme from a variable lookup (e.g. getComputedStyle(node).getPropertyValue), defaults where unset. */
export function themeFrom(lookup: (name: string) => string, fallback: Theme = LIGHT): Theme {
  const read = (names: string[]): string | undefined => names.map((n) => lookup(n)?.trim()).find((v) => !!v);
  const size = parseFloat(read(THEME_VARIABLES.fontSize) ?? '');
  return {
    foreground: read(THEME_VARIABLES.foreground) ?? fallback.foreground,
    muted: read(THEME_VARIABLES.muted) ?? fallback.muted,
    grid: read(THEME_VARIABLES.grid) ?? fallback.grid,
    background: read(THEME_VARIABLES.background) ?? fallback.background,
    accent: fallback.accent,
    fontFamily: read(THEME_VARIABLES.fontFamily) ?? fallback.fontFamily,
    fontSize: Number.isFinite(size) && size > 0 ? size : fallback.fontSize,
  };
}
