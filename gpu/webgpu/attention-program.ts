// Fused multi-head attention, flash-attention style: softmax(q·kᵀ/√d)·v in one pass, never materialising the
// [Lq, Lk] score matrix.
//
// Inputs are the projections as the model has them, [B, L, heads·d] (no head split/merge transposes); the output
// is [B, Lq, heads·d]. One workgroup handles `threads·rowsPerThread` query rows of one (batch, head); each thread
// owns whole query rows (q and the output accumulator in registers, unrolled over d as vec4s). Keys and values
// stream through workgroup memory in blocks; scores of `chunk` keys at a time go through an online softmax
// (running max m and sum l per row, accumulator rescaled by exp2(m_old − m_new)), in the exp2 domain with
// log2(e)/√d folded into q. Workgroup-memory reads are broadcasts (every thread reads the same key).
import type { TensorInfo } from '@tensorflow/tfjs-core';
import type { WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu';
import type { WebGPUBackendLike } from './program-util.ts';
import { MAX_FUSED_HEAD_DIM } from './ops.ts';

export interface AttentionShape {
  batch: number;
  heads: number;
  lq: number;
  lk: number;
  /** head dim, a multiple of 4 */
  d: number;
}

export interface AttentionTiling {
  /** threads per workgroup */
  threads: number;
  /** query rows per thread */
  rowsPerThread: number;
  /** keys per workgroup-memory block (a multiple of chunk) */
  keysPerBlock: number;
  /** keys scored together before one softmax update */
  chunk: number;
}

/**
 * Tunables the benchmark sweeps; the defaults are what the engine uses. Small head dims keep two query rows per
 * thread (two rows share every key/value read from workgroup memory); large ones one row and smaller chunks,
 * to bound the registers a thread holds (q and the accumulator: 2·d floats per row).
 */
export const attentionTuning = {
  threads: 64,
  /** [max head dim, rows per thread, chunk] */
  byHeadDim: [[48, 2, 8], [96, 1, 8], [MAX_FUSED_HEAD_DIM, 1, 4]] as Array<[number, number, number]>,
  maxKeysPerBlock: 64,
};

export function chooseAttentionTiling(s: AttentionShape, maxWorkgroupBytes: number): AttentionTiling {
  const { threads } = attentionTuning;
  const [, rowsPerThread, chunk] = attentionTuning.byHeadDim.find(([maxD]) => s.d <= maxD) ?? [0, 1, 4];
  const fit = Math.floor(maxWorkgroupBytes / (2 * s.d * 4) / chunk) * chunk;
  const keysPerBlock = Math.max(chunk, Math.min(attentionTuning.maxKeysPerBlock, fit));
  return { threads, rowsPerThread, keysPerBlock, chunk };
}

export class FlashAttentionProgram implements WebGPUProgram {
  variableNames = ['Q', 'K', 'V'];
  variableComponents = [4, 4, 4];
  outputComponent = 4;
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [] as number[], y: [0] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number];
  /** sequence lengths and head count are uniforms, so self- and cross-attention of one width share a pipeline */
  uniforms = 'lq : i32, lk : i32, heads : i32,';

  constructor(private s: AttentionShape, private t: AttentionTiling) {
    this.outputShape = [s.batch, s.lq, s.heads * s.d];
    this.workgroupSize = [t.threads, 1, 1];
    this.dispatch = [Math.ceil(s.lq / (t.threads * t.rowsPerThread)), s.heads, s.batch];
    this.shaderKey = `perfusionFlashAttention_${s.d}_${JSON.stringify(t)}`;
  }

  uniformData(): Array<{ type: string; data: number[] }> {
    return [{ type: 'int32', data: [this.s.lq] }, { type: 'int32', data: [this.s.lk] }, { type: 'int32', data: [this.s.heads] }];
  }

  getUserCode(): string {
    const { d } = this.s;
    const { threads, rowsPerThread: rq, keysPerBlock: kb, chunk: ch } = this.t;
    const d4 = d / 4;
    const scale = Math.LOG2E / Math.sqrt(d);
    const R = [...Array(rq).keys()];
    const I = [...Array(d4).keys()];
    const C = [...Array(ch).keys()];
    const f = (x: number) => (Number.isInteger(x) ? `${x}.0` : `${x}`);
    const out: string[] = [];
    const e = (l: string) => out.push(l);
    e(`var<workgroup> sK : array<vec4<f32>, ${kb * d4}>;`);
    e(`var<workgroup> sV : array<vec4<f32>, ${kb * d4}>;`);
    e(`fn main() {`);
    e(`  let lq = uniforms.lq;`);
    e(`  let lk = uniforms.lk;`);
    e(`  let heads = uniforms.heads;`);
    e(`  let tid = i32(localIndex);`);
    e(`  let b = i32(workgroupId.z);`);
    e(`  let h = i32(workgroupId.y);`);
    e(`  let row0 = i32(workgroupId.x) * ${threads * rq} + tid;`);
    for (const r of R) {
      e(`  let qBase${r} = ((b * lq + min(row0 + ${r * threads}, lq - 1)) * heads + h) * ${d4};`);
      for (const i of I) e(`  let q${r}_${i} = Q[qBase${r} + ${i}] * ${f(scale)};`);
      for (const i of I) e(`  var o${r}_${i} = vec4<f32>(0.0);`);
      e(`  var m${r} = -1.0e30;`);
      e(`  var l${r} = 0.0;`);
    }
    e(`  for (var k0 = 0; k0 < lk; k0 += ${kb}) {`);
    e(`    workgroupBarrier();`);
    e(`    for (var idx = tid; idx < ${kb * d4}; idx += ${threads}) {`);
    e(`      let j = idx / ${d4};`);
    e(`      let key = k0 + j;`);
    e(`      var kv = vec4<f32>(0.0);`);
    e(`      var vv = vec4<f32>(0.0);`);
    e(`      if (key < lk) {`);
    e(`        let g = ((b * lk + key) * heads + h) * ${d4} + idx - j * ${d4};`);
    e(`        kv = K[g];`);
    e(`        vv = V[g];`);
    e(`      }`);
    e(`      sK[idx] = kv;`);
    e(`      sV[idx] = vv;`);
    e(`    }`);
    e(`    workgroupBarrier();`);
    e(`    let valid = min(${kb}, lk - k0);`);
    e(`    for (var j0 = 0; j0 < valid; j0 += ${ch}) {`);
    for (const c of C) {
      for (const r of R) {
        const terms = I.map((i) => `dot(q${r}_${i}, sK[(j0 + ${c}) * ${d4} + ${i}])`);
        e(`      var s${r}_${c} = ${terms.join(' + ')};`);
      }
    }
    // only the last chunk of the last block can hold keys past lk
    e(`      if (j0 + ${ch} > valid) {`);
    for (const c of C) for (const r of R) e(`        if (j0 + ${c} >= valid) { s${r}_${c} = -1.0e30; }`);
    e(`      }`);
    for (const r of R) {
      const maxExpr = C.reduce((acc, c) => `max(${acc}, s${r}_${c})`, `m${r}`);
      e(`      let mNew${r} = ${maxExpr};`);
      e(`      let alpha${r} = exp2(m${r} - mNew${r});`);
      e(`      m${r} = mNew${r};`);
      for (const c of C) e(`      let p${r}_${c} = exp2(s${r}_${c} - mNew${r});`);
      e(`      l${r} = l${r} * alpha${r} + ${C.map((c) => `p${r}_${c}`).join(' + ')};`);
      for (const i of I) e(`      o${r}_${i} = o${r}_${i} * alpha${r};`);
    }
    for (const c of C) {
      for (const i of I) {
        e(`      { let v = sV[(j0 + ${c}) * ${d4} + ${i}];`);
        for (const r of R) e(`        o${r}_${i} = fma(vec4<f32>(p${r}_${c}), v, o${r}_${i});`);
        e(`      }`);
      }
    }
    e(`    }`);
    e(`  }`);
    for (const r of R) {
      e(`  if (row0 + ${r * threads} < lq) {`);
      e(`    let inv = 1.0 / l${r};`);
      for (const i of I) e(`    result[qBase${r} + ${i}] = o${r}_${i} * inv;`);
      e(`  }`);
    }
    e(`}`);
    return out.join('\n');
  }
}

/** Fused attention on [B, L, heads·d] projections; null when the shape is outside the program's constraints. */
export function runFlashAttention(backend: WebGPUBackendLike, q: TensorInfo, k: TensorInfo, v: TensorInfo, heads: number): TensorInfo | null {
  if (q.shape.length !== 3 || k.shape.length !== 3 || v.shape.length !== 3) return null;
  const [batch, lq, width] = q.shape as [number, number, number];
  const lk = k.shape[1]!;
  const d = width / heads;
  if (!Number.isInteger(d) || d % 4 !== 0 || d > MAX_FUSED_HEAD_DIM) return null;
  if (k.shape[0] !== batch || v.shape[0] !== batch || k.shape[2] !== width || v.shape[2] !== width || v.shape[1] !== lk) return null;
  if ([q, k, v].some((t) => t.dtype !== 'float32')) return null;
  const shape = { batch, heads, lq, lk, d };
  const tiling = chooseAttentionTiling(shape, backend.device.limits.maxComputeWorkgroupStorageSize);
  const program = new FlashAttentionProgram(shape, tiling);
  // tfjs keys its pipeline cache on whether input shapes equal the output shape; as rank-2 views the inputs
  // never do, so self- and cross-attention of one head dim share one compiled pipeline.
  const flat = (t: TensorInfo): TensorInfo => ({ dataId: t.dataId, dtype: t.dtype, shape: [t.shape[0]! * t.shape[1]!, t.shape[2]!] });
  return backend.runWebGPUProgram(program, [flat(q), flat(k), flat(v)], 'float32', program.uniformData());
}
