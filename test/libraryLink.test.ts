/**
 * The link node_modules/chromatune → dist/kernel that the notebook kernel makes at start, so that
 * notebooks import 'chromatune': made relative, kept, re-pointed when stale, never over something
 * else, and safe when two kernels start at the same moment (notebooks executed in parallel).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { linkLibrary } from '../kernel/notebook/libraryLink';

// fs's own properties cannot be spied on; a copy whose symlinkSync can stage the other kernel's move.
jest.mock('fs', () => {
  const real = jest.requireActual('fs');
  return { ...real, symlinkSync: jest.fn(real.symlinkSync) };
});
const symlink = fs.symlinkSync as jest.MockedFunction<typeof fs.symlinkSync>;
const realSymlink: typeof fs.symlinkSync = jest.requireActual('fs').symlinkSync;

let root: string;
let link: string;
let target: string;

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'chromatune-link-'));
  link = path.join(root, 'node_modules', 'chromatune');
  target = path.join(root, 'dist', 'kernel');
  fs.mkdirSync(target, { recursive: true });
  fs.writeFileSync(path.join(target, 'index.js'), 'module.exports = { here: true };\n');
});

afterEach(() => {
  symlink.mockClear();
  fs.rmSync(root, { recursive: true, force: true });
});

/** Where the link points, resolved, and whether it is written relative. */
const pointsTo = (): { resolved: string; relative: boolean } => {
  const raw = fs.readlinkSync(link);
  return { resolved: path.resolve(path.dirname(link), raw), relative: !path.isAbsolute(raw) };
};

test('a fresh project gets a relative link through which the library loads; the next start finds it present', () => {
  expect(linkLibrary(root)).toBe('linked');
  expect(pointsTo()).toEqual({ resolved: target, relative: true });
  expect(JSON.parse(JSON.stringify(require(path.join(link, 'index.js'))))).toEqual({ here: true });
  expect(linkLibrary(root)).toBe('present');
});

test('a link left from where the project was before is pointed here again', () => {
  const elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), 'chromatune-old-'));
  try {
    fs.mkdirSync(path.dirname(link), { recursive: true });
    fs.symlinkSync(elsewhere, link);
    expect(linkLibrary(root)).toBe('linked');
    expect(pointsTo().resolved).toBe(target);
  } finally {
    fs.rmSync(elsewhere, { recursive: true, force: true });
  }
});

test('a real package under the name is left alone', () => {
  fs.mkdirSync(link, { recursive: true });
  fs.writeFileSync(path.join(link, 'package.json'), '{"name":"chromatune"}');
  expect(linkLibrary(root)).toBe('taken');
  expect(fs.lstatSync(link).isSymbolicLink()).toBe(false);
  expect(fs.readFileSync(path.join(link, 'package.json'), 'utf8')).toBe('{"name":"chromatune"}');
});

test('a project installed as a package needs no link', () => {
  expect(linkLibrary(path.join(root, 'node_modules', 'chromatune-pkg'))).toBe('installed');
  expect(symlink).not.toHaveBeenCalled();
  expect(fs.existsSync(link)).toBe(false);
});

test('two kernels starting together: the one whose link is made first by the other finds it present', () => {
  // The other kernel makes the link between this one's check and its own attempt.
  symlink.mockImplementationOnce((t, p, type) => {
    realSymlink(t, p, type);
    realSymlink(t, p, type); // this kernel's own attempt: EEXIST
  });
  expect(linkLibrary(root)).toBe('present');
  expect(symlink).toHaveBeenCalledTimes(1);
  expect(pointsTo()).toEqual({ resolved: target, relative: true });
});

test('losing that race to a link that points elsewhere is an error, not a silent success', () => {
  symlink.mockImplementationOnce((t, p, type) => {
    realSymlink(os.tmpdir(), p, type);
    realSymlink(t, p, type);
  });
  expect(() => linkLibrary(root)).toThrow(/EEXIST/);
});
