// GEGLU (diffusers' feed-forward gate): x [..., 2H] → x[..., :H] · GELU(x[..., H:]) with the exact erf GELU,
// forward and gradient in one element-wise dispatch each, instead of a split and ~6 ops forward and ~15 backward.
//
// erf is the Abramowitz–Stegun approximation tfjs's own Erf kernels use (|error| < 1.5e-7), so the fused op
// matches the primitive one; the gradient uses GELU'(g) = Φ(g) + g·φ(g), as autodiff through tfjs's Erf does.
import { backend_util, type TensorInfo } from '@tensorflow/tfjs-core';
import type { WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu';
import { USE_UNIFORMS } from './gemm-tiling.ts';
import type { WebGPUBackendLike } from './program-util.ts';

const THREADS = 256;

const GELU = `
  fn erf4(v : vec4<f32>) -> vec4<f32> {
    let a = abs(v);
    let t = vec4<f32>(1.0) / (vec4<f32>(1.0) + ${backend_util.ERF_P} * a);
    let poly = ((((${backend_util.ERF_A5} * t + ${backend_util.ERF_A4}) * t + ${backend_util.ERF_A3}) * t + ${backend_util.ERF_A2}) * t + ${backend_util.ERF_A1}) * t;
    return sign(v) * (vec4<f32>(1.0) - poly * exp(-a * a));
  }
  fn cdf4(g : vec4<f32>) -> vec4<f32> {
    return 0.5 * (vec4<f32>(1.0) + erf4(g * ${Math.SQRT1_2}));
  }`;

abstract class GegluProgram implements WebGPUProgram {
  abstract variableNames: string[];
  abstract variableComponents: number[];
  outputComponent = 4;
  outputShape: number[];
  abstract shaderKey: string;
  dispatchLayout = { x: [0] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [THREADS, 1, 1];
  /** vec4s of one half-row (H / 4) and of all half-rows */
  protected readonly h4: number;
  protected readonly total: number;

  constructor(outputShape: number[], rows: number, hidden: number) {
    this.outputShape = outputShape;
    this.h4 = hidden / 4;
    this.total = rows * this.h4;
    // flat: tfjs spreads it over y and z when it exceeds the per-dimension limit
    this.dispatch = [Math.ceil(this.total / THREADS), 1, 1];
  }

  /** WGSL: `row`, `j` (vec4 within the half-row), `hi` and `gi` (flat vec4 indices of hidden and gate). */
  protected indices(): string {
    return `
        if (index >= ${this.total}) { return; }
        let row = index / ${this.h4};
        let j = index - row * ${this.h4};
        let hi = row * ${2 * this.h4} + j;
        let gi = hi + ${this.h4};`;
  }

  abstract getUserCode(): string;
}

export class GegluForwardProgram extends GegluProgram {
  variableNames = ['X'];
  variableComponents = [4];
  shaderKey: string;

  constructor(outputShape: number[], rows: number, hidden: number) {
    super(outputShape, rows, hidden);
    this.shaderKey = `perfusionGeglu_${rows}_${hidden}`;
  }

  getUserCode(): string {
    return `${GELU}
      fn main(index : i32) {
        ${USE_UNIFORMS}
        ${this.indices()}
        let g = X[gi];
        result[index] = X[hi] * g * cdf4(g);
      }`;
  }
}

/** dx [..., 2H]: dy·GELU(g) in the hidden half, dy·h·GELU'(g) in the gate half; one thread writes both. */
export class GegluGradProgram extends GegluProgram {
  variableNames = ['X', 'dy'];
  variableComponents = [4, 4];
  shaderKey: string;

  constructor(outputShape: number[], rows: number, hidden: number) {
    super(outputShape, rows, hidden);
    this.shaderKey = `perfusionGegluGrad_${rows}_${hidden}`;
  }

  getUserCode(): string {
    const invSqrt2Pi = 1 / Math.sqrt(2 * Math.PI);
    return `${GELU}
      fn main(index : i32) {
        ${USE_UNIFORMS}
        ${this.indices()}
        let g = X[gi];
        let d = dy[index];
        let cdf = cdf4(g);
        result[hi] = d * g * cdf;
        result[gi] = d * X[hi] * (cdf + g * ${invSqrt2Pi} * exp(-0.5 * g * g));
      }`;
  }
}

function halves(x: TensorInfo): { rows: number; hidden: number } | null {
  const width = x.shape[x.shape.length - 1]!;
  if (x.shape.length < 1 || width % 8 !== 0) return null;
  return { rows: x.shape.slice(0, -1).reduce((a, b) => a * b, 1), hidden: width / 2 };
}

export function runGeglu(backend: WebGPUBackendLike, x: TensorInfo): TensorInfo {
  const h = halves(x);
  if (!h) throw new Error(`PerfusionGeglu: the last axis of [${x.shape}] is not a multiple of 8 (check canFuseGeglu first)`);
  return backend.runWebGPUProgram(new GegluForwardProgram([...x.shape.slice(0, -1), h.hidden], h.rows, h.hidden), [x], 'float32');
}

export function runGegluGrad(backend: WebGPUBackendLike, x: TensorInfo, dy: TensorInfo): TensorInfo {
  const h = halves(x);
  if (!h) throw new Error(`PerfusionGegluGrad: the last axis of [${x.shape}] is not a multiple of 8`);
  return backend.runWebGPUProgram(new GegluGradProgram(x.shape, h.rows, h.hidden), [x, dy], 'float32');
}
