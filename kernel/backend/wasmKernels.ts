/**
 * Hand-written kernels for the TensorFlow.js wasm backend (@tensorflow/tfjs-backend-wasm 4.22.0).
 *
 * Why they exist:
 * - `BatchMatMul`: the library's wasm kernel hands the product to XNNPACK only for a plain 2-D
 *   product (batch 1 on both sides, no transpose flags). Every other case - all of autograd's
 *   transposed products (dA = dy·Bᵀ, dB = Aᵀ·dy), a [B,T,d]x[d,n] dense layer, batched attention -
 *   runs a naive blocked triple loop in C++ that is 10-30x slower. We re-register the kernel so that
 *   it transposes explicitly (the wasm Transpose kernel is fast), folds the batch into rows when the
 *   right operand has batch 1, and otherwise loops over 2-D slices; every product then reaches the
 *   XNNPACK path of the original kernel.
 * - `UnsortedSegmentSum`: not registered for wasm at all, so the gradient of `tf.gather` (an
 *   embedding lookup) throws. A plain JS loop over the heap is enough (it is memory bound).
 * - `Slice`: the library's kernel copies the whole input out of the wasm heap (readSync) for every
 *   slice, so slicing q/k/v out of a fused projection costs a full copy each; we read a heap view.
 *   `SplitV` (tf.split) calls that Slice internally, so it is re-registered the same way.
 * - `Pow`: the library evaluates std::pow per element (slow, see GELU's x^3); an integer scalar
 *   exponent 1..4 is rewritten as multiplications, the rest goes to the original kernel.
 * - `Tile`: the library computes an N-d index per element (~50-90 ns each); it is behind `tf.where`
 *   and `broadcastTo`, e.g. a causal mask. Block copies are ~50x faster.
 * - `GatherV2`: same per-element indexing; an embedding lookup of 1024 rows of 128 took ~6 ms.
 *   Row copies take ~0.1 ms.
 *
 * The originals are kept (`originalKernel`) so that `uninstallWasmKernels` can restore them, e.g. for
 * benchmarks comparing both.
 */
import * as tf from './tf';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';
import { type BlasAddon, loadBlas } from './blas';

type Info = tf.TensorInfo;
type KernelArgs = Parameters<tf.KernelFunc>[0];

const BACKEND = 'wasm';
/** Kernels we replace (original saved) or add (original undefined). */
const originals = new Map<string, tf.KernelConfig | undefined>();

/** The library's own kernel for `name` on wasm, whether or not ours is installed. */
export function originalKernel(name: string): tf.KernelConfig | undefined {
  return originals.has(name) ? originals.get(name) : tf.getKernel(name, BACKEND);
}

function orig(name: string): tf.KernelFunc {
  const k = originalKernel(name);
  if (k === undefined) throw new Error(`wasm kernel ${name} is not registered`);
  return k.kernelFunc;
}

function run(name: string, backend: BackendWasm, inputs: tf.NamedTensorInfoMap, attrs: object): Info {
  return orig(name)({ inputs, backend, attrs: attrs as tf.NamedAttrMap }) as Info;
}

const size = (shape: number[]): number => shape.reduce((p, d) => p * d, 1);

function offsetOf(backend: BackendWasm, t: Info): number {
  return backend.dataIdMap.get(t.dataId).memoryOffset;
}

/** Copies `n` float32 values between tensors on the heap. Reads HEAPU8 afresh: a malloc may grow it. */
function copyF32(backend: BackendWasm, src: Info, srcIdx: number, dst: Info, dstIdx: number, n: number): void {
  const s = offsetOf(backend, src) + 4 * srcIdx;
  (backend.wasm as unknown as { HEAPU8: Uint8Array }).HEAPU8.copyWithin(offsetOf(backend, dst) + 4 * dstIdx, s, s + 4 * n);
}

/**
 * Maps an output batch index to the operand's batch index under numpy broadcasting (dims of size 1
 * repeat). Exact for any broadcast, unlike `i % batch`, which is only right for batch 1 or equal.
 */
function batchIndexer(operand: number[], out: number[]): (i: number) => number {
  const shape = [...new Array<number>(out.length - operand.length).fill(1), ...operand];
  return (i: number): number => {
    let idx = 0;
    let stride = 1;
    for (let d = out.length - 1; d >= 0; d--) {
      const coord = i % out[d];
      i = Math.floor(i / out[d]);
      if (shape[d] !== 1) idx += coord * stride;
      stride *= shape[d];
    }
    return idx;
  };
}

/** [n, r, c] -> [n, c, r] as a new contiguous tensor (the wasm Transpose kernel drops size-1 dims). */
function transposeLast2(backend: BackendWasm, x: Info, n: number, r: number, c: number): Info {
  return run('Transpose', backend, { x: { ...x, shape: [n, r, c] } }, { perm: [0, 2, 1] });
}

/**
 * The library caches XNNPACK's packed weights per right-operand buffer id, whatever shape that buffer
 * is later viewed with. A buffer seen again as a right operand with another [K, N] (a reshaped view
 * of the same data) is copied first so that it gets a fresh id and a correct operator.
 */
const rightOperandShape = new WeakMap<object, string>();

function batchMatMul(args: KernelArgs): Info {
  const backend = args.backend as BackendWasm;
  const { a, b } = args.inputs as { a: Info; b: Info };
  const { transposeA, transposeB } = args.attrs as unknown as tf.BatchMatMulAttrs;
  if (a.dtype !== 'float32' || b.dtype !== 'float32') return orig(tf.BatchMatMul)(args) as Info;

  const ra = a.shape.length;
  const rb = b.shape.length;
  const M = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const K = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const Kb = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
  const N = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  tf.util.assert(K === Kb, () =>
    `Error in matMul: inner shapes (${K}) and (${Kb}) of Tensors with shapes ${a.shape} and ` +
    `${b.shape} and transposeA=${transposeA} and transposeB=${transposeB} must match.`);
  const aOuter = a.shape.slice(0, -2);
  const bOuter = b.shape.slice(0, -2);
  const outOuter = tf.broadcast_util.assertAndGetBroadcastShape(aOuter, bOuter);
  const outShape = [...outOuter, M, N];
  const batchA = size(aOuter);
  const batchB = size(bOuter);
  const batch = size(outOuter);

  if (batch * M * N === 0 || K === 0) {
    const out = backend.makeOutput(outShape, 'float32');
    if (batch * M * N > 0) backend.typedArrayFromHeap(out).fill(0);
    return out;
  }

  const blas = loadBlas().addon;
  if (blas) return blasMatMul(blas, backend, a, b, { M, N, K, transposeA, transposeB, aOuter, bOuter, outOuter, outShape });

  // Row-major operands A3 [batchA, M, K] and B3 [batchB, K, N]; transposed copies are temporaries.
  const temps: Info[] = [];
  const A3: Info = transposeA ? transposeLast2(backend, a, batchA, K, M) : { ...a, shape: [batchA, M, K] };
  if (transposeA) temps.push(A3);
  const B3: Info = transposeB ? transposeLast2(backend, b, batchB, N, K) : { ...b, shape: [batchB, K, N] };
  if (transposeB) temps.push(B3);
  const mm = (x: Info, y: Info): Info =>
    run(tf.BatchMatMul, backend, { a: x, b: y }, { transposeA: false, transposeB: false });

  let out: Info;
  if (batchB === 1) {
    // One right-hand matrix: fold the batch into rows, a single XNNPACK product. (batch === batchA.)
    let right: Info = { ...B3, shape: [1, K, N] };
    if (!transposeB) {
      const key = `${K},${N}`;
      const seen = rightOperandShape.get(b.dataId);
      if (seen === undefined) rightOperandShape.set(b.dataId, key);
      else if (seen !== key) {
        right = run('Identity', backend, { x: right }, {});
        temps.push(right);
      }
    }
    const r = mm({ ...A3, shape: [1, batchA * M, K] }, right);
    out = { dataId: r.dataId, shape: outShape, dtype: 'float32' };
  } else {
    // Loop over 2-D slices, copying each into its own tensor (the kernel takes whole tensors).
    out = backend.makeOutput(outShape, 'float32');
    const ia = batchIndexer(aOuter, outOuter);
    const ib = batchIndexer(bOuter, outOuter);
    for (let i = 0; i < batch; i++) {
      const slice = (src: Info, j: number, rows: number, cols: number): Info => {
        const t = backend.makeOutput([1, rows, cols], 'float32');
        copyF32(backend, src, j * rows * cols, t, 0, rows * cols);
        return t;
      };
      const ai = batchA === 1 ? { ...A3, shape: [1, M, K] } : slice(A3, ia(i), M, K);
      const bi = slice(B3, ib(i), K, N);
      const r = mm(ai, bi);
      copyF32(backend, r, 0, out, i * M * N, M * N);
      backend.disposeData(r.dataId);
      backend.disposeData(bi.dataId);
      if (batchA !== 1) backend.disposeData(ai.dataId);
    }
  }
  for (const t of temps) backend.disposeData(t.dataId);
  return out;
}

interface Product {
  M: number;
  N: number;
  K: number;
  transposeA: boolean;
  transposeB: boolean;
  aOuter: number[];
  bOuter: number[];
  outOuter: number[];
  outShape: number[];
}

/**
 * The product through OpenBLAS, which takes transposed operands as they are (no copies). Equal batches
 * or a batch of 1 on either side is one call; other broadcasts go slice by slice.
 */
function blasMatMul(blas: BlasAddon, backend: BackendWasm, a: Info, b: Info, p: Product, bias?: Info): Info {
  const { M, N, K, transposeA, transposeB } = p;
  const out = backend.makeOutput(p.outShape, 'float32');
  // Views only after makeOutput: a malloc can grow (and detach) the heap.
  const av = backend.typedArrayFromHeap(a) as Float32Array;
  const bv = backend.typedArrayFromHeap(b) as Float32Array;
  const ov = backend.typedArrayFromHeap(out) as Float32Array;
  const biasView = bias ? (backend.typedArrayFromHeap(bias) as Float32Array) : undefined;
  const batchA = size(p.aOuter);
  const batchB = size(p.bOuter);
  const batch = size(p.outOuter);
  if (batchB === 1 && !transposeA) {
    blas.gemm(av, bv, ov, 1, batch * M, N, K, false, transposeB, 0, 0, biasView); // fold the batch into rows
  } else if ((batchA === batch || batchA === 1) && (batchB === batch || batchB === 1)) {
    blas.gemm(av, bv, ov, batch, M, N, K, transposeA, transposeB, batchA === 1 ? 0 : M * K, batchB === 1 ? 0 : K * N, biasView);
  } else {
    const ia = batchIndexer(p.aOuter, p.outOuter);
    const ib = batchIndexer(p.bOuter, p.outOuter);
    for (let i = 0; i < batch; i++) {
      blas.gemm(av.subarray(ia(i) * M * K), bv.subarray(ib(i) * K * N), ov.subarray(i * M * N), 1, M, N, K, transposeA, transposeB, 0, 0, biasView);
    }
  }
  return out;
}

/** Bias-only fused products (the dense layers) through OpenBLAS; anything else goes to the library's kernel. */
function fusedMatMul(args: KernelArgs): Info {
  const backend = args.backend as BackendWasm;
  const { a, b, bias, preluActivationWeights } = args.inputs as { a: Info; b: Info; bias?: Info; preluActivationWeights?: Info };
  const { transposeA, transposeB, activation } = args.attrs as unknown as tf._FusedMatMulAttrs;
  const blas = loadBlas().addon;
  const ra = a.shape.length;
  const rb = b.shape.length;
  const M = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const K = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const N = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  if (!blas || a.dtype !== 'float32' || b.dtype !== 'float32' || (activation && activation !== 'linear') || preluActivationWeights ||
      (bias && (bias.shape.length !== 1 || bias.shape[0] !== N)) || size(a.shape) === 0 || size(b.shape) === 0) {
    const linear = !activation || activation === 'linear';
    if ((transposeA || transposeB) && linear && !preluActivationWeights) {
      // The library's fused kernel gets transposed operands wrong (test/backend.test.ts): product, then bias.
      const product = batchMatMul({ ...args, inputs: { a, b }, attrs: { transposeA, transposeB } as unknown as tf.NamedAttrMap });
      if (!bias) return product;
      const out = run(tf.Add, backend, { a: product, b: bias }, {});
      backend.disposeData(product.dataId);
      return out;
    }
    return orig(tf._FusedMatMul)(args) as Info;
  }
  const aOuter = a.shape.slice(0, -2);
  const bOuter = b.shape.slice(0, -2);
  const outOuter = tf.broadcast_util.assertAndGetBroadcastShape(aOuter, bOuter);
  return blasMatMul(blas, backend, a, b, { M, N, K, transposeA, transposeB, aOuter, bOuter, outOuter, outShape: [...outOuter, M, N] }, bias);
}

/** out[s, ...] = sum of x[i, ...] over i with segmentIds[i] = s; ids outside [0, numSegments) are dropped. */
function unsortedSegmentSum(args: KernelArgs): Info {
  const backend = args.backend as BackendWasm;
  const { x, segmentIds } = args.inputs as { x: Info; segmentIds: Info };
  const { numSegments } = args.attrs as unknown as tf.UnsortedSegmentSumAttrs;
  if (x.dtype !== 'float32' && x.dtype !== 'int32') {
    throw new Error(`UnsortedSegmentSum on wasm supports float32 and int32, got ${x.dtype}`);
  }
  const rows = size(segmentIds.shape);
  const inner = x.shape.slice(segmentIds.shape.length);
  const cols = size(inner);
  tf.util.assert(rows * cols === size(x.shape), () =>
    `UnsortedSegmentSum: segmentIds shape ${segmentIds.shape} must be a prefix of x shape ${x.shape}`);
  const out = backend.makeOutput([numSegments, ...inner], x.dtype);
  // Views only after makeOutput: a malloc can grow (and detach) the heap.
  const o = backend.typedArrayFromHeap(out);
  const xv = backend.typedArrayFromHeap(x);
  const ids = segmentIds.dtype === 'int32'
    ? backend.typedArrayFromHeap(segmentIds)
    : Int32Array.from(backend.typedArrayFromHeap(segmentIds));
  o.fill(0);
  for (let i = 0; i < rows; i++) {
    const s = ids[i];
    if (s < 0 || s >= numSegments) continue;
    const src = i * cols;
    const dst = s * cols;
    for (let j = 0; j < cols; j++) o[dst + j] += xv[src + j];
  }
  return out;
}

/** Slice reading a heap view instead of the library's full readSync copy of the input. */
function slice(args: KernelArgs): Info {
  const backend = args.backend as BackendWasm;
  const { x } = args.inputs as { x: Info };
  const { begin, size: sz } = args.attrs as unknown as tf.SliceAttrs;
  if (x.dtype === 'string') return orig(tf.Slice)(args) as Info;
  const [b, s] = tf.slice_util.parseSliceParams(x, begin, sz);
  const out = backend.makeOutput(s, x.dtype);
  const total = size(s);
  if (total === 0) return out;
  const xv = backend.typedArrayFromHeap(x);
  const ov = backend.typedArrayFromHeap(out);
  const strides = tf.util.computeStrides(x.shape);
  const rank = s.length;
  // Collapse the trailing dims that are taken whole into one contiguous run.
  let last = rank - 1;
  let run = s[last];
  while (last > 0 && s[last] === x.shape[last] && b[last] === 0) {
    last--;
    run *= s[last];
  }
  const outer = total / run;
  const idx = new Array<number>(last).fill(0);
  for (let o = 0; o < outer; o++) {
    let src = b[last] * (strides[last] ?? 1);
    for (let d = 0; d < last; d++) src += (b[d] + idx[d]) * strides[d];
    if (run >= 16) ov.set(xv.subarray(src, src + run), o * run);
    else for (let j = 0, dst = o * run; j < run; j++) ov[dst + j] = xv[src + j]; // no subarray object
    for (let d = last - 1; d >= 0; d--) {
      if (++idx[d] < s[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

/** GatherV2 by row copies: the library's kernel computes an index per element (~50 ns each). */
function gatherV2(args: KernelArgs): Info {
  const backend = args.backend as BackendWasm;
  const { x, indices } = args.inputs as { x: Info; indices: Info };
  const { axis, batchDims } = args.attrs as unknown as tf.GatherV2Attrs;
  if (x.dtype === 'string' || x.dtype === 'complex64') return orig(tf.GatherV2)(args) as Info;
  const ax = tf.util.parseAxisParam(axis, x.shape)[0];
  const { batchSize, outerSize, dimSize, sliceSize, outputShape } =
    tf.backend_util.segment_util.collectGatherOpShapeInfo(x, indices, ax, batchDims);
  const readIds = (): ArrayLike<number> => backend.typedArrayFromHeap(indices); // int32 or float32
  let ids = readIds();
  for (let i = 0; i < ids.length; i++) {
    tf.util.assert(ids[i] >= 0 && ids[i] < dimSize, () => `GatherV2: the index value ${ids[i]} is not in [0, ${dimSize - 1}]`);
  }
  const out = backend.makeOutput(outputShape, x.dtype);
  if (size(outputShape) === 0) return out;
  ids = readIds(); // afresh: makeOutput may have grown (detached) the heap
  const xv = backend.typedArrayFromHeap(x);
  const ov = backend.typedArrayFromHeap(out);
  const n = ids.length / batchSize;
  for (let b = 0; b < batchSize; b++) {
    for (let o = 0; o < outerSize; o++) {
      const srcBase = (b * outerSize + o) * dimSize;
      const dstBase = (b * outerSize + o) * n;
      for (let j = 0; j < n; j++) {
        const src = (srcBase + ids[b * n + j]) * sliceSize;
        const dst = (dstBase + j) * sliceSize;
        if (sliceSize >= 16) ov.set(xv.subarray(src, src + sliceSize), dst);
        else for (let k = 0; k < sliceSize; k++) ov[dst + k] = xv[src + k];
      }
    }
  }
  return out;
}

/** SplitV as slices through `slice` above (the library's SplitV calls its own copying Slice). */
function splitV(args: KernelArgs): Info[] {
  const { x } = args.inputs as { x: Info };
  const { numOrSizeSplits, axis } = args.attrs as unknown as tf.SplitVAttrs;
  const ax = tf.util.parseAxisParam(axis, x.shape)[0];
  const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, ax);
  const begin = new Array<number>(x.shape.length).fill(0);
  return sizes.map((s) => {
    const sz = [...x.shape];
    sz[ax] = s;
    const part = slice({ inputs: { x }, backend: args.backend, attrs: { begin: [...begin], size: sz } });
    begin[ax] += s;
    return part;
  });
}

/**
 * Tile by block copies: fill one block per dimension, then double it with copyWithin. The library's
 * kernel computes an N-d index per element (~50-90 ns each); `tf.where` and `broadcastTo` (e.g. a
 * [T,T] causal mask against [B,H,T,T] scores) go through it.
 */
function tile(args: KernelArgs): Info {
  const backend = args.backend as BackendWasm;
  const { x } = args.inputs as { x: Info };
  const { reps } = args.attrs as unknown as tf.TileAttrs;
  if (x.dtype === 'string' || x.dtype === 'complex64') return orig(tf.Tile)(args) as Info;
  const xs = x.shape;
  const rank = xs.length;
  const outShape = xs.map((d, i) => d * reps[i]);
  const out = backend.makeOutput(outShape, x.dtype);
  if (size(outShape) === 0) return out;
  const xv = backend.typedArrayFromHeap(x);
  const ov = backend.typedArrayFromHeap(out);
  if (rank === 0) {
    ov.set(xv);
    return out;
  }
  const xStr = [...tf.util.computeStrides(xs), 1];
  const oStr = [...tf.util.computeStrides(outShape), 1];
  const fill = (d: number, src: number, dst: number): void => {
    if (d === rank - 1) ov.set(xv.subarray(src, src + xs[d]), dst);
    else for (let i = 0; i < xs[d]; i++) fill(d + 1, src + i * xStr[d], dst + i * oStr[d]);
    const block = xs[d] * oStr[d];
    const total = block * reps[d];
    for (let done = block; done < total; ) {
      const n = Math.min(done, total - done);
      ov.copyWithin(dst + done, dst, dst + n);
      done += n;
    }
  };
  fill(0, 0, 0);
  return out;
}

/** x^e for a scalar integer e in 1..4 as products (the library's std::pow is slow); else original. */
function pow(args: KernelArgs): Info {
  const backend = args.backend as BackendWasm;
  const { a, b } = args.inputs as { a: Info; b: Info };
  if (a.dtype === 'float32' && size(b.shape) === 1 && b.shape.length <= a.shape.length) {
    const e = backend.typedArrayFromHeap(b)[0];
    if (e === 1 || e === 2 || e === 3 || e === 4) {
      const mul = (p: Info, q: Info): Info => run(tf.Multiply, backend, { a: p, b: q }, {});
      // b has rank <= a's and one element, so the result has a's shape.
      if (e === 1) return run('Identity', backend, { x: a }, {});
      const x2 = mul(a, a);
      if (e === 2) return x2;
      const r = e === 3 ? mul(x2, a) : mul(x2, x2);
      backend.disposeData(x2.dataId);
      return r;
    }
  }
  return orig(tf.Pow)(args) as Info;
}

const replacements: Array<[string, tf.KernelFunc]> = [
  [tf.BatchMatMul, batchMatMul as tf.KernelFunc],
  [tf._FusedMatMul, fusedMatMul as tf.KernelFunc],
  [tf.UnsortedSegmentSum, unsortedSegmentSum as tf.KernelFunc],
  [tf.Slice, slice as tf.KernelFunc],
  [tf.SplitV, splitV as tf.KernelFunc],
  [tf.Pow, pow as tf.KernelFunc],
  [tf.Tile, tile as tf.KernelFunc],
  [tf.GatherV2, gatherV2 as tf.KernelFunc],
];

/** Registers the kernels above for 'wasm'. Idempotent. Safe before or after the backend starts. */
export function installWasmKernels(): void {
  if (originals.size > 0) return;
  require('@tensorflow/tfjs-backend-wasm'); // registers the library's kernels, which we wrap
  for (const [name, kernelFunc] of replacements) {
    const prev = tf.getKernel(name, BACKEND);
    originals.set(name, prev);
    if (prev !== undefined) tf.unregisterKernel(name, BACKEND);
    // Keep the original setupFunc: if the backend is (re)initialised later, the original kernel we
    // delegate to still gets its wasm function bound.
    tf.registerKernel({ kernelName: name, backendName: BACKEND, kernelFunc, setupFunc: prev?.setupFunc });
  }
}

/** Restores the library's kernels (for comparisons and benchmarks). */
export function uninstallWasmKernels(): void {
  for (const [name, prev] of originals) {
    tf.unregisterKernel(name, BACKEND);
    if (prev !== undefined) tf.registerKernel(prev);
  }
  originals.clear();
}

export function wasmKernelsInstalled(): boolean {
  return originals.size > 0;
}
