// PNDM in its PLMS form (diffusers schedulers/scheduling_pndm.py with skip_prk_steps = true), the scheduler
// SD 1.5's config names. A linear multistep method over the noise predictions: the first step is an Euler
// step whose result is corrected by a second evaluation at the same timestep (the timestep list repeats one
// entry, so N steps evaluate the model N+1 times), then 2nd-, 3rd- and 4th-order Adams–Bashforth
// combinations of the last predictions, each applied with PNDM's transfer formula:
//   x_prev = √(ᾱ_prev/ᾱ_t)·x_t − (ᾱ_prev − ᾱ_t)·ε / (ᾱ_t·√(1−ᾱ_prev) + √(ᾱ_t(1−ᾱ_t)ᾱ_prev))
import * as tf from '@tensorflow/tfjs-core';
import type { SchedulerConfig } from '../model/configs.ts';
import {
  type Scheduler, type TimestepSpacing, SchedulerError, addNoiseVariancePreserving, alphaAt, alphasCumprod, checkStepCount,
  configBool, configSpacing, requireEpsilonPrediction, spacedTimesteps,
} from './common.ts';

const CLASS = 'PNDMScheduler';

export class PNDMScheduler implements Scheduler {
  readonly name = 'pndm' as const;
  readonly initNoiseSigma = 1;
  private readonly alphasCumprod: Float64Array;
  private readonly finalAlphaCumprod: number;
  private readonly numTrain: number;
  private readonly spacing: TimestepSpacing;
  private readonly stepsOffset: number;
  private steps = 0;
  private schedule: number[] = [];
  /** model steps taken since setTimesteps */
  private counter = 0;
  /** the last (up to 4) noise predictions, oldest first */
  private ets: tf.Tensor[] = [];
  /** the sample before the first step, which the corrector step restarts from */
  private firstSample: tf.Tensor | null = null;

  constructor(config: SchedulerConfig) {
    requireEpsilonPrediction(config, 'PNDM');
    if (!configBool(config, 'skip_prk_steps', false)) {
      throw new SchedulerError(
        'the PNDM scheduler here runs in PLMS mode only (skip_prk_steps: true, as in Stable Diffusion 1.x configs); ' +
          'this model\'s scheduler config asks for Runge-Kutta warm-up steps. Choose another scheduler (ddim, euler, dpmpp-2m).',
      );
    }
    this.alphasCumprod = alphasCumprod(config);
    this.finalAlphaCumprod = configBool(config, 'set_alpha_to_one', false) ? 1 : this.alphasCumprod[0]!;
    this.numTrain = config.numTrainTimesteps;
    this.spacing = configSpacing(config, CLASS, 'leading');
    this.stepsOffset = config.stepsOffset;
  }

  get timesteps(): readonly number[] {
    return this.schedule;
  }

  setTimesteps(steps: number): void {
    checkStepCount(steps, this.numTrain, 'PNDM');
    this.dispose();
    this.steps = steps;
    // descending t_0 > t_1 > … ; PLMS evaluates t_0, t_1, t_1, t_2, …, t_{N−1}
    const spaced = spacedTimesteps(this.spacing, this.numTrain, steps, this.stepsOffset);
    this.schedule = steps === 1 ? spaced : [spaced[0]!, spaced[1]!, ...spaced.slice(1)];
    this.counter = 0;
  }

  /** PNDM's model input is the sample itself (returned as is). */
  scaleModelInput(sample: tf.Tensor): tf.Tensor {
    return sample;
  }

  step(modelOutput: tf.Tensor, t: number, sample: tf.Tensor): tf.Tensor {
    if (this.steps === 0) throw new SchedulerError('PNDM: call setTimesteps before step');
    const ratio = Math.floor(this.numTrain / this.steps);
    let from = t;
    let to = t - ratio;
    if (this.counter === 1) {
      // the corrector: the same interval as the first step, restarted from the first sample
      from = t + ratio;
      to = t;
    } else {
      this.remember(modelOutput);
    }
    const result = tf.tidy(() => {
      const e = this.ets;
      const n = e.length;
      let eps: tf.Tensor;
      let x = sample;
      if (n === 1 && this.counter === 0) {
        eps = modelOutput;
      } else if (n === 1 && this.counter === 1) {
        eps = tf.div(tf.add(modelOutput, e[0]!), 2);
        x = this.firstSample!;
      } else if (n === 2) {
        eps = tf.div(tf.sub(tf.mul(e[1]!, 3), e[0]!), 2);
      } else if (n === 3) {
        eps = tf.div(tf.addN([tf.mul(e[2]!, 23), tf.mul(e[1]!, -16), tf.mul(e[0]!, 5)]), 12);
      } else {
        eps = tf.div(tf.addN([tf.mul(e[3]!, 55), tf.mul(e[2]!, -59), tf.mul(e[1]!, 37), tf.mul(e[0]!, -9)]), 24);
      }
      return this.transfer(x, from, to, eps);
    });
    if (this.counter === 0) {
      this.firstSample = tf.keep(sample.clone());
    } else if (this.counter === 1) {
      this.firstSample?.dispose();
      this.firstSample = null;
    }
    this.counter++;
    return result;
  }

  addNoise(x0: tf.Tensor, noise: tf.Tensor, t: number | readonly number[]): tf.Tensor {
    return addNoiseVariancePreserving(this.alphasCumprod, x0, noise, t);
  }

  dispose(): void {
    tf.dispose(this.ets);
    this.ets = [];
    this.firstSample?.dispose();
    this.firstSample = null;
  }

  private remember(modelOutput: tf.Tensor): void {
    if (this.ets.length === 4) this.ets.shift()!.dispose();
    this.ets.push(tf.keep(modelOutput.clone()));
  }

  private transfer(sample: tf.Tensor, t: number, prevT: number, eps: tf.Tensor): tf.Tensor {
    const alphaT = alphaAt(this.alphasCumprod, t, 'PNDM');
    const alphaPrev = prevT >= 0 ? alphaAt(this.alphasCumprod, prevT, 'PNDM') : this.finalAlphaCumprod;
    const sampleCoeff = Math.sqrt(alphaPrev / alphaT);
    const denominator = alphaT * Math.sqrt(1 - alphaPrev) + Math.sqrt(alphaT * (1 - alphaT) * alphaPrev);
    return tf.sub(tf.mul(sample, sampleCoeff), tf.mul(eps, (alphaPrev - alphaT) / denominator));
  }
}
