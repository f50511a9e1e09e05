// DPM-Solver++ 2M (diffusers schedulers/scheduling_dpmsolver_multistep.py: algorithm dpmsolver++, order 2,
// midpoint solver, lower_order_final, final σ = 0). It integrates the data prediction x0̂ in
// λ = log(α/σ) with α_t = 1/√(σ²+1), σ'_t = σ·α_t:
//   first order:  x_t = (σ'_t/σ'_s)·x − α_t(e^{−h} − 1)·x0̂_s                     (h = λ_t − λ_s)
//   second order: x_t = (σ'_t/σ'_s0)·x − α_t(e^{−h} − 1)·D0 − ½·α_t(e^{−h} − 1)·D1
//                 D0 = x0̂_s0, D1 = (x0̂_s0 − x0̂_s1)/r0, r0 = (λ_s0 − λ_s1)/h
// The first step is first order (no history yet), and so is the last one (final σ = 0, or lower_order_final
// with fewer than 15 steps). (diffusers' lower_order_second only ever lowers third order to second.)
import * as tf from '@tensorflow/tfjs-core';
import type { SchedulerConfig } from '../model/configs.ts';
import {
  type Scheduler, type TimestepSpacing, SchedulerError, alphasCumprod, checkStepCount, configBool, configChoice, configNumber, configSpacing, interpolate,
  mapTimesteps, perItem, refuseUnsupported, requireEpsilonPrediction, sigmasFromAlphasCumprod, spacedTimesteps,
} from './common.ts';

const CLASS = 'DPMSolverMultistepScheduler';

export class DPMSolverMultistepScheduler implements Scheduler {
  readonly name = 'dpmpp-2m' as const;
  readonly initNoiseSigma = 1;
  private readonly trainSigmas: Float64Array;
  private readonly numTrain: number;
  private readonly spacing: TimestepSpacing;
  private readonly stepsOffset: number;
  private readonly order: 1 | 2;
  private readonly solverType: 'midpoint' | 'heun';
  private readonly lowerOrderFinal: boolean;
  private readonly eulerAtFinal: boolean;
  private readonly finalSigmaZero: boolean;
  private schedule: number[] = [];
  /** σ per inference timestep, plus the final σ */
  private sigmas: number[] = [];
  private stepIndex: number | null = null;
  /** data predictions x0̂ of the previous steps, oldest first (at most `order`) */
  private history: tf.Tensor[] = [];

  constructor(config: SchedulerConfig) {
    requireEpsilonPrediction(config, 'DPM-Solver++');
    refuseUnsupported(config, 'DPM-Solver++', [
      'use_karras_sigmas', 'use_exponential_sigmas', 'use_beta_sigmas', 'use_lu_lambdas', 'use_flow_sigmas',
      'thresholding', 'rescale_betas_zero_snr', 'use_dynamic_shifting',
    ]);
    const name = 'DPM-Solver++';
    configChoice(config, 'algorithm_type', 'dpmsolver++', ['dpmsolver++'], name);
    const order = configNumber(config, 'solver_order', 2);
    if (order !== 1 && order !== 2) {
      throw new SchedulerError(`the ${name} scheduler here supports solver_order 1 or 2; the model's scheduler config says ${order}`);
    }
    if (Number.isFinite(configNumber(config, 'lambda_min_clipped', -Infinity))) {
      throw new SchedulerError(`the ${name} scheduler here does not support lambda_min_clipped`);
    }
    this.trainSigmas = sigmasFromAlphasCumprod(alphasCumprod(config));
    this.numTrain = config.numTrainTimesteps;
    this.spacing = configSpacing(config, CLASS, 'linspace');
    this.stepsOffset = config.stepsOffset;
    this.order = order;
    this.solverType = configChoice(config, 'solver_type', 'midpoint', ['midpoint', 'heun'], name);
    this.lowerOrderFinal = configBool(config, 'lower_order_final', true);
    this.eulerAtFinal = configBool(config, 'euler_at_final', false);
    this.finalSigmaZero = configChoice(config, 'final_sigmas_type', 'zero', ['zero', 'sigma_min'], name) === 'zero';
  }

  get timesteps(): readonly number[] {
    return this.schedule;
  }

  /** σ per inference timestep followed by the final σ */
  get stepSigmas(): readonly number[] {
    return this.sigmas;
  }

  setTimesteps(steps: number): void {
    checkStepCount(steps, this.numTrain, 'DPM-Solver++');
    this.dispose();
    // N+1 points with the last (t = 0 + offset) dropped, except for trailing spacing
    this.schedule = this.spacing === 'trailing'
      ? spacedTimesteps('trailing', this.numTrain, steps, this.stepsOffset)
      : spacedTimesteps(this.spacing, this.numTrain, steps + 1, this.stepsOffset).slice(0, -1);
    const last = this.finalSigmaZero ? 0 : this.trainSigmas[0]!;
    this.sigmas = [...this.schedule.map((t) => interpolate(this.trainSigmas, t)), last].map(Math.fround);
    this.stepIndex = null;
  }

  /** DPM-Solver's model input is the sample itself (returned as is). */
  scaleModelInput(sample: tf.Tensor): tf.Tensor {
    return sample;
  }

  step(modelOutput: tf.Tensor, t: number, sample: tf.Tensor): tf.Tensor {
    if (this.schedule.length === 0) throw new SchedulerError('DPM-Solver++: call setTimesteps before step');
    if (this.stepIndex === null) this.stepIndex = this.indexOf(t);
    const i = this.stepIndex;
    const n = this.schedule.length;
    if (i >= n) throw new SchedulerError(`DPM-Solver++: step called ${i + 1} times for ${n} timesteps`);
    const lowerOrderFinal = i === n - 1 && (this.eulerAtFinal || (this.lowerOrderFinal && n < 15) || this.finalSigmaZero);

    const s0 = alphaSigma(this.sigmas[i]!);
    const target = alphaSigma(this.sigmas[i + 1]!);
    const x0 = tf.keep(tf.tidy(() => tf.div(tf.sub(sample, tf.mul(modelOutput, s0.sigma)), s0.alpha)));
    const previous = this.history[this.history.length - 1];
    const firstOrder = this.order === 1 || previous === undefined || lowerOrderFinal;

    // h = λ_t − λ_s0; with σ_t = 0 (final step) λ_t = ∞, e^{−h} = 0 and σ'_t/σ'_s0 = 0: the result is x0̂
    const expMinusH = target.sigma === 0 ? 0 : Math.exp(-(target.lambda - s0.lambda));
    const result = tf.tidy(() => {
      const decay = tf.mul(sample, target.sigma / s0.sigma);
      const d0Coeff = -target.alpha * (expMinusH - 1);
      if (firstOrder) return tf.add(decay, tf.mul(x0, d0Coeff));
      const s1 = alphaSigma(this.sigmas[i - 1]!);
      const h = target.lambda - s0.lambda;
      const r0 = (s0.lambda - s1.lambda) / h;
      const d1 = tf.div(tf.sub(x0, previous!), r0);
      const d1Coeff = this.solverType === 'midpoint' ? 0.5 * d0Coeff : target.alpha * ((expMinusH - 1) / h + 1);
      return tf.addN([decay, tf.mul(x0, d0Coeff), tf.mul(d1, d1Coeff)]);
    });

    this.history.push(x0);
    while (this.history.length > this.order) this.history.shift()!.dispose();
    this.stepIndex = i + 1;
    return result;
  }

  /** α_t·x0 + σ'_t·noise, for timesteps of the current schedule */
  addNoise(x0: tf.Tensor, noise: tf.Tensor, t: number | readonly number[]): tf.Tensor {
    const sigma = mapTimesteps(t, x0, (step) => this.sigmas[this.indexOf(step)]!);
    const alpha = typeof sigma === 'number' ? alphaSigma(sigma).alpha : sigma.map((s) => alphaSigma(s).alpha);
    const scaled = typeof sigma === 'number' ? alphaSigma(sigma).sigma : sigma.map((s) => alphaSigma(s).sigma);
    return tf.tidy(() => tf.add(tf.mul(x0, perItem(alpha, x0.rank)), tf.mul(noise, perItem(scaled, x0.rank))));
  }

  dispose(): void {
    tf.dispose(this.history);
    this.history = [];
  }

  /** diffusers' index_for_timestep: the second match when a timestep repeats, the last step when absent */
  private indexOf(t: number): number {
    const matches = this.schedule.flatMap((s, i) => (s === t ? [i] : []));
    if (matches.length === 0) return this.schedule.length - 1;
    return matches.length > 1 ? matches[1]! : matches[0]!;
  }
}

/** α_t = 1/√(σ²+1), σ'_t = σ·α_t, λ = log α_t − log σ'_t */
function alphaSigma(sigma: number): { alpha: number; sigma: number; lambda: number } {
  const alpha = 1 / Math.sqrt(sigma * sigma + 1);
  const scaled = sigma * alpha;
  return { alpha, sigma: scaled, lambda: Math.log(alpha) - Math.log(scaled) };
}
