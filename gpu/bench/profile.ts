// Per-kernel profile of SD 1.5's UNet on WebGPU, stock tfjs kernels against the project's custom ones:
//
//   tsx gpu/bench.ts profile [--size 512] [--repeat N] [--rows N] [--no-train] [--toggles T1,T2] [--config FILE] [--json FILE]
//
// Builds the real SD 1.5 UNet (860M parameters; --config: another diffusers unet/config.json, e.g. the tiny
// test fixture's for a smoke test on the software adapter) with random weights made on the device, then for one
// inference step (batch 2, as with guidance) and one training-like step (the same forward plus the backward
// to the text conditioning, the data gradients Perfusion needs) prints wall ms per call (back-to-back calls)
// and, from one profiled call, GPU time and dispatches by op (timestamp queries; "–" without them).
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { grads } from '../autodiff.ts';
import { backendInfo, initBackend, releaseFreeGpuMemory, releaseWebGPU } from '../backend.ts';
import { registerGradients } from '../gradients.ts';
import { parseUNetConfig } from '../model/configs.ts';
import { UNet2DConditionModel, unetParameterShapes } from '../sd/unet.ts';
import { setCustomKernels } from '../webgpu/kernels.ts';
import { formatProfile, profileKernels, type KernelProfile } from '../webgpu/profile.ts';
import { takeDeviceErrors } from '../webgpu/device.ts';
import { RandomWeights } from './random-weights.ts';

/** stable-diffusion-v1-5's unet/config.json (sd-engine.md §1.1); other fields at their class defaults. */
const SD15_UNET = {
  sample_size: 64, in_channels: 4, out_channels: 4, block_out_channels: [320, 640, 1280, 1280], layers_per_block: 2,
  attention_head_dim: 8, cross_attention_dim: 768, norm_num_groups: 32, norm_eps: 1e-5,
  down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
  up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
};

async function drain(): Promise<void> {
  const b = tf.backend() as unknown as { commandEncoder?: GPUCommandEncoder | null; endComputePassEncoder(): void; submitQueue(): void; device: GPUDevice };
  if (b.commandEncoder) {
    b.endComputePassEncoder();
    b.submitQueue();
  }
  await b.device.queue.onSubmittedWorkDone();
}

async function wallMs(f: () => tf.TensorContainer, repeat: number): Promise<number> {
  tf.dispose(f());
  await drain();
  const t0 = performance.now();
  for (let i = 0; i < repeat; i++) tf.dispose(f());
  await drain();
  return (performance.now() - t0) / repeat;
}

const gpuTotal = (p: KernelProfile) => (p.timed ? p.rows.reduce((s, r) => s + (r.gpuMs ?? 0), 0) : null);
const dispatchTotal = (p: KernelProfile) => p.rows.reduce((s, r) => s + r.dispatches, 0);

export async function run(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      size: { type: 'string', default: '512' }, repeat: { type: 'string', default: '3' }, rows: { type: 'string', default: '20' },
      'no-train': { type: 'boolean', default: false }, toggles: { type: 'string' }, json: { type: 'string' }, config: { type: 'string' },
    },
    strict: true,
  });
  if (values.toggles) process.env.PERFUSION_DAWN_TOGGLES = values.toggles;
  const side = Number(values.size) / 8;
  const repeat = Number(values.repeat);
  const maxRows = Number(values.rows);
  if (!Number.isInteger(side) || side < 8) throw new Error(`--size must be a multiple of 8, at least 64; got ${values.size}`);
  if (!(repeat >= 1) || !(maxRows >= 1)) throw new Error('--repeat and --rows must be numbers ≥ 1');
  if ((await initBackend('webgpu', { log: (m) => console.log(m) })) !== 'webgpu') throw new Error('the profile needs the webgpu backend');
  registerGradients();
  const info = backendInfo();
  console.log(`device: ${info.adapter}; features: ${info.features?.join(', ') || 'none'}${process.env.PERFUSION_DAWN_TOGGLES ? `; Dawn toggles: ${process.env.PERFUSION_DAWN_TOGGLES}` : ''}`);

  const config = values.config ? parseUNetConfig(JSON.parse(readFileSync(values.config, 'utf8')), values.config) : parseUNetConfig(SD15_UNET);
  const contextDim = typeof config.crossAttentionDim === 'number' ? config.crossAttentionDim : config.crossAttentionDim[0]!;
  const unet = new UNet2DConditionModel(config, new RandomWeights('unet', unetParameterShapes(config)));
  const sample = tf.randomNormal([2, side, side, 4], 0, 1, 'float32', 1) as tf.Tensor4D;
  const context = tf.randomNormal([2, 77, contextDim], 0, 1, 'float32', 2) as tf.Tensor3D;
  await drain();
  await releaseFreeGpuMemory();
  const forward = () => unet.forward(sample, 500, context);
  // the data gradients of a Perfusion step: everything from the loss back to the cross-attention inputs
  // (through gpu/autodiff.ts, as teaching does)
  const train = () => grads((c: tf.Tensor) => tf.mean(tf.square(unet.forward(sample, 500, c as tf.Tensor3D))))([context]);
  const phases: Array<[string, () => tf.TensorContainer]> = [[`UNet forward, batch 2, ${side}×${side} latents`, forward]];
  if (!values['no-train']) phases.push([`UNet forward + backward to the conditioning, batch 2, ${side}×${side}`, train]);

  const results: Record<string, unknown>[] = [];
  try {
    for (const [name, f] of phases) {
      for (const custom of [false, true]) {
        setCustomKernels(custom);
        const ms = await wallMs(f, repeat);
        const profile = await profileKernels(f);
        const gpu = gpuTotal(profile);
        const errors = takeDeviceErrors();
        if (errors.length) console.log(`!! WebGPU reported ${errors.length} error(s); the numbers below are not valid. First: ${errors[0]}`);
        console.log(`\n== ${name} — ${custom ? 'custom kernels' : 'stock tfjs kernels'}: ${ms.toFixed(1)} ms per call (wall), `
          + `GPU ${gpu === null ? '–' : `${gpu.toFixed(1)} ms`}, ${dispatchTotal(profile)} dispatches, peak ${(profile.peakBytes / 2 ** 30).toFixed(2)} GiB`);
        console.log(formatProfile(profile, maxRows));
        results.push({ phase: name, custom, wallMs: ms, gpuMs: gpu, dispatches: dispatchTotal(profile), peakBytes: profile.peakBytes, rows: profile.rows });
      }
    }
  } finally {
    setCustomKernels(true);
    tf.dispose([sample, context]);
    unet.dispose();
    releaseWebGPU();
  }
  if (values.json) writeFileSync(values.json, JSON.stringify({ device: info, results }, null, 1));
  return 0;
}
