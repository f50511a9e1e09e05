// DDIM (diffusers schedulers/scheduling_ddim.py), deterministic (η = 0):
//   x0̂ = (x_t − √(1−ᾱ_t)·ε) / √ᾱ_t,   x_prev = √ᾱ_prev·x0̂ + √(1−ᾱ_prev)·ε
// with prev = t − T/N, and ᾱ_prev = final_alpha_cumprod past the first training step (ᾱ_0 when
// set_alpha_to_one is false, as in SD 1.5's config).
import * as tf from '@tensorflow/tfjs-core';
import type { SchedulerConfig } from '../model/configs.ts';
import {
  type Scheduler, type TimestepSpacing, SchedulerError, addNoiseVariancePreserving, alphaAt, alphasCumprod, checkStepCount,
  configBool, configNumber, configSpacing, refuseUnsupported, requireEpsilonPrediction, spacedTimesteps,
} from './common.ts';

const CLASS = 'DDIMScheduler';

export class DDIMScheduler implements Scheduler {
  readonly name = 'ddim' as const;
  readonly initNoiseSigma = 1;
  private readonly alphasCumprod: Float64Array;
  private readonly finalAlphaCumprod: number;
  private readonly numTrain: number;
  private readonly spacing: TimestepSpacing;
  private readonly stepsOffset: number;
  /** clamp x0̂ to ±clipRange (diffusers' clip_sample; off in SD 1.5's config) */
  private readonly clipRange: number | null;
  private steps = 0;
  private schedule: number[] = [];

  constructor(config: SchedulerConfig) {
    requireEpsilonPrediction(config, 'DDIM');
    refuseUnsupported(config, 'DDIM', ['thresholding', 'rescale_betas_zero_snr']);
    this.alphasCumprod = alphasCumprod(config);
    this.finalAlphaCumprod = configBool(config, 'set_alpha_to_one', true) ? 1 : this.alphasCumprod[0]!;
    this.numTrain = config.numTrainTimesteps;
    this.spacing = configSpacing(config, CLASS, 'leading');
    this.stepsOffset = config.stepsOffset;
    this.clipRange = configBool(config, 'clip_sample', true) ? configNumber(config, 'clip_sample_range', 1) : null;
  }

  get timesteps(): readonly number[] {
    return this.schedule;
  }

  setTimesteps(steps: number): void {
    checkStepCount(steps, this.numTrain, 'DDIM');
    this.steps = steps;
    this.schedule = spacedTimesteps(this.spacing, this.numTrain, steps, this.stepsOffset);
  }

  /** DDIM's model input is the sample itself (returned as is). */
  scaleModelInput(sample: tf.Tensor): tf.Tensor {
    return sample;
  }

  step(modelOutput: tf.Tensor, t: number, sample: tf.Tensor): tf.Tensor {
    if (this.steps === 0) throw new SchedulerError('DDIM: call setTimesteps before step');
    const prevT = t - Math.floor(this.numTrain / this.steps);
    const alphaT = alphaAt(this.alphasCumprod, t, 'DDIM');
    const alphaPrev = prevT >= 0 ? alphaAt(this.alphasCumprod, prevT, 'DDIM') : this.finalAlphaCumprod;
    return tf.tidy(() => {
      let x0 = tf.div(tf.sub(sample, tf.mul(modelOutput, Math.sqrt(1 - alphaT))), Math.sqrt(alphaT));
      if (this.clipRange !== null) x0 = tf.clipByValue(x0, -this.clipRange, this.clipRange);
      return tf.add(tf.mul(x0, Math.sqrt(alphaPrev)), tf.mul(modelOutput, Math.sqrt(1 - alphaPrev)));
    });
  }

  addNoise(x0: tf.Tensor, noise: tf.Tensor, t: number | readonly number[]): tf.Tensor {
    return addNoiseVariancePreserving(this.alphasCumprod, x0, noise, t);
  }

  dispose(): void {}
}
