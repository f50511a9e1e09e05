// ResnetBlock2D, Downsample2D and Upsample2D (diffusers models/resnet.py, downsampling.py, upsampling.py), NHWC.
import * as tf from '@tensorflow/tfjs-core';
import type { WeightSource } from '../weights/component-weights.ts';
import {
  conv2d, disposeParams, groupNorm, linear, loadConv, loadLinear, loadNorm, silu,
  type Conv2dParams, type LinearParams, type NormParams,
} from './nn.ts';

export interface ResnetBlock2DOptions {
  inChannels: number;
  outChannels: number;
  /** width of the time embedding, or null for the VAE's resnets (no `time_emb_proj`) */
  tembChannels: number | null;
  groups: number;
  eps: number;
  /** the block's output is divided by this (diffusers `output_scale_factor`, 1 in SD) */
  outputScaleFactor?: number;
}

/**
 * GN → SiLU → conv3×3 (+ time_emb_proj(SiLU(temb)) broadcast over H, W) → GN → SiLU → conv3×3,
 * plus the input (through a 1×1 `conv_shortcut` when the channel count changes).
 */
export class ResnetBlock2D {
  private readonly norm1: NormParams;
  private readonly conv1: Conv2dParams;
  private readonly timeEmbProj?: LinearParams;
  private readonly norm2: NormParams;
  private readonly conv2: Conv2dParams;
  private readonly convShortcut?: Conv2dParams;

  constructor(w: WeightSource, readonly prefix: string, private readonly opts: ResnetBlock2DOptions) {
    const { inChannels: inC, outChannels: outC, tembChannels } = opts;
    this.norm1 = loadNorm(w, `${prefix}.norm1`, inC);
    this.conv1 = loadConv(w, `${prefix}.conv1`, inC, outC, 3);
    if (tembChannels !== null) this.timeEmbProj = loadLinear(w, `${prefix}.time_emb_proj`, tembChannels, outC, true);
    this.norm2 = loadNorm(w, `${prefix}.norm2`, outC);
    this.conv2 = loadConv(w, `${prefix}.conv2`, outC, outC, 3);
    if (inC !== outC) this.convShortcut = loadConv(w, `${prefix}.conv_shortcut`, inC, outC, 1);
  }

  static parameterShapes(prefix: string, opts: ResnetBlock2DOptions, out: Map<string, number[]>): void {
    const { inChannels: inC, outChannels: outC, tembChannels } = opts;
    out.set(`${prefix}.norm1.weight`, [inC]);
    out.set(`${prefix}.norm1.bias`, [inC]);
    out.set(`${prefix}.conv1.weight`, [outC, inC, 3, 3]);
    out.set(`${prefix}.conv1.bias`, [outC]);
    if (tembChannels !== null) {
      out.set(`${prefix}.time_emb_proj.weight`, [outC, tembChannels]);
      out.set(`${prefix}.time_emb_proj.bias`, [outC]);
    }
    out.set(`${prefix}.norm2.weight`, [outC]);
    out.set(`${prefix}.norm2.bias`, [outC]);
    out.set(`${prefix}.conv2.weight`, [outC, outC, 3, 3]);
    out.set(`${prefix}.conv2.bias`, [outC]);
    if (inC !== outC) {
      out.set(`${prefix}.conv_shortcut.weight`, [outC, inC, 1, 1]);
      out.set(`${prefix}.conv_shortcut.bias`, [outC]);
    }
  }

  /** x [B,H,W,in], temb [B,tembChannels] (UNet only) → [B,H,W,out] */
  forward(x: tf.Tensor4D, temb?: tf.Tensor2D): tf.Tensor4D {
    return tf.tidy(() => {
      const { groups, eps } = this.opts;
      let h = conv2d(groupNorm(x, this.norm1, groups, eps, true), this.conv1, 1, 1);
      if (this.timeEmbProj) {
        if (!temb) throw new Error(`${this.prefix} needs the time embedding`);
        const [b, c] = [temb.shape[0], this.conv1.filter.shape[3]];
        h = tf.add(h, tf.reshape(linear(silu(temb), this.timeEmbProj), [b, 1, 1, c]));
      }
      h = conv2d(groupNorm(h, this.norm2, groups, eps, true), this.conv2, 1, 1);
      const shortcut = this.convShortcut ? conv2d(x, this.convShortcut) : x;
      const sum = tf.add(shortcut, h) as tf.Tensor4D;
      const scale = this.opts.outputScaleFactor ?? 1;
      return scale === 1 ? sum : (tf.div(sum, scale) as tf.Tensor4D);
    });
  }

  dispose(): void {
    disposeParams(this.norm1, this.conv1, this.timeEmbProj, this.norm2, this.conv2, this.convShortcut);
  }
}

/**
 * Stride-2 3×3 conv (`downsamplers.0.conv`). diffusers' `padding` is the symmetric pad (1 in the UNet);
 * padding 0 (the VAE encoder) means pad right and bottom by one, then convolve without padding.
 */
export class Downsample2D {
  private readonly conv: Conv2dParams;

  constructor(w: WeightSource, readonly prefix: string, readonly channels: number, readonly padding: number) {
    this.conv = loadConv(w, `${prefix}.conv`, channels, channels, 3);
  }

  static parameterShapes(prefix: string, channels: number, out: Map<string, number[]>): void {
    out.set(`${prefix}.conv.weight`, [channels, channels, 3, 3]);
    out.set(`${prefix}.conv.bias`, [channels]);
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    const p = this.padding;
    return conv2d(x, this.conv, 2, p === 0 ? [0, 1, 0, 1] : [p, p, p, p]);
  }

  dispose(): void {
    disposeParams(this.conv);
  }
}

/** Nearest-neighbour upsampling (×2, or to `size`) followed by a 3×3 conv (`upsamplers.0.conv`). */
export class Upsample2D {
  private readonly conv: Conv2dParams;

  constructor(w: WeightSource, readonly prefix: string, readonly channels: number) {
    this.conv = loadConv(w, `${prefix}.conv`, channels, channels, 3);
  }

  static parameterShapes(prefix: string, channels: number, out: Map<string, number[]>): void {
    out.set(`${prefix}.conv.weight`, [channels, channels, 3, 3]);
    out.set(`${prefix}.conv.bias`, [channels]);
  }

  /**
   * `size` is the target [H, W]; the UNet passes the size of the skip connection the result is joined with,
   * which is 2× unless the latent size is not a multiple of the total downsampling (diffusers does the same).
   */
  forward(x: tf.Tensor4D, size?: [number, number]): tf.Tensor4D {
    return tf.tidy(() => {
      const target = size ?? [x.shape[1] * 2, x.shape[2] * 2];
      // Without corner alignment or half-pixel centres this picks source floor(dst·in/out): PyTorch's 'nearest'.
      const up = tf.image.resizeNearestNeighbor(x, target, false, false);
      return conv2d(up, this.conv, 1, 1);
    });
  }

  dispose(): void {
    disposeParams(this.conv);
  }
}
