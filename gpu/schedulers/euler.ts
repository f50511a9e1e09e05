// Euler (diffusers schedulers/scheduling_euler_discrete.py, EulerDiscreteScheduler without churn): the
// sampler of the variance-exploding parameterisation x = x0 + σ·ε. The model sees x / √(σ²+1) and the
// (possibly fractional) timestep; a step moves along the predicted noise: x_next = x + ε·(σ_next − σ).
// σ at each inference timestep is interpolated linearly over the training sigmas; a final σ = 0 is appended.
import * as tf from '@tensorflow/tfjs-core';
import type { SchedulerConfig } from '../model/configs.ts';
import {
  type Scheduler, type TimestepSpacing, SchedulerError, alphasCumprod, checkStepCount, configChoice, configSpacing, interpolate,
  linspaceValues, mapTimesteps, perItem, refuseUnsupported, requireEpsilonPrediction, sigmasFromAlphasCumprod,
  spacedTimesteps,
} from './common.ts';

const CLASS = 'EulerDiscreteScheduler';

export class EulerDiscreteScheduler implements Scheduler {
  readonly name = 'euler' as const;
  private readonly trainSigmas: Float64Array;
  private readonly numTrain: number;
  private readonly spacing: TimestepSpacing;
  private readonly stepsOffset: number;
  private readonly finalSigma: number;
  private schedule: number[] = [];
  /** σ per inference timestep, plus the final σ */
  private sigmas: number[] = [];
  private stepIndex: number | null = null;

  constructor(config: SchedulerConfig) {
    requireEpsilonPrediction(config, 'Euler');
    refuseUnsupported(config, 'Euler', ['use_karras_sigmas', 'use_exponential_sigmas', 'use_beta_sigmas', 'rescale_betas_zero_snr']);
    configChoice(config, 'interpolation_type', 'linear', ['linear'], 'Euler');
    configChoice(config, 'timestep_type', 'discrete', ['discrete'], 'Euler');
    this.trainSigmas = sigmasFromAlphasCumprod(alphasCumprod(config));
    this.numTrain = config.numTrainTimesteps;
    this.spacing = configSpacing(config, CLASS, 'linspace');
    this.stepsOffset = config.stepsOffset;
    this.finalSigma = configChoice(config, 'final_sigmas_type', 'zero', ['zero', 'sigma_min'], 'Euler') === 'zero' ? 0 : this.trainSigmas[0]!;
  }

  get timesteps(): readonly number[] {
    return this.schedule;
  }

  /** σ_max for linspace/trailing spacing, √(σ_max² + 1) for leading (diffusers' choice) */
  get initNoiseSigma(): number {
    if (this.sigmas.length === 0) throw new SchedulerError('Euler: call setTimesteps before reading initNoiseSigma');
    const max = Math.max(...this.sigmas);
    return this.spacing === 'leading' ? Math.fround(Math.sqrt(max * max + 1)) : max;
  }

  /** σ per inference timestep followed by the final σ (0) */
  get stepSigmas(): readonly number[] {
    return this.sigmas;
  }

  setTimesteps(steps: number): void {
    checkStepCount(steps, this.numTrain, 'Euler');
    this.schedule = this.spacing === 'linspace'
      // unrounded: Euler evaluates the model at fractional timesteps
      ? linspaceValues(0, this.numTrain - 1, steps).map(Math.fround).reverse()
      : spacedTimesteps(this.spacing, this.numTrain, steps, this.stepsOffset);
    this.sigmas = [...this.schedule.map((t) => interpolate(this.trainSigmas, t)), this.finalSigma].map(Math.fround);
    this.stepIndex = null;
  }

  scaleModelInput(sample: tf.Tensor, t: number): tf.Tensor {
    if (this.stepIndex === null) this.stepIndex = this.indexOf(t);
    const sigma = this.sigmas[this.stepIndex]!;
    return tf.div(sample, Math.sqrt(sigma * sigma + 1));
  }

  step(modelOutput: tf.Tensor, t: number, sample: tf.Tensor): tf.Tensor {
    if (this.stepIndex === null) this.stepIndex = this.indexOf(t);
    const i = this.stepIndex;
    if (i >= this.schedule.length) throw new SchedulerError(`Euler: step called ${i + 1} times for ${this.schedule.length} timesteps`);
    const dt = this.sigmas[i + 1]! - this.sigmas[i]!;
    this.stepIndex = i + 1;
    // x0̂ = x − σ·ε, so the derivative (x − x0̂)/σ is ε itself
    return tf.tidy(() => tf.add(sample, tf.mul(modelOutput, dt)));
  }

  /** x0 + σ_t·noise, for timesteps of the current schedule */
  addNoise(x0: tf.Tensor, noise: tf.Tensor, t: number | readonly number[]): tf.Tensor {
    const sigma = mapTimesteps(t, x0, (step) => this.sigmas[this.indexOf(step)]!);
    return tf.tidy(() => tf.add(x0, tf.mul(noise, perItem(sigma, x0.rank))));
  }

  dispose(): void {}

  /** diffusers' index_for_timestep: the second match when a timestep repeats (img2img starts mid-schedule) */
  private indexOf(t: number): number {
    const matches = this.schedule.flatMap((s, i) => (s === t ? [i] : []));
    if (matches.length === 0) throw new SchedulerError(`Euler: timestep ${t} is not in the current schedule`);
    return matches.length > 1 ? matches[1]! : matches[0]!;
  }
}

