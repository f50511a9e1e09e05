// Batched matrix product on the tiled GEMM body (gemm-tiling.ts): replaces tfjs's BatchMatMul/_FusedMatMul
// programs for fp32 problems whose contiguous axes are multiples of 4.
import { broadcast_util, type TensorInfo } from '@tensorflow/tfjs-core';
import type { WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu';
import { gemmAligned, gemmShader, gemmWorkgroupSize, type GemmTile } from './gemm-tiling.ts';
import { chooseGemmTile, type WebGPUBackendLike } from './program-util.ts';

export interface MatMulDims {
  batch: number;
  m: number;
  n: number;
  k: number;
  /** A is stored [K, M] (transposeA) instead of [M, K]; B [N, K] (transposeB) instead of [K, N] */
  transposeA: boolean;
  transposeB: boolean;
  /** a batch of 1 broadcasts over the other operand's batch */
  batchA: number;
  batchB: number;
}

export class MatMulTiledProgram implements WebGPUProgram {
  variableNames: string[];
  variableComponents: number[];
  outputComponent = 4;
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [] as number[], y: [0] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  /** sizes are uniforms: the pipeline depends only on the layout, the tile and the epilogue */
  uniforms = 'm : i32, n : i32, k : i32,';

  constructor(outputShape: number[], private d: MatMulDims, private tile: GemmTile, private bias: boolean, private activation: 'linear' | 'relu') {
    this.outputShape = outputShape;
    this.variableNames = bias ? ['A', 'B', 'bias'] : ['A', 'B'];
    this.variableComponents = bias ? [4, 4, 4] : [4, 4];
    this.workgroupSize = gemmWorkgroupSize(tile);
    this.dispatch = [Math.ceil(d.n / tile.bn), Math.ceil(d.m / tile.bm), d.batch];
    const layout = { tA: d.transposeA, tB: d.transposeB, bcastA: d.batchA === 1, bcastB: d.batchB === 1 };
    this.shaderKey = `perfusionMatMul_${JSON.stringify(layout)}_${JSON.stringify(tile)}_${bias}_${activation}`;
  }

  uniformData(): Array<{ type: string; data: number[] }> {
    return [{ type: 'int32', data: [this.d.m] }, { type: 'int32', data: [this.d.n] }, { type: 'int32', data: [this.d.k] }];
  }

  getUserCode(): string {
    const { transposeA, transposeB, batchA, batchB } = this.d;
    const [m, n, k] = ['uniforms.m', 'uniforms.n', 'uniforms.k'];
    const aBase = batchA === 1 ? '0' : `batchIdx * ${m} * ${k}`;
    const bBase = batchB === 1 ? '0' : `batchIdx * ${k} * ${n}`;
    const helpers = [
      transposeA
        ? `fn ALoad4(k : i32, m : i32) -> vec4<f32> {
             if (k < ${k} && m < ${m}) { return A[(${aBase} + k * ${m} + m) / 4]; }
             return vec4<f32>(0.0);
           }`
        : `fn ACtx(m : i32) -> i32 { return m; }
           fn ALoad(m : i32, k : i32) -> vec4<f32> {
             if (m < ${m} && k < ${k}) { return A[(${aBase} + m * ${k} + k) / 4]; }
             return vec4<f32>(0.0);
           }`,
      transposeB
        ? `fn BCtx(n : i32) -> i32 { return n; }
           fn BLoad(n : i32, k : i32) -> vec4<f32> {
             if (n < ${n} && k < ${k}) { return B[(${bBase} + n * ${k} + k) / 4]; }
             return vec4<f32>(0.0);
           }`
        : `fn BLoad4(k : i32, n : i32) -> vec4<f32> {
             if (k < ${k} && n < ${n}) { return B[(${bBase} + k * ${n} + n) / 4]; }
             return vec4<f32>(0.0);
           }`,
    ].join('\n');
    return gemmShader({
      tile: this.tile, m, n, k,
      a: transposeA ? 'o4' : 'k4',
      b: transposeB ? 'k4' : 'o4',
      helpers, bias: this.bias, activation: this.activation,
    });
  }
}

/** Problems smaller than this many outputs stay on tfjs's own programs (they have special small-output paths). */
const MIN_OUTPUTS = 256;

/**
 * Runs C = A·B (+ bias, activation) with the tiled program, or returns null when the problem does not fit its
 * constraints (then the caller uses tfjs's stock kernel).
 */
export function runTiledMatMul(
  backend: WebGPUBackendLike, a: TensorInfo, b: TensorInfo, transposeA: boolean, transposeB: boolean,
  bias: TensorInfo | undefined, activation: string | undefined,
): TensorInfo | null {
  if (a.dtype !== 'float32' || b.dtype !== 'float32') return null;
  const act = activation ?? 'linear';
  if (act !== 'linear' && act !== 'relu') return null;
  const ra = a.shape.length;
  const rb = b.shape.length;
  if (ra < 2 || rb < 2) return null;
  const m = transposeA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
  const k = transposeA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
  const n = transposeB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
  const outerA = a.shape.slice(0, -2);
  const outerB = b.shape.slice(0, -2);
  const batchA = outerA.reduce((p, x) => p * x, 1);
  const batchB = outerB.reduce((p, x) => p * x, 1);
  // Only "same batch" or "one side unbatched": other broadcasts go to the stock kernel.
  if (batchA !== batchB && batchA !== 1 && batchB !== 1) return null;
  const outer = broadcast_util.assertAndGetBroadcastShape(outerA, outerB);
  const batch = Math.max(batchA, batchB);
  if (outer.reduce((p, x) => p * x, 1) !== batch) return null;
  if (batch * m * n < MIN_OUTPUTS || k < 4) return null;
  if (!gemmAligned(m, n, k, transposeA ? 'o4' : 'k4', transposeB ? 'k4' : 'o4')) return null;
  if (bias && !(bias.shape.length === 1 && bias.shape[0] === n)) return null;
  const tile = chooseGemmTile(backend, batch, m, n);
  if (!tile) return null;
  const program = new MatMulTiledProgram([...outer, m, n], { batch, m, n, k, transposeA, transposeB, batchA, batchB }, tile, !!bias, act);
  return backend.runWebGPUProgram(program, bias ? [a, b, bias] : [a, b], 'float32', program.uniformData());
}
