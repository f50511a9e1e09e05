// The engine's fused ops: multi-head attention, GroupNorm(+SiLU), LayerNorm and GEGLU as single TensorFlow.js
// kernels, and gradients for tfjs's own fused matMul / conv kernels when the engine runs them directly.
//
// Only backends that register a kernel for the new ops run them (webgpu, see kernels.ts); gpu/sd/nn.ts asks
// `canFuse…` and otherwise computes the same thing from primitive ops. Their gradients are registered here,
// for any backend. Each uses a fused backward kernel where the backend has one (webgpu; attention for head dims up
// to MAX_FUSED_GRAD_HEAD_DIM, GroupNorm and LayerNorm for x, GEGLU) and otherwise recomputes from primitives.
// Either way nothing of the [Lq, Lk] attention matrix is kept between forward and backward, a fused op saves only
// its input (and attention its output) for the backward pass, and each recomputation runs in one tf.tidy, so its
// intermediates are freed as soon as the node's gradients exist.
// This module imports no backend: it is safe to load on wasm/cpu.
import * as tf from '@tensorflow/tfjs-core';

export const FUSED_ATTENTION = 'PerfusionAttention';
export const FUSED_ATTENTION_GRAD = 'PerfusionAttentionGrad';
export const FUSED_GROUP_NORM = 'PerfusionGroupNorm';
export const FUSED_GROUP_NORM_GRAD = 'PerfusionGroupNormGrad';
export const FUSED_LAYER_NORM = 'PerfusionLayerNorm';
export const FUSED_LAYER_NORM_GRAD = 'PerfusionLayerNormGrad';
export const FUSED_GEGLU = 'PerfusionGeglu';
export const FUSED_GEGLU_GRAD = 'PerfusionGegluGrad';

/** Largest head dim the fused attention takes (SD 1.x: 40/80/160); the VAE's 512 stays on matmuls. */
export const MAX_FUSED_HEAD_DIM = 160;
/**
 * Largest head dim with a fused backward (each thread holds four rows of d in registers). SD's 4096-token
 * layers have d = 40; the d = 80/160 layers have 1024/64 tokens, where recomputing with matmuls is cheap.
 */
export const MAX_FUSED_GRAD_HEAD_DIM = 64;

function hasKernel(name: string): boolean {
  return tf.getKernel(name, tf.getBackend()) !== undefined;
}

/** Whether `fusedAttention` runs on the active backend for these [B, L, heads·d] inputs. */
export function canFuseAttention(q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, heads: number): boolean {
  const d = q.shape[2] / heads;
  return hasKernel(FUSED_ATTENTION) && Number.isInteger(d) && d % 4 === 0 && d <= MAX_FUSED_HEAD_DIM
    && k.shape[0] === q.shape[0] && v.shape[0] === q.shape[0] && k.shape[2] === q.shape[2] && v.shape[2] === q.shape[2]
    && k.shape[1] === v.shape[1] && [q, k, v].every((t) => t.dtype === 'float32');
}

/** softmax(q·kᵀ/√d)·v per head, on [B, L, heads·d] tensors; returns [B, Lq, heads·d]. */
export function fusedAttention(q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, heads: number): tf.Tensor3D {
  return tf.engine().runKernel(FUSED_ATTENTION, { q, k, v }, { heads }) as tf.Tensor3D;
}

/** Whether `fusedGroupNorm` runs on the active backend for x [N, H, W, C]. */
export function canFuseGroupNorm(x: tf.Tensor4D, groups: number): boolean {
  const c = x.shape[3];
  return hasKernel(FUSED_GROUP_NORM) && c % 4 === 0 && c % groups === 0 && x.dtype === 'float32';
}

/** GroupNorm over NHWC with gamma/beta [C], optionally followed by SiLU. */
export function fusedGroupNorm(x: tf.Tensor4D, gamma: tf.Tensor1D, beta: tf.Tensor1D, groups: number, eps: number, silu: boolean): tf.Tensor4D {
  return tf.engine().runKernel(FUSED_GROUP_NORM, { x, gamma, beta }, { groups, eps, silu }) as tf.Tensor4D;
}

/** Whether `fusedLayerNorm` runs on the active backend for x [..., C]. */
export function canFuseLayerNorm(x: tf.Tensor): boolean {
  return hasKernel(FUSED_LAYER_NORM) && x.rank >= 1 && x.shape[x.rank - 1]! % 4 === 0 && x.dtype === 'float32';
}

/** LayerNorm over the last axis with gamma/beta [C]. */
export function fusedLayerNorm(x: tf.Tensor, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number): tf.Tensor {
  return tf.engine().runKernel(FUSED_LAYER_NORM, { x, gamma, beta }, { eps }) as tf.Tensor;
}

/** Whether `fusedGeglu` runs on the active backend for x [..., 2H]. */
export function canFuseGeglu(x: tf.Tensor): boolean {
  return hasKernel(FUSED_GEGLU) && x.rank >= 1 && x.shape[x.rank - 1]! % 8 === 0 && x.dtype === 'float32';
}

/** x [..., 2H] → x[..., :H] · GELU(x[..., H:]) (exact erf GELU): diffusers' GEGLU after its projection. */
export function fusedGeglu(x: tf.Tensor): tf.Tensor {
  return tf.engine().runKernel(FUSED_GEGLU, { x }, {}) as tf.Tensor;
}

/** [B, L, heads·d] → [B, heads, L, d] */
function splitHeads(t: tf.Tensor, heads: number): tf.Tensor4D {
  const [b, l, w] = t.shape as [number, number, number];
  return tf.transpose(tf.reshape(t, [b, l, heads, w / heads]), [0, 2, 1, 3]);
}

/** [B, heads, L, d] → [B, L, heads·d] */
function mergeHeads(t: tf.Tensor): tf.Tensor3D {
  const [b, h, l, d] = t.shape as [number, number, number, number];
  return tf.reshape(tf.transpose(t, [0, 2, 1, 3]), [b, l, h * d]);
}

tf.registerGradient({
  kernelName: FUSED_ATTENTION,
  inputsToSave: ['q', 'k', 'v'],
  outputsToSave: [true],
  gradFunc: (dy, saved, attrs) => {
    const [q, k, v, o] = saved as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D, tf.Tensor3D];
    const heads = (attrs as unknown as { heads: number }).heads;
    const d = q.shape[2] / heads;
    const [dq, dk, dv] = hasKernel(FUSED_ATTENTION_GRAD) && d <= MAX_FUSED_GRAD_HEAD_DIM
      ? fusedAttentionGrad(q, k, v, o, dy as tf.Tensor3D, heads)
      : attentionGradFromPrimitives(q, k, v, dy as tf.Tensor3D, heads);
    return { q: () => dq, k: () => dk, v: () => dv };
  },
});

/** The fused backward kernel: dq, and dk/dv packed as [2, B, Lk, heads·d]. */
function fusedAttentionGrad(q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, o: tf.Tensor3D, dy: tf.Tensor3D, heads: number): tf.Tensor3D[] {
  return tf.tidy(() => {
    const [dq, dkv] = tf.engine().runKernel(FUSED_ATTENTION_GRAD, { q, k, v, o, dy }, { heads }) as tf.Tensor[];
    const [dk, dv] = tf.unstack(dkv!, 0) as tf.Tensor3D[];
    return [dq as tf.Tensor3D, dk!, dv!];
  });
}

/** Recomputes P from q and k with primitive ops and applies the closed-form backward. */
function attentionGradFromPrimitives(q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, dy: tf.Tensor3D, heads: number): tf.Tensor3D[] {
  return tf.tidy(() => {
    const scale = 1 / Math.sqrt(q.shape[2] / heads);
    const qh = splitHeads(q, heads);
    const kh = splitHeads(k, heads);
    const vh = splitHeads(v, heads);
    const g = splitHeads(dy, heads);
    const p = tf.softmax(tf.mul(tf.matMul(qh, kh, false, true), scale));
    const dp = tf.matMul(g, vh, false, true);
    // softmax backward: dS = P ⊙ (dP − rowsum(dP ⊙ P))
    const ds = tf.mul(p, tf.sub(dp, tf.sum(tf.mul(dp, p), -1, true)));
    return [
      mergeHeads(tf.mul(tf.matMul(ds, kh), scale)),
      mergeHeads(tf.mul(tf.matMul(ds, qh, true, false), scale)),
      mergeHeads(tf.matMul(p, g, true, false)),
    ];
  });
}

tf.registerGradient({
  kernelName: FUSED_GROUP_NORM,
  inputsToSave: ['x', 'gamma', 'beta'],
  gradFunc: (dz, saved, attrs) => {
    const [x, gamma, beta] = saved as [tf.Tensor4D, tf.Tensor1D, tf.Tensor1D];
    const a = attrs as unknown as GroupNormAttrs;
    // Each closure runs only if its input is differentiated (Perfusion: x only; gamma/beta are frozen).
    return {
      x: () => hasKernel(FUSED_GROUP_NORM_GRAD)
        ? tf.engine().runKernel(FUSED_GROUP_NORM_GRAD, { x, gamma, beta, dz: dz as tf.Tensor }, { ...a }) as tf.Tensor
        : groupNormInputGrad(x, gamma, beta, dz as tf.Tensor, a),
      gamma: () => { const { xhat, dy } = groupNormBackwardParts(x, gamma, beta, dz as tf.Tensor, a); return tf.sum(tf.mul(dy, xhat), [0, 1, 2]); },
      beta: () => tf.sum(groupNormBackwardParts(x, gamma, beta, dz as tf.Tensor, a).dy, [0, 1, 2]),
    };
  },
});

interface GroupNormAttrs { groups: number; eps: number; silu: boolean }

/** x̂, 1/σ (per group, broadcastable over [N, H, W, G, C/G]) and the gradient at the affine output y. */
function groupNormBackwardParts(x: tf.Tensor4D, gamma: tf.Tensor1D, beta: tf.Tensor1D, dz: tf.Tensor, { groups, eps, silu }: GroupNormAttrs) {
  const [n, h, w, c] = x.shape;
  const grouped = tf.reshape(x, [n, h, w, groups, c / groups]);
  const { mean, variance } = tf.moments(grouped, [1, 2, 4], true);
  const rstd = tf.rsqrt(tf.add(variance, eps));
  const xhat = tf.reshape(tf.mul(tf.sub(grouped, mean), rstd), [n, h, w, c]);
  let dy = dz;
  if (silu) {
    // d/dy [y·σ(y)] = σ(y)·(1 + y·(1 − σ(y)))
    const y = tf.add(tf.mul(xhat, gamma), beta);
    const sig = tf.sigmoid(y);
    dy = tf.mul(dy, tf.mul(sig, tf.add(1, tf.mul(y, tf.sub(1, sig)))));
  }
  return { xhat, rstd, dy };
}

/** dx = 1/σ·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)) per group, with dx̂ = dy·γ. */
function groupNormInputGrad(x: tf.Tensor4D, gamma: tf.Tensor1D, beta: tf.Tensor1D, dz: tf.Tensor, a: GroupNormAttrs): tf.Tensor {
  const [n, h, w, c] = x.shape;
  const { xhat, rstd, dy } = groupNormBackwardParts(x, gamma, beta, dz, a);
  const grouped = [n, h, w, a.groups, c / a.groups];
  const dxhat = tf.reshape(tf.mul(dy, gamma), grouped);
  const xhatG = tf.reshape(xhat, grouped);
  const dx = tf.mul(rstd, tf.sub(tf.sub(dxhat, tf.mean(dxhat, [1, 2, 4], true)), tf.mul(xhatG, tf.mean(tf.mul(dxhat, xhatG), [1, 2, 4], true))));
  return tf.reshape(dx, [n, h, w, c]);
}

interface LayerNormAttrs { eps: number }

tf.registerGradient({
  kernelName: FUSED_LAYER_NORM,
  inputsToSave: ['x', 'gamma', 'beta'],
  gradFunc: (dy, saved, attrs) => {
    const [x, gamma] = saved as [tf.Tensor, tf.Tensor1D, tf.Tensor1D];
    const { eps } = attrs as unknown as LayerNormAttrs;
    const parts = () => {
      const { mean, variance } = tf.moments(x, -1, true);
      const rstd = tf.rsqrt(tf.add(variance, eps));
      return { xhat: tf.mul(tf.sub(x, mean), rstd), rstd };
    };
    const outer = [...Array(x.rank - 1).keys()];
    return {
      x: () => {
        if (hasKernel(FUSED_LAYER_NORM_GRAD)) return tf.engine().runKernel(FUSED_LAYER_NORM_GRAD, { x, gamma, dy: dy as tf.Tensor }, { eps }) as tf.Tensor;
        // dx = r·(a − mean(a) − x̂·mean(a·x̂)), a = dy·γ
        const { xhat, rstd } = parts();
        const a = tf.mul(dy as tf.Tensor, gamma);
        return tf.mul(rstd, tf.sub(tf.sub(a, tf.mean(a, -1, true)), tf.mul(xhat, tf.mean(tf.mul(a, xhat), -1, true))));
      },
      gamma: () => tf.sum(tf.mul(dy as tf.Tensor, parts().xhat), outer),
      beta: () => tf.sum(dy as tf.Tensor, outer),
    };
  },
});

tf.registerGradient({
  kernelName: FUSED_GEGLU,
  inputsToSave: ['x'],
  gradFunc: (dy, saved) => {
    const [x] = saved as [tf.Tensor];
    return {
      x: () => {
        if (hasKernel(FUSED_GEGLU_GRAD)) return tf.engine().runKernel(FUSED_GEGLU_GRAD, { x, dy: dy as tf.Tensor }, {}) as tf.Tensor;
        const [h, g] = tf.split(x, 2, -1) as [tf.Tensor, tf.Tensor];
        const cdf = tf.mul(tf.add(tf.erf(tf.mul(g, Math.SQRT1_2)), 1), 0.5);
        const pdf = tf.mul(tf.exp(tf.mul(tf.square(g), -0.5)), 1 / Math.sqrt(2 * Math.PI));
        return tf.concat([tf.mul(dy as tf.Tensor, tf.mul(g, cdf)), tf.mul(tf.mul(dy as tf.Tensor, h), tf.add(cdf, tf.mul(g, pdf)))], -1);
      },
    };
  },
});

// tfjs's fused matMul and conv kernels, run directly by nn.ts (tf.fused.* would wrap them in a custom gradient
// that computes every input's gradient eagerly, frozen weights included). Registered gradients are lazy: only the
// inputs on the path to what is differentiated get theirs. Only the linear activation is differentiable here.

interface FusedMatMulAttrs { transposeA: boolean; transposeB: boolean; activation?: string }

tf.registerGradient({
  kernelName: '_FusedMatMul',
  inputsToSave: ['a', 'b'],
  gradFunc: (dy, saved, attrs) => {
    const [a, b] = saved as [tf.Tensor, tf.Tensor];
    const { transposeA, transposeB, activation } = attrs as unknown as FusedMatMulAttrs;
    if (activation && activation !== 'linear') throw new Error(`the gradient of _FusedMatMul with activation ${activation} is not implemented`);
    if (!tf.util.arraysEqual(a.shape.slice(0, -2), b.shape.slice(0, -2))) throw new Error('the gradient of _FusedMatMul needs equal batch shapes');
    const g = dy as tf.Tensor;
    return {
      a: () => (transposeA ? tf.matMul(b, g, transposeB, true) : tf.matMul(g, b, false, !transposeB)),
      b: () => (transposeB ? tf.matMul(g, a, true, transposeA) : tf.matMul(a, g, !transposeA, false)),
      bias: () => tf.sum(g, [...Array(g.rank - 1).keys()]),
    };
  },
});

interface FusedConvAttrs {
  strides: number | [number, number];
  pad: tf.backend_util.ExplicitPadding | 'valid' | 'same' | number;
  dataFormat: 'NHWC' | 'NCHW';
  dilations: number | [number, number];
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  activation?: string;
}

tf.registerGradient({
  kernelName: 'FusedConv2D',
  inputsToSave: ['x', 'filter'],
  gradFunc: (dy, saved, attrs) => {
    const [x, filter] = saved as [tf.Tensor4D, tf.Tensor4D];
    const { strides, pad, dataFormat, dilations, dimRoundingMode, activation } = attrs as unknown as FusedConvAttrs;
    if (activation && activation !== 'linear') throw new Error(`the gradient of FusedConv2D with activation ${activation} is not implemented`);
    const dilated = Array.isArray(dilations) ? dilations.some((d) => d !== 1) : (dilations ?? 1) !== 1;
    if (dataFormat !== 'NHWC' || dilated) throw new Error('the gradient of FusedConv2D is implemented for NHWC without dilation only');
    const g = dy as tf.Tensor4D;
    const common = { strides, pad, dataFormat, dimRoundingMode };
    return {
      x: () => tf.engine().runKernel('Conv2DBackpropInput', { dy: g, filter }, { ...common, inputShape: x.shape } as unknown as tf.NamedAttrMap) as tf.Tensor,
      filter: () => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy: g }, { ...common, filterShape: filter.shape } as unknown as tf.NamedAttrMap) as tf.Tensor,
      bias: () => tf.sum(g, [0, 1, 2]),
    };
  },
});
