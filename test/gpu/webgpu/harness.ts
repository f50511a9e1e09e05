// Shared set-up for the custom WebGPU kernel tests: the webgpu backend on Dawn's OpenGL ES adapter over Mesa's
// llvmpipe (software, WebGPU compatibility mode), compared against the plain TensorFlow.js computation on cpu.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { initBackend } from '../../../gpu/backend.ts';
import { registerGradients } from '../../../gpu/gradients.ts';
import { setCustomKernels } from '../../../gpu/webgpu/kernels.ts';
import { takeDeviceErrors } from '../../../gpu/webgpu/device.ts';
import { profileKernels } from '../../../gpu/webgpu/profile.ts';

/** Why the kernel tests cannot run here, or null when the GL adapter is up. Under CI=true a missing adapter is an error. */
export async function startCompatGl(): Promise<string | null> {
  process.env.PERFUSION_WEBGPU_ADAPTER = 'compat-gl';
  try {
    await initBackend('webgpu');
  } catch (err) {
    const why = `the software WebGPU adapter (Dawn on OpenGL ES / Mesa llvmpipe) is not available: ${(err as Error).message}`;
    if (process.env.CI === 'true') throw new Error(`${why}. CI installs libegl1, libgles2 and libegl-mesa0 for these tests (.ci/run).`);
    return why;
  }
  setCustomKernels(true);
  registerGradients();
  return null;
}

export interface Comparison {
  /** max |webgpu − reference| / max(1, max |reference|) over all outputs */
  relErr: number;
  shapes: number[][];
  /** wall time of the webgpu run (llvmpipe: includes shader compilation) */
  webgpuMs: number;
}

/**
 * Runs `f` on webgpu (custom kernels on) and on cpu (plain tfjs), with the same inputs (made inside `f` from
 * seeds), and returns the worst relative error over every output tensor.
 */
export async function compareWithCpu(f: () => tf.Tensor | tf.Tensor[]): Promise<Comparison> {
  const run = async (backend: string) => {
    await tf.setBackend(backend);
    const t0 = performance.now();
    const out = tf.tidy(() => { const r = f(); return Array.isArray(r) ? r : [r]; });
    const data = await Promise.all(out.map((t) => t.data()));
    const ms = performance.now() - t0;
    const shapes = out.map((t) => t.shape);
    tf.dispose(out);
    return { data, shapes, ms };
  };
  const gpu = await run('webgpu');
  const errors = takeDeviceErrors();
  if (errors.length) throw new Error(`WebGPU reported errors: ${errors.join('\n')}`);
  const cpu = await run('cpu');
  await tf.setBackend('webgpu');
  let worst = 0;
  cpu.data.forEach((ref, i) => {
    const got = gpu.data[i]!;
    if (got.length !== ref.length) throw new Error(`output ${i}: ${got.length} values on webgpu, ${ref.length} on cpu`);
    let scale = 1;
    for (let j = 0; j < ref.length; j++) scale = Math.max(scale, Math.abs(ref[j] as number));
    for (let j = 0; j < ref.length; j++) {
      const e = Math.abs((got[j] as number) - (ref[j] as number)) / scale;
      if (!(e <= worst)) worst = Number.isNaN(e) ? Infinity : Math.max(worst, e);
    }
  });
  return { relErr: worst, shapes: gpu.shapes, webgpuMs: gpu.ms };
}

export function rand(shape: number[], seed: number, scale = 1): tf.Tensor {
  return tf.randomUniform(shape, -scale, scale, 'float32', seed);
}

/** Names of the WebGPU programs `f` dispatches (to check that a custom program, not a fallback, ran). */
export async function programsUsed(f: () => tf.Tensor | tf.Tensor[]): Promise<Set<string>> {
  const profile = await profileKernels(() => f());
  return new Set(profile.rows.flatMap((r) => Object.keys(r.programs)));
}
