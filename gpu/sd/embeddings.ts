// Timestep conditioning of the UNet (diffusers models/embeddings.py): the sinusoidal `Timesteps` features
// (`time_proj`, no parameters) and the `TimestepEmbedding` MLP (`time_embedding`).
import * as tf from '@tensorflow/tfjs-core';
import type { WeightSource } from '../weights/component-weights.ts';
import { disposeParams, linear, loadLinear, silu, type LinearParams } from './nn.ts';

/**
 * Sinusoidal timestep features [B] → [B, dim] (diffusers `get_timestep_embedding`):
 * freq_i = exp(−ln(maxPeriod)·i / (half − freqShift)), features = [sin(t·freq), cos(t·freq)],
 * swapped to [cos, sin] when `flipSinToCos` (SD 1.x), zero-padded when `dim` is odd.
 */
export function timestepFeatures(
  timesteps: tf.Tensor1D, dim: number, flipSinToCos: boolean, freqShift: number, maxPeriod = 10000,
): tf.Tensor2D {
  const half = Math.floor(dim / 2);
  // The frequencies are rounded to float32 at each step the way PyTorch computes them, so the arguments
  // t·freq (up to ~1000) agree with diffusers' to the last bit.
  const freqs = new Float32Array(half);
  const logPeriod = Math.fround(-Math.log(maxPeriod));
  for (let i = 0; i < half; i++) {
    freqs[i] = Math.fround(Math.exp(Math.fround(Math.fround(logPeriod * i) / (half - freqShift))));
  }
  return tf.tidy(() => {
    const args = tf.mul(tf.reshape(tf.cast(timesteps, 'float32'), [-1, 1]), tf.tensor2d(freqs, [1, half]));
    const sin = tf.sin(args);
    const cos = tf.cos(args);
    const emb = tf.concat(flipSinToCos ? [cos, sin] : [sin, cos], 1) as tf.Tensor2D;
    return dim % 2 === 1 ? tf.pad(emb, [[0, 0], [0, 1]]) : emb;
  });
}

/** `time_embedding`: linear_1 (in → dim), SiLU, linear_2 (dim → dim). */
export class TimestepEmbedding {
  private readonly linear1: LinearParams;
  private readonly linear2: LinearParams;

  constructor(w: WeightSource, readonly prefix: string, readonly inDim: number, readonly timeEmbedDim: number) {
    this.linear1 = loadLinear(w, `${prefix}.linear_1`, inDim, timeEmbedDim, true);
    this.linear2 = loadLinear(w, `${prefix}.linear_2`, timeEmbedDim, timeEmbedDim, true);
  }

  static parameterShapes(prefix: string, inDim: number, timeEmbedDim: number, out: Map<string, number[]>): void {
    out.set(`${prefix}.linear_1.weight`, [timeEmbedDim, inDim]);
    out.set(`${prefix}.linear_1.bias`, [timeEmbedDim]);
    out.set(`${prefix}.linear_2.weight`, [timeEmbedDim, timeEmbedDim]);
    out.set(`${prefix}.linear_2.bias`, [timeEmbedDim]);
  }

  /** [B, in] → [B, dim] */
  forward(features: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => linear(silu(linear(features, this.linear1)), this.linear2) as tf.Tensor2D);
  }

  dispose(): void {
    disposeParams(this.linear1, this.linear2);
  }
}
