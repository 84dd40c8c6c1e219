/** Masked cross-entropy for supervised fine-tuning. */
import * as tf from '../backend/tf';

/**
 * Log-probability of each target token: logits [N, V], targets [N] -> [N].
 * A custom gradient (onehot - softmax) avoids differentiating through a gather over N·V entries.
 */
export function targetLogprobs(logits: tf.Tensor2D, targets: tf.Tensor1D): tf.Tensor1D {
  const vocab = logits.shape[1];
  const f = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [x, save] = args as [tf.Tensor, tf.GradSaveFunc];
    const logp = tf.logSoftmax(x);
    const onehot = tf.oneHot(targets, vocab);
    save([logp, onehot]);
    return {
      value: tf.sum(tf.mul(logp, onehot), -1),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [lp, oh] = saved;
        return tf.mul(tf.sub(oh, tf.exp(lp)), tf.expandDims(dy, 1));
      },
    };
  });
  return f(logits) as tf.Tensor1D;
}

/** Weighted mean negative log-likelihood: -sum(w·logp) / sum(w). Weight 0 marks prompt and padding. */
export function maskedNLL(logprobs: tf.Tensor1D, weights: tf.Tensor1D, weightSum: number): tf.Scalar {
  return tf.div(tf.neg(tf.sum(tf.mul(logprobs, weights))), Math.max(weightSum, 1e-9)) as tf.Scalar;
}
