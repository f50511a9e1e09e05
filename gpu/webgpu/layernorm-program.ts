// LayerNorm over the last axis, forward and input gradient, one dispatch each instead of tfjs's ~10 and ~25.
//
// One workgroup per row: its threads hold the row (four channels per vec4, a few vec4s per thread) in registers,
// so x is read once; the mean, then the sum of squared deviations (two reductions, no cancellation), give
// 1/σ (biased variance, as torch.nn.LayerNorm). The backward recomputes them from x and applies
//   dx = r·(a − mean(a) − x̂·mean(a·x̂)),   a = dy·γ,   x̂ = (x − μ)·r.
// γ and β gradients (frozen in Perfusion) are left to the primitive path in ops.ts.
import type { TensorInfo } from '@tensorflow/tfjs-core';
import type { WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu';
import { USE_UNIFORMS } from './gemm-tiling.ts';
import type { WebGPUBackendLike } from './program-util.ts';

const THREADS = 64;
/** workgroups per dispatch row: rows beyond it continue in workgroup y */
const ROWS_PER_DISPATCH_ROW = 32768;

/** WGSL: sums the f32 `v` over the workgroup into `red[0]` (then read by every thread). */
function workgroupSum(v: string): string {
  return `
    red[tid] = ${v};
    workgroupBarrier();
    for (var w = ${THREADS / 2}; w > 0; w = w / 2) {
      if (tid < w) { red[tid] = red[tid] + red[tid + w]; }
      workgroupBarrier();
    }`;
}

abstract class LayerNormRowProgram implements WebGPUProgram {
  abstract variableNames: string[];
  abstract variableComponents: number[];
  outputComponent = 4;
  outputShape: number[];
  abstract shaderKey: string;
  dispatchLayout = { x: [] as number[], y: [0] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [THREADS, 1, 1];
  protected readonly c4: number;
  /** vec4s per thread */
  protected readonly perThread: number;

  constructor(outputShape: number[], protected rows: number, protected channels: number, protected eps: number) {
    this.outputShape = outputShape;
    this.c4 = channels / 4;
    this.perThread = Math.ceil(this.c4 / THREADS);
    this.dispatch = [Math.min(rows, ROWS_PER_DISPATCH_ROW), Math.ceil(rows / ROWS_PER_DISPATCH_ROW), 1];
  }

  /** WGSL of main's start: the row, its vec4s in registers, mean and rstd. `load(i)` is the WGSL of vec4 i. */
  protected rowStatistics(loads: Record<string, (i: string) => string>): string {
    const P = [...Array(this.perThread).keys()];
    const names = Object.keys(loads);
    const lines: string[] = [];
    for (const n of names) lines.push(`var ${n} : array<vec4<f32>, ${this.perThread}>;`);
    for (const p of P) {
      lines.push(`{ let i = tid + ${p * THREADS};`);
      for (const n of names) lines.push(`  ${n}[${p}] = select(vec4<f32>(0.0), ${loads[n]!('base + min(i, ' + (this.c4 - 1) + ')')}, i < ${this.c4});`);
      lines.push('}');
    }
    const sumX = P.map((p) => `dot(x[${p}], vec4<f32>(1.0))`).join(' + ');
    lines.push(workgroupSum(sumX));
    lines.push(`let mean = red[0] / ${this.channels}.0;`);
    lines.push('workgroupBarrier();');
    lines.push('var sq = 0.0;');
    for (const p of P) {
      lines.push(`if (tid + ${p * THREADS} < ${this.c4}) { let d = x[${p}] - vec4<f32>(mean); sq += dot(d, d); }`);
    }
    lines.push(workgroupSum('sq'));
    lines.push(`let rstd = inverseSqrt(red[0] / ${this.channels}.0 + ${this.eps});`);
    lines.push('workgroupBarrier();');
    return lines.join('\n      ');
  }

  protected header(): string {
    return `
      var<workgroup> red : array<f32, ${THREADS}>;
      fn main() {
        ${USE_UNIFORMS}
        let tid = i32(localIndex);
        // (no early return: the barriers below must stay in uniform control flow; a spare workgroup redoes the
        // last row and writes nothing)
        let rowId = i32(workgroupId.y) * ${ROWS_PER_DISPATCH_ROW} + i32(workgroupId.x);
        let inRange = rowId < ${this.rows};
        let base = min(rowId, ${this.rows - 1}) * ${this.c4};`;
  }

  abstract getUserCode(): string;
}

/** y = (x − μ)·r·γ + β per row. */
export class LayerNormProgram extends LayerNormRowProgram {
  variableNames = ['X', 'gamma', 'beta'];
  variableComponents = [4, 4, 4];
  shaderKey: string;

  constructor(outputShape: number[], rows: number, channels: number, eps: number) {
    super(outputShape, rows, channels, eps);
    this.shaderKey = `perfusionLayerNorm_${rows}_${channels}_${eps}`;
  }

  getUserCode(): string {
    const P = [...Array(this.perThread).keys()];
    return `${this.header()}
        ${this.rowStatistics({ x: (i) => `X[${i}]` })}
        ${P.map((p) => `{ let i = tid + ${p * THREADS};
          if (inRange && i < ${this.c4}) { result[base + i] = (x[${p}] - vec4<f32>(mean)) * rstd * gamma[i] + beta[i]; } }`).join('\n        ')}
      }`;
  }
}

/** dx of LayerNorm per row, from x, dy and γ. */
export class LayerNormGradProgram extends LayerNormRowProgram {
  variableNames = ['X', 'dy', 'gamma'];
  variableComponents = [4, 4, 4];
  shaderKey: string;

  constructor(outputShape: number[], rows: number, channels: number, eps: number) {
    super(outputShape, rows, channels, eps);
    this.shaderKey = `perfusionLayerNormGrad_${rows}_${channels}_${eps}`;
  }

  getUserCode(): string {
    const P = [...Array(this.perThread).keys()];
    const c4 = this.c4;
    return `${this.header()}
        ${this.rowStatistics({ x: (i) => `X[${i}]`, g: (i) => `dy[${i}]` })}
        var sa = 0.0;
        var sax = 0.0;
        ${P.map((p) => `{ let i = tid + ${p * THREADS};
          if (i < ${c4}) {
            let a = g[${p}] * gamma[i];
            sa += dot(a, vec4<f32>(1.0));
            sax += dot(a, (x[${p}] - vec4<f32>(mean)) * rstd);
          } }`).join('\n        ')}
        ${workgroupSum('sa')}
        let meanA = red[0] / ${this.channels}.0;
        workgroupBarrier();
        ${workgroupSum('sax')}
        let meanAX = red[0] / ${this.channels}.0;
        ${P.map((p) => `{ let i = tid + ${p * THREADS};
          if (inRange && i < ${c4}) {
            let xhat = (x[${p}] - vec4<f32>(mean)) * rstd;
            result[base + i] = rstd * (g[${p}] * gamma[i] - vec4<f32>(meanA) - xhat * meanAX);
          } }`).join('\n        ')}
      }`;
  }
}

/** Rows and width of x [..., C] as the programs see it; null when C is not a multiple of 4. */
function rowsOf(x: TensorInfo): { rows: number; channels: number } | null {
  const channels = x.shape[x.shape.length - 1]!;
  if (channels % 4 !== 0 || x.shape.length < 1) return null;
  return { rows: x.shape.slice(0, -1).reduce((a, b) => a * b, 1), channels };
}

export function runLayerNorm(backend: WebGPUBackendLike, x: TensorInfo, gamma: TensorInfo, beta: TensorInfo, eps: number): TensorInfo {
  const r = rowsOf(x);
  if (!r) throw new Error(`PerfusionLayerNorm: the last axis of [${x.shape}] is not a multiple of 4 (check canFuseLayerNorm first)`);
  return backend.runWebGPUProgram(new LayerNormProgram(x.shape, r.rows, r.channels, eps), [x, gamma, beta], 'float32');
}

export function runLayerNormGrad(backend: WebGPUBackendLike, x: TensorInfo, gamma: TensorInfo, dy: TensorInfo, eps: number): TensorInfo {
  const r = rowsOf(x);
  if (!r) throw new Error(`PerfusionLayerNormGrad: the last axis of [${x.shape}] is not a multiple of 4`);
  return backend.runWebGPUProgram(new LayerNormGradProgram(x.shape, r.rows, r.channels, eps), [x, dy, gamma], 'float32');
}
