/** Folders that ship with the project, found from the compiled (dist/) or source location alike. */
import * as fs from 'fs';
import * as path from 'path';

let root: string | undefined;

export function projectRoot(): string {
  if (root) return root;
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg) && JSON.parse(fs.readFileSync(pkg, 'utf8')).name === 'chromatune') return (root = dir);
    if (path.dirname(dir) === dir) throw new Error(`cannot find the chromatune project folder above ${__dirname}`);
  }
}

export const projectPath = (...parts: string[]): string => path.join(projectRoot(), ...parts);
