/**
 * What makes `import { … } from 'chromatune'` work in notebooks. tslab resolves a cell's imports from
 * the notebook's folder upward and type-checks them with Node10 resolution (no "exports" field, no
 * self-reference), so the project gets a link node_modules/chromatune → dist/kernel: Node and
 * TypeScript both find index.js and index.d.ts through it, deep imports work
 * ('chromatune/display/mime'), and the files it resolves to are the very ones the kernel loaded. One
 * module instance matters: the display sink the kernel installs must be the one notebook code calls.
 */
import * as fs from 'fs';
import * as path from 'path';
import { projectRoot } from '../paths';

export type LinkState = 'installed' | 'linked' | 'present' | 'taken';

/**
 * Makes sure the link exists. "installed": the library is itself a package inside node_modules, found by
 * name already; "present": the link was there; "linked": it was made; "taken": something else holds the
 * name, left alone.
 */
export function linkLibrary(root: string = projectRoot()): LinkState {
  if (path.basename(path.dirname(root)) === 'node_modules') return 'installed';
  const link = path.join(root, 'node_modules', 'chromatune');
  const target = path.join(root, 'dist', 'kernel');
  const found = existingLink(link, target);
  if (found === 'present' || found === 'taken') return found;
  if (found === 'stale') fs.rmSync(link, { force: true }); // the project moved: point it here again
  fs.mkdirSync(path.dirname(link), { recursive: true });
  try {
    // Relative, so that the project folder can move; a junction where Windows refuses symlinks.
    fs.symlinkSync(path.relative(path.dirname(link), target), link, 'junction');
    return 'linked';
  } catch (e) {
    // Kernels started together (notebooks executed in parallel on a fresh clone) race to make it; the
    // one that loses finds the other's link, which is as good as its own.
    if ((e as NodeJS.ErrnoException).code === 'EEXIST' && existingLink(link, target) === 'present') return 'present';
    throw e;
  }
}

/** What holds the name now: nothing, our link, a link elsewhere, or something that is not a link. */
function existingLink(link: string, target: string): 'none' | 'present' | 'stale' | 'taken' {
  const stat = fs.lstatSync(link, { throwIfNoEntry: false });
  if (!stat) return 'none';
  if (!stat.isSymbolicLink()) return 'taken';
  return path.resolve(path.dirname(link), fs.readlinkSync(link)) === target ? 'present' : 'stale';
}
