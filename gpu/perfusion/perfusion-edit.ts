// Perfusion as the UNet's cross-attention K/V hook (gpu/types.ts CrossAttentionEdit): every attn2 layer's K
// and V projections become the gated rank-1 edit of edit.ts, with o*_K on K and o*_V on V (spec §3.2, §4, §7).
//
// PerfusionEdit serves generation with one or several taught concepts; PerfusionTrainingEdit serves teaching
// one concept (training gate β 0.75 / τ 0.1, o*_K frozen, o*_V trainable variables, i* an EMA kept outside the
// gradient).
import * as tf from '@tensorflow/tfjs-core';
import type { ConceptArtifact, CrossAttentionEdit, CrossAttentionLayer } from '../types.ts';
import { checkCompatible } from './artifact.ts';
import { PreparedConcepts, type PreparedProjection, type Projection } from './edit.ts';

/** Generation-time gate defaults (spec §3.3), what a taught concept's artifact carries unless told otherwise. */
export const DEFAULT_BETA = 0.7;
export const DEFAULT_TAU = 0.15;
/** Training gate and i* EMA decay (spec §3.3, §5). */
export const TRAINING_BETA = 0.75;
export const TRAINING_TAU = 0.1;
export const ISTAR_DECAY = 0.99;

/** What the loaded model offers the edit: its hash, its covariance and its cross-attention layers. */
export interface EditModel {
  modelHash: string;
  covariance: { hidden: number; inverse: Float32Array; hash: string };
  layers: readonly CrossAttentionLayer[];
}

export interface PerfusionEditOptions {
  /** how several concepts share the projection (default 'exact'; one concept is the same either way) */
  projection?: Projection;
  /**
   * Per batch item of the context the UNet passes, whether the concepts' edit applies (default: every item).
   * false on the unconditional half of classifier-free guidance bypasses it there (plain W·e).
   */
  editItems?: readonly boolean[];
  /**
   * Global key-locking (spec §4.3): per batch item, the encoding [1, L, in] its K path projects instead of its
   * own context — the super prompt's (each concept replaced by its category word) for conditional items — or
   * null to keep its own (the unconditional branch). The caller owns these tensors and keeps them alive while
   * the edit is used.
   */
  keyContexts?: readonly (tf.Tensor3D | null)[];
}

interface LayerEdits {
  k: PreparedProjection;
  v: PreparedProjection;
  /** [M, outDim] */
  oK: tf.Tensor2D;
  oV: tf.Tensor2D;
}

/** Generation with taught concepts. Owns device tensors: dispose() after the UNet run. */
export class PerfusionEdit implements CrossAttentionEdit {
  private readonly concepts: PreparedConcepts;
  private readonly layers = new Map<string, LayerEdits>();
  private readonly itemScale: tf.Tensor1D | undefined;
  private readonly keyContexts: readonly (tf.Tensor3D | null)[] | undefined;

  constructor(concepts: readonly ConceptArtifact[], model: EditModel, options: PerfusionEditOptions = {}) {
    if (concepts.length === 0) throw new Error('PerfusionEdit needs at least one concept');
    const names = new Set<string>();
    for (const c of concepts) {
      if (names.has(c.name)) throw new Error(`the concept <${c.name}> is given twice`);
      names.add(c.name);
      checkCompatible(c, { modelHash: model.modelHash, covarianceHash: model.covariance.hash, layers: model.layers });
    }
    this.keyContexts = options.keyContexts;
    this.concepts = PreparedConcepts.create(model.covariance.inverse, model.covariance.hidden,
      concepts.map((c) => ({ iStar: c.iStar, beta: c.beta, tau: c.tau })), options.projection ?? 'exact');
    try {
      for (const layer of model.layers) {
        const slots = concepts.map((c) => c.layers.findIndex((l) => l.name === layer.name));
        const stack = (targets: (c: ConceptArtifact) => Float32Array[]) => {
          const data = new Float32Array(concepts.length * layer.outDim);
          concepts.forEach((c, i) => data.set(targets(c)[slots[i]!]!, i * layer.outDim));
          return tf.tensor2d(data, [concepts.length, layer.outDim]);
        };
        this.layers.set(layer.name, {
          k: this.concepts.forWeight(layer.toK),
          v: this.concepts.forWeight(layer.toV),
          oK: stack((c) => c.oK),
          oV: stack((c) => c.oV),
        });
      }
      this.itemScale = options.editItems && tf.tensor1d(options.editItems.map((on) => (on ? 1 : 0)));
    } catch (err) {
      this.dispose();
      throw err;
    }
  }

  project(layer: CrossAttentionLayer, which: 'k' | 'v', context: tf.Tensor3D): tf.Tensor3D {
    const edits = this.layers.get(layer.name);
    if (!edits) throw new Error(`Perfusion has no edit for the cross-attention layer ${layer.name}`);
    const [batch, length, width] = context.shape;
    if (this.itemScale && this.itemScale.shape[0] !== batch) {
      throw new Error(`the edit was set up for ${this.itemScale.shape[0]} batch items but ${layer.name} gets ${batch}`);
    }
    if (which === 'v') return edits.v.apply(context, edits.oV, this.itemScale);
    const keyContexts = this.keyContexts;
    if (!keyContexts) return edits.k.apply(context, edits.oK, this.itemScale);
    if (keyContexts.length !== batch) {
      throw new Error(`the key-lock contexts are set up for ${keyContexts.length} batch items but ${layer.name} gets ${batch}`);
    }
    return tf.tidy(() => {
      const items = keyContexts.map((k, b) => {
        if (!k) return tf.slice(context, [b, 0, 0], [1, length, width]);
        if (k.shape[0] !== 1 || k.shape[1] !== length || k.shape[2] !== width) {
          throw new Error(`the key-lock context of item ${b} is [${k.shape.join(', ')}]; ${layer.name} needs [1, ${length}, ${width}]`);
        }
        return k;
      });
      return edits.k.apply(tf.concat(items, 0) as tf.Tensor3D, edits.oK, this.itemScale);
    });
  }

  dispose(): void {
    for (const e of this.layers.values()) {
      e.k.dispose();
      e.v.dispose();
      tf.dispose([e.oK, e.oV]);
    }
    this.layers.clear();
    this.itemScale?.dispose();
    this.concepts.dispose();
  }
}

/** A training run's concept state: what PerfusionTrainingEdit starts from or resumes. */
export interface TrainingState {
  /** target input i* [hidden] (a resumed run passes the float64 average it saved) */
  iStar: Float32Array | Float64Array;
  /** per layer (in `layers` order) o*_K and o*_V [outDim] */
  oK: Float32Array[];
  oV: Float32Array[];
}

export interface TrainingEditOptions {
  beta?: number;
  tau?: number;
  /** i* ← decay·i* + (1 − decay)·x (default 0.99) */
  decay?: number;
}

/**
 * Teaching one concept: the edit at the training gate, o*_K frozen constants (key-locking), o*_V trainable
 * variables, i* an exponential moving average updated between steps, outside the gradient. Gradients reach the
 * embedding through the context and o*_V through `valueTargets`. Owns device tensors: dispose() when done.
 */
export class PerfusionTrainingEdit implements CrossAttentionEdit {
  readonly beta: number;
  readonly tau: number;
  readonly decay: number;
  /** o*_{K,l}: constants, never updated */
  readonly keyTargets: readonly tf.Tensor1D[];
  /** o*_{V,l}: what the optimiser trains, with the embedding */
  readonly valueTargets: readonly tf.Variable<tf.Rank.R1>[];
  private readonly cInv: Float32Array;
  private readonly hidden: number;
  private readonly layerIndex = new Map<string, number>();
  private iStarValue: Float64Array;
  private concepts: PreparedConcepts | null = null;
  private projections: { k: PreparedProjection; v: PreparedProjection }[] = [];

  constructor(
    readonly layers: readonly CrossAttentionLayer[], covariance: { hidden: number; inverse: Float32Array },
    state: TrainingState, options: TrainingEditOptions = {},
  ) {
    this.beta = options.beta ?? TRAINING_BETA;
    this.tau = options.tau ?? TRAINING_TAU;
    this.decay = options.decay ?? ISTAR_DECAY;
    this.cInv = covariance.inverse;
    this.hidden = covariance.hidden;
    if (state.oK.length !== layers.length || state.oV.length !== layers.length) {
      throw new Error(`${layers.length} layers but ${state.oK.length} key and ${state.oV.length} value targets`);
    }
    layers.forEach((layer, l) => {
      this.layerIndex.set(layer.name, l);
      if (state.oK[l]!.length !== layer.outDim || state.oV[l]!.length !== layer.outDim) {
        throw new Error(`${layer.name} is ${layer.outDim} wide but its targets have ${state.oK[l]!.length} and ${state.oV[l]!.length} values`);
      }
    });
    this.keyTargets = state.oK.map((o) => tf.tensor1d(o));
    // unnamed: tfjs names variables uniquely, so several runs may coexist in one process
    this.valueTargets = state.oV.map((o) => {
      const initial = tf.tensor1d(o);
      const variable = tf.variable(initial, true) as tf.Variable<tf.Rank.R1>;
      initial.dispose();
      return variable;
    });
    this.iStarValue = Float64Array.from(state.iStar);
    this.prepare();
  }

  /**
   * The state at step 0 (spec §4.2, §5): o*_K = W_K ī_super and o*_V = W_V ī_super for every layer, where
   * ī_super is the mean over the first batch of the super prompts' encodings at the concept position; i* starts
   * at `initialIStar` (that batch's concept encodings, or ī_super).
   */
  static async initialState(layers: readonly CrossAttentionLayer[], superInput: Float32Array, initialIStar: Float32Array | Float64Array): Promise<TrainingState> {
    const oK: Float32Array[] = [];
    const oV: Float32Array[] = [];
    const x = tf.tensor2d(superInput, [superInput.length, 1]);
    try {
      for (const layer of layers) {
        for (const [weight, out] of [[layer.toK, oK], [layer.toV, oV]] as const) {
          const product = tf.matMul(weight, x);
          try {
            out.push((await product.data()) as Float32Array);
          } finally {
            product.dispose();
          }
        }
      }
    } finally {
      x.dispose();
    }
    return { iStar: initialIStar.slice(), oK, oV };
  }

  /** The current i* (float32 copy of the float64 average). */
  get iStar(): Float32Array {
    return Float32Array.from(this.iStarValue);
  }

  /** The current i* as kept: a copy of the float64 average (what a checkpoint saves). */
  get iStarExact(): Float64Array {
    return Float64Array.from(this.iStarValue);
  }

  /**
   * One EMA step with this batch's mean concept encoding x (at the placeholder positions, no gradient):
   * i* ← decay·i* + (1 − decay)·x, then r and W i* are recomputed for every layer. Call it between steps.
   */
  updateIStar(conceptInput: Float32Array): void {
    if (conceptInput.length !== this.hidden) throw new Error(`the concept encoding has ${conceptInput.length} values; expected ${this.hidden}`);
    for (let i = 0; i < this.hidden; i++) this.iStarValue[i] = this.decay * this.iStarValue[i]! + (1 - this.decay) * conceptInput[i]!;
    this.prepare();
  }

  project(layer: CrossAttentionLayer, which: 'k' | 'v', context: tf.Tensor3D): tf.Tensor3D {
    const l = this.layerIndex.get(layer.name);
    if (l === undefined) throw new Error(`Perfusion has no edit for the cross-attention layer ${layer.name}`);
    return tf.tidy(() => {
      const target = which === 'k' ? this.keyTargets[l]! : this.valueTargets[l]!;
      return this.projections[l]![which].apply(context, tf.expandDims(target, 0) as tf.Tensor2D);
    });
  }

  /** The trained concept's targets as plain arrays (the artifact's payload besides the embedding). */
  async state(): Promise<TrainingState> {
    const read = async (t: tf.Tensor) => Float32Array.from(await t.data());
    return {
      iStar: this.iStar,
      oK: await Promise.all(this.keyTargets.map(read)),
      oV: await Promise.all(this.valueTargets.map(read)),
    };
  }

  dispose(): void {
    this.release();
    tf.dispose([...this.keyTargets, ...this.valueTargets]);
  }

  private prepare(): void {
    this.release();
    this.concepts = PreparedConcepts.create(this.cInv, this.hidden, [{ iStar: Float32Array.from(this.iStarValue), beta: this.beta, tau: this.tau }], 'exact');
    const concepts = this.concepts;
    this.projections = this.layers.map((layer) => ({ k: concepts.forWeight(layer.toK), v: concepts.forWeight(layer.toV) }));
  }

  private release(): void {
    for (const p of this.projections) {
      p.k.dispose();
      p.v.dispose();
    }
    this.projections = [];
    this.concepts?.dispose();
    this.concepts = null;
  }
}
