import * as tf from '../backend/tf';

/** A variable that takes over `init` (tf.variable shares the data and keeps `init` alive otherwise). */
export function variableFrom<R extends tf.Rank>(init: tf.Tensor<R>, trainable: boolean): tf.Variable<R> {
  const v = tf.variable(init, trainable);
  init.dispose();
  return v;
}

/** Named float tensors as plain arrays, the shape safetensors files take. */
export type NamedArrays = Map<string, { shape: number[]; data: Float32Array }>;

/** Named tensors as named arrays (copies, so later updates of the tensors leave them as they are). */
export const arraysOf = (named: ReadonlyArray<readonly [string, tf.Tensor]>): NamedArrays =>
  new Map(named.map(([name, t]) => [name, { shape: t.shape, data: (t.dataSync() as Float32Array).slice() }]));
