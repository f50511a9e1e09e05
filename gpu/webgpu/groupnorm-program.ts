// GroupNorm over NHWC with the affine transform and an optional SiLU fused into the output pass.
//
// Three small dispatches instead of tfjs's ~12: (1) each workgroup takes a slice of one (image, group)'s pixels
// and writes that slice's mean and sum of squared deviations (two passes over the slice, so no cancellation);
// (2) one thread per (image, group) merges the slices (Chan et al.'s parallel variance) into mean and 1/σ;
// (3) an element-wise pass normalises, scales, shifts and applies SiLU, four channels at a time.
// Variance is the biased one, as torch.nn.GroupNorm uses.
import type { TensorInfo } from '@tensorflow/tfjs-core';
import type { WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu';
import { USE_UNIFORMS } from './gemm-tiling.ts';
import type { WebGPUBackendLike } from './program-util.ts';

export interface GroupNormShape {
  batch: number;
  /** pixels per image (H·W) */
  pixels: number;
  channels: number;
  groups: number;
}

export const STATS_THREADS = 256;
/** Aim for at least this many statistics workgroups (a large GPU has 100+ SMs). */
const TARGET_STATS_WORKGROUPS = 512;

/** Pixel slices per (image, group). */
export function groupNormSlices(s: GroupNormShape): number {
  return Math.max(1, Math.min(64, s.pixels, Math.ceil(TARGET_STATS_WORKGROUPS / (s.batch * s.groups))));
}

/** WGSL: pixels [p0, p1) of slice `s` out of `slices`. */
export function sliceBounds(pixels: number, slices: number): string {
  return `let p0 = (s * ${pixels}) / ${slices}; let p1 = ((s + 1) * ${pixels}) / ${slices};`;
}

/** WGSL: sums `v` over the workgroup into red[0] (needs `var<workgroup> red : array<f32, STATS_THREADS>`). */
export function workgroupSum(v: string): string {
  return `
      red[tid] = ${v};
      workgroupBarrier();
      for (var w = ${STATS_THREADS / 2}; w > 0; w = w / 2) {
        if (tid < w) { red[tid] = red[tid] + red[tid + w]; }
        workgroupBarrier();
      }`;
}

/** Output [batch·groups·slices, 2]: per slice, its mean and its sum of squared deviations. */
export class GroupNormStatsProgram implements WebGPUProgram {
  variableNames = ['x'];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [] as number[], y: [0] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [STATS_THREADS, 1, 1];

  constructor(private s: GroupNormShape, private slices: number) {
    this.outputShape = [s.batch * s.groups * slices, 2];
    this.dispatch = [slices, s.groups, s.batch];
    this.shaderKey = `perfusionGroupNormStats_${JSON.stringify(s)}_${slices}`;
  }

  getUserCode(): string {
    const { pixels, channels, groups } = this.s;
    const cg = channels / groups;
    const reduce = workgroupSum;
    return `
      var<workgroup> red : array<f32, ${STATS_THREADS}>;
      fn main() {
        ${USE_UNIFORMS}
        let tid = i32(localIndex);
        let s = i32(workgroupId.x);
        let g = i32(workgroupId.y);
        let n = i32(workgroupId.z);
        ${sliceBounds(pixels, this.slices)}
        let count = (p1 - p0) * ${cg};
        let base = (n * ${pixels} + p0) * ${channels} + g * ${cg};
        var sum = 0.0;
        for (var e = tid; e < count; e += ${STATS_THREADS}) {
          let p = e / ${cg};
          sum += x[base + p * ${channels} + e - p * ${cg}];
        }
        ${reduce('sum')}
        let mean = red[0] / f32(count);
        workgroupBarrier();
        var sq = 0.0;
        for (var e = tid; e < count; e += ${STATS_THREADS}) {
          let p = e / ${cg};
          let dev = x[base + p * ${channels} + e - p * ${cg}] - mean;
          sq += dev * dev;
        }
        ${reduce('sq')}
        if (tid == 0) {
          let o = ((n * ${groups} + g) * ${this.slices} + s) * 2;
          result[o] = mean;
          result[o + 1] = red[0];
        }
      }`;
  }
}

/** Output [batch·groups, 2]: mean and 1/sqrt(var + eps) per (image, group). */
export class GroupNormFinalizeProgram implements WebGPUProgram {
  variableNames = ['partial'];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [0] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [64, 1, 1];

  constructor(private s: GroupNormShape, private slices: number, private eps: number) {
    this.outputShape = [s.batch * s.groups, 2];
    this.dispatch = [Math.ceil((s.batch * s.groups) / 64), 1, 1];
    this.shaderKey = `perfusionGroupNormFinalize_${JSON.stringify(s)}_${slices}_${eps}`;
  }

  getUserCode(): string {
    const { pixels, channels, groups } = this.s;
    const cg = channels / groups;
    return `
      fn main(index : i32) {
        ${USE_UNIFORMS}
        if (index >= ${this.s.batch * groups}) { return; }
        var total = 0.0;
        var sum = 0.0;
        for (var s = 0; s < ${this.slices}; s++) {
          ${sliceBounds(pixels, this.slices)}
          let cnt = f32((p1 - p0) * ${cg});
          total += cnt;
          sum += cnt * partial[(index * ${this.slices} + s) * 2];
        }
        let mean = sum / total;
        var m2 = 0.0;
        for (var s = 0; s < ${this.slices}; s++) {
          ${sliceBounds(pixels, this.slices)}
          let cnt = f32((p1 - p0) * ${cg});
          let o = (index * ${this.slices} + s) * 2;
          let dm = partial[o] - mean;
          m2 += partial[o + 1] + cnt * dm * dm;
        }
        result[index * 2] = mean;
        result[index * 2 + 1] = inverseSqrt(m2 / total + ${this.eps});
      }`;
  }
}

/** y = (x − mean)·rstd·gamma + beta, then optionally y·sigmoid(y); four channels per thread. */
export class GroupNormApplyProgram implements WebGPUProgram {
  variableNames = ['x', 'stats', 'gamma', 'beta'];
  variableComponents = [4, 1, 4, 4];
  outputComponent = 4;
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [0] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [256, 1, 1];

  constructor(outputShape: number[], private s: GroupNormShape, private silu: boolean) {
    this.outputShape = outputShape;
    this.dispatch = [Math.ceil((s.batch * s.pixels * s.channels) / 4 / 256), 1, 1];
    this.shaderKey = `perfusionGroupNormApply_${JSON.stringify(s)}_${silu}`;
  }

  getUserCode(): string {
    const { batch, pixels, channels, groups } = this.s;
    const cg = channels / groups;
    const c4 = channels / 4;
    const comps = ['x', 'y', 'z', 'w'].map((comp, j) => `
        {
          let g = (c + ${j}) / ${cg};
          let st = (n * ${groups} + g) * 2;
          mean.${comp} = stats[st];
          rstd.${comp} = stats[st + 1];
        }`).join('');
    return `
      fn main(index : i32) {
        ${USE_UNIFORMS}
        if (index >= ${(batch * pixels * channels) / 4}) { return; }
        let n = index / ${pixels * c4};
        let c4i = index % ${c4};
        let c = c4i * 4;
        var mean : vec4<f32>;
        var rstd : vec4<f32>;
        ${comps}
        let y = (x[index] - mean) * rstd * gamma[c4i] + beta[c4i];
        result[index] = ${this.silu ? 'y / (vec4<f32>(1.0) + exp(-y))' : 'y'};
      }`;
  }
}

export function groupNormShape(x: TensorInfo, groups: number): GroupNormShape {
  const [batch, h, w, channels] = x.shape as [number, number, number, number];
  return { batch, pixels: h * w, channels, groups };
}

/** [batch·groups, 2]: mean and 1/σ per (image, group), in two dispatches. */
export function runGroupNormStats(backend: WebGPUBackendLike, x: TensorInfo, s: GroupNormShape, eps: number): TensorInfo {
  const slices = groupNormSlices(s);
  const partial = backend.runWebGPUProgram(new GroupNormStatsProgram(s, slices), [x], 'float32');
  const stats = backend.runWebGPUProgram(new GroupNormFinalizeProgram(s, slices, eps), [partial], 'float32');
  backend.disposeData(partial.dataId);
  return stats;
}

/** The three dispatches on x [N, H, W, C] (C a multiple of 4 and of groups). */
export function runGroupNorm(backend: WebGPUBackendLike, x: TensorInfo, gamma: TensorInfo, beta: TensorInfo, groups: number, eps: number, silu: boolean): TensorInfo {
  const s = groupNormShape(x, groups);
  const stats = runGroupNormStats(backend, x, s, eps);
  const y = backend.runWebGPUProgram(new GroupNormApplyProgram(x.shape, s, silu), [x, stats, gamma, beta], 'float32');
  backend.disposeData(stats.dataId);
  return y;
}
