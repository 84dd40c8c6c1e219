// Extra build settings for @jupyter/builder (widget/package.json jupyterlab.webpackConfig).
// plotly's chunk (about 1.6 MB) is over rspack's size hint by design: it loads with the first
// ChromaTune view, not with JupyterLab, so the hint is noise.
module.exports = {
  performance: { hints: false },
};
