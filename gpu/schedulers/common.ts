// What every scheduler shares: the interface the pipeline drives, the training noise schedule (betas →
// alphas_cumprod) and the spacing of inference timesteps, as diffusers computes them
// (schedulers/scheduling_ddim.py and friends, `set_timesteps`).
import * as tf from '@tensorflow/tfjs-core';
import type { SchedulerConfig } from '../model/configs.ts';
import type { SchedulerName } from '../types.ts';

/**
 * A sampler built from the model's scheduler config. The pipeline loop is the same for all of them:
 * `setTimesteps(n)`, then for each `t` of `timesteps`: `scaleModelInput` → model → `step`.
 * Tensors passed in stay owned by the caller; tensors returned are new and owned by the caller.
 */
export interface Scheduler {
  readonly name: SchedulerName;
  /** the timesteps the model is evaluated at, in order (set by setTimesteps) */
  readonly timesteps: readonly number[];
  /** the standard deviation of the initial noise: initial latents are multiplied by it */
  readonly initNoiseSigma: number;
  /** chooses `steps` inference timesteps and resets the scheduler's history */
  setTimesteps(steps: number): void;
  /** the model input for timestep `t` (identity except for sigma-parameterised schedulers) */
  scaleModelInput(sample: tf.Tensor, t: number): tf.Tensor;
  /** one denoising step: the sample at the next (less noisy) timestep */
  step(modelOutput: tf.Tensor, t: number, sample: tf.Tensor): tf.Tensor;
  /** the forward process: `x0` noised to timestep `t` (one per batch item, or one for all) */
  addNoise(x0: tf.Tensor, noise: tf.Tensor, t: number | readonly number[]): tf.Tensor;
  /** frees the tensors a multistep scheduler keeps between steps */
  dispose(): void;
}

export class SchedulerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SchedulerError';
  }
}

export type TimestepSpacing = 'leading' | 'linspace' | 'trailing';

/**
 * A config value as a scheduler class reads it: the file's value, else that class's own default
 * (diffusers `SchedulerClass.from_config(config)`).
 */
export function configBool(config: SchedulerConfig, key: string, classDefault: boolean): boolean {
  const v = config.raw[key];
  if (v === undefined || v === null) return classDefault;
  if (typeof v !== 'boolean') throw new SchedulerError(`scheduler config: "${key}" should be true or false but is ${JSON.stringify(v)}`);
  return v;
}

export function configNumber(config: SchedulerConfig, key: string, classDefault: number): number {
  const v = config.raw[key];
  if (v === undefined || v === null) return classDefault;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new SchedulerError(`scheduler config: "${key}" should be a number but is ${JSON.stringify(v)}`);
  return v;
}

/** A string-valued config key that must be one of `allowed` (the values this engine implements). */
export function configChoice<T extends string>(config: SchedulerConfig, key: string, classDefault: T, allowed: readonly T[], schedulerName: string): T {
  const v = config.raw[key];
  if (v === undefined || v === null) return classDefault;
  if (!allowed.includes(v as T)) {
    throw new SchedulerError(
      `the ${schedulerName} scheduler here supports ${key} ${allowed.map((a) => JSON.stringify(a)).join(' or ')}; ` +
        `the model's scheduler config says ${JSON.stringify(v)}`,
    );
  }
  return v as T;
}

/**
 * The timestep spacing a scheduler class uses with this config. The file's `timestep_spacing` applies only
 * to the class the file names: SD 1.5's original config has no such key, newer saves write PNDM's own
 * default ("leading") into it, and the diffusers runs this engine is checked against build the other
 * schedulers with their class defaults (Euler and DPM-Solver: "linspace"; DDIM: "leading").
 */
export function configSpacing(config: SchedulerConfig, readerClass: string, classDefault: TimestepSpacing): TimestepSpacing {
  const v = (config.className === readerClass ? config.raw.timestep_spacing : undefined) ?? classDefault;
  if (v !== 'leading' && v !== 'linspace' && v !== 'trailing') {
    throw new SchedulerError(`scheduler config: timestep_spacing ${JSON.stringify(v)} is not one of "leading", "linspace", "trailing"`);
  }
  return v;
}

/** The SD 1.x schedulers predict noise; other parameterisations are refused with a clear message. */
export function requireEpsilonPrediction(config: SchedulerConfig, schedulerName: string): void {
  if (config.predictionType !== 'epsilon') {
    throw new SchedulerError(
      `the ${schedulerName} scheduler here supports prediction_type "epsilon" (Stable Diffusion 1.x) only; ` +
        `this model's scheduler config says "${config.predictionType}"`,
    );
  }
}

/** Refuses config switches that change the sampler's math and that this engine does not implement. */
export function refuseUnsupported(config: SchedulerConfig, schedulerName: string, keys: readonly string[]): void {
  for (const key of keys) {
    if (config.raw[key] === true) {
      throw new SchedulerError(`the ${schedulerName} scheduler here does not support "${key}": true (set in the model's scheduler config)`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// the training noise schedule

/**
 * β_t for t = 0..T−1, computed in float32 as PyTorch does (torch.linspace in float32, squared in float32),
 * so alphas_cumprod agree with diffusers' to float32 rounding.
 */
export function betas(config: SchedulerConfig): Float64Array {
  const n = config.numTrainTimesteps;
  if (config.trainedBetas) {
    if (config.trainedBetas.length !== n) {
      throw new SchedulerError(`scheduler config: trained_betas has ${config.trainedBetas.length} values but num_train_timesteps is ${n}`);
    }
    return Float64Array.from(config.trainedBetas, Math.fround);
  }
  switch (config.betaSchedule) {
    case 'linear':
      return linspaceFloat32(config.betaStart, config.betaEnd, n);
    case 'scaled_linear':
      return linspaceFloat32(Math.sqrt(config.betaStart), Math.sqrt(config.betaEnd), n).map((b) => Math.fround(b * b));
    case 'squaredcos_cap_v2':
      return cosineBetas(n);
    default:
      throw new SchedulerError(
        `scheduler config: beta_schedule "${config.betaSchedule}" is not supported (use "scaled_linear", "linear" or "squaredcos_cap_v2")`,
      );
  }
}

/** ᾱ_t = Π_{s≤t} (1 − β_s); float32 values accumulated in double, like torch.cumprod on the CPU. */
export function alphasCumprod(config: SchedulerConfig): Float64Array {
  const b = betas(config);
  const out = new Float64Array(b.length);
  let acc = 1;
  for (let i = 0; i < b.length; i++) {
    acc *= Math.fround(1 - b[i]!);
    out[i] = Math.fround(acc);
  }
  return out;
}

/** torch.linspace(start, end, n, dtype=float32): the first half counts up from start, the second down from end. */
function linspaceFloat32(start: number, end: number, n: number): Float64Array {
  const out = new Float64Array(n);
  if (n === 1) {
    out[0] = Math.fround(start);
    return out;
  }
  const s = Math.fround(start);
  const e = Math.fround(end);
  const step = Math.fround((e - s) / (n - 1));
  const half = Math.floor(n / 2);
  for (let i = 0; i < n; i++) {
    out[i] = i < half ? Math.fround(s + Math.fround(step * i)) : Math.fround(e - Math.fround(step * (n - 1 - i)));
  }
  return out;
}

/** The cosine schedule of Nichol & Dhariwal (diffusers `betas_for_alpha_bar`, max β 0.999). */
function cosineBetas(n: number): Float64Array {
  const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.fround(Math.min(1 - alphaBar((i + 1) / n) / alphaBar(i / n), 0.999));
  return out;
}

// ---------------------------------------------------------------------------------------------------
// inference timesteps

/**
 * `steps` integer timesteps in descending order, spaced as diffusers' DDIM/PNDM/DDPM `set_timesteps` space them:
 * - leading: ratio = T // steps; (0..steps−1)·ratio reversed, + steps_offset (SD 1.5, N=50: 981, 961, …, 1)
 * - linspace: round(linspace(0, T−1, steps)) reversed
 * - trailing: round(arange(T, 0, −T/steps)) − 1
 */
export function spacedTimesteps(spacing: TimestepSpacing, numTrain: number, steps: number, stepsOffset: number): number[] {
  switch (spacing) {
    case 'leading': {
      const ratio = Math.floor(numTrain / steps);
      return Array.from({ length: steps }, (_, i) => (steps - 1 - i) * ratio + stepsOffset);
    }
    case 'linspace':
      return linspaceValues(0, numTrain - 1, steps).map(roundHalfEven).reverse();
    case 'trailing': {
      // numpy's arange(T, 0, -T/steps) sometimes yields one extra element (a timestep of −1) through rounding;
      // exactly `steps` timesteps are taken here
      const ratio = numTrain / steps;
      return Array.from({ length: steps }, (_, i) => roundHalfEven(numTrain - i * ratio) - 1);
    }
  }
}

/** numpy.linspace(start, stop, n) in double precision. */
export function linspaceValues(start: number, stop: number, n: number): number[] {
  if (n === 1) return [start];
  const step = (stop - start) / (n - 1);
  return Array.from({ length: n }, (_, i) => (i === n - 1 ? stop : start + i * step));
}

/** numpy rounds halves to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Refuses step counts a scheduler cannot space over the training timesteps. */
export function checkStepCount(steps: number, numTrain: number, schedulerName: string): void {
  if (!Number.isInteger(steps) || steps < 1 || steps > numTrain) {
    throw new SchedulerError(`the ${schedulerName} scheduler needs a whole number of steps from 1 to ${numTrain}; got ${steps}`);
  }
}

/** σ_t = √((1 − ᾱ_t) / ᾱ_t), the noise level of the variance-exploding parameterisation. */
export function sigmasFromAlphasCumprod(alphasCumprod: Float64Array): Float64Array {
  return alphasCumprod.map((a) => Math.sqrt((1 - a) / a));
}

/** numpy.interp(x, arange(len(values)), values) for x within [0, len − 1]. */
export function interpolate(values: Float64Array, x: number): number {
  if (x <= 0) return values[0]!;
  const last = values.length - 1;
  if (x >= last) return values[last]!;
  const i = Math.floor(x);
  const w = x - i;
  return values[i]! * (1 - w) + values[i + 1]! * w;
}

/**
 * Per-item coefficients as a tensor that broadcasts against a batch of rank `rank`: [B, 1, …] for a list,
 * a scalar for a single value.
 */
export function perItem(values: readonly number[] | number, rank: number): tf.Tensor {
  if (typeof values === 'number') return tf.scalar(values, 'float32');
  return tf.tensor(values as number[], [values.length, ...Array.from({ length: rank - 1 }, () => 1)], 'float32');
}

/** x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·ε, the variance-preserving forward process (DDPM/DDIM/PNDM `add_noise`). */
export function addNoiseVariancePreserving(
  alphasCumprod: Float64Array, x0: tf.Tensor, noise: tf.Tensor, t: number | readonly number[],
): tf.Tensor {
  const ac = mapTimesteps(t, x0, (step) => {
    if (!Number.isInteger(step) || step < 0 || step >= alphasCumprod.length) {
      throw new SchedulerError(`addNoise: timestep ${step} is outside 0..${alphasCumprod.length - 1}`);
    }
    return alphasCumprod[step]!;
  });
  return tf.tidy(() => {
    const signal = perItem(typeof ac === 'number' ? Math.sqrt(ac) : ac.map(Math.sqrt), x0.rank);
    const noiseScale = perItem(typeof ac === 'number' ? Math.sqrt(1 - ac) : ac.map((a) => Math.sqrt(1 - a)), x0.rank);
    return tf.add(tf.mul(x0, signal), tf.mul(noise, noiseScale));
  });
}

/** Applies `f` to one timestep or to one per batch item (checking that there is one per item). */
export function mapTimesteps(t: number | readonly number[], x: tf.Tensor, f: (t: number) => number): number | number[] {
  if (typeof t === 'number') return f(t);
  if (t.length !== x.shape[0]) throw new SchedulerError(`addNoise: ${t.length} timesteps for a batch of ${x.shape[0]}`);
  return t.map(f);
}

/** ᾱ_t for an integer training timestep, with an error that names a timestep outside the schedule */
export function alphaAt(alphasCumprod: Float64Array, t: number, schedulerName: string): number {
  const a = Number.isInteger(t) ? alphasCumprod[t] : undefined;
  if (a === undefined) throw new SchedulerError(`${schedulerName}: timestep ${t} is not a training timestep (0..${alphasCumprod.length - 1})`);
  return a;
}
