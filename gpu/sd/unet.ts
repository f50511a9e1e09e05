// UNet2DConditionModel (diffusers models/unets/unet_2d_condition.py), NHWC, built from its config.
// The architecture (block types, channels, heads, skip wiring) is derived once from the config by
// `unetArchitecture`, which both the model and `unetParameterShapes` use.
import * as tf from '@tensorflow/tfjs-core';
import type { CrossAttentionEdit, CrossAttentionLayer } from '../types.ts';
import type { WeightSource } from '../weights/component-weights.ts';
import type { UNetConfig } from '../model/configs.ts';
import { ModelLoadError } from '../model/errors.ts';
import type { CrossAttentionProjection } from './attention.ts';
import {
  UNetMidBlock2DCrossAttn, createDownBlock, createUpBlock, downBlockParameterShapes, upBlockParameterShapes,
  type BlockAttentionOptions, type DownBlock2D, type DownBlockOptions, type MidBlockOptions, type UNetConditioning,
  type UpBlock2D, type UpBlockOptions,
} from './blocks.ts';
import { TimestepEmbedding, timestepFeatures } from './embeddings.ts';
import { conv2d, disposeParams, groupNorm, loadConv, loadNorm, type Conv2dParams, type NormParams } from './nn.ts';

export interface UNetForwardOptions {
  /** replaces every cross-attention layer's K and V projection (Perfusion) */
  edit?: CrossAttentionEdit;
}

interface UNetArchitecture {
  inChannels: number;
  outChannels: number;
  /** first block's width: conv_in output and the sinusoid size */
  baseChannels: number;
  lastChannels: number;
  timeEmbedDim: number;
  convInKernel: number;
  convOutKernel: number;
  groups: number;
  eps: number;
  crossAttentionDim: number;
  down: { type: string; prefix: string; options: DownBlockOptions }[];
  mid?: { prefix: string; options: MidBlockOptions };
  up: { type: string; prefix: string; options: UpBlockOptions }[];
}

/** The parts of a diffusers UNet config this engine does not implement, and what each one is. */
function checkSupported(c: UNetConfig): void {
  const unsupported: string[] = [];
  const expect = (ok: boolean, what: string) => { if (!ok) unsupported.push(what); };
  expect(c.timeEmbeddingType === 'positional', `time_embedding_type "${c.timeEmbeddingType}"`);
  expect(c.classEmbedType === null && c.numClassEmbeds === null, 'class embeddings');
  expect(c.additionEmbedType === null, `addition_embed_type "${c.additionEmbedType}" (SDXL-style)`);
  expect(c.encoderHidDim === null && c.encoderHidDimType === null, 'encoder_hid_dim');
  expect(c.timeCondProjDim === null, 'time_cond_proj_dim (LCM-style)');
  expect(c.timeEmbeddingActFn === null && c.timestepPostAct === null, 'extra time-embedding activations');
  expect(c.actFn === 'silu', `act_fn "${c.actFn}"`);
  expect(c.resnetTimeScaleShift === 'default', `resnet_time_scale_shift "${c.resnetTimeScaleShift}"`);
  expect(!c.resnetSkipTimeAct && c.resnetOutScaleFactor === 1, 'resnet_skip_time_act / resnet_out_scale_factor');
  expect(!c.dualCrossAttention, 'dual_cross_attention');
  expect(![c.onlyCrossAttention].flat().some(Boolean), 'only_cross_attention');
  expect(c.attentionType === 'default', `attention_type "${c.attentionType}"`);
  expect(c.crossAttentionNorm === null, `cross_attention_norm "${c.crossAttentionNorm}"`);
  expect(c.normNumGroups !== null, 'norm_num_groups null');
  expect(c.midBlockType === null || c.midBlockType === 'UNetMidBlock2DCrossAttn', `mid_block_type "${c.midBlockType}"`);
  expect(c.downBlockTypes.length === c.blockOutChannels.length && c.upBlockTypes.length === c.blockOutChannels.length,
    'down_block_types / up_block_types of a different length than block_out_channels');
  if (unsupported.length) {
    throw new ModelLoadError(
      `unet/config.json uses ${unsupported.join(', ')}, which perfusion-bot does not support. ` +
        'Use a Stable Diffusion 1.x (or 2.x) model in diffusers format.',
    );
  }
}

function perBlock(value: number | number[], n: number, key: string): number[] {
  const list = Array.isArray(value) ? value : Array<number>(n).fill(value);
  if (list.length !== n) throw new ModelLoadError(`unet/config.json: "${key}" has ${list.length} entries but the UNet has ${n} blocks.`);
  return list;
}

function unetArchitecture(c: UNetConfig): UNetArchitecture {
  checkSupported(c);
  const channels = c.blockOutChannels;
  const n = channels.length;
  const groups = c.normNumGroups!;
  const eps = c.normEps;
  // diffusers' naming bug: attention_head_dim is the number of heads unless num_attention_heads is given.
  const heads = perBlock(c.numAttentionHeads ?? c.attentionHeadDim, n, c.numAttentionHeads === null ? 'attention_head_dim' : 'num_attention_heads');
  const layers = perBlock(c.layersPerBlock, n, 'layers_per_block');
  const crossDims = perBlock(c.crossAttentionDim, n, 'cross_attention_dim');
  const transformerLayers = perBlock(c.transformerLayersPerBlock, n, 'transformer_layers_per_block');
  const timeEmbedDim = c.timeEmbeddingDim ?? channels[0]! * 4;
  for (const [i, ch] of channels.entries()) {
    if (ch % groups !== 0 || ch % heads[i]! !== 0) {
      throw new ModelLoadError(`unet/config.json: block_out_channels[${i}] = ${ch} is not divisible by norm_num_groups ${groups} and the ${heads[i]} attention heads.`);
    }
  }
  const attention = (i: number): BlockAttentionOptions => ({
    heads: heads[i]!, crossAttentionDim: crossDims[i]!, useLinearProjection: c.useLinearProjection, transformerLayers: transformerLayers[i]!,
  });

  const down = c.downBlockTypes.map((type, i) => ({
    type,
    prefix: `down_blocks.${i}`,
    options: {
      numLayers: layers[i]!, inChannels: i === 0 ? channels[0]! : channels[i - 1]!, outChannels: channels[i]!,
      tembChannels: timeEmbedDim, groups, eps, addDownsample: i < n - 1, downsamplePadding: c.downsamplePadding,
      attention: attention(i),
    },
  }));

  const mid = c.midBlockType === null ? undefined : {
    prefix: 'mid_block',
    options: {
      inChannels: channels[n - 1]!, tembChannels: timeEmbedDim, groups, eps, outputScaleFactor: c.midBlockScaleFactor,
      attention: attention(n - 1),
    },
  };

  const reversed = [...channels].reverse();
  const up = c.upBlockTypes.map((type, i) => {
    const r = n - 1 - i; // the down block this up block mirrors
    return {
      type,
      prefix: `up_blocks.${i}`,
      options: {
        numLayers: layers[r]! + 1, inChannels: reversed[Math.min(i + 1, n - 1)]!, outChannels: reversed[i]!,
        prevOutputChannels: reversed[Math.max(i - 1, 0)]!, tembChannels: timeEmbedDim, groups, eps,
        addUpsample: i < n - 1, attention: attention(r),
      },
    };
  });

  return {
    inChannels: c.inChannels, outChannels: c.outChannels, baseChannels: channels[0]!, lastChannels: channels[n - 1]!,
    timeEmbedDim, convInKernel: c.convInKernel, convOutKernel: c.convOutKernel, groups, eps,
    crossAttentionDim: crossDims[0]!, down, mid, up,
  };
}

export class UNet2DConditionModel {
  private readonly arch: UNetArchitecture;
  private readonly convIn: Conv2dParams;
  private readonly timeEmbedding: TimestepEmbedding;
  readonly downBlocks: DownBlock2D[];
  readonly midBlock?: UNetMidBlock2DCrossAttn;
  readonly upBlocks: UpBlock2D[];
  private readonly convNormOut: NormParams;
  private readonly convOut: Conv2dParams;
  private readonly layers: CrossAttentionProjection[];

  constructor(readonly config: UNetConfig, weights: WeightSource) {
    const a = (this.arch = unetArchitecture(config));
    this.convIn = loadConv(weights, 'conv_in', a.inChannels, a.baseChannels, a.convInKernel);
    this.timeEmbedding = new TimestepEmbedding(weights, 'time_embedding', a.baseChannels, a.timeEmbedDim);
    this.downBlocks = a.down.map((d) => createDownBlock(d.type, weights, d.prefix, d.options));
    if (a.mid) this.midBlock = new UNetMidBlock2DCrossAttn(weights, a.mid.prefix, a.mid.options);
    this.upBlocks = a.up.map((u) => createUpBlock(u.type, weights, u.prefix, u.options));
    this.convNormOut = loadNorm(weights, 'conv_norm_out', a.baseChannels);
    this.convOut = loadConv(weights, 'conv_out', a.baseChannels, a.outChannels, a.convOutKernel);
    // diffusers' module order: down_blocks and up_blocks are registered before mid_block.
    this.layers = [
      ...this.downBlocks.flatMap((b) => b.crossAttentionLayers()),
      ...this.upBlocks.flatMap((b) => b.crossAttentionLayers()),
      ...(this.midBlock?.crossAttentionLayers() ?? []),
    ];
    this.layers.forEach((layer, i) => { layer.index = i; });
  }

  /** Every cross-attention (attn2) layer, in diffusers' module order (down blocks, up blocks, mid block). */
  crossAttentionLayers(): CrossAttentionLayer[] {
    return [...this.layers];
  }

  /**
   * Predicts the noise. sample NHWC [B,h,w,in]; timesteps: one for all items or one per item (float);
   * context [B, L, crossAttentionDim]. Returns NHWC [B,h,w,out].
   */
  forward(sample: tf.Tensor4D, timesteps: number | tf.Tensor1D, context: tf.Tensor3D, opts: UNetForwardOptions = {}): tf.Tensor4D {
    const a = this.arch;
    const [batch, , , channels] = sample.shape;
    if (channels !== a.inChannels) throw new Error(`the UNet expects ${a.inChannels} input channels (NHWC), got [${sample.shape.join(', ')}]`);
    if (context.shape[0] !== batch || context.shape[2] !== a.crossAttentionDim) {
      throw new Error(`the UNet expects a text context [${batch}, L, ${a.crossAttentionDim}], got [${context.shape.join(', ')}]`);
    }
    if (typeof timesteps !== 'number' && timesteps.shape[0] !== batch && timesteps.shape[0] !== 1) {
      throw new Error(`the UNet got ${timesteps.shape[0]} timesteps for a batch of ${batch}`);
    }
    return tf.tidy(() => {
      const t = typeof timesteps === 'number'
        ? tf.fill([batch], timesteps, 'float32') as tf.Tensor1D
        : tf.broadcastTo(tf.cast(timesteps, 'float32'), [batch]) as tf.Tensor1D;
      const temb = this.timeEmbedding.forward(timestepFeatures(t, a.baseChannels, this.config.flipSinToCos, this.config.freqShift));
      const cond: UNetConditioning = { temb, context, edit: opts.edit };

      let h = this.config.centerInputSample ? (tf.sub(tf.mul(sample, 2), 1) as tf.Tensor4D) : sample;
      h = conv2d(h, this.convIn, 1, (a.convInKernel - 1) / 2);
      const skips: tf.Tensor4D[] = [h];
      for (const block of this.downBlocks) {
        const out = block.forward(h, cond);
        h = out.hidden;
        skips.push(...out.skips);
      }
      if (this.midBlock) h = this.midBlock.forward(h, cond);
      for (const block of this.upBlocks) {
        const own = skips.splice(skips.length - block.numLayers, block.numLayers);
        const below = skips[skips.length - 1];
        h = block.forward(h, own, cond, below ? [below.shape[1], below.shape[2]] : undefined);
      }
      h = groupNorm(h, this.convNormOut, a.groups, a.eps, true);
      return conv2d(h, this.convOut, 1, (a.convOutKernel - 1) / 2);
    });
  }

  dispose(): void {
    disposeParams(this.convIn, this.convNormOut, this.convOut);
    this.timeEmbedding.dispose();
    for (const b of [...this.downBlocks, ...this.upBlocks]) b.dispose();
    this.midBlock?.dispose();
  }
}

/** Every weight key and shape (PyTorch layout) the config implies, e.g. to write a model from a config. */
export function unetParameterShapes(config: UNetConfig): Map<string, number[]> {
  const a = unetArchitecture(config);
  const out = new Map<string, number[]>();
  out.set('conv_in.weight', [a.baseChannels, a.inChannels, a.convInKernel, a.convInKernel]);
  out.set('conv_in.bias', [a.baseChannels]);
  TimestepEmbedding.parameterShapes('time_embedding', a.baseChannels, a.timeEmbedDim, out);
  for (const d of a.down) downBlockParameterShapes(d.type, d.prefix, d.options, out);
  if (a.mid) UNetMidBlock2DCrossAttn.parameterShapes(a.mid.prefix, a.mid.options, out);
  for (const u of a.up) upBlockParameterShapes(u.type, u.prefix, u.options, out);
  out.set('conv_norm_out.weight', [a.baseChannels]);
  out.set('conv_norm_out.bias', [a.baseChannels]);
  out.set('conv_out.weight', [a.outChannels, a.baseChannels, a.convOutKernel, a.convOutKernel]);
  out.set('conv_out.bias', [a.outChannels]);
  return out;
}
