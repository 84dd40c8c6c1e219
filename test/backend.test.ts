/**
 * The backend layer: choice/env handling, and the hand-written wasm kernels checked against
 * independent computations (the pure-JS cpu backend, or a plain JS loop where cpu itself is wrong).
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  BACKEND_ENV,
  backendInfo,
  backendNotes,
  describeBackend,
  initBackend,
  originalKernel,
  resetBackendCache,
  THREADS_ENV,
  threadsFromEnv,
} from '../kernel/backend';
import * as os from 'os';
import { loadBlas, setBlasEnabled } from '../kernel/backend/blas';

// Deterministic uniform(-1, 1) data (an LCG), so failures reproduce.
let seed = 12345;
function rand(n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    out[i] = (seed / 2 ** 32) * 2 - 1;
  }
  return out;
}
const numel = (s: number[]): number => s.reduce((p, d) => p * d, 1);

/**
 * |actual - expected| <= atol + rtol * scale, element by element, where scale is |expected| or, with
 * `normwise`, max |expected| (for gradients: sums with cancellation are exact only to the size of
 * their terms, and float32 summation order differs between backends).
 */
function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, normwise = false, rtol = 1e-5, atol = 2e-6): void {
  expect(actual.length).toBe(expected.length);
  let max = 0;
  for (let i = 0; i < expected.length; i++) max = Math.max(max, Math.abs(expected[i]));
  let worst = 0;
  let at = -1;
  for (let i = 0; i < expected.length; i++) {
    const scale = normwise ? max : Math.abs(expected[i]);
    const excess = Math.abs(actual[i] - expected[i]) - (atol + rtol * scale);
    if (!(excess <= worst)) {
      worst = Number.isNaN(excess) ? Infinity : excess;
      at = i;
    }
  }
  if (at >= 0) throw new Error(`${what}: element ${at} is ${actual[at]}, expected ${expected[at]} (max |expected| ${max})`);
}

/** Runs f on cpu then on wasm (same inputs: f builds its tensors from closed-over arrays). */
async function onBoth(f: () => tf.Tensor[]): Promise<{ cpu: Float32Array[]; wasm: Float32Array[]; shapes: number[][] }> {
  const run = async (name: string): Promise<{ data: Float32Array[]; shapes: number[][] }> => {
    await tf.setBackend(name);
    const outs = tf.tidy(f);
    const data = outs.map((t) => Float32Array.from(t.dataSync()));
    const shapes = outs.map((t) => t.shape);
    tf.dispose(outs);
    return { data, shapes };
  };
  const c = await run('cpu');
  const w = await run('wasm');
  expect(w.shapes).toEqual(c.shapes);
  return { cpu: c.data, wasm: w.data, shapes: w.shapes };
}

async function expectSameOnBoth(f: () => tf.Tensor[], what: string, normwise = false): Promise<void> {
  const r = await onBoth(f);
  r.cpu.forEach((c, i) => expectClose(r.wasm[i], c, `${what} [output ${i}]`, normwise));
}

/** Shape of an operand as stored, given its logical [.., rows, cols] and a transpose flag. */
const stored = (s: number[], t: boolean): number[] => (t ? [...s.slice(0, -2), s[s.length - 1], s[s.length - 2]] : s);

beforeAll(async () => {
  delete process.env[BACKEND_ENV];
  await initBackend('cpu'); // initialised through ours once, so the cpu backend's console banner stays off
  await initBackend('wasm');
});

describe('wasm kernels are the re-registered ones', () => {
  it.each(['BatchMatMul', '_FusedMatMul', 'UnsortedSegmentSum', 'Slice', 'SplitV', 'Tile', 'Pow', 'GatherV2'])('%s', (name) => {
    const k = tf.getKernel(name, 'wasm');
    expect(k).toBeDefined();
    expect(k!.kernelFunc).not.toBe(originalKernel(name)?.kernelFunc);
  });
  it('the library itself lacks UnsortedSegmentSum for wasm', () => {
    expect(originalKernel('UnsortedSegmentSum')).toBeUndefined();
  });
});

describe.each(['openblas', 'xnnpack'])('BatchMatMul on wasm (%s matmul) equals cpu', (matmul) => {
  beforeAll(() => setBlasEnabled(matmul === 'openblas'));
  afterAll(() => setBlasEnabled(true));
  it('runs on the intended path', () => {
    expect(Boolean(loadBlas().addon)).toBe(matmul === 'openblas');
  });

  // [logical a, logical b]: a is [..., M, K], b is [..., K, N] before any transpose flag.
  const shapes: Array<[number[], number[]]> = [
    [[9, 13], [13, 7]], // 2-D
    [[4, 9, 13], [13, 7]], // batch folded into rows (right operand 2-D)
    [[4, 9, 13], [1, 13, 7]], // right batch 1 broadcast
    [[1, 9, 13], [4, 13, 7]], // left batch 1 broadcast
    [[9, 13], [4, 13, 7]], // left 2-D against a batch
    [[2, 3, 9, 13], [2, 3, 13, 7]], // 4-D, equal batches
    [[2, 3, 9, 13], [1, 13, 7]], // 4-D against batch 1
    [[1, 1, 9, 13], [2, 3, 13, 7]], // batch 1 on the left, 4-D
    [[3, 16, 24], [3, 24, 16]], // attention-like
  ];
  const cases: Array<[number[], number[], boolean, boolean]> = [];
  for (const [a, b] of shapes) for (const tA of [false, true]) for (const tB of [false, true]) cases.push([a, b, tA, tB]);

  it.each(cases)('%j x %j transposeA=%s transposeB=%s', async (a, b, tA, tB) => {
    const sa = stored(a, tA);
    const sb = stored(b, tB);
    const da = rand(numel(sa));
    const db = rand(numel(sb));
    await expectSameOnBoth(() => [tf.matMul(tf.tensor(da, sa), tf.tensor(db, sb), tA, tB)], 'matMul');
  });

  it('broadcasts [2,1,M,K] x [1,3,K,N] exactly (checked by a JS loop: cpu mis-indexes this case)', async () => {
    await tf.setBackend('wasm');
    const [M, K, N] = [5, 6, 4];
    const da = rand(2 * M * K);
    const db = rand(3 * K * N);
    const out = tf.tidy(() => tf.matMul(tf.tensor(da, [2, 1, M, K]), tf.tensor(db, [1, 3, K, N])));
    expect(out.shape).toEqual([2, 3, M, N]);
    const got = out.dataSync();
    out.dispose();
    const want = new Float32Array(2 * 3 * M * N);
    for (let i = 0; i < 2; i++)
      for (let j = 0; j < 3; j++)
        for (let m = 0; m < M; m++)
          for (let n = 0; n < N; n++) {
            let s = 0;
            for (let k = 0; k < K; k++) s += da[(i * M + m) * K + k] * db[(j * K + k) * N + n];
            want[((i * 3 + j) * M + m) * N + n] = s;
          }
    expectClose(got, want, 'broadcast matMul');
  });

  it('one buffer used as the right operand under two shapes (XNNPACK caches weights per buffer)', async () => {
    const dw = rand(12);
    const dx = rand(2 * 4 * 6);
    await expectSameOnBoth(() => {
      const w = tf.tensor(dw, [4, 3]);
      const x = tf.tensor(dx, [2, 4, 6]);
      return [tf.matMul(tf.slice(x, [0, 0, 0], [1, 4, 4]), w), tf.matMul(tf.reshape(x, [8, 6]), tf.reshape(w, [6, 2])), tf.matMul(tf.ones([1, 4]), w)];
    }, 'reshaped right operand');
  });

  it('handles empty and K=0 products', async () => {
    await expectSameOnBoth(() => [tf.matMul(tf.zeros([0, 3]), tf.ones([3, 2])), tf.matMul(tf.zeros([2, 0]), tf.zeros([0, 3]))], 'empty');
  });

  it.each([[false, false], [true, false], [false, true], [true, true]])('fused matMul with bias, transposeA=%s transposeB=%s', async (tA, tB) => {
    const [M, K, N] = [9, 13, 7];
    const da = rand(M * K);
    const db = rand(K * N);
    const dbias = rand(N);
    await expectSameOnBoth(
      () => [tf.fused.matMul({ a: tf.tensor(da, tA ? [K, M] : [M, K]), b: tf.tensor(db, tB ? [N, K] : [K, N]), bias: tf.tensor(dbias, [N]), transposeA: tA, transposeB: tB })],
      'fused matMul',
    );
  });
});

describe('gradients on wasm equal cpu', () => {
  it('a function of matMuls with every transpose combination', async () => {
    const [da, db, dc, dw, dv] = [rand(6 * 5), rand(4 * 5), rand(6 * 3), rand(3 * 4 * 6), rand(3 * 4 * 3)];
    await expectSameOnBoth(() => {
      // tfjs's BatchMatMul gradient does not reduce broadcast batch dims, so batches match here.
      const f = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor, w: tf.Tensor, v: tf.Tensor): tf.Scalar => {
        const ab = tf.matMul(a, b, false, true); // [6,5]x[4,5]^T -> [6,4]
        const x = tf.matMul(c, ab, true, false); // [6,3]^T x [6,4] -> [3,4]
        const xs = tf.reshape(tf.tile(tf.tanh(x), [3, 1]), [3, 3, 4]);
        const y = tf.matMul(xs, w); // [3,3,4]x[3,4,6] -> [3,3,6]
        const z = tf.matMul(y, tf.reshape(tf.tile(a, [3, 1]), [3, 6, 5])); // -> [3,3,5]
        const u = tf.matMul(z, v, true, true); // [3,3,5]^T x [3,4,3]^T -> [3,5,4]
        return tf.sum(tf.mul(u, u));
      };
      const inputs = [tf.tensor(da, [6, 5]), tf.tensor(db, [4, 5]), tf.tensor(dc, [6, 3]), tf.tensor(dw, [3, 4, 6]), tf.tensor(dv, [3, 4, 3])];
      const { value, grads } = tf.valueAndGrads(f as (...x: tf.Tensor[]) => tf.Scalar)(inputs);
      return [value, ...grads];
    }, 'matMul grads', true);
  });

  it('gather (embedding lookup) with repeated ids, via UnsortedSegmentSum', async () => {
    const [V, D] = [7, 5];
    const ids = [3, 1, 3, 0, 3, 6, 1, 1]; // 2, 4 and 5 never used: their rows get zero gradient
    const emb = rand(V * D);
    const w = rand(ids.length * D);
    const r = await onBoth(() => {
      const g = tf.grad((e: tf.Tensor) => tf.sum(tf.mul(tf.gather(e, tf.tensor2d(ids, [2, 4], 'int32')), tf.tensor(w, [2, 4, D]))));
      return [g(tf.tensor(emb, [V, D]))];
    });
    expectClose(r.wasm[0], r.cpu[0], 'gather grad vs cpu');
    const want = new Float32Array(V * D); // independent: dE[id] += w[i]
    ids.forEach((id, i) => {
      for (let d = 0; d < D; d++) want[id * D + d] += w[i * D + d];
    });
    expectClose(r.wasm[0], want, 'gather grad vs JS loop');
  });

  it('unsortedSegmentSum directly (float32 and int32)', async () => {
    const x = rand(6 * 3);
    await expectSameOnBoth(() => {
      const seg = tf.tensor1d([2, 0, 2, 2, 4, 0], 'int32');
      return [tf.unsortedSegmentSum(tf.tensor(x, [6, 3]), seg, 5), tf.unsortedSegmentSum(tf.tensor1d([1, 2, 3, 4, 5, 6], 'int32'), seg, 5)];
    }, 'unsortedSegmentSum');
  });

  it('softmax, logSoftmax, where, concat/slice, sqrt/rsqrt, maximum, pow, mean', async () => {
    const [B, T, C] = [2, 4, 6];
    const dx = rand(B * T * C);
    const dt = [1, 0, 5, 2, 3, 3, 0, 4];
    await expectSameOnBoth(() => {
      const f = (x: tf.Tensor): tf.Scalar => {
        const mask = tf.cast(tf.linalg.bandPart(tf.ones([T, C]), -1, 1), 'bool');
        const masked = tf.where(mask, x, tf.fill([B, T, C], -1e9));
        const p = tf.softmax(masked, -1);
        const [l, r] = tf.split(x, [2, 4], -1);
        const cat = tf.concat([tf.slice(r, [0, 1, 0], [B, 3, 4]), tf.slice(l, [0, 0, 0], [B, 3, 2])], -1);
        const g = tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(tf.add(x, tf.mul(0.044715, tf.pow(x, 3))))));
        const n = tf.mul(tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), 1e-5)), tf.sqrt(tf.add(tf.abs(x), 1)));
        const lsm = tf.logSoftmax(tf.reshape(x, [B * T, C]));
        const ce = tf.neg(tf.mean(tf.sum(tf.mul(lsm, tf.oneHot(tf.tensor1d(dt, 'int32'), C)), -1)));
        return tf.addN([tf.sum(tf.mul(p, x)), tf.sum(tf.square(cat)), tf.mean(g), tf.sum(tf.maximum(n, 0.9)), ce]) as tf.Scalar;
      };
      const { value, grad } = tf.valueAndGrad(f)(tf.tensor(dx, [B, T, C]));
      return [value, grad];
    }, 'mixed grads', true);
  });
});

describe('other re-registered kernels equal cpu', () => {
  it('slice and split on every axis', async () => {
    const x = rand(3 * 4 * 5 * 6);
    await expectSameOnBoth(() => {
      const t = tf.tensor(x, [3, 4, 5, 6]);
      return [
        tf.slice(t, [1, 0, 0, 0], [2, 4, 5, 6]),
        tf.slice(t, [0, 1, 2, 3], [3, 2, 3, 2]),
        tf.slice(t, [2, 3, 4, 5], [1, 1, 1, 1]),
        tf.slice(t, [0, 0, 1, 0], [3, 4, 2, 6]),
        tf.slice(tf.tensor1d(x.slice(0, 9)), [2], [5]),
        ...tf.split(t, [1, 2, 3], 3),
        ...tf.split(t, 2, 1),
      ];
    }, 'slice');
  });

  it('tile (float32, int32, bool) and broadcastTo', async () => {
    const x = rand(2 * 3);
    await expectSameOnBoth(() => [
      tf.tile(tf.tensor(x, [2, 3]), [3, 2]),
      tf.tile(tf.tensor(x, [1, 2, 1, 3]), [2, 1, 4, 2]),
      tf.tile(tf.tensor1d([1, 2, 3], 'int32'), [4]),
      tf.cast(tf.tile(tf.tensor2d([[true, false]], [1, 2], 'bool'), [3, 2]), 'float32'),
      tf.broadcastTo(tf.scalar(2.5), [2, 3, 4]),
    ], 'tile');
  });

  it('gather on axis 0 and 1, with batchDims, and int32 values', async () => {
    const x = rand(4 * 5 * 6);
    await expectSameOnBoth(() => {
      const t = tf.tensor(x, [4, 5, 6]);
      return [
        tf.gather(t, tf.tensor2d([3, 0, 3, 1, 2, 2], [2, 3], 'int32')),
        tf.gather(t, tf.tensor1d([4, 0, 4], 'int32'), 1),
        tf.gather(t, tf.tensor1d([5, 1], 'int32'), 2),
        tf.gather(t, tf.tensor2d([[1, 4], [0, 0], [2, 3], [4, 4]], [4, 2], 'int32'), 1, 1),
        tf.cast(tf.gather(tf.tensor1d([7, 8, 9], 'int32'), tf.tensor1d([2, 2, 0], 'int32')), 'float32'),
      ];
    }, 'gather');
    await tf.setBackend('wasm');
    expect(() => tf.gather(tf.ones([3, 2]), tf.tensor1d([3], 'int32'))).toThrow(/index value 3 is not in \[0, 2\]/);
  });

  it('pow with integer and other exponents', async () => {
    const x = rand(24);
    await expectSameOnBoth(() => {
      const t = tf.tensor(x, [4, 6]);
      return [1, 2, 3, 4, 0.5, -1].map((e) => tf.pow(e === 0.5 ? tf.abs(t) : t, e)).concat(tf.pow(t, tf.tensor1d([2, 3, 1, 2, 3, 4])));
    }, 'pow');
  });
});

describe('no leaks', () => {
  it('tensor count, bytes and wasm buffers stay flat over repeated steps', async () => {
    await tf.setBackend('wasm');
    const emb = tf.tensor(rand(7 * 5), [7, 5]);
    const ids = tf.tensor1d([1, 1, 3, 6], 'int32');
    const a4 = tf.tensor(rand(2 * 3 * 6 * 5), [2, 3, 6, 5]);
    const b3 = tf.tensor(rand(1 * 6 * 5), [1, 6, 5]);
    const step = (): void =>
      tf.tidy(() => {
        tf.matMul(a4, a4, true, false).dataSync(); // looped slices with transposes
        tf.matMul(a4, b3, false, true).dataSync(); // folded batch with transpose
        tf.grad((e: tf.Tensor) => tf.sum(tf.square(tf.gather(e, ids))))(emb).dataSync();
        tf.split(tf.tile(emb, [2, 3]), 3, 1).forEach((t) => t.dataSync());
        tf.pow(emb, 3).dataSync();
      });
    step();
    const before = { ...tf.memory(), buffers: tf.engine().backend.numDataIds() };
    for (let i = 0; i < 10; i++) step();
    const after = { ...tf.memory(), buffers: tf.engine().backend.numDataIds() };
    expect(after.numTensors).toBe(before.numTensors);
    expect(after.numBytes).toBe(before.numBytes);
    expect(after.buffers).toBe(before.buffers);
    tf.dispose([emb, ids, a4, b3]);
  });
});

describe('initBackend', () => {
  afterEach(async () => {
    delete process.env[BACKEND_ENV];
    await initBackend('wasm');
  });

  it('is idempotent and reports the wasm backend', async () => {
    const a = await initBackend();
    const b = await initBackend();
    expect(b).toBe(a);
    expect(backendInfo()).toBe(a);
    expect(a.choice).toBe('wasm');
    expect(a.tfBackend).toBe('wasm');
    expect(a.threads).toBe(1);
    expect(describeBackend(a)).toMatch(/^wasm \((no )?SIMD, 1 thread, (openblas|xnnpack) matmul\)$/);
    if (a.matmul === 'openblas') expect(a.matmulThreads).toBe(threadsFromEnv());
  });

  it('switches on a different explicit choice', async () => {
    const c = await initBackend('cpu');
    expect(c.choice).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect(describeBackend(c)).toBe('cpu (1 thread)');
    expect((await initBackend('wasm')).choice).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
  });

  it('follows CHROMATUNE_BACKEND and rejects an invalid value naming the valid choices', async () => {
    process.env[BACKEND_ENV] = 'cpu';
    expect((await initBackend()).choice).toBe('cpu');
    process.env[BACKEND_ENV] = 'bogus';
    await expect(initBackend()).rejects.toThrow(/CHROMATUNE_BACKEND="bogus".*gpu, node, wasm, cpu/);
  });

  it('tries gpu, node, wasm in order and records why it skipped', async () => {
    resetBackendCache();
    const info = await initBackend();
    const missing = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'].filter((p) => {
      try {
        require.resolve(p);
        return false;
      } catch {
        return true;
      }
    });
    if (missing.length < 2) return; // a machine with native TF installed picks it; nothing to check here
    expect(info.choice).toBe('wasm');
    expect(info.reasons).toHaveLength(2);
    expect(info.reasons[0]).toMatch(/^gpu: .*tfjs-node-gpu/);
    expect(info.reasons[1]).toMatch(/^node: .*tfjs-node/);
  });

  it('notes say why a run is slower: an installed backend that failed, or no OpenBLAS; absent packages stay quiet', () => {
    const base = { choice: 'wasm' as const, tfBackend: 'wasm', simd: true, threads: 1, matmul: 'openblas', reasons: [] as string[] };
    const absent = ["gpu: Cannot find module '@tensorflow/tfjs-node-gpu'", "node: Cannot find module '@tensorflow/tfjs-node'"];
    expect(backendNotes({ ...base, reasons: absent })).toEqual([]);
    const broken = 'node: The specified module could not be found: tfjs_binding.node';
    expect(backendNotes({ ...base, reasons: [absent[0], broken] })).toEqual([`skipped ${broken}`]);
    expect(backendNotes({ ...base, matmul: 'xnnpack', matmulReason: 'disabled by CHROMATUNE_BLAS=0' })).toEqual([
      'matrix products run on XNNPACK, about half as fast as OpenBLAS: disabled by CHROMATUNE_BLAS=0',
    ]);
  });

  it('an explicit gpu request that cannot load throws, naming the choice and the cause', async () => {
    let installed = true;
    try {
      require.resolve('@tensorflow/tfjs-node-gpu');
    } catch {
      installed = false;
    }
    if (installed) return; // cannot be checked on a machine that has it
    const before = backendInfo();
    await expect(initBackend('gpu')).rejects.toThrow(/backend 'gpu' was requested but cannot be used: .*tfjs-node-gpu/);
    expect(backendInfo()).toBe(before); // no silent fallback, nothing changed
    expect(tf.getBackend()).toBe('wasm');
  });
});

describe('matmul threads (CHROMATUNE_THREADS)', () => {
  const saved = process.env[THREADS_ENV];
  afterAll(async () => {
    if (saved === undefined) delete process.env[THREADS_ENV];
    else process.env[THREADS_ENV] = saved;
    resetBackendCache();
    await initBackend('wasm');
  });

  it('defaults to one thread and rejects a value that is not a whole number >= 1', () => {
    expect(threadsFromEnv({})).toBe(1);
    expect(threadsFromEnv({ [THREADS_ENV]: '' })).toBe(1);
    expect(threadsFromEnv({ [THREADS_ENV]: ' 3 ' })).toBe(3);
    for (const bad of ['0', '-2', '1.5', 'two']) {
      expect(() => threadsFromEnv({ [THREADS_ENV]: bad })).toThrow(new RegExp(`CHROMATUNE_THREADS="${bad}" is not a valid thread count; expected a whole number >= 1 \\(this machine has ${os.availableParallelism()} cores\\)`));
    }
  });

  it('sets OpenBLAS threads, and a threaded product equals the one-thread product', async () => {
    if (!loadBlas().addon) return; // only the OpenBLAS addon is threaded
    // Large enough that OpenBLAS splits the work (it runs small products on one thread).
    const [M, K, N] = [192, 256, 320];
    const a = rand(M * K);
    const b = rand(K * N);
    const product = async (threads: number) => {
      process.env[THREADS_ENV] = String(threads);
      resetBackendCache();
      const info = await initBackend('wasm');
      expect(info.matmulThreads).toBe(threads);
      expect(loadBlas().addon!.threads()).toBe(threads);
      expect(describeBackend(info)).toMatch(threads === 1 ? /, openblas matmul\)$/ : new RegExp(`, openblas matmul on ${threads} threads\\)$`));
      const out = tf.tidy(() => tf.matMul(tf.tensor2d(a, [M, K]), tf.tensor2d(b, [K, N])));
      const data = out.dataSync().slice();
      out.dispose();
      return data;
    };
    const one = await product(1);
    const two = await product(2);
    expectClose(two, one, 'matMul on 2 threads', true);
    // And against an independent computation: one entry by a plain loop.
    let want = 0;
    for (let k = 0; k < K; k++) want += a[7 * K + k] * b[k * N + 11];
    expect(two[7 * N + 11]).toBeCloseTo(want, 3);
  });
});
