// Small helpers shared by the custom WebGPU programs.
import type { TensorInfo } from '@tensorflow/tfjs-core';
import type { WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu';
import { GEMM_TILES, gemmSharedBytes, gemmWorkgroupSize, type GemmTile } from './gemm-tiling.ts';

/** The part of tfjs's WebGPUBackend the custom kernels use. */
export interface WebGPUBackendLike {
  device: GPUDevice;
  runWebGPUProgram(program: WebGPUProgram, inputs: TensorInfo[], outputDtype: 'float32' | 'int32', uniforms?: Array<{ type: string; data: number[] }>, output?: TensorInfo): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
}

/**
 * Tunables the benchmark sweeps (and tests set, to reach every tile at small sizes). A problem uses the large
 * tile when that still gives `largeTileMinWorkgroups` workgroups (a large GPU has 100+ SMs), else the small one.
 */
export const gemmTuning = { largeTileMinWorkgroups: 256 };

/** The largest GEMM tile the device can hold that still gives enough workgroups; null if none fits the device. */
export function chooseGemmTile(backend: WebGPUBackendLike, batch: number, m: number, n: number): GemmTile | null {
  const fits = (t: GemmTile) => {
    const [x, y] = gemmWorkgroupSize(t);
    const lim = backend.device.limits;
    return gemmSharedBytes(t) <= lim.maxComputeWorkgroupStorageSize && x * y <= lim.maxComputeInvocationsPerWorkgroup;
  };
  const large = GEMM_TILES.large;
  const workgroups = batch * Math.ceil(m / large.bm) * Math.ceil(n / large.bn);
  if (workgroups >= gemmTuning.largeTileMinWorkgroups && fits(large)) return large;
  return fits(GEMM_TILES.small) ? GEMM_TILES.small : null;
}
