// AutoencoderKL (diffusers models/autoencoders/autoencoder_kl.py, vae.py), NHWC, built from its config.
// Accepts both diffusers' current attention key names and the legacy ones of SD 1.5's VAE file.
import * as tf from '@tensorflow/tfjs-core';
import type { WeightSource } from '../weights/component-weights.ts';
import type { VaeConfig } from '../model/configs.ts';
import { ModelLoadError } from '../model/errors.ts';
import {
  DownEncoderBlock2D, UNetMidBlock2D, UpDecoderBlock2D, type VaeBlockOptions, type VaeMidBlockOptions,
} from './blocks.ts';
import { conv2d, disposeParams, groupNorm, loadConv, loadNorm, type Conv2dParams, type NormParams } from './nn.ts';

type Shapes = Map<string, number[]>;

/** GroupNorm eps of every VAE norm (diffusers hard-codes 1e-6 in Encoder/Decoder). */
const VAE_EPS = 1e-6;

interface VaeArchitecture {
  inChannels: number;
  outChannels: number;
  latentChannels: number;
  first: number;
  last: number;
  groups: number;
  mid: VaeMidBlockOptions;
  encoderBlocks: VaeBlockOptions[];
  decoderBlocks: VaeBlockOptions[];
  useQuantConv: boolean;
  usePostQuantConv: boolean;
}

function vaeArchitecture(c: VaeConfig): VaeArchitecture {
  const channels = c.blockOutChannels;
  const n = channels.length;
  const bad = [
    ...c.downBlockTypes.filter((t) => t !== 'DownEncoderBlock2D').map((t) => `down block type "${t}"`),
    ...c.upBlockTypes.filter((t) => t !== 'UpDecoderBlock2D').map((t) => `up block type "${t}"`),
    ...(c.actFn === 'silu' ? [] : [`act_fn "${c.actFn}"`]),
    ...(c.downBlockTypes.length === n && c.upBlockTypes.length === n ? [] : ['block type lists of a different length than block_out_channels']),
    ...(channels.every((ch) => ch % c.normNumGroups === 0) ? [] : [`block_out_channels not divisible by norm_num_groups ${c.normNumGroups}`]),
  ];
  if (bad.length) {
    throw new ModelLoadError(`vae/config.json uses ${bad.join(', ')}, which perfusion-bot does not support. Use a Stable Diffusion 1.x VAE in diffusers format.`);
  }
  const groups = c.normNumGroups;
  const reversed = [...channels].reverse();
  return {
    inChannels: c.inChannels, outChannels: c.outChannels, latentChannels: c.latentChannels,
    first: channels[0]!, last: channels[n - 1]!, groups,
    mid: { channels: channels[n - 1]!, groups, eps: VAE_EPS, addAttention: c.midBlockAddAttention },
    encoderBlocks: channels.map((out, i) => ({
      numLayers: c.layersPerBlock, inChannels: i === 0 ? channels[0]! : channels[i - 1]!, outChannels: out,
      groups, eps: VAE_EPS, addSample: i < n - 1,
    })),
    decoderBlocks: reversed.map((out, i) => ({
      numLayers: c.layersPerBlock + 1, inChannels: i === 0 ? reversed[0]! : reversed[i - 1]!, outChannels: out,
      groups, eps: VAE_EPS, addSample: i < n - 1,
    })),
    useQuantConv: c.useQuantConv, usePostQuantConv: c.usePostQuantConv,
  };
}

/** conv_in → DownEncoderBlock2Ds → mid block → GN, SiLU → conv_out (2·latent channels: mean and logvar). */
class Encoder {
  private readonly convIn: Conv2dParams;
  private readonly downBlocks: DownEncoderBlock2D[];
  private readonly midBlock: UNetMidBlock2D;
  private readonly convNormOut: NormParams;
  private readonly convOut: Conv2dParams;

  constructor(w: WeightSource, private readonly a: VaeArchitecture) {
    this.convIn = loadConv(w, 'encoder.conv_in', a.inChannels, a.first, 3);
    this.downBlocks = a.encoderBlocks.map((o, i) => new DownEncoderBlock2D(w, `encoder.down_blocks.${i}`, o));
    this.midBlock = new UNetMidBlock2D(w, 'encoder.mid_block', a.mid);
    this.convNormOut = loadNorm(w, 'encoder.conv_norm_out', a.last);
    this.convOut = loadConv(w, 'encoder.conv_out', a.last, 2 * a.latentChannels, 3);
  }

  static parameterShapes(a: VaeArchitecture, out: Shapes): void {
    setConv(out, 'encoder.conv_in', a.inChannels, a.first, 3);
    a.encoderBlocks.forEach((o, i) => DownEncoderBlock2D.parameterShapes(`encoder.down_blocks.${i}`, o, out));
    UNetMidBlock2D.parameterShapes('encoder.mid_block', a.mid, out);
    setNorm(out, 'encoder.conv_norm_out', a.last);
    setConv(out, 'encoder.conv_out', a.last, 2 * a.latentChannels, 3);
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      let h = conv2d(x, this.convIn, 1, 1);
      for (const block of this.downBlocks) h = block.forward(h);
      h = this.midBlock.forward(h);
      return conv2d(groupNorm(h, this.convNormOut, this.a.groups, VAE_EPS, true), this.convOut, 1, 1);
    });
  }

  dispose(): void {
    disposeParams(this.convIn, this.convNormOut, this.convOut);
    for (const b of this.downBlocks) b.dispose();
    this.midBlock.dispose();
  }
}

/** conv_in → mid block → UpDecoderBlock2Ds → GN, SiLU → conv_out. */
class Decoder {
  private readonly convIn: Conv2dParams;
  private readonly midBlock: UNetMidBlock2D;
  private readonly upBlocks: UpDecoderBlock2D[];
  private readonly convNormOut: NormParams;
  private readonly convOut: Conv2dParams;

  constructor(w: WeightSource, private readonly a: VaeArchitecture) {
    this.convIn = loadConv(w, 'decoder.conv_in', a.latentChannels, a.last, 3);
    this.midBlock = new UNetMidBlock2D(w, 'decoder.mid_block', a.mid);
    this.upBlocks = a.decoderBlocks.map((o, i) => new UpDecoderBlock2D(w, `decoder.up_blocks.${i}`, o));
    this.convNormOut = loadNorm(w, 'decoder.conv_norm_out', a.first);
    this.convOut = loadConv(w, 'decoder.conv_out', a.first, a.outChannels, 3);
  }

  static parameterShapes(a: VaeArchitecture, out: Shapes): void {
    setConv(out, 'decoder.conv_in', a.latentChannels, a.last, 3);
    UNetMidBlock2D.parameterShapes('decoder.mid_block', a.mid, out);
    a.decoderBlocks.forEach((o, i) => UpDecoderBlock2D.parameterShapes(`decoder.up_blocks.${i}`, o, out));
    setNorm(out, 'decoder.conv_norm_out', a.first);
    setConv(out, 'decoder.conv_out', a.first, a.outChannels, 3);
  }

  forward(z: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      let h = conv2d(z, this.convIn, 1, 1);
      h = this.midBlock.forward(h);
      for (const block of this.upBlocks) h = block.forward(h);
      return conv2d(groupNorm(h, this.convNormOut, this.a.groups, VAE_EPS, true), this.convOut, 1, 1);
    });
  }

  dispose(): void {
    disposeParams(this.convIn, this.convNormOut, this.convOut);
    this.midBlock.dispose();
    for (const b of this.upBlocks) b.dispose();
  }
}

function setConv(out: Shapes, prefix: string, inC: number, outC: number, k: number): void {
  out.set(`${prefix}.weight`, [outC, inC, k, k]);
  out.set(`${prefix}.bias`, [outC]);
}

function setNorm(out: Shapes, prefix: string, channels: number): void {
  out.set(`${prefix}.weight`, [channels]);
  out.set(`${prefix}.bias`, [channels]);
}

export class AutoencoderKL {
  /** latents = mean · scalingFactor after encoding; decode takes latents / scalingFactor */
  readonly scalingFactor: number;
  private readonly encoder: Encoder;
  private readonly decoder: Decoder;
  private readonly quantConv?: Conv2dParams;
  private readonly postQuantConv?: Conv2dParams;

  constructor(readonly config: VaeConfig, weights: WeightSource) {
    const a = vaeArchitecture(config);
    this.scalingFactor = config.scalingFactor;
    this.encoder = new Encoder(weights, a);
    this.decoder = new Decoder(weights, a);
    const z2 = 2 * a.latentChannels;
    if (a.useQuantConv) this.quantConv = loadConv(weights, 'quant_conv', z2, z2, 1);
    if (a.usePostQuantConv) this.postQuantConv = loadConv(weights, 'post_quant_conv', a.latentChannels, a.latentChannels, 1);
  }

  /** latents NHWC [B,h,w,latent], already divided by scalingFactor → image NHWC [B,8h,8w,out], ≈[-1, 1]. */
  decode(latents: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => this.decoder.forward(this.postQuantConv ? conv2d(latents, this.postQuantConv) : latents));
  }

  /** image NHWC [B,H,W,in] in [-1, 1] → the latent distribution's mean and log-variance (clamped to [-30, 20]). */
  encode(image: tf.Tensor4D): { mean: tf.Tensor4D; logvar: tf.Tensor4D } {
    return tf.tidy(() => {
      let moments = this.encoder.forward(image);
      if (this.quantConv) moments = conv2d(moments, this.quantConv);
      const [mean, logvar] = tf.split(moments, 2, 3) as [tf.Tensor4D, tf.Tensor4D];
      return { mean, logvar: tf.clipByValue(logvar, -30, 20) };
    });
  }

  dispose(): void {
    this.encoder.dispose();
    this.decoder.dispose();
    disposeParams(this.quantConv, this.postQuantConv);
  }
}

/** Every weight key and shape (PyTorch layout, diffusers' current attention names) the config implies. */
export function vaeParameterShapes(config: VaeConfig): Map<string, number[]> {
  const a = vaeArchitecture(config);
  const out = new Map<string, number[]>();
  Encoder.parameterShapes(a, out);
  Decoder.parameterShapes(a, out);
  const z2 = 2 * a.latentChannels;
  if (a.useQuantConv) setConv(out, 'quant_conv', z2, z2, 1);
  if (a.usePostQuantConv) setConv(out, 'post_quant_conv', a.latentChannels, a.latentChannels, 1);
  return out;
}
