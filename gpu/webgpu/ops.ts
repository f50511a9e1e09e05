// The engine's fused ops: multi-head attention and GroupNorm(+SiLU) as single TensorFlow.js kernels.
//
// Only backends that register a kernel for them run them (webgpu, see kernels.ts); gpu/sd/nn.ts asks
// `canFuse…` and otherwise computes the same thing from primitive ops. Their gradients are registered here,
// for any backend. Each uses a fused backward kernel where the backend has one (webgpu; attention for head dims up
// to MAX_FUSED_GRAD_HEAD_DIM, GroupNorm for x) and otherwise recomputes from primitives. Either way nothing of the [Lq, Lk] attention matrix is kept between forward and backward,
// and each recomputation runs in one tf.tidy, so its intermediates are freed as soon as the node's gradients exist.
// This module imports no backend: it is safe to load on wasm/cpu.
import * as tf from '@tensorflow/tfjs-core';

export const FUSED_ATTENTION = 'PerfusionAttention';
export const FUSED_ATTENTION_GRAD = 'PerfusionAttentionGrad';
export const FUSED_GROUP_NORM = 'PerfusionGroupNorm';
export const FUSED_GROUP_NORM_GRAD = 'PerfusionGroupNormGrad';

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
