// Small neural-network building blocks shared by the text encoder, the UNet and the VAE.
// Layout: activations are NHWC (TensorFlow.js's native layout); sequences are [B, L, C].
// Parameters are read by their diffusers names and converted once at load time:
// conv weights OIHW → HWIO, linear weights [out, in] → [in, out].
//
// The functions below are the seam where backend-specific fused kernels plug in (attention, GroupNorm+SiLU,
// LayerNorm, GEGLU):
// callers keep using these signatures whatever runs underneath.
import * as tf from '@tensorflow/tfjs-core';
import type { WeightSource } from '../weights/component-weights.ts';
import {
  canFuseAttention, canFuseGeglu, canFuseGroupNorm, canFuseLayerNorm, fusedAttention, fusedGeglu, fusedGroupNorm, fusedLayerNorm,
} from '../webgpu/ops.ts';

export interface LinearParams {
  /** [in, out] */
  weight: tf.Tensor2D;
  bias?: tf.Tensor1D;
}

export interface Conv2dParams {
  /** HWIO [kh, kw, in, out] */
  filter: tf.Tensor4D;
  bias?: tf.Tensor1D;
}

export interface NormParams {
  gamma: tf.Tensor1D;
  beta: tf.Tensor1D;
}

/** Reads `${prefix}.weight` ([out, in], PyTorch Linear) and optionally `${prefix}.bias`. */
export function loadLinear(w: WeightSource, prefix: string, inDim: number, outDim: number, bias: boolean): LinearParams {
  const raw = w.tensor(`${prefix}.weight`, [outDim, inDim]);
  const weight = tf.tidy(() => tf.transpose(raw) as tf.Tensor2D);
  raw.dispose();
  return bias ? { weight, bias: w.tensor(`${prefix}.bias`, [outDim]) as tf.Tensor1D } : { weight };
}

/** Reads a conv `${prefix}.weight` ([out, in, kh, kw]) and `${prefix}.bias`. */
export function loadConv(w: WeightSource, prefix: string, inC: number, outC: number, kernel: number, bias = true): Conv2dParams {
  const raw = w.tensor(`${prefix}.weight`, [outC, inC, kernel, kernel]);
  const filter = tf.tidy(() => tf.transpose(raw, [2, 3, 1, 0]) as tf.Tensor4D);
  raw.dispose();
  return bias ? { filter, bias: w.tensor(`${prefix}.bias`, [outC]) as tf.Tensor1D } : { filter };
}

/** Reads a GroupNorm/LayerNorm `${prefix}.weight` and `${prefix}.bias` of width `channels`. */
export function loadNorm(w: WeightSource, prefix: string, channels: number): NormParams {
  return {
    gamma: w.tensor(`${prefix}.weight`, [channels]) as tf.Tensor1D,
    beta: w.tensor(`${prefix}.bias`, [channels]) as tf.Tensor1D,
  };
}

export function disposeParams(...params: Array<LinearParams | Conv2dParams | NormParams | undefined>): void {
  for (const p of params) if (p) tf.dispose(Object.values(p) as tf.Tensor[]);
}

/** x [..., in] → [..., out] */
export function linear(x: tf.Tensor, p: LinearParams): tf.Tensor {
  const shape = x.shape;
  const inDim = shape[shape.length - 1]!;
  const outDim = p.weight.shape[1];
  // tfjs's fused kernel run directly (one dispatch with the bias; wasm's wants rank-3 operands); under a gradient
  // tape its gradient is the lazy one of ops.ts, so frozen weights get none
  return tf.tidy(() => {
    const y = tf.engine().runKernel('_FusedMatMul', {
      a: tf.reshape(x, [1, x.size / inDim, inDim]), b: tf.reshape(p.weight, [1, inDim, outDim]), ...(p.bias ? { bias: p.bias } : {}),
    }, { transposeA: false, transposeB: false, activation: 'linear' }) as tf.Tensor;
    return tf.reshape(y, [...shape.slice(0, -1), outDim]);
  });
}

/**
 * NHWC convolution with PyTorch-style padding: `padding` is the symmetric pad of both spatial dims, or
 * [top, bottom, left, right]. (TensorFlow's 'same' pads asymmetrically for stride 2, which PyTorch does not.)
 * tfjs's fused kernel runs directly, as in `linear`.
 */
export function conv2d(x: tf.Tensor4D, p: Conv2dParams, stride = 1, padding: number | [number, number, number, number] = 0): tf.Tensor4D {
  const [t, b, l, r] = typeof padding === 'number' ? [padding, padding, padding, padding] : padding;
  const pad: tf.backend_util.ExplicitPadding = [[0, 0], [t, b], [l, r], [0, 0]];
  return tf.engine().runKernel('FusedConv2D', { x, filter: p.filter, ...(p.bias ? { bias: p.bias } : {}) }, {
    strides: [stride, stride], pad, dataFormat: 'NHWC', dilations: [1, 1], activation: 'linear',
  } as unknown as tf.NamedAttrMap) as tf.Tensor4D;
}

/** GroupNorm over NHWC, optionally followed by SiLU (the common pair in resnets). */
export function groupNorm(x: tf.Tensor4D, p: NormParams, groups: number, eps: number, silu = false): tf.Tensor4D {
  if (canFuseGroupNorm(x, groups)) return fusedGroupNorm(x, p.gamma, p.beta, groups, eps, silu);
  return tf.tidy(() => {
    const [n, h, w, c] = x.shape;
    const grouped = tf.reshape(x, [n, h, w, groups, c / groups]);
    const { mean, variance } = tf.moments(grouped, [1, 2, 4], true);
    const normed = tf.reshape(tf.mul(tf.sub(grouped, mean), tf.rsqrt(tf.add(variance, eps))), [n, h, w, c]);
    const y = tf.add(tf.mul(normed, p.gamma), p.beta) as tf.Tensor4D;
    return silu ? (tf.mul(y, tf.sigmoid(y)) as tf.Tensor4D) : y;
  });
}

/** LayerNorm over the last axis. */
export function layerNorm(x: tf.Tensor, p: NormParams, eps: number): tf.Tensor {
  if (canFuseLayerNorm(x)) return fusedLayerNorm(x, p.gamma, p.beta, eps);
  return tf.tidy(() => {
    const { mean, variance } = tf.moments(x, -1, true);
    return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps))), p.gamma), p.beta);
  });
}

export function silu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x)));
}

/** GELU with the exact erf form (PyTorch's default `approximate='none'`). */
export function geluErf(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1)));
}

/** diffusers' GEGLU after its projection: x [..., 2H] → x[..., :H] · GELU(x[..., H:]) (value, then gate). */
export function geglu(x: tf.Tensor): tf.Tensor {
  if (canFuseGeglu(x)) return fusedGeglu(x);
  return tf.tidy(() => {
    const [hidden, gate] = tf.split(x, 2, -1);
    return tf.mul(hidden!, geluErf(gate!));
  });
}

/** quick_gelu(x) = x · sigmoid(1.702 x), CLIP's activation. */
export function quickGelu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(tf.mul(x, 1.702))));
}

/**
 * Multi-head scaled dot-product attention on [B, L, heads·d] tensors; returns [B, Lq, heads·d].
 * `mask`, when given, is added to the scores (broadcast to [B, heads, Lq, Lk]), e.g. CLIP's causal mask.
 */
export function attention(q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, heads: number, mask?: tf.Tensor): tf.Tensor3D {
  if (!mask && canFuseAttention(q, k, v, heads)) return fusedAttention(q, k, v, heads);
  return tf.tidy(() => {
    const [b, lq, width] = q.shape;
    const lk = k.shape[1];
    const d = width / heads;
    const split = (t: tf.Tensor3D, l: number) => tf.transpose(tf.reshape(t, [b, l, heads, d]), [0, 2, 1, 3]);
    const qh = split(q, lq);
    const kh = split(k, lk);
    const vh = split(v, lk);
    let scores = tf.mul(tf.matMul(qh, kh, false, true), 1 / Math.sqrt(d));
    if (mask) scores = tf.add(scores, mask);
    const probs = tf.softmax(scores, -1);
    const out = tf.matMul(probs, vh);
    return tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [b, lq, width]) as tf.Tensor3D;
  });
}
