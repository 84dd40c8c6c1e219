/**
 * The `chromatune` Jupyter kernel: `node dist/kernel/notebook/main.js <connection file>`, as the kernel
 * spec that `npm run kernel:install` writes runs it. TypeScript cells, compiled and run by tslab.
 */
import { NotebookKernel } from './kernel';
import { linkLibrary } from './libraryLink';
import { logToJupyter, NotebookServer } from './server';

export function startKernel(connectionFile: string): NotebookServer {
  const link = linkLibrary();
  if (link === 'taken') logToJupyter("chromatune kernel: node_modules/chromatune is not the project's link; `import from 'chromatune'` uses it as it is");
  const kernel = new NotebookKernel(process.cwd());
  const server = new NotebookServer(kernel, connectionFile);
  process.on('SIGINT', () => kernel.interrupt());
  // Errors from callbacks a cell left behind (timers, unawaited promises) show in the cell that is current, as tslab does.
  process.on('uncaughtException', (err) => console.error('Uncaught exception:', err));
  process.on('unhandledRejection', (reason) => console.error('Unhandled promise rejection:', reason));
  void server.init();
  return server;
}

/** Accepts tslab's `--config-path FILE` as well as the file alone. */
function connectionFileArg(argv: string[]): string | undefined {
  const i = argv.indexOf('--config-path');
  return i >= 0 ? argv[i + 1] : argv.find((a) => !a.startsWith('-'));
}

if (require.main === module) {
  const file = connectionFileArg(process.argv.slice(2));
  if (!file) {
    process.stderr.write('usage: node dist/kernel/notebook/main.js <connection file>\n');
    process.exit(2);
  }
  startKernel(file);
}
