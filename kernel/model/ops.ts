/**
 * Hot-path layers with hand-written gradients. Autograd's versions are correct but slow on wasm:
 * - a dense layer's bias add and LoRA branch become many small kernels, each with its own gradient
 *   bookkeeping; here the whole layer is one tape node and frozen weights get no gradient at all;
 * - it differentiates GELU through tanh, which is ~15x slower than sigmoid on wasm;
 * - LayerNorm's autograd graph is a dozen kernels where the closed form needs five.
 * Each gradient below is checked against autograd in test/ops.test.ts.
 */
import * as tf from '../backend/tf';

export interface LoraTerm {
  A: tf.Variable; // [in, r]
  B: tf.Variable; // [r, out]
  scale: number;
  /** Input of the low-rank path: x, or dropout(x) in training. */
  input: tf.Tensor2D;
}

/**
 * y = x·W + b (+ scale · xl·A·B). W [in, out] in Conv1D layout. Gradients flow to x, to xl, to W and b
 * only when they are trainable, and to A and B.
 */
export function linear(x: tf.Tensor2D, W: tf.Variable, b: tf.Variable, lora?: LoraTerm): tf.Tensor2D {
  const trainBase = W.trainable;
  const separateInput = lora !== undefined && lora.input !== x; // dropout gives the low-rank path its own input
  // customGrad differentiates only its explicit inputs; frozen W and b stay in the closure.
  const inputs: tf.Tensor[] = [x];
  if (trainBase) inputs.push(W, b);
  if (lora && separateInput) inputs.push(lora.input);
  if (lora) inputs.push(lora.A, lora.B);
  const f = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    let y = tf.fused.matMul({ a: x, b: W as tf.Tensor2D, bias: b }) as tf.Tensor2D;
    // The engine disposes forward intermediates before backprop: the gradient may use only saved tensors.
    const keep: tf.Tensor[] = trainBase ? [x] : [];
    if (lora) {
      const h = tf.matMul(lora.input, lora.A as tf.Tensor2D); // [N, r]
      y = tf.add(y, tf.mul(tf.matMul(h, lora.B as tf.Tensor2D), lora.scale)) as tf.Tensor2D;
      keep.push(h, lora.input);
    }
    save(keep);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const dy2 = dy as tf.Tensor2D;
        const xs = trainBase ? (saved[0] as tf.Tensor2D) : undefined;
        let dx = tf.matMul(dy2, W as tf.Tensor2D, false, true);
        const grads: tf.Tensor[] = [];
        if (xs) grads.push(tf.matMul(xs, dy2, true, false), tf.sum(dy2, 0));
        if (lora) {
          const [h, xl] = saved.slice(trainBase ? 1 : 0) as tf.Tensor2D[];
          const g = tf.mul(tf.matMul(dy2, lora.B as tf.Tensor2D, false, true), lora.scale); // [N, r]
          const dxl = tf.matMul(g, lora.A as tf.Tensor2D, false, true); // [N, in]
          if (separateInput) grads.push(dxl);
          else dx = tf.add(dx, dxl) as tf.Tensor2D;
          grads.push(tf.matMul(xl, g, true, false), tf.mul(tf.matMul(h, dy2, true, false), lora.scale));
        }
        return [dx, ...grads];
      },
    };
  });
  return f(...inputs) as tf.Tensor2D;
}

const GELU_C = Math.sqrt(2 / Math.PI);
const GELU_K = 0.044715;

/**
 * GELU, tanh approximation ("gelu_new"), written as x·sigmoid(2z) with z = c·(x + k·x³), which equals
 * 0.5·x·(1 + tanh z) exactly. Derivative: s + x·s·(1 − s)·2c·(1 + 3k·x²).
 */
export function gelu(x: tf.Tensor2D): tf.Tensor2D {
  const f = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [xin, save] = args as [tf.Tensor, tf.GradSaveFunc];
    const x2 = tf.mul(xin, xin);
    const s = tf.sigmoid(tf.mul(xin, tf.add(tf.mul(x2, 2 * GELU_C * GELU_K), 2 * GELU_C)));
    save([xin, x2, s]);
    return {
      value: tf.mul(xin, s),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xs, x2s, ss] = saved;
        const inner = tf.add(tf.mul(x2s, 2 * GELU_C * 3 * GELU_K), 2 * GELU_C);
        const ds = tf.mul(tf.mul(ss, tf.sub(1, ss)), tf.mul(xs, inner));
        return tf.mul(dy, tf.add(ss, ds));
      },
    };
  });
  return f(x) as tf.Tensor2D;
}

/** LayerNorm over the last axis with the standard closed-form gradient (one pass instead of autograd's many). */
export function layerNorm(x: tf.Tensor2D, gamma: tf.Variable, beta: tf.Variable, eps: number): tf.Tensor2D {
  const trainable = gamma.trainable;
  const inputs: tf.Tensor[] = trainable ? [x, gamma, beta] : [x];
  const f = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const { mean, variance } = tf.moments(x, -1, true);
    const rstd = tf.rsqrt(tf.add(variance, eps));
    const xhat = tf.mul(tf.sub(x, mean), rstd);
    save([xhat, rstd]);
    return {
      value: tf.add(tf.mul(xhat, gamma), beta),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [xh, rs] = saved;
        const dxhat = tf.mul(dy, gamma);
        const m1 = tf.mean(dxhat, -1, true);
        const m2 = tf.mean(tf.mul(dxhat, xh), -1, true);
        const dx = tf.mul(tf.sub(tf.sub(dxhat, m1), tf.mul(xh, m2)), rs);
        return trainable ? [dx, tf.sum(tf.mul(dy, xh), 0), tf.sum(dy, 0)] : [dx];
      },
    };
  });
  return f(...inputs) as tf.Tensor2D;
}
