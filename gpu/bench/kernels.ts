// Kernel micro-benchmark: tfjs's stock WebGPU kernels against the project's custom programs on SD 1.5's
// heavy primitives (performance.md's table), plus the gradients Perfusion training runs.
//
//   tsx gpu/bench.ts kernels [--repeat N] [--only SUBSTR] [--sweep] [--toggles T1,T2] [--small] [--json FILE]
// (a module of the gpu/bench.ts dispatcher: it has no entry point of its own, so one bundle holds every benchmark)
//
// For each case it prints wall-clock ms per call (back-to-back calls, GPU drained at the end: includes the CPU
// cost of recording dispatches), GPU ms from timestamp queries (one profiled call; "–" when the device has no
// timestamp-query), TFLOP/s from the wall time, dispatches per call, and the custom result's max relative
// difference from the stock one. --sweep adds tiling variants of the custom programs; --toggles passes Dawn
// toggles (e.g. disable_robustness) to the device; --small shrinks every size (to try the script on the
// software GL adapter: PERFUSION_WEBGPU_ADAPTER=compat-gl).
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { backendInfo, initBackend, releaseWebGPU } from '../backend.ts';
import { registerGradients } from '../gradients.ts';
import { attention, groupNorm } from '../sd/nn.ts';
import { setCustomKernels } from '../webgpu/kernels.ts';
import { attentionTuning } from '../webgpu/attention-program.ts';
import { gemmTuning } from '../webgpu/program-util.ts';
import { profileKernels } from '../webgpu/profile.ts';
import { takeDeviceErrors } from '../webgpu/device.ts';

interface Variant {
  name: string;
  custom: boolean;
  /** applies tunables before the run and restores them after */
  setup?: () => () => void;
}

interface Case {
  name: string;
  flops: number;
  /** makes the inputs (kept across calls) */
  inputs: () => tf.Tensor[];
  /** one call; returns its outputs */
  call: (inputs: tf.Tensor[]) => tf.Tensor | tf.Tensor[];
  sweep?: Variant[];
}

interface Result {
  case: string;
  variant: string;
  wallMs: number;
  gpuMs: number | null;
  tflops: number | null;
  dispatches: number;
  maxRelDiff: number | null;
}

const STOCK: Variant = { name: 'stock', custom: false };
const CUSTOM: Variant = { name: 'custom', custom: true };

function tune<T extends object>(target: T, patch: Partial<T>): () => () => void {
  return () => {
    const saved = Object.fromEntries(Object.keys(patch).map((k) => [k, target[k as keyof T]]));
    Object.assign(target, patch);
    return () => Object.assign(target, saved);
  };
}

const pad1: tf.backend_util.ExplicitPadding = [[0, 0], [1, 1], [1, 1], [0, 0]];
const rnd = (shape: number[], seed: number, scale = 1) => tf.randomUniform(shape, -scale, scale, 'float32', seed);

/** `small` shrinks every size (a smoke test of the script on the slow software adapter). */
function cases(small: boolean): Case[] {
  const N = small ? 256 : 4096; // matmul size and latent tokens (64×64)
  const HW = small ? 16 : 64; // latent side
  const L1 = small ? 64 : 1024; // tokens at 32×32
  const L2 = small ? 16 : 256; // tokens at 16×16
  const attnFlops = (b: number, h: number, lq: number, lk: number, d: number) => 4 * b * h * lq * lk * d;
  const attnSweep = [
    { name: 'rows/thread 1, chunk 8', setup: tune(attentionTuning, { byHeadDim: [[160, 1, 8]] }) },
    { name: 'rows/thread 2, chunk 4', setup: tune(attentionTuning, { byHeadDim: [[160, 2, 4]] }) },
    { name: 'rows/thread 2, chunk 16', setup: tune(attentionTuning, { byHeadDim: [[160, 2, 16]] }) },
    { name: '128 threads', setup: tune(attentionTuning, { threads: 128 }) },
    { name: '32 keys/block', setup: tune(attentionTuning, { maxKeysPerBlock: 32 }) },
  ].map((v) => ({ ...v, custom: true }));
  const gemmSweep = [
    { name: 'small tile only', custom: true, setup: tune(gemmTuning, { largeTileMinWorkgroups: Infinity }) },
    { name: 'large tile always', custom: true, setup: tune(gemmTuning, { largeTileMinWorkgroups: 1 }) },
  ];
  const attnCall = (heads: number) => ([q, k, v]: tf.Tensor[]) => attention(q as tf.Tensor3D, k as tf.Tensor3D, v as tf.Tensor3D, heads);
  const attnGrad = (heads: number) => ([q, k, v, w]: tf.Tensor[]) =>
    tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(attention(a as tf.Tensor3D, b as tf.Tensor3D, c as tf.Tensor3D, heads), w!)))([q!, k!, v!]);
  const gn = ([x, g, b]: tf.Tensor[]) => groupNorm(x as tf.Tensor4D, { gamma: g as tf.Tensor1D, beta: b as tf.Tensor1D }, 32, 1e-5, true);
  return [
    {
      name: `matmul ${N}³`, flops: 2 * N ** 3, sweep: gemmSweep,
      inputs: () => [rnd([N, N], 1), rnd([N, N], 2)],
      call: ([a, b]) => tf.matMul(a!, b!),
    },
    {
      name: `linear [${2 * N},320]·[320,1280]+b`, flops: 2 * 2 * N * 320 * 1280, sweep: gemmSweep,
      inputs: () => [rnd([2 * N, 320], 1), rnd([320, 1280], 2), rnd([1280], 3)],
      call: ([x, w, b]) => tf.fused.matMul({ a: x as tf.Tensor2D, b: w as tf.Tensor2D, bias: b }),
    },
    {
      name: `conv 3×3 [2,${HW},${HW},320]→320`, flops: 2 * 2 * HW * HW * 320 * 9 * 320, sweep: gemmSweep,
      inputs: () => [rnd([2, HW, HW, 320], 1), rnd([3, 3, 320, 320], 2, 0.05), rnd([320], 3)],
      call: ([x, f, b]) => tf.fused.conv2d({ x: x as tf.Tensor4D, filter: f as tf.Tensor4D, strides: 1, pad: pad1, bias: b }),
    },
    {
      name: `conv 3×3 input grad [2,${HW},${HW},320]`, flops: 2 * 2 * HW * HW * 320 * 9 * 320,
      inputs: () => [rnd([2, HW, HW, 320], 1), rnd([3, 3, 320, 320], 2, 0.05)],
      call: ([dy, f]) => tf.engine().runKernel('Conv2DBackpropInput', { dy: dy!, filter: f! },
        { inputShape: [2, HW, HW, 320], strides: 1, pad: pad1, dataFormat: 'NHWC' } as never) as tf.Tensor,
    },
    {
      name: `self-attention [16,${N},40]`, flops: attnFlops(2, 8, N, N, 40), sweep: attnSweep,
      inputs: () => [rnd([2, N, 320], 1), rnd([2, N, 320], 2), rnd([2, N, 320], 3)],
      call: attnCall(8),
    },
    {
      name: `cross-attention [16,${N}×77,40]`, flops: attnFlops(2, 8, N, 77, 40), sweep: attnSweep,
      inputs: () => [rnd([2, N, 320], 1), rnd([2, 77, 320], 2), rnd([2, 77, 320], 3)],
      call: attnCall(8),
    },
    {
      name: `self-attention [16,${L1},80]`, flops: attnFlops(2, 8, L1, L1, 80),
      inputs: () => [rnd([2, L1, 640], 1), rnd([2, L1, 640], 2), rnd([2, L1, 640], 3)],
      call: attnCall(8),
    },
    {
      name: `self-attention [16,${L2},160]`, flops: attnFlops(2, 8, L2, L2, 160),
      inputs: () => [rnd([2, L2, 1280], 1), rnd([2, L2, 1280], 2), rnd([2, L2, 1280], 3)],
      call: attnCall(8),
    },
    {
      name: `GroupNorm(32)+SiLU [2,${HW},${HW},320]`, flops: 0,
      inputs: () => [rnd([2, HW, HW, 320], 1, 3), rnd([320], 2), rnd([320], 3)],
      call: gn,
    },
    {
      name: `self-attention fwd+bwd [16,${N},40]`, flops: 3 * attnFlops(2, 8, N, N, 40),
      inputs: () => [rnd([2, N, 320], 1), rnd([2, N, 320], 2), rnd([2, N, 320], 3), rnd([2, N, 320], 4)],
      call: attnGrad(8),
    },
    {
      name: `GroupNorm+SiLU fwd+dx [2,${HW},${HW},320]`, flops: 0,
      inputs: () => [rnd([2, HW, HW, 320], 1, 3), rnd([320], 2), rnd([320], 3), rnd([2, HW, HW, 320], 4)],
      // the input gradient only, as in Perfusion training (the norm's γ and β are frozen)
      call: ([x, g, b, w]) => tf.grad((a: tf.Tensor) => tf.sum(tf.mul(gn([a, g!, b!]), w!)))(x!),
    },
  ];
}

/** Flushes tfjs's command encoder and waits for the GPU; falls back to reading a value on other backends. */
async function drain(out: tf.Tensor[]): Promise<void> {
  const backend = tf.backend() as unknown as {
    commandEncoder?: GPUCommandEncoder | null; endComputePassEncoder?: () => void; submitQueue?: () => void; device?: GPUDevice;
  };
  if (backend.endComputePassEncoder && backend.submitQueue && backend.device) {
    if (backend.commandEncoder) {
      backend.endComputePassEncoder();
      backend.submitQueue();
    }
    await backend.device.queue.onSubmittedWorkDone();
  } else {
    await Promise.all(out.map((t) => t.data()));
  }
}

const asList = (r: tf.Tensor | tf.Tensor[]) => (Array.isArray(r) ? r : [r]);

async function measure(c: Case, inputs: tf.Tensor[], repeat: number): Promise<{ wallMs: number; gpuMs: number | null; dispatches: number; out: Float32Array[] }> {
  // warm-up (pipeline compilation, buffer pool), and the output kept for the comparison
  const first = tf.tidy(() => asList(c.call(inputs)));
  const out = await Promise.all(first.map(async (t) => (await t.data()) as Float32Array));
  tf.dispose(first);
  for (let i = 0; i < 2; i++) {
    const w = tf.tidy(() => asList(c.call(inputs)));
    await drain(w);
    tf.dispose(w);
  }
  const t0 = performance.now();
  for (let i = 0; i < repeat; i++) {
    const r = tf.tidy(() => asList(c.call(inputs)));
    if (i === repeat - 1) await drain(r);
    tf.dispose(r);
  }
  const wallMs = (performance.now() - t0) / repeat;
  const profile = await profileKernels(() => c.call(inputs));
  const gpuMs = profile.timed ? profile.rows.reduce((s, r) => s + (r.gpuMs ?? 0), 0) : null;
  const dispatches = profile.rows.reduce((s, r) => s + r.dispatches, 0);
  const errors = takeDeviceErrors();
  if (errors.length) throw new Error(`WebGPU reported: ${errors[0]}`);
  return { wallMs, gpuMs, dispatches, out };
}

function maxRelDiff(a: Float32Array[], b: Float32Array[]): number {
  let worst = 0;
  a.forEach((x, i) => {
    const y = b[i]!;
    let scale = 1e-6;
    for (let j = 0; j < y.length; j++) scale = Math.max(scale, Math.abs(y[j]!));
    for (let j = 0; j < y.length; j++) worst = Math.max(worst, Math.abs(x[j]! - y[j]!) / scale);
  });
  return worst;
}

export async function run(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      repeat: { type: 'string', default: '10' }, small: { type: 'boolean', default: false }, only: { type: 'string' }, sweep: { type: 'boolean', default: false },
      toggles: { type: 'string' }, json: { type: 'string' }, backend: { type: 'string', default: 'webgpu' },
    },
  });
  if (values.toggles) process.env.PERFUSION_DAWN_TOGGLES = values.toggles;
  const repeat = Math.max(1, Number(values.repeat));
  const backend = await initBackend(values.backend as 'webgpu', { log: (m) => console.log(m) });
  if (backend !== 'webgpu') {
    console.error('the kernel benchmark compares WebGPU kernels: it needs the webgpu backend');
    return 1;
  }
  registerGradients();
  const info = backendInfo();
  console.log(`device: ${info.adapter}; features: ${info.features?.join(', ') || 'none'}`);
  console.log(`limits: ${Object.entries(info.limits ?? {}).map(([k, v]) => `${k}=${v}`).join(', ')}`);
  if (process.env.PERFUSION_DAWN_TOGGLES) console.log(`Dawn toggles: ${process.env.PERFUSION_DAWN_TOGGLES}`);

  const results: Result[] = [];
  const header = `${'case'.padEnd(40)} ${'variant'.padEnd(24)} ${'wall ms'.padStart(9)} ${'GPU ms'.padStart(9)} ${'TFLOP/s'.padStart(8)} ${'disp.'.padStart(6)} ${'vs stock'.padStart(9)}`;
  console.log(`\n${header}\n${'-'.repeat(header.length)}`);
  for (const c of cases(values.small)) {
    if (values.only && !c.name.includes(values.only)) continue;
    const inputs = c.inputs();
    let stockOut: Float32Array[] | undefined;
    for (const v of [STOCK, CUSTOM, ...(values.sweep ? c.sweep ?? [] : [])]) {
      setCustomKernels(v.custom);
      const restore = v.setup?.();
      try {
        const m = await measure(c, inputs, repeat);
        if (!v.custom) stockOut = m.out;
        const r: Result = {
          case: c.name, variant: v.name, wallMs: m.wallMs, gpuMs: m.gpuMs,
          tflops: c.flops ? c.flops / (m.wallMs * 1e9) : null, dispatches: m.dispatches,
          maxRelDiff: v.custom && stockOut ? maxRelDiff(m.out, stockOut) : null,
        };
        results.push(r);
        console.log(`${(v === STOCK ? c.name : '').padEnd(40)} ${v.name.padEnd(24)} ${r.wallMs.toFixed(3).padStart(9)} ${(r.gpuMs === null ? '–' : r.gpuMs.toFixed(3)).padStart(9)} `
          + `${(r.tflops === null ? '' : r.tflops.toFixed(2)).padStart(8)} ${String(r.dispatches).padStart(6)} ${(r.maxRelDiff === null ? '' : r.maxRelDiff.toExponential(1)).padStart(9)}`);
      } catch (err) {
        console.log(`${(v === STOCK ? c.name : '').padEnd(40)} ${v.name.padEnd(24)} failed: ${(err as Error).message.split('\n')[0]}`);
      } finally {
        restore?.();
      }
    }
    tf.dispose(inputs);
  }
  setCustomKernels(true);
  if (values.json) writeFileSync(values.json, JSON.stringify({ device: info, repeat, results }, null, 2));
  releaseWebGPU();
  return 0;
}
