// transformers' CLIPTextModel (modeling_clip.py), the text tower SD 1.x conditions on (sd-engine.md §1.2):
// token + position embeddings → N pre-LayerNorm encoder layers with a causal mask → final LayerNorm →
// last_hidden_state [B, L, hidden]. No padding mask: SD's pipeline passes none, so pad tokens attend causally.
//
// Perfusion trains the word embedding of its placeholder token: `embeddingOverrides` replaces the looked-up
// embedding of a token id by a given vector, and gradients flow to that vector (tf.grads over the vectors).
import * as tf from '@tensorflow/tfjs-core';
import type { ClipTextConfig } from '../model/configs.ts';
import type { WeightSource } from '../weights/component-weights.ts';
import {
  attention, disposeParams, geluErf, layerNorm, linear, loadLinear, loadNorm, quickGelu, type LinearParams, type NormParams,
} from './nn.ts';

export interface TextEncodeOptions {
  /** token id → word-embedding vector [hidden] used instead of the looked-up row (ids past the vocabulary allowed) */
  embeddingOverrides?: ReadonlyMap<number, tf.Tensor1D>;
}

export class TextEncoderError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TextEncoderError';
  }
}

interface EncoderLayer {
  layerNorm1: NormParams;
  q: LinearParams;
  k: LinearParams;
  v: LinearParams;
  out: LinearParams;
  layerNorm2: NormParams;
  fc1: LinearParams;
  fc2: LinearParams;
}

/** Large negative score for "may not attend" (transformers uses the dtype's minimum; softmax gives 0 either way). */
const MASKED = -1e9;

/**
 * Key prefix of the weights: SD 1.x files (transformers 4) name them `text_model.…`; transformers 5 saves a
 * CLIPTextModel without that prefix.
 */
export const TEXT_MODEL_PREFIX = 'text_model.';

/**
 * Every weight key a CLIPTextModel of this config has, with its PyTorch shape (the optional int64
 * `embeddings.position_ids` buffer left out).
 */
export function textEncoderParameterShapes(config: ClipTextConfig, keyPrefix = TEXT_MODEL_PREFIX): Map<string, number[]> {
  const { vocabSize: v, hiddenSize: h, intermediateSize: i, maxPositionEmbeddings: p } = config;
  const shapes = new Map<string, number[]>([
    [`${keyPrefix}embeddings.token_embedding.weight`, [v, h]],
    [`${keyPrefix}embeddings.position_embedding.weight`, [p, h]],
  ]);
  for (let l = 0; l < config.numHiddenLayers; l++) {
    const prefix = `${keyPrefix}encoder.layers.${l}`;
    for (const proj of ['k_proj', 'v_proj', 'q_proj', 'out_proj']) {
      shapes.set(`${prefix}.self_attn.${proj}.weight`, [h, h]);
      shapes.set(`${prefix}.self_attn.${proj}.bias`, [h]);
    }
    shapes.set(`${prefix}.layer_norm1.weight`, [h]);
    shapes.set(`${prefix}.layer_norm1.bias`, [h]);
    shapes.set(`${prefix}.mlp.fc1.weight`, [i, h]);
    shapes.set(`${prefix}.mlp.fc1.bias`, [i]);
    shapes.set(`${prefix}.mlp.fc2.weight`, [h, i]);
    shapes.set(`${prefix}.mlp.fc2.bias`, [h]);
    shapes.set(`${prefix}.layer_norm2.weight`, [h]);
    shapes.set(`${prefix}.layer_norm2.bias`, [h]);
  }
  shapes.set(`${keyPrefix}final_layer_norm.weight`, [h]);
  shapes.set(`${keyPrefix}final_layer_norm.bias`, [h]);
  return shapes;
}

export class ClipTextEncoder {
  /** [vocab, hidden] */
  private readonly tokenEmbedding: tf.Tensor2D;
  /** [maxPositions, hidden] */
  private readonly positionEmbedding: tf.Tensor2D;
  private readonly layers: EncoderLayer[];
  private readonly finalLayerNorm: NormParams;
  private readonly activation: (x: tf.Tensor) => tf.Tensor;
  private disposed = false;

  /**
   * Reads every weight (keys `text_model.…`, or the same without that prefix) from `weights`, checking each
   * shape against `config`.
   */
  constructor(readonly config: ClipTextConfig, weights: WeightSource) {
    const { vocabSize, hiddenSize: h, intermediateSize, maxPositionEmbeddings, numHiddenLayers } = config;
    const p = weights.has(`${TEXT_MODEL_PREFIX}embeddings.token_embedding.weight`) ? TEXT_MODEL_PREFIX : '';
    this.activation = config.hiddenAct === 'quick_gelu' ? quickGelu : geluErf;
    // on a failing weight, free what was read before it
    const loaded: Array<tf.Tensor | LinearParams | NormParams> = [];
    const keep = <T extends tf.Tensor | LinearParams | NormParams>(params: T): T => (loaded.push(params), params);
    try {
      this.tokenEmbedding = keep(weights.tensor(`${p}embeddings.token_embedding.weight`, [vocabSize, h]) as tf.Tensor2D);
      this.positionEmbedding = keep(
        weights.tensor(`${p}embeddings.position_embedding.weight`, [maxPositionEmbeddings, h]) as tf.Tensor2D,
      );
      this.layers = [];
      for (let l = 0; l < numHiddenLayers; l++) {
        const prefix = `${p}encoder.layers.${l}`;
        this.layers.push({
          layerNorm1: keep(loadNorm(weights, `${prefix}.layer_norm1`, h)),
          q: keep(loadLinear(weights, `${prefix}.self_attn.q_proj`, h, h, true)),
          k: keep(loadLinear(weights, `${prefix}.self_attn.k_proj`, h, h, true)),
          v: keep(loadLinear(weights, `${prefix}.self_attn.v_proj`, h, h, true)),
          out: keep(loadLinear(weights, `${prefix}.self_attn.out_proj`, h, h, true)),
          layerNorm2: keep(loadNorm(weights, `${prefix}.layer_norm2`, h)),
          fc1: keep(loadLinear(weights, `${prefix}.mlp.fc1`, h, intermediateSize, true)),
          fc2: keep(loadLinear(weights, `${prefix}.mlp.fc2`, intermediateSize, h, true)),
        });
      }
      this.finalLayerNorm = keep(loadNorm(weights, `${p}final_layer_norm`, h));
    } catch (err) {
      for (const params of loaded) {
        if (params instanceof tf.Tensor) params.dispose();
        else disposeParams(params);
      }
      throw err;
    }
  }

  get hiddenSize(): number {
    return this.config.hiddenSize;
  }

  /**
   * last_hidden_state [B, L, hidden] for token ids [B][L] (L ≤ max positions, 77 for SD). Ids at or past the
   * vocabulary size are valid only when `embeddingOverrides` has them. The caller disposes the result.
   */
  encode(ids: readonly (readonly number[])[], opts?: TextEncodeOptions): tf.Tensor3D {
    this.assertUsable();
    const overrides = opts?.embeddingOverrides ?? new Map<number, tf.Tensor1D>();
    const { batch, length, lookupIds } = this.checkIds(ids, overrides);
    return tf.tidy(() => {
      const h = this.config.hiddenSize;
      let x: tf.Tensor = tf.gather(this.tokenEmbedding, tf.tensor2d(lookupIds, [batch, length], 'int32'));
      for (const [id, vector] of overrides) {
        const mask = new Float32Array(batch * length);
        ids.forEach((row, b) => row.forEach((t, i) => { if (t === id) mask[b * length + i] = 1; }));
        if (!mask.includes(1)) continue;
        const m = tf.tensor3d(mask, [batch, length, 1]);
        // x·(1−m) + v·m: the override's gradient is the sum of the output gradient over its positions
        x = tf.add(tf.mul(x, tf.sub(1, m)), tf.mul(tf.reshape(vector, [1, 1, h]), m));
      }
      x = tf.add(x, tf.slice(this.positionEmbedding, [0, 0], [length, h]));
      const causalMask = tf.tensor2d(causalMaskValues(length), [length, length]);
      for (const layer of this.layers) {
        const normed = layerNorm(x, layer.layerNorm1, this.config.layerNormEps) as tf.Tensor3D;
        const attended = attention(
          linear(normed, layer.q) as tf.Tensor3D,
          linear(normed, layer.k) as tf.Tensor3D,
          linear(normed, layer.v) as tf.Tensor3D,
          this.config.numAttentionHeads,
          causalMask,
        );
        x = tf.add(x, linear(attended, layer.out));
        const hidden = this.activation(linear(layerNorm(x, layer.layerNorm2, this.config.layerNormEps), layer.fc1));
        x = tf.add(x, linear(hidden, layer.fc2));
      }
      return layerNorm(x, this.finalLayerNorm, this.config.layerNormEps) as tf.Tensor3D;
    });
  }

  /** A copy of the word embedding of `id` [hidden] (Perfusion starts its placeholder at the category word's). */
  wordEmbedding(id: number): tf.Tensor1D {
    this.assertUsable();
    if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) {
      throw new TextEncoderError(`token id ${id} is not in the text encoder's vocabulary (0..${this.config.vocabSize - 1})`);
    }
    return tf.tidy(() => tf.reshape(tf.slice(this.tokenEmbedding, [id, 0], [1, this.config.hiddenSize]), [this.config.hiddenSize]));
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    tf.dispose([this.tokenEmbedding, this.positionEmbedding]);
    for (const layer of this.layers) {
      disposeParams(layer.layerNorm1, layer.q, layer.k, layer.v, layer.out, layer.layerNorm2, layer.fc1, layer.fc2);
    }
    disposeParams(this.finalLayerNorm);
  }

  private assertUsable(): void {
    if (this.disposed) throw new TextEncoderError('the text encoder was disposed');
  }

  /** Validates ids and overrides; returns flat ids for the table lookup (overridden ids past the vocabulary → 0). */
  private checkIds(ids: readonly (readonly number[])[], overrides: ReadonlyMap<number, tf.Tensor1D>) {
    const { vocabSize, hiddenSize, maxPositionEmbeddings } = this.config;
    const batch = ids.length;
    const length = ids[0]?.length ?? 0;
    if (batch === 0 || length === 0) throw new TextEncoderError('no token ids to encode');
    if (length > maxPositionEmbeddings) {
      throw new TextEncoderError(`${length} tokens per prompt is more than the text encoder's ${maxPositionEmbeddings} positions`);
    }
    for (const [id, vector] of overrides) {
      if (!Number.isInteger(id) || id < 0) throw new TextEncoderError(`embedding override for invalid token id ${id}`);
      if (vector.rank !== 1 || vector.shape[0] !== hiddenSize) {
        throw new TextEncoderError(`the embedding override for token ${id} has shape [${vector.shape.join(', ')}]; expected [${hiddenSize}]`);
      }
    }
    const lookupIds = new Int32Array(batch * length);
    ids.forEach((row, b) => {
      if (row.length !== length) throw new TextEncoderError(`prompt ${b} has ${row.length} token ids but prompt 0 has ${length}`);
      row.forEach((id, i) => {
        if (!Number.isInteger(id) || id < 0) throw new TextEncoderError(`prompt ${b}, position ${i}: ${id} is not a token id`);
        if (id >= vocabSize && !overrides.has(id)) {
          throw new TextEncoderError(
            `prompt ${b}, position ${i}: token id ${id} is past the vocabulary (${vocabSize} entries) and has no embedding override`,
          );
        }
        lookupIds[b * length + i] = id < vocabSize ? id : 0;
      });
    });
    return { batch, length, lookupIds };
  }
}

/** [L, L] additive mask: 0 on and below the diagonal, MASKED above (position i sees positions ≤ i). */
function causalMaskValues(length: number): Float32Array {
  const values = new Float32Array(length * length);
  for (let i = 0; i < length; i++) for (let j = i + 1; j < length; j++) values[i * length + j] = MASKED;
  return values;
}
