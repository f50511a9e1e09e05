// Input gradient of GroupNorm(+SiLU) (groupnorm-program.ts) in five dispatches instead of ~40 primitive ones.
//
// With x̂ = (x − μ)·r per group, y = x̂·γ + β, z = silu ? y·σ(y) : y and upstream dz:
//   dy = silu ? dz·σ(y)·(1 + y·(1 − σ(y))) : dz,   a = dy·γ
//   dx = r·(a − mean_g(a) − x̂·mean_g(a·x̂))
// Dispatches: the forward statistics again (two), per-slice sums of a and a·x̂ (the same slicing as the
// statistics), their per-group means, and the element-wise dx. γ and β gradients (frozen in Perfusion) are left
// to the primitive path in ops.ts, which runs only when they are differentiated.
import type { TensorInfo } from '@tensorflow/tfjs-core';
import type { WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu';
import { USE_UNIFORMS } from './gemm-tiling.ts';
import {
  groupNormShape, groupNormSlices, runGroupNormStats, sliceBounds, workgroupSum, STATS_THREADS, type GroupNormShape,
} from './groupnorm-program.ts';
import type { WebGPUBackendLike } from './program-util.ts';

/** WGSL expression of a = dy·γ from the normalised value, the upstream gradient and the channel's γ and β. */
function upstream(silu: boolean, xhat: string, g: string, gammaC: string, betaC: string): string {
  if (!silu) return `${g} * ${gammaC}`;
  return `(${g} * silu_grad(${xhat} * ${gammaC} + ${betaC}) * ${gammaC})`;
}

const SILU_GRAD = `
  fn silu_grad(y : f32) -> f32 {
    let sg = 1.0 / (1.0 + exp(-y));
    return sg * (1.0 + y * (1.0 - sg));
  }
  fn silu_grad4(y : vec4<f32>) -> vec4<f32> {
    let sg = vec4<f32>(1.0) / (vec4<f32>(1.0) + exp(-y));
    return sg * (vec4<f32>(1.0) + y * (vec4<f32>(1.0) - sg));
  }`;

/** Output [batch·groups·slices, 2]: per slice, Σa and Σa·x̂. */
export class GroupNormGradPartialProgram implements WebGPUProgram {
  variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [] as number[], y: [0] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [STATS_THREADS, 1, 1];

  constructor(private s: GroupNormShape, private slices: number, private silu: boolean) {
    // β only matters through the SiLU; an unused binding would be dropped from the pipeline layout
    this.variableNames = silu ? ['x', 'dz', 'stats', 'gamma', 'beta'] : ['x', 'dz', 'stats', 'gamma'];
    this.outputShape = [s.batch * s.groups * slices, 2];
    this.dispatch = [slices, s.groups, s.batch];
    this.shaderKey = `perfusionGroupNormGradPartial_${JSON.stringify(s)}_${slices}_${silu}`;
  }

  getUserCode(): string {
    const { pixels, channels, groups } = this.s;
    const cg = channels / groups;
    return `
      var<workgroup> red : array<f32, ${STATS_THREADS}>;
      ${SILU_GRAD}
      fn main() {
        ${USE_UNIFORMS}
        let tid = i32(localIndex);
        let s = i32(workgroupId.x);
        let g = i32(workgroupId.y);
        let n = i32(workgroupId.z);
        ${sliceBounds(pixels, this.slices)}
        let count = (p1 - p0) * ${cg};
        let base = (n * ${pixels} + p0) * ${channels} + g * ${cg};
        let mean = stats[(n * ${groups} + g) * 2];
        let rstd = stats[(n * ${groups} + g) * 2 + 1];
        var sa = 0.0;
        var sax = 0.0;
        for (var e = tid; e < count; e += ${STATS_THREADS}) {
          let p = e / ${cg};
          let cc = e - p * ${cg};
          let idx = base + p * ${channels} + cc;
          let c = g * ${cg} + cc;
          let xhat = (x[idx] - mean) * rstd;
          let a = ${upstream(this.silu, 'xhat', 'dz[idx]', 'gamma[c]', 'beta[c]')};
          sa += a;
          sax += a * xhat;
        }
        ${workgroupSum('sa')}
        let totalA = red[0];
        workgroupBarrier();
        ${workgroupSum('sax')}
        if (tid == 0) {
          let o = ((n * ${groups} + g) * ${this.slices} + s) * 2;
          result[o] = totalA;
          result[o + 1] = red[0];
        }
      }`;
  }
}

/** Output [batch·groups, 2]: mean of a and of a·x̂ per (image, group). */
export class GroupNormGradFinalizeProgram implements WebGPUProgram {
  variableNames = ['partial'];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [0] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [64, 1, 1];

  constructor(private s: GroupNormShape, private slices: number) {
    this.outputShape = [s.batch * s.groups, 2];
    this.dispatch = [Math.ceil((s.batch * s.groups) / 64), 1, 1];
    this.shaderKey = `perfusionGroupNormGradFinalize_${JSON.stringify(s)}_${slices}`;
  }

  getUserCode(): string {
    const count = this.s.pixels * (this.s.channels / this.s.groups);
    return `
      fn main(index : i32) {
        ${USE_UNIFORMS}
        if (index >= ${this.s.batch * this.s.groups}) { return; }
        var sa = 0.0;
        var sax = 0.0;
        for (var s = 0; s < ${this.slices}; s++) {
          sa += partial[(index * ${this.slices} + s) * 2];
          sax += partial[(index * ${this.slices} + s) * 2 + 1];
        }
        result[index * 2] = sa / ${count}.0;
        result[index * 2 + 1] = sax / ${count}.0;
      }`;
  }
}

/** dx = rstd·(a − mean(a) − x̂·mean(a·x̂)), four channels per thread. */
export class GroupNormGradApplyProgram implements WebGPUProgram {
  variableNames: string[];
  variableComponents: number[];
  outputComponent = 4;
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [0] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [256, 1, 1];

  constructor(outputShape: number[], private s: GroupNormShape, private silu: boolean) {
    this.variableNames = silu ? ['x', 'dz', 'stats', 'gstats', 'gamma', 'beta'] : ['x', 'dz', 'stats', 'gstats', 'gamma'];
    this.variableComponents = silu ? [4, 4, 1, 1, 4, 4] : [4, 4, 1, 1, 4];
    this.outputShape = outputShape;
    this.dispatch = [Math.ceil((s.batch * s.pixels * s.channels) / 4 / 256), 1, 1];
    this.shaderKey = `perfusionGroupNormGradApply_${JSON.stringify(s)}_${silu}`;
  }

  getUserCode(): string {
    const { batch, pixels, channels, groups } = this.s;
    const cg = channels / groups;
    const c4 = channels / 4;
    const comps = ['x', 'y', 'z', 'w'].map((comp, j) => `
        {
          let st = (n * ${groups} + (c + ${j}) / ${cg}) * 2;
          mean.${comp} = stats[st];
          rstd.${comp} = stats[st + 1];
          meanA.${comp} = gstats[st];
          meanAX.${comp} = gstats[st + 1];
        }`).join('');
    const a = this.silu ? 'g * silu_grad4(xhat * gm + bt) * gm' : 'g * gm';
    return `
      ${SILU_GRAD}
      fn main(index : i32) {
        ${USE_UNIFORMS}
        if (index >= ${(batch * pixels * channels) / 4}) { return; }
        let n = index / ${pixels * c4};
        let c4i = index % ${c4};
        let c = c4i * 4;
        var mean : vec4<f32>;
        var rstd : vec4<f32>;
        var meanA : vec4<f32>;
        var meanAX : vec4<f32>;
        ${comps}
        let xhat = (x[index] - mean) * rstd;
        let g = dz[index];
        let gm = gamma[c4i];
        ${this.silu ? 'let bt = beta[c4i];' : ''}
        let a = ${a};
        result[index] = rstd * (a - meanA - xhat * meanAX);
      }`;
  }
}

/** dx for x [N, H, W, C] (C a multiple of 4 and of groups). */
export function runGroupNormGrad(backend: WebGPUBackendLike, x: TensorInfo, gamma: TensorInfo, beta: TensorInfo, dz: TensorInfo, groups: number, eps: number, silu: boolean): TensorInfo {
  const s = groupNormShape(x, groups);
  const stats = runGroupNormStats(backend, x, s, eps);
  const slices = groupNormSlices(s);
  const affine = silu ? [gamma, beta] : [gamma];
  const partial = backend.runWebGPUProgram(new GroupNormGradPartialProgram(s, slices, silu), [x, dz, stats, ...affine], 'float32');
  const gstats = backend.runWebGPUProgram(new GroupNormGradFinalizeProgram(s, slices), [partial], 'float32');
  backend.disposeData(partial.dataId);
  const dx = backend.runWebGPUProgram(new GroupNormGradApplyProgram(x.shape, s, silu), [x, dz, stats, gstats, ...affine], 'float32');
  backend.disposeData(stats.dataId);
  backend.disposeData(gstats.dataId);
  return dx;
}
