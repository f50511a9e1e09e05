// Choosing and starting the TensorFlow.js backend (DESIGN.md, "Engine contract": backends).
//
// `auto` tries, in order: `tensorflow` (tfjs-node-gpu or tfjs-node, when the user installed one: never a
// dependency of this project), `webgpu` (Dawn through the `webgpu` package), `wasm`, `cpu`.
// The webgpu backend is registered with the project's own factory (gpu/webgpu/device.ts), which asks the adapter
// for its real limits and optional features, and it gets the project's custom kernels (gpu/webgpu/kernels.ts).
import * as tf from '@tensorflow/tfjs-core';
import type { BackendName } from './types.ts';
import { openWebGPUDevice, adapterChoiceFromEnv, WebGPUUnavailableError, type AdapterSummary, type OpenedDevice } from './webgpu/device.ts';

export type { BackendName } from './types.ts';

/** A backend that was asked for cannot be used; the message says why and what to do. */
export class BackendUnavailableError extends Error {
  override name = 'BackendUnavailableError';
  constructor(readonly backend: BackendName, message: string) {
    super(message);
  }
}

export interface BackendInfo {
  /** the TensorFlow.js backend in use */
  name: string;
  /** for webgpu: the adapter, its features and the limits the device was opened with */
  adapter?: string;
  compatibilityMode?: boolean;
  features?: string[];
  limits?: Record<string, number>;
  /** for webgpu: whether the project's custom kernels are registered */
  customKernels?: boolean;
}

export interface InitOptions {
  /** receives one line per decision (which backend was tried, why one was skipped) */
  log?: (msg: string) => void;
}

const AUTO_ORDER: Exclude<BackendName, 'auto'>[] = ['tensorflow', 'webgpu', 'wasm', 'cpu'];

let webgpu: { opened: OpenedDevice; kernels: typeof import('./webgpu/kernels.ts') } | undefined;

/** Starts the backend `name` (or the best available for `auto`) and returns the name of the backend in use. */
export async function initBackend(name: BackendName = 'auto', opts: InitOptions = {}): Promise<string> {
  const log = opts.log ?? (() => {});
  if (name !== 'auto') {
    await activate(name, log);
    log(`TensorFlow.js backend: ${describe()}`);
    return tf.getBackend();
  }
  for (const candidate of AUTO_ORDER) {
    try {
      await activate(candidate, log);
      log(`TensorFlow.js backend (auto): ${describe()}`);
      return tf.getBackend();
    } catch (err) {
      log(`backend ${candidate} skipped: ${(err as Error).message}`);
    }
  }
  throw new BackendUnavailableError('auto', 'no TensorFlow.js backend could be started (tried tensorflow, webgpu, wasm, cpu); see the log for each reason');
}

/** Name, adapter and limits of the backend in use, for reports and benchmarks. */
export function backendInfo(): BackendInfo {
  const name = tf.getBackend();
  if (name !== 'webgpu' || !webgpu) return { name };
  const s: AdapterSummary = webgpu.opened.summary;
  return { name, adapter: s.adapter, compatibilityMode: s.compatibilityMode, features: s.features, limits: s.limits, customKernels: webgpu.kernels.customKernelsActive() };
}

/** Disposes the webgpu backend and its Dawn instance (a live Dawn instance keeps Node from exiting). */
export function releaseWebGPU(): void {
  if (!webgpu) return;
  if (tf.findBackend('webgpu')) tf.removeBackend('webgpu');
  webgpu.opened.release();
  webgpu = undefined;
}

/** GPU buffer memory of the webgpu backend: what tensors use, and what is allocated including tfjs's pool of freed buffers. */
export interface GpuMemory {
  inUseBytes: number;
  allocatedBytes: number;
}

/** GPU buffer memory now, or null when the backend in use keeps no GPU buffers. */
export function gpuMemory(): GpuMemory | null {
  const m = tf.memory() as tf.MemoryInfo & { numBytesInGPU?: number; numBytesAllocatedInGPU?: number };
  if (m.numBytesAllocatedInGPU === undefined) return null;
  return { inUseBytes: m.numBytesInGPU ?? 0, allocatedBytes: m.numBytesAllocatedInGPU };
}

/**
 * Gives the GPU memory of freed tensors back to the device (webgpu; elsewhere a no-op) and returns how many
 * bytes that was. tfjs's webgpu backend keeps every buffer a disposed tensor had in a pool keyed by exact size
 * and never shrinks it, so after building a model (whose weights pass through temporaries of every size) or
 * after a training job the pool can hold several times the live tensors. Call it between jobs and after
 * loading; the next job allocates what it needs again.
 *
 * Lets the queue finish first (a pending dispatch may still use a pooled buffer), then destroys only the free
 * lists of tfjs-backend-webgpu 4.x's BufferManager, never a buffer a tensor owns.
 */
export async function releaseFreeGpuMemory(): Promise<number> {
  if (tf.getBackend() !== 'webgpu') return 0;
  type Pool = { freeBuffers?: Map<string, { size: number; destroy(): void }[]>; numFreeBuffers: number; numBytesAllocated: number };
  const backend = tf.backend() as unknown as {
    bufferManager?: Pool; commandEncoder?: unknown; endComputePassEncoder?(): void; submitQueue?(): void;
    device?: { queue: { onSubmittedWorkDone(): Promise<unknown> } };
  };
  if (backend.commandEncoder) {
    backend.endComputePassEncoder?.();
    backend.submitQueue?.();
  }
  await backend.device?.queue.onSubmittedWorkDone();
  const pool = backend.bufferManager;
  if (!(pool?.freeBuffers instanceof Map)) return 0;
  let released = 0;
  // the keys stay: tfjs's releaseBuffer does nothing at all once the map is empty
  for (const buffers of pool.freeBuffers.values()) {
    for (const buffer of buffers) {
      released += buffer.size;
      buffer.destroy();
    }
    buffers.length = 0;
  }
  pool.numBytesAllocated -= released;
  pool.numFreeBuffers = 0;
  return released;
}

function describe(): string {
  const info = backendInfo();
  if (!info.adapter) return info.name;
  return `${info.name} on ${info.adapter}${info.customKernels ? ', custom kernels' : ''}`;
}

async function activate(name: Exclude<BackendName, 'auto'>, log: (msg: string) => void): Promise<void> {
  switch (name) {
    case 'tensorflow': return activateTensorflow();
    case 'webgpu': return activateWebGPU(log);
    case 'wasm':
      await import('@tensorflow/tfjs-backend-wasm');
      return setOrExplain('wasm', 'the WebAssembly backend failed to start');
    case 'cpu':
      await import('@tensorflow/tfjs-backend-cpu');
      return setOrExplain('cpu', 'the CPU backend failed to start');
    default:
      throw new BackendUnavailableError(name, `unknown backend "${String(name)}": use auto, tensorflow, webgpu, wasm or cpu`);
  }
}

async function setOrExplain(name: Exclude<BackendName, 'auto'>, failure: string): Promise<void> {
  if (tf.getBackend() === name && tf.findBackend(name)) return;
  let ok = false;
  try {
    ok = await tf.setBackend(name);
  } catch (err) {
    throw new BackendUnavailableError(name, `${failure}: ${(err as Error).message}`);
  }
  if (!ok) throw new BackendUnavailableError(name, failure);
}

/** tfjs-node-gpu / tfjs-node are optional: imported by a computed name so bundlers and tsc leave them alone. */
async function activateTensorflow(): Promise<void> {
  if (!tf.findBackendFactory('tensorflow')) {
    const reasons: string[] = [];
    for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
      try {
        await import(pkg);
        break;
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        reasons.push(e.code === 'ERR_MODULE_NOT_FOUND' || e.code === 'MODULE_NOT_FOUND' ? `${pkg} is not installed` : `${pkg} failed to load: ${e.message}`);
      }
    }
    if (!tf.findBackendFactory('tensorflow')) {
      throw new BackendUnavailableError('tensorflow',
        `TensorFlow (native) was requested but is not usable: ${reasons.join('; ')}. Install @tensorflow/tfjs-node-gpu (CUDA 11.2 / cuDNN 8.1) or choose another backend`);
    }
  }
  await setOrExplain('tensorflow', 'the native TensorFlow backend failed to start');
}

async function activateWebGPU(log: (msg: string) => void): Promise<void> {
  if (!webgpu) {
    let opened: OpenedDevice;
    try {
      opened = await openWebGPUDevice(adapterChoiceFromEnv());
    } catch (err) {
      const why = err instanceof WebGPUUnavailableError ? err.message : `it could not start: ${(err as Error).message}`;
      throw new BackendUnavailableError('webgpu', `WebGPU was requested but ${why}`);
    }
    const { WebGPUBackend } = await import('@tensorflow/tfjs-backend-webgpu');
    opened.device.lost.then((info) => { if (info.reason !== 'destroyed') log(`WebGPU device lost: ${info.message}`); });
    opened.device.addEventListener('uncapturederror', (ev) => log(`WebGPU error: ${(ev as GPUUncapturedErrorEvent).error.message}`));
    if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu');
    const device = opened.device;
    tf.registerBackend('webgpu', () => new WebGPUBackend(device, opened.adapterInfo), 10);
    // PERFUSION_WEBGPU_KERNELS=stock keeps tfjs's own kernels (for comparisons and to rule the custom ones out).
    const kernels = await import('./webgpu/kernels.ts');
    kernels.setCustomKernels((process.env.PERFUSION_WEBGPU_KERNELS ?? '').trim().toLowerCase() !== 'stock');
    webgpu = { opened, kernels };
  }
  await setOrExplain('webgpu', 'the WebGPU backend failed to start');
}
