// The UNet's and the VAE's blocks (diffusers models/unets/unet_2d_blocks.py), NHWC:
// CrossAttnDownBlock2D, DownBlock2D, UNetMidBlock2DCrossAttn, CrossAttnUpBlock2D, UpBlock2D (UNet);
// DownEncoderBlock2D, UpDecoderBlock2D, UNetMidBlock2D (VAE).
import * as tf from '@tensorflow/tfjs-core';
import type { CrossAttentionEdit } from '../types.ts';
import type { WeightSource } from '../weights/component-weights.ts';
import { ModelLoadError } from '../model/errors.ts';
import { Attention, Transformer2DModel, type CrossAttentionProjection, type Transformer2DModelOptions } from './attention.ts';
import { Downsample2D, ResnetBlock2D, Upsample2D } from './resnet.ts';

type Shapes = Map<string, number[]>;

/** What every UNet block receives besides its feature map. */
export interface UNetConditioning {
  /** time embedding [B, tembChannels] */
  temb: tf.Tensor2D;
  /** text conditioning [B, L, crossAttentionDim] */
  context: tf.Tensor3D;
  edit?: CrossAttentionEdit;
}

/** The cross-attention settings of a block's Transformer2DModels (absent for blocks without attention). */
export interface BlockAttentionOptions {
  heads: number;
  crossAttentionDim: number;
  useLinearProjection: boolean;
  transformerLayers: number;
}

export interface DownBlockOptions {
  numLayers: number;
  inChannels: number;
  outChannels: number;
  tembChannels: number;
  groups: number;
  eps: number;
  addDownsample: boolean;
  downsamplePadding: number;
  attention?: BlockAttentionOptions;
}

export interface UpBlockOptions {
  numLayers: number;
  /** channels of the skip that the last resnet receives (the previous down block's output) */
  inChannels: number;
  outChannels: number;
  /** channels coming from the block below */
  prevOutputChannels: number;
  tembChannels: number;
  groups: number;
  eps: number;
  addUpsample: boolean;
  attention?: BlockAttentionOptions;
}

export interface MidBlockOptions {
  inChannels: number;
  tembChannels: number;
  groups: number;
  eps: number;
  outputScaleFactor: number;
  attention: BlockAttentionOptions;
}

function transformerOptions(channels: number, groups: number, a: BlockAttentionOptions): Transformer2DModelOptions {
  return {
    inChannels: channels, heads: a.heads, dimHead: channels / a.heads, groups,
    crossAttentionDim: a.crossAttentionDim, useLinearProjection: a.useLinearProjection, numLayers: a.transformerLayers,
  };
}

// ---------------------------------------------------------------------------------------------------
// UNet down path

/** Resnets (each followed by a Transformer2DModel when `o.attention` is given), then an optional downsampler. */
export class DownBlock2D {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[];
  readonly downsampler?: Downsample2D;

  constructor(w: WeightSource, readonly prefix: string, o: DownBlockOptions) {
    this.resnets = DownBlock2D.resnetOptions(o).map((r, i) => new ResnetBlock2D(w, `${prefix}.resnets.${i}`, r));
    this.attentions = o.attention
      ? this.resnets.map((_, i) => new Transformer2DModel(w, `${prefix}.attentions.${i}`, transformerOptions(o.outChannels, o.groups, o.attention!)))
      : [];
    if (o.addDownsample) this.downsampler = new Downsample2D(w, `${prefix}.downsamplers.0`, o.outChannels, o.downsamplePadding);
  }

  private static resnetOptions(o: DownBlockOptions) {
    return Array.from({ length: o.numLayers }, (_, i) => ({
      inChannels: i === 0 ? o.inChannels : o.outChannels, outChannels: o.outChannels,
      tembChannels: o.tembChannels, groups: o.groups, eps: o.eps,
    }));
  }

  static parameterShapes(prefix: string, o: DownBlockOptions, out: Shapes): void {
    DownBlock2D.resnetOptions(o).forEach((r, i) => {
      ResnetBlock2D.parameterShapes(`${prefix}.resnets.${i}`, r, out);
      if (o.attention) Transformer2DModel.parameterShapes(`${prefix}.attentions.${i}`, transformerOptions(o.outChannels, o.groups, o.attention), out);
    });
    if (o.addDownsample) Downsample2D.parameterShapes(`${prefix}.downsamplers.0`, o.outChannels, out);
  }

  crossAttentionLayers(): CrossAttentionProjection[] {
    return this.attentions.flatMap((a) => a.crossAttentionLayers());
  }

  /** Returns the block's output and the skip tensors it contributes, in push order. */
  forward(x: tf.Tensor4D, cond: UNetConditioning): { hidden: tf.Tensor4D; skips: tf.Tensor4D[] } {
    return tf.tidy(() => {
      const skips: tf.Tensor4D[] = [];
      let h = x;
      this.resnets.forEach((resnet, i) => {
        h = resnet.forward(h, cond.temb);
        const attn = this.attentions[i];
        if (attn) h = attn.forward(h, cond.context, cond.edit);
        skips.push(h);
      });
      if (this.downsampler) {
        h = this.downsampler.forward(h);
        skips.push(h);
      }
      return { hidden: h, skips };
    });
  }

  dispose(): void {
    for (const m of [...this.resnets, ...this.attentions]) m.dispose();
    this.downsampler?.dispose();
  }
}

/** DownBlock2D with a Transformer2DModel after every resnet (`o.attention` is required). */
export class CrossAttnDownBlock2D extends DownBlock2D {
  constructor(w: WeightSource, prefix: string, o: DownBlockOptions) {
    if (!o.attention) throw new Error(`${prefix}: CrossAttnDownBlock2D needs attention options`);
    super(w, prefix, o);
  }
}

// ---------------------------------------------------------------------------------------------------
// UNet mid block

/** resnet → (Transformer2DModel → resnet) */
export class UNetMidBlock2DCrossAttn {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[];

  constructor(w: WeightSource, readonly prefix: string, o: MidBlockOptions) {
    this.resnets = [0, 1].map((i) => new ResnetBlock2D(w, `${prefix}.resnets.${i}`, UNetMidBlock2DCrossAttn.resnetOptions(o)));
    this.attentions = [new Transformer2DModel(w, `${prefix}.attentions.0`, transformerOptions(o.inChannels, o.groups, o.attention))];
  }

  private static resnetOptions(o: MidBlockOptions) {
    return {
      inChannels: o.inChannels, outChannels: o.inChannels, tembChannels: o.tembChannels,
      groups: o.groups, eps: o.eps, outputScaleFactor: o.outputScaleFactor,
    };
  }

  static parameterShapes(prefix: string, o: MidBlockOptions, out: Shapes): void {
    ResnetBlock2D.parameterShapes(`${prefix}.resnets.0`, UNetMidBlock2DCrossAttn.resnetOptions(o), out);
    Transformer2DModel.parameterShapes(`${prefix}.attentions.0`, transformerOptions(o.inChannels, o.groups, o.attention), out);
    ResnetBlock2D.parameterShapes(`${prefix}.resnets.1`, UNetMidBlock2DCrossAttn.resnetOptions(o), out);
  }

  crossAttentionLayers(): CrossAttentionProjection[] {
    return this.attentions.flatMap((a) => a.crossAttentionLayers());
  }

  forward(x: tf.Tensor4D, cond: UNetConditioning): tf.Tensor4D {
    return tf.tidy(() => {
      let h = this.resnets[0]!.forward(x, cond.temb);
      this.attentions.forEach((attn, i) => {
        h = this.resnets[i + 1]!.forward(attn.forward(h, cond.context, cond.edit), cond.temb);
      });
      return h;
    });
  }

  dispose(): void {
    for (const m of [...this.resnets, ...this.attentions]) m.dispose();
  }
}

// ---------------------------------------------------------------------------------------------------
// UNet up path

/**
 * Each resnet takes concat(h, skip) on the channel axis, h first, skips popped from the end of the stack;
 * a Transformer2DModel follows each resnet in CrossAttnUpBlock2D; then an optional upsampler.
 */
export class UpBlock2D {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[];
  readonly upsampler?: Upsample2D;

  constructor(w: WeightSource, readonly prefix: string, o: UpBlockOptions) {
    this.resnets = UpBlock2D.resnetOptions(o).map((r, i) => new ResnetBlock2D(w, `${prefix}.resnets.${i}`, r));
    this.attentions = o.attention
      ? this.resnets.map((_, i) => new Transformer2DModel(w, `${prefix}.attentions.${i}`, transformerOptions(o.outChannels, o.groups, o.attention!)))
      : [];
    if (o.addUpsample) this.upsampler = new Upsample2D(w, `${prefix}.upsamplers.0`, o.outChannels);
  }

  private static resnetOptions(o: UpBlockOptions) {
    return Array.from({ length: o.numLayers }, (_, i) => {
      const skipChannels = i === o.numLayers - 1 ? o.inChannels : o.outChannels;
      const hiddenChannels = i === 0 ? o.prevOutputChannels : o.outChannels;
      return {
        inChannels: hiddenChannels + skipChannels, outChannels: o.outChannels,
        tembChannels: o.tembChannels, groups: o.groups, eps: o.eps,
      };
    });
  }

  static parameterShapes(prefix: string, o: UpBlockOptions, out: Shapes): void {
    UpBlock2D.resnetOptions(o).forEach((r, i) => {
      ResnetBlock2D.parameterShapes(`${prefix}.resnets.${i}`, r, out);
      if (o.attention) Transformer2DModel.parameterShapes(`${prefix}.attentions.${i}`, transformerOptions(o.outChannels, o.groups, o.attention), out);
    });
    if (o.addUpsample) Upsample2D.parameterShapes(`${prefix}.upsamplers.0`, o.outChannels, out);
  }

  get numLayers(): number {
    return this.resnets.length;
  }

  crossAttentionLayers(): CrossAttentionProjection[] {
    return this.attentions.flatMap((a) => a.crossAttentionLayers());
  }

  /**
   * `skips`: this block's share of the skip stack in push order (the last one is consumed first);
   * `upsampleSize`: the spatial size of the next skip below, which the upsampler's output must match.
   */
  forward(x: tf.Tensor4D, skips: tf.Tensor4D[], cond: UNetConditioning, upsampleSize?: [number, number]): tf.Tensor4D {
    if (skips.length !== this.resnets.length) {
      throw new Error(`${this.prefix} needs ${this.resnets.length} skip connections, got ${skips.length}`);
    }
    return tf.tidy(() => {
      let h = x;
      this.resnets.forEach((resnet, i) => {
        h = resnet.forward(tf.concat([h, skips[skips.length - 1 - i]!], 3), cond.temb);
        const attn = this.attentions[i];
        if (attn) h = attn.forward(h, cond.context, cond.edit);
      });
      return this.upsampler ? this.upsampler.forward(h, upsampleSize) : h;
    });
  }

  dispose(): void {
    for (const m of [...this.resnets, ...this.attentions]) m.dispose();
    this.upsampler?.dispose();
  }
}

/** UpBlock2D with a Transformer2DModel after every resnet (`o.attention` is required). */
export class CrossAttnUpBlock2D extends UpBlock2D {
  constructor(w: WeightSource, prefix: string, o: UpBlockOptions) {
    if (!o.attention) throw new Error(`${prefix}: CrossAttnUpBlock2D needs attention options`);
    super(w, prefix, o);
  }
}

const DOWN_BLOCKS: Record<string, { cls: typeof DownBlock2D; attention: boolean }> = {
  CrossAttnDownBlock2D: { cls: CrossAttnDownBlock2D, attention: true },
  DownBlock2D: { cls: DownBlock2D, attention: false },
};
const UP_BLOCKS: Record<string, { cls: typeof UpBlock2D; attention: boolean }> = {
  CrossAttnUpBlock2D: { cls: CrossAttnUpBlock2D, attention: true },
  UpBlock2D: { cls: UpBlock2D, attention: false },
};

function blockKind<T>(table: Record<string, T>, type: string, where: string): T {
  const kind = table[type];
  if (!kind) {
    throw new ModelLoadError(
      `unet/config.json: ${where} "${type}" is not supported (supported: ${Object.keys(table).join(', ')}). ` +
        'perfusion-bot runs Stable Diffusion 1.x/2.x UNets.',
    );
  }
  return kind;
}

/** The options with `attention` kept only for the block types that have cross-attention. */
function forType<O extends { attention?: BlockAttentionOptions }>(hasAttention: boolean, o: O): O {
  return { ...o, attention: hasAttention ? o.attention : undefined };
}

/** diffusers `get_down_block`: the block named by `type` (its attention options are dropped if it has none). */
export function createDownBlock(type: string, w: WeightSource, prefix: string, o: DownBlockOptions): DownBlock2D {
  const kind = blockKind(DOWN_BLOCKS, type, 'down block type');
  return new kind.cls(w, prefix, forType(kind.attention, o));
}

export function downBlockParameterShapes(type: string, prefix: string, o: DownBlockOptions, out: Shapes): void {
  const kind = blockKind(DOWN_BLOCKS, type, 'down block type');
  kind.cls.parameterShapes(prefix, forType(kind.attention, o), out);
}

/** diffusers `get_up_block`. */
export function createUpBlock(type: string, w: WeightSource, prefix: string, o: UpBlockOptions): UpBlock2D {
  const kind = blockKind(UP_BLOCKS, type, 'up block type');
  return new kind.cls(w, prefix, forType(kind.attention, o));
}

export function upBlockParameterShapes(type: string, prefix: string, o: UpBlockOptions, out: Shapes): void {
  const kind = blockKind(UP_BLOCKS, type, 'up block type');
  kind.cls.parameterShapes(prefix, forType(kind.attention, o), out);
}

// ---------------------------------------------------------------------------------------------------
// VAE blocks (no time embedding)

export interface VaeBlockOptions {
  numLayers: number;
  inChannels: number;
  outChannels: number;
  groups: number;
  eps: number;
  /** add a downsampler (encoder) / upsampler (decoder) after the resnets */
  addSample: boolean;
}

function vaeResnetOptions(o: VaeBlockOptions) {
  return Array.from({ length: o.numLayers }, (_, i) => ({
    inChannels: i === 0 ? o.inChannels : o.outChannels, outChannels: o.outChannels,
    tembChannels: null, groups: o.groups, eps: o.eps,
  }));
}

/** Resnets, then a downsampler that pads right/bottom by one and convolves with stride 2 (padding 0). */
export class DownEncoderBlock2D {
  readonly resnets: ResnetBlock2D[];
  readonly downsampler?: Downsample2D;

  constructor(w: WeightSource, readonly prefix: string, o: VaeBlockOptions) {
    this.resnets = vaeResnetOptions(o).map((r, i) => new ResnetBlock2D(w, `${prefix}.resnets.${i}`, r));
    if (o.addSample) this.downsampler = new Downsample2D(w, `${prefix}.downsamplers.0`, o.outChannels, 0);
  }

  static parameterShapes(prefix: string, o: VaeBlockOptions, out: Shapes): void {
    vaeResnetOptions(o).forEach((r, i) => ResnetBlock2D.parameterShapes(`${prefix}.resnets.${i}`, r, out));
    if (o.addSample) Downsample2D.parameterShapes(`${prefix}.downsamplers.0`, o.outChannels, out);
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      let h = x;
      for (const resnet of this.resnets) h = resnet.forward(h);
      return this.downsampler ? this.downsampler.forward(h) : h;
    });
  }

  dispose(): void {
    for (const r of this.resnets) r.dispose();
    this.downsampler?.dispose();
  }
}

/** Resnets, then a nearest ×2 upsampler with a 3×3 conv. */
export class UpDecoderBlock2D {
  readonly resnets: ResnetBlock2D[];
  readonly upsampler?: Upsample2D;

  constructor(w: WeightSource, readonly prefix: string, o: VaeBlockOptions) {
    this.resnets = vaeResnetOptions(o).map((r, i) => new ResnetBlock2D(w, `${prefix}.resnets.${i}`, r));
    if (o.addSample) this.upsampler = new Upsample2D(w, `${prefix}.upsamplers.0`, o.outChannels);
  }

  static parameterShapes(prefix: string, o: VaeBlockOptions, out: Shapes): void {
    vaeResnetOptions(o).forEach((r, i) => ResnetBlock2D.parameterShapes(`${prefix}.resnets.${i}`, r, out));
    if (o.addSample) Upsample2D.parameterShapes(`${prefix}.upsamplers.0`, o.outChannels, out);
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      let h = x;
      for (const resnet of this.resnets) h = resnet.forward(h);
      return this.upsampler ? this.upsampler.forward(h) : h;
    });
  }

  dispose(): void {
    for (const r of this.resnets) r.dispose();
    this.upsampler?.dispose();
  }
}

export interface VaeMidBlockOptions {
  channels: number;
  groups: number;
  eps: number;
  /** diffusers `mid_block_add_attention` */
  addAttention: boolean;
}

/** The VAE's mid block (diffusers UNetMidBlock2D): resnet → single-head self-attention over pixels → resnet. */
export class UNetMidBlock2D {
  readonly resnets: ResnetBlock2D[];
  readonly attention?: Attention;

  constructor(w: WeightSource, readonly prefix: string, o: VaeMidBlockOptions) {
    this.resnets = [0, 1].map((i) => new ResnetBlock2D(w, `${prefix}.resnets.${i}`, UNetMidBlock2D.resnetOptions(o)));
    if (o.addAttention) this.attention = new Attention(w, `${prefix}.attentions.0`, UNetMidBlock2D.attentionOptions(o));
  }

  private static resnetOptions(o: VaeMidBlockOptions) {
    return { inChannels: o.channels, outChannels: o.channels, tembChannels: null, groups: o.groups, eps: o.eps };
  }

  /** one head as wide as the block (diffusers passes attention_head_dim = channels) */
  private static attentionOptions(o: VaeMidBlockOptions) {
    return { queryDim: o.channels, heads: 1, dimHead: o.channels, qkvBias: true, imageNorm: { groups: o.groups, eps: o.eps } };
  }

  static parameterShapes(prefix: string, o: VaeMidBlockOptions, out: Shapes): void {
    ResnetBlock2D.parameterShapes(`${prefix}.resnets.0`, UNetMidBlock2D.resnetOptions(o), out);
    if (o.addAttention) Attention.parameterShapes(`${prefix}.attentions.0`, UNetMidBlock2D.attentionOptions(o), out);
    ResnetBlock2D.parameterShapes(`${prefix}.resnets.1`, UNetMidBlock2D.resnetOptions(o), out);
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      let h = this.resnets[0]!.forward(x);
      if (this.attention) h = this.attention.forwardImage(h);
      return this.resnets[1]!.forward(h);
    });
  }

  dispose(): void {
    for (const r of this.resnets) r.dispose();
    this.attention?.dispose();
  }
}
