// Backward pass of the fused attention (attention-program.ts), flash-attention style: the [Lq, Lk] probability
// matrix is recomputed block by block from q, k and each query row's log-sum-exp, never stored.
//
// With S = c·q·kᵀ (c = 1/√d), P = softmax(S), O = P·v and upstream gradient dO:
//   D_i  = Σ_d dO_i·O_i                     (row statistic, = Σ_j P_ij·dP_ij)
//   dP   = dO·vᵀ,   dS = P ⊙ (dP − D)
//   dq   = c·dS·k,  dk = c·dSᵀ·q,  dv = Pᵀ·dO
// Three programs: (1) per query row, its log-sum-exp (a pass over the keys) and D; (2) per query row, dq
// (a pass over the keys); (3) per key row, dk and dv (a pass over the queries). Each thread owns one row, held in
// registers as vec4s over d; the other side streams through workgroup memory. Used for head dims up to
// MAX_FUSED_GRAD_HEAD_DIM (ops.ts; SD's 4096-token layers have d = 40); larger heads have short sequences and take the
// primitive recomputation in ops.ts.
import type { TensorInfo } from '@tensorflow/tfjs-core';
import type { WebGPUProgram } from '@tensorflow/tfjs-backend-webgpu';
import type { AttentionShape } from './attention-program.ts';
import type { WebGPUBackendLike } from './program-util.ts';

const THREADS = 64;
const BLOCK = 64;

const ATTRS = 'lq : i32, lk : i32, heads : i32,';

function uniformData(s: AttentionShape): Array<{ type: string; data: number[] }> {
  return [{ type: 'int32', data: [s.lq] }, { type: 'int32', data: [s.lk] }, { type: 'int32', data: [s.heads] }];
}

const f32 = (x: number) => (Number.isInteger(x) ? `${x}.0` : `${x}`);
const range = (n: number) => [...Array(n).keys()];
const dot = (a: (i: number) => string, b: (i: number) => string, d4: number) => range(d4).map((i) => `dot(${a(i)}, ${b(i)})`).join(' + ');

/** The shared preamble: which row this thread owns, in [B, L, heads, d] addressing. */
function header(rowLen: 'lq' | 'lk'): string {
  return `
    let lq = uniforms.lq;
    let lk = uniforms.lk;
    let heads = uniforms.heads;
    let tid = i32(localIndex);
    let b = i32(workgroupId.z);
    let h = i32(workgroupId.y);
    let row = i32(workgroupId.x) * ${THREADS} + tid;
    let rowC = min(row, ${rowLen} - 1);`;
}

/** Cooperative load of rows [r0, r0 + BLOCK) of up to three [B, L, heads, d] inputs into workgroup arrays. */
function loadBlock(len: 'lq' | 'lk', d4: number, pairs: Array<[string, string]>): string {
  return `
      workgroupBarrier();
      for (var idx = tid; idx < ${BLOCK * d4}; idx += ${THREADS}) {
        let j = idx / ${d4};
        let r = r0 + j;
        let ok = r < ${len};
        let g = ((b * ${len} + min(r, ${len} - 1)) * heads + h) * ${d4} + idx - j * ${d4};
        ${pairs.map(([dst, src]) => `${dst}[idx] = select(vec4<f32>(0.0), ${src}[g], ok);`).join('\n        ')}
      }`;
}

/** Output [B, Lq, heads, 2]: log2-sum-exp2 of the row's scaled scores, and D = Σ dO·O. */
export class AttentionRowStatsProgram implements WebGPUProgram {
  variableNames = ['Q', 'K', 'O', 'dO'];
  variableComponents = [4, 4, 4, 4];
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [] as number[], y: [0] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [THREADS, 1, 1];
  uniforms = ATTRS;

  constructor(private s: AttentionShape) {
    this.outputShape = [s.batch, s.lq, s.heads, 2];
    this.dispatch = [Math.ceil(s.lq / THREADS), s.heads, s.batch];
    this.shaderKey = `perfusionAttentionRowStats_${s.d}`;
  }

  uniformData() { return uniformData(this.s); }

  getUserCode(): string {
    const d4 = this.s.d / 4;
    const c = Math.LOG2E / Math.sqrt(this.s.d);
    return `
      var<workgroup> sK : array<vec4<f32>, ${BLOCK * d4}>;
      fn main() {
        ${header('lq')}
        let base = ((b * lq + rowC) * heads + h) * ${d4};
        ${range(d4).map((i) => `let q${i} = Q[base + ${i}] * ${f32(c)};`).join('\n        ')}
        let dRow = ${dot((i) => `dO[base + ${i}]`, (i) => `O[base + ${i}]`, d4)};
        var m = -1.0e30;
        var l = 0.0;
        for (var r0 = 0; r0 < lk; r0 += ${BLOCK}) {
          ${loadBlock('lk', d4, [['sK', 'K']])}
          workgroupBarrier();
          let n = min(${BLOCK}, lk - r0);
          for (var j = 0; j < n; j++) {
            let s = ${dot((i) => `q${i}`, (i) => `sK[j * ${d4} + ${i}]`, d4)};
            let mNew = max(m, s);
            l = l * exp2(m - mNew) + exp2(s - mNew);
            m = mNew;
          }
        }
        if (row < lq) {
          let o = ((b * lq + row) * heads + h) * 2;
          result[o] = m + log2(l);
          result[o + 1] = dRow;
        }
      }`;
  }
}

/** Output dq [B, Lq, heads·d]. */
export class AttentionGradQProgram implements WebGPUProgram {
  variableNames = ['Q', 'K', 'V', 'dO', 'stats'];
  variableComponents = [4, 4, 4, 4, 1];
  outputComponent = 4;
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [] as number[], y: [0] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [THREADS, 1, 1];
  uniforms = ATTRS;

  constructor(private s: AttentionShape) {
    this.outputShape = [s.batch, s.lq, s.heads * s.d];
    this.dispatch = [Math.ceil(s.lq / THREADS), s.heads, s.batch];
    this.shaderKey = `perfusionAttentionGradQ_${s.d}`;
  }

  uniformData() { return uniformData(this.s); }

  getUserCode(): string {
    const d4 = this.s.d / 4;
    const scale = 1 / Math.sqrt(this.s.d);
    const c = Math.LOG2E * scale;
    const I = range(d4);
    return `
      var<workgroup> sK : array<vec4<f32>, ${BLOCK * d4}>;
      var<workgroup> sV : array<vec4<f32>, ${BLOCK * d4}>;
      fn main() {
        ${header('lq')}
        let base = ((b * lq + rowC) * heads + h) * ${d4};
        ${I.map((i) => `let q${i} = Q[base + ${i}] * ${f32(c)};`).join('\n        ')}
        ${I.map((i) => `let g${i} = dO[base + ${i}];`).join('\n        ')}
        ${I.map((i) => `var dq${i} = vec4<f32>(0.0);`).join('\n        ')}
        let st = ((b * lq + rowC) * heads + h) * 2;
        let lse = stats[st];
        let dRow = stats[st + 1];
        for (var r0 = 0; r0 < lk; r0 += ${BLOCK}) {
          ${loadBlock('lk', d4, [['sK', 'K'], ['sV', 'V']])}
          workgroupBarrier();
          let n = min(${BLOCK}, lk - r0);
          for (var j = 0; j < n; j++) {
            let p = exp2(${dot((i) => `q${i}`, (i) => `sK[j * ${d4} + ${i}]`, d4)} - lse);
            let dp = ${dot((i) => `g${i}`, (i) => `sV[j * ${d4} + ${i}]`, d4)};
            let ds = vec4<f32>(p * (dp - dRow));
            ${I.map((i) => `dq${i} = fma(ds, sK[j * ${d4} + ${i}], dq${i});`).join('\n            ')}
          }
        }
        if (row < lq) {
          let o = ((b * lq + row) * heads + h) * ${d4};
          ${I.map((i) => `result[o + ${i}] = dq${i} * ${f32(scale)};`).join('\n          ')}
        }
      }`;
  }
}

/** Output [2, B, Lk, heads·d]: dk, then dv. */
export class AttentionGradKVProgram implements WebGPUProgram {
  variableNames = ['Q', 'K', 'V', 'dO', 'stats'];
  variableComponents = [4, 4, 4, 4, 1];
  outputComponent = 4;
  outputShape: number[];
  shaderKey: string;
  dispatchLayout = { x: [] as number[], y: [0] };
  dispatch: [number, number, number];
  workgroupSize: [number, number, number] = [THREADS, 1, 1];
  uniforms = ATTRS;

  constructor(private s: AttentionShape) {
    this.outputShape = [2, s.batch, s.lk, s.heads * s.d];
    this.dispatch = [Math.ceil(s.lk / THREADS), s.heads, s.batch];
    // the batch size is baked into the source (the dk/dv planes), so it is part of the key
    this.shaderKey = `perfusionAttentionGradKV_${s.d}_${s.batch}`;
  }

  uniformData() { return uniformData(this.s); }

  getUserCode(): string {
    const d4 = this.s.d / 4;
    const scale = 1 / Math.sqrt(this.s.d);
    const c = Math.LOG2E * scale;
    const I = range(d4);
    return `
      var<workgroup> sQ : array<vec4<f32>, ${BLOCK * d4}>;
      var<workgroup> sG : array<vec4<f32>, ${BLOCK * d4}>;
      var<workgroup> sStats : array<vec2<f32>, ${BLOCK}>;
      fn main() {
        ${header('lk')}
        let base = ((b * lk + rowC) * heads + h) * ${d4};
        ${I.map((i) => `let k${i} = K[base + ${i}] * ${f32(c)};`).join('\n        ')}
        ${I.map((i) => `let v${i} = V[base + ${i}];`).join('\n        ')}
        ${I.map((i) => `var dk${i} = vec4<f32>(0.0);`).join('\n        ')}
        ${I.map((i) => `var dv${i} = vec4<f32>(0.0);`).join('\n        ')}
        for (var r0 = 0; r0 < lq; r0 += ${BLOCK}) {
          ${loadBlock('lq', d4, [['sQ', 'Q'], ['sG', 'dO']])}
          if (tid < ${BLOCK}) {
            let r = min(r0 + tid, lq - 1);
            let st = ((b * lq + r) * heads + h) * 2;
            sStats[tid] = vec2<f32>(stats[st], stats[st + 1]);
          }
          workgroupBarrier();
          let n = min(${BLOCK}, lq - r0);
          for (var t = 0; t < n; t++) {
            let st = sStats[t];
            let p = exp2(${dot((i) => `k${i}`, (i) => `sQ[t * ${d4} + ${i}]`, d4)} - st.x);
            let dp = ${dot((i) => `v${i}`, (i) => `sG[t * ${d4} + ${i}]`, d4)};
            let pv = vec4<f32>(p);
            let ds = vec4<f32>(p * (dp - st.y));
            ${I.map((i) => `dv${i} = fma(pv, sG[t * ${d4} + ${i}], dv${i});`).join('\n            ')}
            ${I.map((i) => `dk${i} = fma(ds, sQ[t * ${d4} + ${i}], dk${i});`).join('\n            ')}
          }
        }
        if (row < lk) {
          let o = ((b * lk + row) * heads + h) * ${d4};
          let plane = ${this.s.batch} * lk * heads * ${d4};
          ${I.map((i) => `result[o + ${i}] = dk${i} * ${f32(scale)};`).join('\n          ')}
          ${I.map((i) => `result[plane + o + ${i}] = dv${i};`).join('\n          ')}
        }
      }`;
  }
}

/** dq [B, Lq, heads·d] and packed [2, B, Lk, heads·d] (dk, dv) from the saved q, k, v, the output o and dy. */
export function runFlashAttentionGrad(backend: WebGPUBackendLike, q: TensorInfo, k: TensorInfo, v: TensorInfo, o: TensorInfo, dy: TensorInfo, heads: number): TensorInfo[] {
  const [batch, lq, width] = q.shape as [number, number, number];
  const s: AttentionShape = { batch, heads, lq, lk: k.shape[1]!, d: width / heads };
  // rank-2 views: one pipeline per head dim whatever the sequence lengths (see runFlashAttention)
  const flat = (t: TensorInfo): TensorInfo => ({ dataId: t.dataId, dtype: t.dtype, shape: [t.shape[0]! * t.shape[1]!, t.shape[2]!] });
  const statsProgram = new AttentionRowStatsProgram(s);
  const stats = backend.runWebGPUProgram(statsProgram, [flat(q), flat(k), flat(o), flat(dy)], 'float32', statsProgram.uniformData());
  const statsFlat: TensorInfo = { dataId: stats.dataId, dtype: 'float32', shape: [batch * s.lq * heads * 2] };
  const qProgram = new AttentionGradQProgram(s);
  const dq = backend.runWebGPUProgram(qProgram, [flat(q), flat(k), flat(v), flat(dy), statsFlat], 'float32', qProgram.uniformData());
  const kvProgram = new AttentionGradKVProgram(s);
  const dkv = backend.runWebGPUProgram(kvProgram, [flat(q), flat(k), flat(v), flat(dy), statsFlat], 'float32', kvProgram.uniformData());
  backend.disposeData(stats.dataId);
  return [dq, dkv];
}
