// Attention, the GEGLU FeedForward, BasicTransformerBlock and Transformer2DModel (diffusers
// models/attention_processor.py, attention.py, transformers/transformer_2d.py), on NHWC feature maps.
import * as tf from '@tensorflow/tfjs-core';
import type { CrossAttentionEdit, CrossAttentionLayer } from '../types.ts';
import type { WeightSource } from '../weights/component-weights.ts';
import {
  attention, disposeParams, geglu, groupNorm, layerNorm, linear, loadLinear, loadNorm,
  type LinearParams, type NormParams,
} from './nn.ts';

type Shapes = Map<string, number[]>;

/** The to_k / to_v projections of one cross-attention layer, as Perfusion sees them. */
export class CrossAttentionProjection implements CrossAttentionLayer {
  /** position in the model's module order; assigned by the model once all its layers exist */
  index = -1;

  constructor(
    readonly name: string, readonly inDim: number, readonly outDim: number,
    readonly toK: tf.Tensor2D, readonly toV: tf.Tensor2D,
  ) {}
}

export interface AttentionOptions {
  queryDim: number;
  heads: number;
  dimHead: number;
  /** width of the context that K and V are computed from (cross-attention); absent for self-attention */
  crossAttentionDim?: number;
  /** to_q / to_k / to_v carry biases (the VAE's attention); to_out.0 always does */
  qkvBias: boolean;
  /**
   * The VAE mid-block form: GroupNorm (`group_norm`) on an image input, tokens = pixels, residual added.
   * Used through `forwardImage`.
   */
  imageNorm?: { groups: number; eps: number };
}

/**
 * diffusers' key names, and the legacy ones of old VAE files (`query`/`key`/`value`/`proj_attn`), which
 * diffusers renames on load.
 */
const CURRENT_NAMES = { q: 'to_q', k: 'to_k', v: 'to_v', out: 'to_out.0' };
const LEGACY_NAMES = { q: 'query', k: 'key', v: 'value', out: 'proj_attn' };

/** Multi-head attention: softmax(Q Kᵀ / √d) V, then `to_out.0`. */
export class Attention {
  /** self-attention: to_q | to_k | to_v fused into one [queryDim, 3·inner] projection */
  private readonly qkv?: LinearParams;
  /** cross-attention: to_q, and to_k / to_v kept in PyTorch [out, in] layout for Perfusion */
  private readonly toQ?: LinearParams;
  readonly crossAttention?: CrossAttentionProjection;
  private readonly toOut: LinearParams;
  private readonly norm?: NormParams;

  constructor(w: WeightSource, readonly prefix: string, private readonly opts: AttentionOptions) {
    const { queryDim, heads, dimHead, crossAttentionDim, qkvBias } = opts;
    const inner = heads * dimHead;
    const legacy = !w.has(`${prefix}.to_q.weight`) && w.has(`${prefix}.query.weight`);
    const names = legacy ? LEGACY_NAMES : CURRENT_NAMES;
    if (opts.imageNorm) this.norm = loadNorm(w, `${prefix}.group_norm`, queryDim);
    if (crossAttentionDim === undefined) {
      const parts = (['q', 'k', 'v'] as const).map((n) => loadLinear(w, `${prefix}.${names[n]}`, queryDim, inner, qkvBias));
      this.qkv = {
        weight: tf.concat(parts.map((p) => p.weight), 1),
        ...(qkvBias ? { bias: tf.concat(parts.map((p) => p.bias!)) } : {}),
      };
      disposeParams(...parts);
    } else {
      this.toQ = loadLinear(w, `${prefix}.${names.q}`, queryDim, inner, qkvBias);
      const toK = w.tensor(`${prefix}.${names.k}.weight`, [inner, crossAttentionDim]) as tf.Tensor2D;
      const toV = w.tensor(`${prefix}.${names.v}.weight`, [inner, crossAttentionDim]) as tf.Tensor2D;
      this.crossAttention = new CrossAttentionProjection(prefix, crossAttentionDim, inner, toK, toV);
    }
    this.toOut = loadLinear(w, `${prefix}.${names.out}`, inner, queryDim, true);
  }

  /** The keys and shapes of this module in diffusers' current naming. */
  static parameterShapes(prefix: string, opts: AttentionOptions, out: Shapes): void {
    const { queryDim, heads, dimHead, crossAttentionDim, qkvBias } = opts;
    const inner = heads * dimHead;
    if (opts.imageNorm) {
      out.set(`${prefix}.group_norm.weight`, [queryDim]);
      out.set(`${prefix}.group_norm.bias`, [queryDim]);
    }
    for (const [name, inDim] of [['to_q', queryDim], ['to_k', crossAttentionDim ?? queryDim], ['to_v', crossAttentionDim ?? queryDim]] as const) {
      out.set(`${prefix}.${name}.weight`, [inner, inDim]);
      if (qkvBias) out.set(`${prefix}.${name}.bias`, [inner]);
    }
    out.set(`${prefix}.to_out.0.weight`, [queryDim, inner]);
    out.set(`${prefix}.to_out.0.bias`, [queryDim]);
  }

  /**
   * x [B, L, queryDim] → [B, L, queryDim]. With `context` [B, Lc, crossDim] this is cross-attention; `edit`,
   * when given, computes its K and V from the context instead of context·Wᵀ (Perfusion's hook).
   */
  forward(x: tf.Tensor3D, context?: tf.Tensor3D, edit?: CrossAttentionEdit): tf.Tensor3D {
    return tf.tidy(() => {
      let q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D;
      if (this.qkv) {
        [q, k, v] = tf.split(linear(x, this.qkv), 3, -1) as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D];
      } else {
        if (!context) throw new Error(`${this.prefix} is a cross-attention layer and needs the text context`);
        q = linear(x, this.toQ!) as tf.Tensor3D;
        k = this.projectContext('k', context, edit);
        v = this.projectContext('v', context, edit);
      }
      return linear(attention(q, k, v, this.opts.heads), this.toOut) as tf.Tensor3D;
    });
  }

  /** The VAE form: x [B,H,W,C] → x + attention(group_norm(x)) over the H·W pixels. */
  forwardImage(x: tf.Tensor4D): tf.Tensor4D {
    const norm = this.opts.imageNorm;
    if (!norm || !this.norm) throw new Error(`${this.prefix} has no group_norm for image input`);
    return tf.tidy(() => {
      const [b, h, w, c] = x.shape;
      const tokens = tf.reshape(groupNorm(x, this.norm!, norm.groups, norm.eps), [b, h * w, c]) as tf.Tensor3D;
      return tf.add(x, tf.reshape(this.forward(tokens), [b, h, w, c])) as tf.Tensor4D;
    });
  }

  private projectContext(which: 'k' | 'v', context: tf.Tensor3D, edit?: CrossAttentionEdit): tf.Tensor3D {
    const layer = this.crossAttention!;
    const [b, l, d] = context.shape;
    if (edit) {
      const out = edit.project(layer, which, context);
      if (out.shape[0] !== b || out.shape[1] !== l || out.shape[2] !== layer.outDim) {
        throw new Error(`the edit of ${layer.name} (${which}) returned [${out.shape.join(', ')}], expected [${b}, ${l}, ${layer.outDim}]`);
      }
      return out;
    }
    const weight = which === 'k' ? layer.toK : layer.toV;
    return tf.reshape(tf.matMul(tf.reshape(context, [b * l, d]), weight, false, true), [b, l, layer.outDim]);
  }

  dispose(): void {
    disposeParams(this.qkv, this.toQ, this.toOut, this.norm);
    if (this.crossAttention) tf.dispose([this.crossAttention.toK, this.crossAttention.toV]);
  }
}

/** GEGLU feed-forward: `ff.net.0.proj` (dim → 2·inner) split into hidden · GELU(gate), then `ff.net.2`. */
export class FeedForward {
  private readonly proj: LinearParams;
  private readonly out: LinearParams;

  constructor(w: WeightSource, readonly prefix: string, dim: number, inner: number) {
    this.proj = loadLinear(w, `${prefix}.net.0.proj`, dim, inner * 2, true);
    this.out = loadLinear(w, `${prefix}.net.2`, inner, dim, true);
  }

  static parameterShapes(prefix: string, dim: number, inner: number, out: Shapes): void {
    out.set(`${prefix}.net.0.proj.weight`, [inner * 2, dim]);
    out.set(`${prefix}.net.0.proj.bias`, [inner * 2]);
    out.set(`${prefix}.net.2.weight`, [dim, inner]);
    out.set(`${prefix}.net.2.bias`, [dim]);
  }

  forward(x: tf.Tensor3D): tf.Tensor3D {
    return tf.tidy(() => {
      return linear(geglu(linear(x, this.proj)), this.out) as tf.Tensor3D;
    });
  }

  dispose(): void {
    disposeParams(this.proj, this.out);
  }
}

export interface BasicTransformerBlockOptions {
  dim: number;
  heads: number;
  dimHead: number;
  crossAttentionDim: number;
  /** LayerNorm eps (1e-5 in SD) */
  normEps: number;
}

/** x += attn1(norm1(x)); x += attn2(norm2(x), context); x += ff(norm3(x)) */
export class BasicTransformerBlock {
  private readonly norm1: NormParams;
  readonly attn1: Attention;
  private readonly norm2: NormParams;
  readonly attn2: Attention;
  private readonly norm3: NormParams;
  private readonly ff: FeedForward;

  constructor(w: WeightSource, readonly prefix: string, private readonly opts: BasicTransformerBlockOptions) {
    const { dim } = opts;
    this.norm1 = loadNorm(w, `${prefix}.norm1`, dim);
    this.attn1 = new Attention(w, `${prefix}.attn1`, BasicTransformerBlock.attnOptions(opts, false));
    this.norm2 = loadNorm(w, `${prefix}.norm2`, dim);
    this.attn2 = new Attention(w, `${prefix}.attn2`, BasicTransformerBlock.attnOptions(opts, true));
    this.norm3 = loadNorm(w, `${prefix}.norm3`, dim);
    this.ff = new FeedForward(w, `${prefix}.ff`, dim, dim * 4);
  }

  private static attnOptions(o: BasicTransformerBlockOptions, cross: boolean): AttentionOptions {
    return {
      queryDim: o.dim, heads: o.heads, dimHead: o.dimHead, qkvBias: false,
      ...(cross ? { crossAttentionDim: o.crossAttentionDim } : {}),
    };
  }

  static parameterShapes(prefix: string, opts: BasicTransformerBlockOptions, out: Shapes): void {
    const { dim } = opts;
    for (const n of ['norm1', 'norm2', 'norm3']) {
      out.set(`${prefix}.${n}.weight`, [dim]);
      out.set(`${prefix}.${n}.bias`, [dim]);
    }
    Attention.parameterShapes(`${prefix}.attn1`, BasicTransformerBlock.attnOptions(opts, false), out);
    Attention.parameterShapes(`${prefix}.attn2`, BasicTransformerBlock.attnOptions(opts, true), out);
    FeedForward.parameterShapes(`${prefix}.ff`, dim, dim * 4, out);
  }

  forward(x: tf.Tensor3D, context: tf.Tensor3D, edit?: CrossAttentionEdit): tf.Tensor3D {
    return tf.tidy(() => {
      const eps = this.opts.normEps;
      let h = tf.add(x, this.attn1.forward(layerNorm(x, this.norm1, eps) as tf.Tensor3D)) as tf.Tensor3D;
      h = tf.add(h, this.attn2.forward(layerNorm(h, this.norm2, eps) as tf.Tensor3D, context, edit));
      return tf.add(h, this.ff.forward(layerNorm(h, this.norm3, eps) as tf.Tensor3D)) as tf.Tensor3D;
    });
  }

  dispose(): void {
    disposeParams(this.norm1, this.norm2, this.norm3);
    this.attn1.dispose();
    this.attn2.dispose();
    this.ff.dispose();
  }
}

export interface Transformer2DModelOptions {
  inChannels: number;
  heads: number;
  dimHead: number;
  groups: number;
  crossAttentionDim: number;
  /** SD 2.x: proj_in / proj_out are Linear [out, in]; SD 1.x: 1×1 convs [out, in, 1, 1] */
  useLinearProjection: boolean;
  numLayers: number;
}

/** GroupNorm (eps 1e-6) → proj_in → transformer blocks over the H·W tokens → proj_out → + input. */
export class Transformer2DModel {
  private readonly norm: NormParams;
  /** 1×1 conv or Linear: either way a matrix over the channel axis of NHWC */
  private readonly projIn: LinearParams;
  readonly transformerBlocks: BasicTransformerBlock[];
  private readonly projOut: LinearParams;

  constructor(w: WeightSource, readonly prefix: string, private readonly opts: Transformer2DModelOptions) {
    const { inChannels, heads, dimHead, crossAttentionDim, numLayers } = opts;
    const inner = heads * dimHead;
    this.norm = loadNorm(w, `${prefix}.norm`, inChannels);
    this.projIn = loadLinear(w, `${prefix}.proj_in`, inChannels, inner, true);
    this.transformerBlocks = Array.from({ length: numLayers }, (_, i) =>
      new BasicTransformerBlock(w, `${prefix}.transformer_blocks.${i}`, { dim: inner, heads, dimHead, crossAttentionDim, normEps: 1e-5 }));
    this.projOut = loadLinear(w, `${prefix}.proj_out`, inner, inChannels, true);
  }

  static parameterShapes(prefix: string, opts: Transformer2DModelOptions, out: Shapes): void {
    const { inChannels, heads, dimHead, crossAttentionDim, numLayers, useLinearProjection } = opts;
    const inner = heads * dimHead;
    const kernel = useLinearProjection ? [] : [1, 1];
    out.set(`${prefix}.norm.weight`, [inChannels]);
    out.set(`${prefix}.norm.bias`, [inChannels]);
    out.set(`${prefix}.proj_in.weight`, [inner, inChannels, ...kernel]);
    out.set(`${prefix}.proj_in.bias`, [inner]);
    for (let i = 0; i < numLayers; i++) {
      BasicTransformerBlock.parameterShapes(`${prefix}.transformer_blocks.${i}`, { dim: inner, heads, dimHead, crossAttentionDim, normEps: 1e-5 }, out);
    }
    out.set(`${prefix}.proj_out.weight`, [inChannels, inner, ...kernel]);
    out.set(`${prefix}.proj_out.bias`, [inChannels]);
  }

  crossAttentionLayers(): CrossAttentionProjection[] {
    return this.transformerBlocks.map((b) => b.attn2.crossAttention!);
  }

  /** x [B,H,W,C], context [B,L,crossDim] → [B,H,W,C] */
  forward(x: tf.Tensor4D, context: tf.Tensor3D, edit?: CrossAttentionEdit): tf.Tensor4D {
    return tf.tidy(() => {
      const [b, h, w, c] = x.shape;
      const inner = this.opts.heads * this.opts.dimHead;
      let tokens = tf.reshape(linear(groupNorm(x, this.norm, this.opts.groups, 1e-6), this.projIn), [b, h * w, inner]) as tf.Tensor3D;
      for (const block of this.transformerBlocks) tokens = block.forward(tokens, context, edit);
      return tf.add(tf.reshape(linear(tokens, this.projOut), [b, h, w, c]), x) as tf.Tensor4D;
    });
  }

  dispose(): void {
    disposeParams(this.norm, this.projIn, this.projOut);
    for (const b of this.transformerBlocks) b.dispose();
  }
}
