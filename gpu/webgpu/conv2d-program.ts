// NHWC convolution as an implicit GEMM on the tiled GEMM body (gemm-tiling.ts): replaces tfjs's Conv2D,
// FusedConv2D and (stride 1) Conv2DBackpropInput programs.
//
// out[(n,oy,ox), co] = Σ_k in[(n,oy,ox), k] · filter[k, co] with k = (ky·KW + kx)·CIN + ci: the HWIO filter is
// already that [K, COUT] matrix, and the input rows are gathered on the fly (zero outside the padded image).
// With CIN % 4 == 0 a vec4 along k never crosses a filter tap.
// The input gradient of a stride-1 convolution is the same convolution of dy with the filter flipped in space
// and its channel axes swapped, padded by (k - 1 - pad): `flipped` reads the forward filter that way.
import { backend_util, type TensorInfo } from '@tensorflow/tfjs-core';
import type { WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu';
import { gemmShader, gemmWorkgroupSize, type GemmTile } from './gemm-tiling.ts';
import { chooseGemmTile, type WebGPUBackendLike } from './program-util.ts';

export interface ConvGeometry {
  batch: number;
  inH: number;
  inW: number;
  inC: number;
  outH: number;
  outW: number;
  outC: number;
  kh: number;
  kw: number;
  strideH: number;
  strideW: number;
  dilationH: number;
  dilationW: number;
  padTop: number;
  padLeft: number;
  /** the filter is a forward filter [kh, kw, outC, inC] read flipped (input gradient) */
  flipped: boolean;
}

export class Conv2dTiledProgram implements WebGPUProgram {
  variableNames: string[];
  variableComponents: number[];
  outputComponent = 4;
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [] as number[], y: [0] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  /**
   * Image sizes, padding and output channels are uniforms; the input channels, filter size, strides and
   * dilations stay constants (they are few, and the per-load index arithmetic divides by them).
   */
  uniforms = 'inH : i32, inW : i32, outH : i32, outW : i32, outC : i32, padTop : i32, padLeft : i32, M : i32,';

  constructor(private g: ConvGeometry, private tile: GemmTile, private bias: boolean, private activation: 'linear' | 'relu') {
    this.outputShape = [g.batch, g.outH, g.outW, g.outC];
    this.variableNames = bias ? ['x', 'W', 'bias'] : ['x', 'W'];
    this.variableComponents = bias ? [4, 4, 4] : [4, 4];
    this.workgroupSize = gemmWorkgroupSize(tile);
    const m = g.batch * g.outH * g.outW;
    this.dispatch = [Math.ceil(g.outC / tile.bn), Math.ceil(m / tile.bm), 1];
    const fixed = [g.inC, g.kh, g.kw, g.strideH, g.strideW, g.dilationH, g.dilationW, g.flipped];
    this.shaderKey = `perfusionConv2d_${fixed.join('_')}_${JSON.stringify(tile)}_${bias}_${activation}`;
  }

  uniformData(): Array<{ type: string; data: number[] }> {
    const g = this.g;
    return [g.inH, g.inW, g.outH, g.outW, g.outC, g.padTop, g.padLeft, g.batch * g.outH * g.outW].map((v) => ({ type: 'int32', data: [v] }));
  }

  getUserCode(): string {
    const g = this.g;
    const k = g.kh * g.kw * g.inC;
    const helpers = `
      struct ARow { base : i32, iy0 : i32, ix0 : i32, ok : bool };
      fn ACtx(m : i32) -> ARow {
        let plane = uniforms.outH * uniforms.outW;
        let n = m / plane;
        let r = m - n * plane;
        let oy = r / uniforms.outW;
        let ox = r - oy * uniforms.outW;
        return ARow(n * uniforms.inH * uniforms.inW * ${g.inC}, oy * ${g.strideH} - uniforms.padTop, ox * ${g.strideW} - uniforms.padLeft, m < uniforms.M);
      }
      fn ALoad(c : ARow, k : i32) -> vec4<f32> {
        let tap = k / ${g.inC};
        let ci = k - tap * ${g.inC};
        let ky = tap / ${g.kw};
        let kx = tap - ky * ${g.kw};
        let iy = c.iy0 + ky * ${g.dilationH};
        let ix = c.ix0 + kx * ${g.dilationW};
        if (c.ok && k < ${k} && iy >= 0 && iy < uniforms.inH && ix >= 0 && ix < uniforms.inW) {
          return x[(c.base + (iy * uniforms.inW + ix) * ${g.inC} + ci) / 4];
        }
        return vec4<f32>(0.0);
      }
      ${g.flipped ? `
      fn BCtx(n : i32) -> i32 { return n; }
      fn BLoad(n : i32, k : i32) -> vec4<f32> {
        let tap = k / ${g.inC};
        let co = k - tap * ${g.inC};
        let ky = tap / ${g.kw};
        let kx = tap - ky * ${g.kw};
        if (n < uniforms.outC && k < ${k}) {
          return W[(((${g.kh - 1} - ky) * ${g.kw} + (${g.kw - 1} - kx)) * uniforms.outC * ${g.inC} + n * ${g.inC} + co) / 4];
        }
        return vec4<f32>(0.0);
      }` : `
      fn BLoad4(k : i32, n : i32) -> vec4<f32> {
        if (k < ${k} && n < uniforms.outC) { return W[(k * uniforms.outC + n) / 4]; }
        return vec4<f32>(0.0);
      }`}`;
    return gemmShader({
      tile: this.tile, m: 'uniforms.M', n: 'uniforms.outC', k: String(k),
      a: 'k4', b: g.flipped ? 'k4' : 'o4',
      helpers, bias: this.bias, activation: this.activation,
    });
  }
}

const MIN_OUTPUTS = 256;

function runConv(backend: WebGPUBackendLike, g: ConvGeometry, x: TensorInfo, filter: TensorInfo, bias: TensorInfo | undefined, activation: 'linear' | 'relu'): TensorInfo | null {
  if (g.inC % 4 !== 0 || g.outC % 4 !== 0) return null;
  const m = g.batch * g.outH * g.outW;
  if (m * g.outC < MIN_OUTPUTS) return null;
  const tile = chooseGemmTile(backend, 1, m, g.outC);
  if (!tile) return null;
  const program = new Conv2dTiledProgram(g, tile, !!bias, activation);
  return backend.runWebGPUProgram(program, bias ? [x, filter, bias] : [x, filter], 'float32', program.uniformData());
}

export interface ConvAttrs {
  strides: number | [number, number];
  pad: backend_util.PadInfo['type'] | number | backend_util.ExplicitPadding;
  dataFormat?: 'NHWC' | 'NCHW';
  dilations?: number | [number, number];
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

/** Conv2D / FusedConv2D (bias [outC], linear or relu); null when outside the program's constraints. */
export function runTiledConv2d(backend: WebGPUBackendLike, x: TensorInfo, filter: TensorInfo, attrs: ConvAttrs, bias?: TensorInfo, activation?: string): TensorInfo | null {
  const act = activation ?? 'linear';
  if (act !== 'linear' && act !== 'relu') return null;
  if ((attrs.dataFormat ?? 'NHWC') !== 'NHWC' || x.dtype !== 'float32' || filter.dtype !== 'float32') return null;
  const info = backend_util.computeConv2DInfo(x.shape as [number, number, number, number], filter.shape as [number, number, number, number],
    attrs.strides, attrs.dilations ?? 1, attrs.pad as never, attrs.dimRoundingMode, false, 'channelsLast');
  if (bias && !(bias.shape.length === 1 && bias.shape[0] === info.outChannels)) return null;
  return runConv(backend, {
    batch: info.batchSize, inH: info.inHeight, inW: info.inWidth, inC: info.inChannels,
    outH: info.outHeight, outW: info.outWidth, outC: info.outChannels,
    kh: info.filterHeight, kw: info.filterWidth, strideH: info.strideHeight, strideW: info.strideWidth,
    dilationH: info.dilationHeight, dilationW: info.dilationWidth, padTop: info.padInfo.top, padLeft: info.padInfo.left,
    flipped: false,
  }, x, filter, bias, act);
}

/** Conv2DBackpropInput for stride 1 (the UNet's and VAE's 3×3 and 1×1 convolutions); null otherwise. */
export function runTiledConv2dBackpropInput(backend: WebGPUBackendLike, dy: TensorInfo, filter: TensorInfo, attrs: ConvAttrs & { inputShape: number[] }): TensorInfo | null {
  if ((attrs.dataFormat ?? 'NHWC') !== 'NHWC' || dy.dtype !== 'float32') return null;
  const info = backend_util.computeConv2DInfo(attrs.inputShape as [number, number, number, number], filter.shape as [number, number, number, number],
    attrs.strides, 1, attrs.pad as never, attrs.dimRoundingMode, false, 'channelsLast');
  if (info.strideHeight !== 1 || info.strideWidth !== 1) return null;
  return runConv(backend, {
    batch: info.batchSize, inH: info.outHeight, inW: info.outWidth, inC: info.outChannels,
    outH: info.inHeight, outW: info.inWidth, outC: info.inChannels,
    kh: info.filterHeight, kw: info.filterWidth, strideH: 1, strideW: 1, dilationH: 1, dilationW: 1,
    padTop: info.filterHeight - 1 - info.padInfo.top, padLeft: info.filterWidth - 1 - info.padInfo.left,
    flipped: true,
  }, dy, filter, undefined, 'linear');
}
