// DDPM's forward process (diffusers schedulers/scheduling_ddpm.py): the training side of the noise schedule.
// Training draws t ~ U{0..T−1}, noises the clean latents with addNoise and regresses the noise (prediction
// type epsilon). Sampling uses the other schedulers of this folder.
import type * as tf from '@tensorflow/tfjs-core';
import type { SchedulerConfig } from '../model/configs.ts';
import { addNoiseVariancePreserving, alphasCumprod, requireEpsilonPrediction } from './common.ts';

export class DDPMScheduler {
  readonly numTrainTimesteps: number;
  /** ᾱ_t for t = 0..T−1 */
  readonly alphasCumprod: Float64Array;

  constructor(config: SchedulerConfig) {
    requireEpsilonPrediction(config, 'DDPM');
    this.numTrainTimesteps = config.numTrainTimesteps;
    this.alphasCumprod = alphasCumprod(config);
  }

  /** x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·noise, with one timestep per batch item (or one for all). */
  addNoise(x0: tf.Tensor, noise: tf.Tensor, t: number | readonly number[]): tf.Tensor {
    return addNoiseVariancePreserving(this.alphasCumprod, x0, noise, t);
  }
}
