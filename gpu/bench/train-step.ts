// What one training step of the UNet costs on any backend, with tfjs's gradient tape or the engine's
// (gpu/autodiff.ts):
//
//   tsx gpu/bench.ts train [--backend B] [--channels 320,640,1280,1280] [--size 512] [--batch 1] [--grad tfjs,lean]
//                          [--repeat N] [--detail] [--json FILE]
//
// The step is the data-gradient pass Perfusion needs (bench/profile.ts's training phase): the UNet forward on
// random latents, a mean-square loss, and the backward pass to the text conditioning. The UNet is SD 1.5's
// block structure with the given channel widths (SD 1.5's by default; smaller ones fit the wasm and cpu backends
// and the software WebGPU adapter) and random weights. For each gradient implementation it prints the wall
// time per step, the peak of tensor memory above the weights and inputs, what the saved tensors hold when the
// forward ends, the tape's nodes and the kernel calls; --detail lists the kernels whose saved tensors hold most.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { gradients } from '../autodiff.ts';
import { backendInfo, gpuMemory, initBackend, releaseFreeGpuMemory, releaseWebGPU } from '../backend.ts';
import { registerGradients } from '../gradients.ts';
import { parseUNetConfig } from '../model/configs.ts';
import { UNet2DConditionModel, unetParameterShapes } from '../sd/unet.ts';
import type { BackendName } from '../types.ts';
import { tensorMemoryProfile } from '../webgpu/profile.ts';
import { RandomWeights } from './random-weights.ts';

const GRADS = {
  /** tf.grads: everything saved and every gradient held until the backward pass ends */
  tfjs: (f: () => tf.Scalar, x: tf.Tensor) => {
    const { value, grads } = tf.valueAndGrads(() => f())([x]);
    return [value, ...grads];
  },
  /** gpu/autodiff.ts */
  lean: (f: () => tf.Scalar, x: tf.Tensor) => {
    const { value, grads } = gradients(f, [x]);
    return [value, ...grads.filter((g): g is tf.Tensor => g !== null)];
  },
};
type GradName = keyof typeof GRADS;

interface SavedSet {
  tapeNodes: number;
  /** bytes of the distinct buffers the recorded kernels saved (weights included) */
  bytes: number;
  /** the same, attributed to the first kernel that saved each buffer */
  byKernel: Map<string, number>;
}

/** What the tape holds now (call at the end of the forward, inside the gradient's f). */
function savedSet(): SavedSet {
  const tape = (tf.engine() as unknown as { state: { activeTape: { kernelName: string; saved: tf.Tensor[] }[] | null } }).state.activeTape ?? [];
  const seen = new Set<object>();
  const byKernel = new Map<string, number>();
  let bytes = 0;
  for (const node of tape) {
    for (const t of node.saved) {
      if (seen.has(t.dataId)) continue;
      seen.add(t.dataId);
      const b = t.size * 4;
      bytes += b;
      byKernel.set(node.kernelName, (byKernel.get(node.kernelName) ?? 0) + b);
    }
  }
  return { tapeNodes: tape.length, bytes, byKernel };
}

async function sync(tensors: tf.Tensor[]): Promise<void> {
  await Promise.all(tensors.map((t) => t.data()));
  tf.dispose(tensors);
}

export async function run(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      backend: { type: 'string', default: 'auto' }, channels: { type: 'string', default: '320,640,1280,1280' },
      size: { type: 'string', default: '512' }, batch: { type: 'string', default: '1' }, grad: { type: 'string', default: 'tfjs,lean' },
      repeat: { type: 'string', default: '1' }, detail: { type: 'boolean', default: false }, json: { type: 'string' },
    },
    strict: true,
  });
  const channels = values.channels.split(',').map(Number);
  const side = Number(values.size) / 8;
  const batch = Number(values.batch);
  const repeat = Number(values.repeat);
  const modes = values.grad.split(',').map((g) => g.trim()) as GradName[];
  if (channels.length !== 4 || channels.some((c) => !Number.isInteger(c) || c < 32 || c % 32 !== 0)) throw new Error('--channels must be four multiples of 32');
  if (!Number.isInteger(side) || side < 8) throw new Error(`--size must be a multiple of 8, at least 64; got ${values.size}`);
  if (!(batch >= 1) || !(repeat >= 1)) throw new Error('--batch and --repeat must be ≥ 1');
  for (const m of modes) if (!(m in GRADS)) throw new Error(`--grad takes ${Object.keys(GRADS).join(', ')}; got ${m}`);

  const backend = await initBackend(values.backend as BackendName);
  registerGradients();
  const contextDim = 768;
  const config = parseUNetConfig({ block_out_channels: channels, attention_head_dim: 8, cross_attention_dim: contextDim, norm_num_groups: 32 });
  const weights = new RandomWeights('unet', unetParameterShapes(config));
  const unet = new UNet2DConditionModel(config, weights);
  const sample = tf.randomNormal([batch, side, side, 4], 0, 1, 'float32', 1) as tf.Tensor4D;
  const context = tf.randomNormal([batch, 77, contextDim], 0, 1, 'float32', 2) as tf.Tensor3D;
  await sync([tf.zeros([1])]);
  await releaseFreeGpuMemory();
  const info = backendInfo();
  console.log(`training step: backend ${backend}${info.adapter ? ` on ${info.adapter}` : ''}; UNet channels ${channels.join(',')} `
    + `(${(weights.parameterCount / 1e6).toFixed(1)} M parameters), batch ${batch}, ${side}×${side} latents; `
    + `forward + backward to the conditioning`);

  const rows: string[][] = [];
  const results: Record<string, unknown>[] = [];
  try {
    for (const mode of modes) {
      let saved: SavedSet | null = null;
      const loss = () => {
        const y = tf.mean(tf.square(unet.forward(sample, 500, context))) as tf.Scalar;
        saved ??= savedSet();
        return y;
      };
      const step = () => GRADS[mode](loss, context);
      await sync(step());
      const times: number[] = [];
      for (let i = 0; i < repeat; i++) {
        const t0 = performance.now();
        await sync(step());
        times.push(performance.now() - t0);
      }
      saved = null;
      const memory = await tensorMemoryProfile(() => sync(step()));
      const gpu = gpuMemory();
      const s = saved as SavedSet | null;
      const ms = [...times].sort((a, b) => a - b)[Math.floor(times.length / 2)]!;
      const gpuPeak = memory.gpuPeakBytes === null ? null : memory.gpuPeakBytes - memory.gpuStartBytes!;
      rows.push([mode, `${ms.toFixed(0)} ms`, s ? mib(s.bytes) : '–', gpuPeak === null ? '–' : mib(gpuPeak), gpu ? mib(gpu.allocatedBytes) : '–',
        mib(memory.peakBytes - memory.startBytes), String(s?.tapeNodes ?? '–'), String(memory.kernelCalls)]);
      results.push({ grad: mode, stepMs: times, savedBytes: s?.bytes, gpuPeakAboveStartBytes: gpuPeak, gpuAllocatedBytes: gpu?.allocatedBytes,
        tfPeakAboveStartBytes: memory.peakBytes - memory.startBytes, tapeNodes: s?.tapeNodes, kernelCalls: memory.kernelCalls,
        savedByKernel: s ? Object.fromEntries(s.byKernel) : undefined });
      if (values.detail && s) {
        console.log(`\n${mode}: saved at the end of the forward, by the first kernel that saved each buffer (weights included)`);
        for (const [k, b] of [...s.byKernel].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`  ${k.padEnd(28)} ${mib(b).padStart(12)}`);
      }
      await releaseFreeGpuMemory();
    }
  } finally {
    tf.dispose([sample, context]);
    unet.dispose();
    releaseWebGPU();
  }
  const header = ['gradients', 'per step', 'saved after forward', 'GPU peak in use', 'GPU allocated', 'tf.profile peak', 'tape nodes', 'kernel calls'];
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (r: string[]) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  console.log(['', line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n'));
  console.log([
    'saved after forward: distinct buffers the recorded kernels keep for the backward pass (weights they read included)',
    'GPU peak in use: the most GPU buffer bytes tensors held at once, above the weights and inputs (webgpu)',
    'GPU allocated: tensors plus tfjs\'s pool of freed buffers after the measured step, weights included (webgpu)',
    'tf.profile peak: tfjs\'s count above the weights, a shared buffer once per tensor (saved clones of weights too)',
  ].join('\n'));
  if (values.json) writeFileSync(values.json, `${JSON.stringify({ backend: info, channels, batch, side, results }, null, 1)}\n`);
  return 0;
}

function mib(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}
