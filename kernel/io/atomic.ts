/**
 * Atomic file and folder replacement, so that a crash or a concurrent reader never sees a
 * half-written checkpoint, adapter or model folder.
 */
import * as fs from 'fs';
import * as path from 'path';
import { randomBytes } from 'crypto';

/** Unique suffix: pid tells whose leftover it is, random bytes avoid collisions within a process. */
function tmpSuffix(): string {
  return `${process.pid}-${randomBytes(6).toString('hex')}`;
}

/** fsync a folder so that a rename inside it survives a power loss; not supported everywhere (Windows). */
function fsyncDir(dir: string): void {
  let fd = -1;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    // Best effort: the data itself is already fsynced, only the rename's durability is at stake.
  } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
}

/**
 * Write `data` to `file` atomically: write a temp file in the same folder (rename is only atomic
 * within one file system), fsync it, then rename it over `file`. On failure the temp is removed and
 * any previous `file` is untouched. `data` may be a list of chunks, to avoid concatenating large
 * buffers (e.g. model weights) in memory.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array | readonly Uint8Array[]): void {
  const tmp = `${file}.tmp-${tmpSuffix()}`;
  let fd = -1;
  try {
    fd = fs.openSync(tmp, 'wx'); // 'wx': never clobber someone else's temp
    const chunks = typeof data === 'string' ? [Buffer.from(data, 'utf8')] : data instanceof Uint8Array ? [data] : data;
    for (const chunk of chunks) {
      let off = 0;
      while (off < chunk.byteLength) off += fs.writeSync(fd, chunk, off, chunk.byteLength - off);
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = -1;
    fs.renameSync(tmp, file);
  } catch (err) {
    if (fd >= 0) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fsyncDir(path.dirname(path.resolve(file)));
}

/** Whether process `pid` is running (EPERM: running as another user). */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A process that dies between replaceDirAtomic's two renames leaves no `dir`, only its previous
 * contents in `.<base>.old-<pid>-<random>`; without this, a resume would find nothing and start over
 * while the real checkpoint sits orphaned. If `dir` is missing, renames the newest such backup back
 * (backups of a live process other than this one are skipped: that process is between its renames and
 * restores or replaces `dir` itself). Returns whether it restored one.
 */
export function restoreOrphanedDir(dir: string): boolean {
  const abs = path.resolve(dir);
  if (fs.existsSync(abs)) return false;
  const parent = path.dirname(abs);
  const prefix = `.${path.basename(abs)}.old-`;
  let names: string[];
  try {
    names = fs.readdirSync(parent);
  } catch {
    return false; // no parent folder: nothing was ever written here
  }
  const orphans = names
    .filter((n) => n.startsWith(prefix))
    .map((n) => ({ n, pid: /^(\d+)-[0-9a-f]+$/.exec(n.slice(prefix.length))?.[1] }))
    .filter(({ pid }) => pid !== undefined && (Number(pid) === process.pid || !isRunning(Number(pid))))
    .map(({ n }) => ({ file: path.join(parent, n), mtime: fs.statSync(path.join(parent, n)).mtimeMs }))
    .sort((a, b) => b.mtime - a.mtime || (a.file < b.file ? 1 : -1));
  if (orphans.length === 0) return false;
  fs.renameSync(orphans[0].file, abs);
  fsyncDir(parent);
  return true;
}

/**
 * Replace folder `dir` with one produced by `build(tmpDir)`. `build` fills a sibling temp folder;
 * then the old folder is renamed to a backup, the temp renamed to `dir`, and the backup removed.
 * POSIX cannot atomically rename over a non-empty folder, so between the two renames `dir` is briefly
 * absent: a reader sees the old folder, no folder, or the new one, never a mix. If `build` (or the
 * swap) fails, the temp is removed and the old folder is kept (restored from the backup if needed).
 */
export function replaceDirAtomic(dir: string, build: (tmpDir: string) => void): void {
  const abs = path.resolve(dir);
  const parent = path.dirname(abs);
  const base = path.basename(abs);
  fs.mkdirSync(parent, { recursive: true });
  restoreOrphanedDir(abs); // so that the swap below retires it instead of leaving it orphaned
  const tmp = path.join(parent, `.${base}.tmp-${tmpSuffix()}`);
  fs.mkdirSync(tmp);
  try {
    build(tmp);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  if (!fs.existsSync(abs)) {
    try {
      fs.renameSync(tmp, abs);
    } catch (err) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw err;
    }
    fsyncDir(parent);
    return;
  }
  const backup = path.join(parent, `.${base}.old-${tmpSuffix()}`);
  try {
    fs.renameSync(abs, backup);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  try {
    fs.renameSync(tmp, abs);
  } catch (err) {
    fs.renameSync(backup, abs); // put the old folder back before reporting
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
  fsyncDir(parent);
  fs.rmSync(backup, { recursive: true, force: true });
}
