/**
 * An exponential moving average of trainable weights (Polyak averaging, as timm's ModelEmaV2 or torch's
 * AveragedModel with an EMA function): average = decay · average + (1 − decay) · weights, one tensor per
 * variable, held outside the variables so training goes on with its own weights.
 */
import * as tf from '../backend/tf';
import { arraysOf, type NamedArrays } from '../model/tensor';

export class WeightAverage {
  private readonly average: tf.Tensor[];

  /** Starts at the variables' current values, or at saved arrays (a resumed run). */
  constructor(
    private readonly vars: Array<[string, tf.Variable]>,
    private readonly decay: number,
    saved?: NamedArrays,
  ) {
    this.average = vars.map(([name, v]) => {
      if (!saved) return tf.keep(v.clone());
      const a = saved.get(name);
      if (!a) throw new Error(`the saved average has no tensor "${name}"`);
      return tf.keep(tf.tensor(a.data as Float32Array, v.shape));
    });
  }

  /** Folds the variables' current values into the average. */
  update(): void {
    const d = this.decay;
    tf.tidy(() =>
      this.vars.forEach(([, v], i) => {
        const next = tf.keep(this.average[i].mul(d).add(v.mul(1 - d)));
        this.average[i].dispose();
        this.average[i] = next;
      }),
    );
  }

  /** The average as plain arrays, named as the variables (for a checkpoint). */
  arrays(): NamedArrays {
    return arraysOf(this.vars.map(([name], i) => [name, this.average[i]] as const));
  }

  /** Sets the variables to the average. */
  assignToVariables(): void {
    this.vars.forEach(([, v], i) => v.assign(this.average[i]));
  }

  dispose(): void {
    this.average.forEach((t) => t.dispose());
  }
}
