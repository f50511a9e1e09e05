import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { parseSchedulerConfig } from '../../gpu/model/configs.ts';
import { DDPMScheduler, createScheduler, defaultSchedulerName, SCHEDULER_NAMES, SchedulerError } from '../../gpu/schedulers/index.ts';
import { alphasCumprod, spacedTimesteps } from '../../gpu/schedulers/common.ts';
import { fixtureModelDir, reference, relativeError } from './sd-tiny-reference.ts';

const sd15 = parseSchedulerConfig(JSON.parse(readFileSync(join(fixtureModelDir, 'scheduler/scheduler_config.json'), 'utf8')));

before(async () => {
  await tf.setBackend('wasm');
});

test('the SD 1.5 config names PNDM as the default scheduler', () => {
  assert.equal(defaultSchedulerName(sd15), 'pndm');
  assert.deepEqual([...SCHEDULER_NAMES].sort(), ['ddim', 'dpmpp-2m', 'euler', 'pndm']);
});

test('DDPM alphas_cumprod match diffusers within 1e-4 relative', () => {
  const ref = reference('ddpm.alphas_cumprod').data;
  const ours = new DDPMScheduler(sd15).alphasCumprod;
  assert.equal(ours.length, 1000);
  assert.ok(relativeError(ours, ref) < 1e-4, `relative error ${relativeError(ours, ref)}`);
  // and element by element, the last (smallest) value included
  for (const i of [0, 1, 499, 998, 999]) assert.ok(Math.abs(ours[i]! / ref[i]! - 1) < 1e-4, `alphas_cumprod[${i}] ${ours[i]} vs ${ref[i]}`);
});

test('DDPM add_noise with one timestep per item matches diffusers within 1e-4 relative', () => {
  const x0 = reference('ddpm.x0');
  const noise = reference('ddpm.noise');
  const t = Array.from(reference('ddpm.t').data);
  const expected = reference('ddpm.noisy').data;
  const before = tf.memory().numTensors;
  const noisy = tf.tidy(() => new DDPMScheduler(sd15).addNoise(tf.tensor(x0.data, [...x0.shape]), tf.tensor(noise.data, [...noise.shape]), t));
  const out = noisy.dataSync();
  noisy.dispose();
  assert.equal(tf.memory().numTensors, before);
  assert.ok(relativeError(out, expected) < 1e-4, `relative error ${relativeError(out, expected)}`);
  assert.throws(() => new DDPMScheduler(sd15).addNoise(tf.zeros([3, 1]), tf.zeros([3, 1]), [0, 1]), /2 timesteps for a batch of 3/);
  assert.throws(() => new DDPMScheduler(sd15).addNoise(tf.zeros([1]), tf.zeros([1]), 1000), /timestep 1000 is outside 0\.\.999/);
});

test('each scheduler picks the timesteps diffusers picks for the SD 1.5 config', () => {
  const cases: Array<[string, string, number]> = [['ddim', 'ddim', 10], ['pndm', 'pndm', 10], ['euler', 'euler', 10], ['dpmpp-2m', 'dpmpp2m', 12]];
  for (const [name, prefix, steps] of cases) {
    const s = createScheduler(name, sd15);
    s.setTimesteps(steps);
    assert.deepEqual(s.timesteps, Array.from(reference(`${prefix}.timesteps`).data), `${name} timesteps`);
    s.dispose();
  }
  const euler = createScheduler('euler', sd15) as ReturnType<typeof createScheduler> & { stepSigmas: readonly number[] };
  euler.setTimesteps(10);
  const sigmas = reference('euler.sigmas').data;
  assert.ok(relativeError(euler.stepSigmas, sigmas) < 1e-6);
  assert.equal(euler.stepSigmas[10], 0);
  // linspace spacing: the initial noise is scaled by σ_max
  assert.ok(Math.abs(euler.initNoiseSigma - sigmas[0]!) < 1e-5);
});

test('timestep spacings follow diffusers: leading with steps_offset, linspace, trailing', () => {
  assert.deepEqual(spacedTimesteps('leading', 1000, 50, 1).slice(0, 3), [981, 961, 941]);
  assert.equal(spacedTimesteps('leading', 1000, 50, 1).at(-1), 1);
  assert.deepEqual(spacedTimesteps('linspace', 1000, 4, 0), [999, 666, 333, 0]);
  assert.deepEqual(spacedTimesteps('trailing', 1000, 4, 0), [999, 749, 499, 249]);
  // numpy rounds halves to even: linspace(0, 999, 13) has 499.5 → 500 and 832.5 → 832
  assert.deepEqual(spacedTimesteps('linspace', 1000, 13, 0).slice(0, 7), [999, 916, 832, 749, 666, 583, 500]);
  // DPM-Solver with leading spacing (the spacing named when the config is a DPMSolverMultistepScheduler's)
  const dpm = createScheduler('dpmpp-2m', { ...sd15, className: 'DPMSolverMultistepScheduler' });
  dpm.setTimesteps(25);
  assert.deepEqual([dpm.timesteps[0], dpm.timesteps[1], dpm.timesteps.at(-1)], [951, 913, 39]);
  // Euler with leading spacing scales the initial noise by √(σ_max² + 1)
  const euler = createScheduler('euler', { ...sd15, className: 'EulerDiscreteScheduler' }) as ReturnType<typeof createScheduler> & { stepSigmas: readonly number[] };
  euler.setTimesteps(10);
  assert.deepEqual(euler.timesteps.slice(0, 2), [901, 801]);
  assert.ok(Math.abs(euler.initNoiseSigma - Math.sqrt(euler.stepSigmas[0]! ** 2 + 1)) < 1e-5);
});

test('fed the true noise, every scheduler walks the exact noising trajectory down to the clean sample', () => {
  // x_t = addNoise(x0, ε, t) and a model that answers ε: each step must land on the noised x0 of the next
  // timestep (the samplers are exact for a constant data prediction), and the last on x0 itself when the
  // schedule ends at σ = 0.
  const x0 = tf.tensor([0.3, -1.2, 0.8, 0.05], [1, 2, 2, 1]);
  const eps = tf.tensor([1.1, -0.4, 0.2, -2.0], [1, 2, 2, 1]);
  const ac = alphasCumprod(sd15);
  for (const name of SCHEDULER_NAMES) {
    const before = tf.memory().numTensors;
    const s = createScheduler(name, sd15);
    s.setTimesteps(8);
    const ts = s.timesteps;
    // the noised sample at schedule position i: variance-preserving √ᾱ_t·x0 + √(1−ᾱ_t)·ε, except for Euler,
    // whose samples live in the variance-exploding scale x0 + σ_i·ε (at possibly fractional timesteps)
    const sigmas = name === 'euler' ? (s as unknown as { stepSigmas: readonly number[] }).stepSigmas : [];
    const noisedAt = (i: number) => tf.tidy(() => name === 'euler'
      ? tf.add(x0, tf.mul(eps, sigmas[i]!))
      : tf.add(tf.mul(x0, Math.sqrt(ac[ts[i]!]!)), tf.mul(eps, Math.sqrt(1 - ac[ts[i]!]!))));
    let x = noisedAt(0);
    for (let i = 0; i < ts.length; i++) {
      const t = ts[i]!;
      const next = tf.tidy(() => {
        s.scaleModelInput(x, t);
        return s.step(eps, t, x);
      });
      x.dispose();
      x = next;
      // (PNDM evaluates its second timestep twice: predictor, then corrector; both land on x at that timestep)
      if (i + 1 < ts.length) {
        const want = noisedAt(i + 1);
        assert.ok(relativeError(x.dataSync(), want.dataSync()) < 1e-4, `${name} step ${i} (t=${t} → ${ts[i + 1]})`);
        want.dispose();
      }
    }
    const final = name === 'ddim' || name === 'pndm'
      ? tf.tidy(() => tf.add(tf.mul(x0, Math.sqrt(ac[0]!)), tf.mul(eps, Math.sqrt(1 - ac[0]!))))
      : x0.clone();
    assert.ok(relativeError(x.dataSync(), final.dataSync()) < 1e-4, `${name} final sample`);
    tf.dispose([x, final]);
    s.dispose();
    assert.equal(tf.memory().numTensors, before, `${name} leaks tensors`);
  }
  tf.dispose([x0, eps]);
});

test('an unknown scheduler, a bad step count and an unsupported config are refused with a clear message', () => {
  assert.throws(() => createScheduler('lms', sd15), (e: unknown) => e instanceof SchedulerError && /unknown scheduler "lms"; choose one of pndm, ddim, euler, dpmpp-2m/.test(e.message));
  assert.throws(() => createScheduler('ddim', sd15).setTimesteps(0), /whole number of steps from 1 to 1000; got 0/);
  assert.throws(() => createScheduler('euler', sd15).setTimesteps(1001), /from 1 to 1000; got 1001/);
  assert.throws(() => createScheduler('pndm', { ...sd15, raw: { ...sd15.raw, skip_prk_steps: false } }), /PLMS mode only/);
  assert.throws(() => createScheduler('euler', { ...sd15, predictionType: 'v_prediction' }), /prediction_type "epsilon".*says "v_prediction"/);
  assert.throws(() => createScheduler('dpmpp-2m', { ...sd15, raw: { ...sd15.raw, use_karras_sigmas: true } }), /does not support "use_karras_sigmas"/);
  assert.throws(() => createScheduler('dpmpp-2m', { ...sd15, raw: { ...sd15.raw, algorithm_type: 'sde-dpmsolver++' } }), /algorithm_type "dpmsolver\+\+"/);
});
