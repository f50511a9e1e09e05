// Opening a WebGPU device in Node through Dawn (the `webgpu` npm package), for the tfjs WebGPU backend.
//
// Two adapters are supported:
// - the default: Dawn picks the system's GPU (Vulkan on Linux), WebGPU core feature level;
// - `PERFUSION_WEBGPU_ADAPTER=compat-gl`: Dawn's OpenGL ES backend over Mesa's llvmpipe (software, runs on
//   the CPU) in WebGPU compatibility mode. Slow, but it lets tests and CI check the custom kernels without a
//   GPU. Needs the Debian packages libegl1, libgles2 and libegl-mesa0.
//
// The device asks for the adapter's real limits (the WebGPU defaults cap storage buffers at 128 MiB and
// workgroup storage at 16 KiB, both too small for SD) and for the optional features the kernels can use.
import { tmpdir } from 'node:os';

export type AdapterChoice = 'default' | 'compat-gl';

/** What a report says about the adapter in use. */
export interface AdapterSummary {
  adapter: string;
  compatibilityMode: boolean;
  features: string[];
  limits: Record<string, number>;
}

/** Limits a device gets from its adapter: everything the engine's kernels and buffers depend on. */
const REQUESTED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
] as const;

/** Optional features requested when the adapter offers them. */
const WANTED_FEATURES = ['timestamp-query', 'subgroups', 'shader-f16'] as const;

export interface OpenedDevice {
  device: GPUDevice;
  adapterInfo: GPUAdapterInfo;
  summary: AdapterSummary;
  /** drops the Dawn instance so the process can exit */
  release(): void;
}

const deviceErrors: string[] = [];

/** Returns and clears the WebGPU errors (validation, out of memory) reported since the last call. */
export function takeDeviceErrors(): string[] {
  return deviceErrors.splice(0);
}

/** Why WebGPU cannot be used; the message continues "WebGPU was requested but …". */
export class WebGPUUnavailableError extends Error {
  override name = 'WebGPUUnavailableError';
}

export function adapterChoiceFromEnv(env: NodeJS.ProcessEnv = process.env): AdapterChoice {
  const v = (env.PERFUSION_WEBGPU_ADAPTER ?? '').trim().toLowerCase();
  if (v === '' || v === 'default' || v === 'vulkan') return 'default';
  if (v === 'compat-gl' || v === 'gl') return 'compat-gl';
  throw new WebGPUUnavailableError(`PERFUSION_WEBGPU_ADAPTER=${v} is not known: use "compat-gl" (software OpenGL ES, for tests) or leave it unset`);
}

/**
 * Dawn instance options. `PERFUSION_DAWN_TOGGLES` adds Dawn toggles (comma separated, e.g.
 * `disable_robustness,skip_validation`). Timestamp quantization is switched off so kernel profiles are exact.
 */
function dawnOptions(choice: AdapterChoice): string[] {
  const opts = choice === 'compat-gl' ? ['backend=opengles'] : [];
  const toggles = (process.env.PERFUSION_DAWN_TOGGLES ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (toggles.length) opts.push(`enable-dawn-features=${toggles.join(',')}`);
  opts.push('disable-dawn-features=timestamp_quantization');
  return opts;
}

export async function openWebGPUDevice(choice: AdapterChoice = adapterChoiceFromEnv()): Promise<OpenedDevice> {
  // Mesa's EGL needs no display server with the surfaceless platform; XDG_RUNTIME_DIR silences its warnings.
  if (choice === 'compat-gl') process.env.EGL_PLATFORM ??= 'surfaceless';
  process.env.XDG_RUNTIME_DIR ??= tmpdir();
  let mod: typeof import('webgpu');
  try {
    mod = await import('webgpu');
  } catch (err) {
    throw new WebGPUUnavailableError(`the "webgpu" package (Dawn) could not be loaded: ${(err as Error).message}`);
  }
  // tfjs's WebGPU backend reads GPUBufferUsage, GPUMapMode, ... from the global scope, and refuses to start
  // unless `navigator.gpu` exists (Node 20 has no navigator; Node 21+ has one without gpu).
  Object.assign(globalThis, mod.globals);
  let gpu: GPU | undefined = mod.create(dawnOptions(choice));
  const adapter = await gpu.requestAdapter(choice === 'compat-gl'
    ? ({ featureLevel: 'compatibility' } as GPURequestAdapterOptions)
    : { powerPreference: 'high-performance' });
  if (!adapter) {
    gpu = undefined;
    throw new WebGPUUnavailableError(choice === 'compat-gl'
      ? 'no GPU adapter was found: no OpenGL ES adapter (install libegl1, libgles2 and libegl-mesa0 for the software one)'
      : 'no GPU adapter was found (is a Vulkan driver installed and the GPU visible to this process?)');
  }
  const requiredLimits: Record<string, number> = {};
  for (const name of REQUESTED_LIMITS) {
    const value = (adapter.limits as unknown as Record<string, number | undefined>)[name];
    if (typeof value === 'number') requiredLimits[name] = value;
  }
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  } catch (err) {
    throw new WebGPUUnavailableError(`the GPU adapter refused to open a device: ${(err as Error).message}`);
  }
  device.addEventListener('uncapturederror', (ev) => {
    if (deviceErrors.length < 100) deviceErrors.push((ev as GPUUncapturedErrorEvent).error.message);
  });
  setNavigatorGpu(gpu);
  const info = adapter.info;
  const description = [info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' ').trim()
    || (choice === 'compat-gl' ? 'OpenGL ES (software)' : 'unknown adapter');
  const limits: Record<string, number> = {};
  for (const name of REQUESTED_LIMITS) {
    const value = (device.limits as unknown as Record<string, number | undefined>)[name];
    if (typeof value === 'number') limits[name] = value;
  }
  return {
    device,
    adapterInfo: info,
    summary: {
      adapter: choice === 'compat-gl' ? `${description} [compat-gl]` : description,
      compatibilityMode: choice === 'compat-gl',
      features: [...device.features].map(String).sort(),
      limits,
    },
    release() {
      device.destroy();
      setNavigatorGpu(undefined);
      gpu = undefined;
    },
  };
}

function setNavigatorGpu(gpu: GPU | undefined): void {
  const g = globalThis as { navigator?: object };
  if (!g.navigator) Object.defineProperty(globalThis, 'navigator', { value: {}, configurable: true, writable: true });
  Object.defineProperty(g.navigator!, 'gpu', { value: gpu, configurable: true, writable: true });
}
