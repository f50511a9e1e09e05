// Perfusion's gated rank-1 edit of a K or V projection (perfusion-spec.md §3.2, §7):
//
//   h(e) = W(e − P e) + Σ_c σ((α_c(e) − β_c)/τ_c) · o*_c,     α_c(e) = (i*_cᵀC⁻¹e) / (i*_cᵀC⁻¹i*_c) = r_cᵀe
//
// P e is α(e) i* for one concept; for several it is the C⁻¹-orthogonal projection onto span{i*_c} ('exact')
// or the approximation Σ_c α_c(e) i*_c ('approx'). Both are written as Σ_j p_j (q_jᵀ e) with basis vectors p_j
// and read-out vectors q_j, so that W P e = Σ_j (W p_j)(q_jᵀ e).
//
// Everything that depends only on C⁻¹ and the i*s (r_c, p_j, q_j) is computed once per concept set in float64
// on the JS side (PreparedConcepts); W p_j once per layer (PreparedProjection). The per-token work left for
// the device is one matmul against [r | q], a sigmoid and rank-M products, all differentiable with respect to
// the encodings E and the targets o* (training needs both).
import * as tf from '@tensorflow/tfjs-core';
import { dot, matVec } from './linalg.ts';

export type Projection = 'exact' | 'approx';

/** One concept as `editProjection` takes it. */
export interface EditConcept {
  /** target input [in] */
  iStar: tf.Tensor1D;
  /** target output [out] */
  oStar: tf.Tensor1D;
  beta: number;
  tau: number;
}

/** The input side of one concept, known on the JS side. */
export interface ConceptGate {
  iStar: Float32Array;
  beta: number;
  tau: number;
}

/**
 * Directions of the concept span whose C⁻¹-norm left after orthogonalisation is below this fraction of the
 * concept's own are linearly dependent on earlier concepts and add nothing to the projection.
 */
const DEPENDENT_DIRECTION = 1e-12;

/**
 * The geometry of a set of concepts for one C⁻¹, shared by every edited layer: read-out vectors r_c (gate
 * inputs), and the projection's basis and read-out vectors. Owns device tensors: dispose() when done.
 */
export class PreparedConcepts {
  /** [in, M]: column c is r_c = C⁻¹i*_c / (i*_cᵀC⁻¹i*_c), so α = E·R */
  readonly readouts: tf.Tensor2D;
  /** [in, K]: the projection's read-out vectors q_j, or null when they are the gate read-outs (P = Σ_c α_c i*_c) */
  readonly projectionReadouts: tf.Tensor2D | null;
  /** [in, K]: the projection's basis vectors p_j (i*_c, or the C⁻¹-orthonormal b_j) */
  readonly projectionBasis: tf.Tensor2D;
  /** [M] */
  readonly beta: tf.Tensor1D;
  /** [M] 1/τ_c */
  readonly inverseTau: tf.Tensor1D;

  private constructor(
    readonly hidden: number,
    readonly count: number,
    readouts: Float64Array[], projectionReadouts: Float64Array[] | null, basis: Float64Array[],
    betas: number[], taus: number[],
  ) {
    this.readouts = columns(readouts, hidden);
    this.projectionReadouts = projectionReadouts && columns(projectionReadouts, hidden);
    this.projectionBasis = columns(basis, hidden);
    this.beta = tf.tensor1d(betas);
    this.inverseTau = tf.tensor1d(taus.map((t) => 1 / t));
  }

  /**
   * Precomputes, in float64, what the edit needs from C⁻¹ [hidden·hidden, row-major] and the concepts' i*.
   * 'exact' builds the C⁻¹-orthonormal basis b_j of span{i*_c} (spec §7): Gram-Schmidt in the C⁻¹ inner
   * product, done twice for stability. With C⁻¹ = UᵀU that inner product is the Euclidean one of the whitened
   * vectors U i*, so this is the spec's "whiten, QR, map back by U⁻¹" without forming U. One concept gives the
   * same edit either way.
   */
  static create(cInv: Float32Array, hidden: number, concepts: readonly ConceptGate[], projection: Projection): PreparedConcepts {
    if (concepts.length === 0) throw new Error('a Perfusion edit needs at least one concept');
    if (cInv.length !== hidden * hidden) throw new Error(`C⁻¹ has ${cInv.length} values; expected ${hidden}×${hidden}`);
    const readouts: Float64Array[] = [];
    for (const [c, concept] of concepts.entries()) {
      if (concept.iStar.length !== hidden) throw new Error(`concept ${c}: i* has ${concept.iStar.length} values; expected ${hidden}`);
      if (!(concept.tau > 0) || !Number.isFinite(concept.beta)) {
        throw new Error(`concept ${c}: the gate needs a finite β and τ > 0 (got β ${concept.beta}, τ ${concept.tau})`);
      }
      const u = matVec(cInv, hidden, concept.iStar);
      const energy = dot(concept.iStar, u);
      if (!(energy > 0)) throw new Error(`concept ${c}: i*ᵀC⁻¹i* is ${energy}; i* must be a non-zero vector and C⁻¹ positive definite`);
      readouts.push(u.map((x) => x / energy));
    }
    const iStars = concepts.map((c) => Float64Array.from(c.iStar));
    const betas = concepts.map((c) => c.beta);
    const taus = concepts.map((c) => c.tau);
    if (projection === 'approx' || concepts.length === 1) {
      return new PreparedConcepts(hidden, concepts.length, readouts, null, iStars, betas, taus);
    }
    const basis: Float64Array[] = [];
    const basisReadouts: Float64Array[] = [];
    for (const iStar of iStars) {
      const v = Float64Array.from(iStar);
      for (let pass = 0; pass < 2; pass++) {
        for (let j = 0; j < basis.length; j++) {
          const coefficient = dot(basisReadouts[j]!, v);
          const b = basis[j]!;
          for (let i = 0; i < hidden; i++) v[i]! -= coefficient * b[i]!;
        }
      }
      const cv = matVec(cInv, hidden, v);
      const norm2 = dot(v, cv);
      if (norm2 <= DEPENDENT_DIRECTION * dot(iStar, matVec(cInv, hidden, iStar))) continue;
      const scale = 1 / Math.sqrt(norm2);
      basis.push(v.map((x) => x * scale));
      basisReadouts.push(cv.map((x) => x * scale));
    }
    return new PreparedConcepts(hidden, concepts.length, readouts, basisReadouts, basis, betas, taus);
  }

  /** The per-layer part for a projection weight W [out, in] (PyTorch Linear layout). */
  forWeight(weight: tf.Tensor2D): PreparedProjection {
    return new PreparedProjection(this, weight);
  }

  dispose(): void {
    tf.dispose([this.readouts, this.projectionBasis, this.beta, this.inverseTau]);
    if (this.projectionReadouts) this.projectionReadouts.dispose();
  }
}

/** The edit of one projection W for one concept set; owns W·P [K, out]: dispose() when done. */
export class PreparedProjection {
  /** [K, out]: row j is W p_j */
  readonly projectedBasis: tf.Tensor2D;

  constructor(readonly concepts: PreparedConcepts, readonly weight: tf.Tensor2D) {
    if (weight.shape[1] !== concepts.hidden) {
      throw new Error(`the projection takes ${weight.shape[1]}-wide inputs but the concepts are ${concepts.hidden}-wide`);
    }
    this.projectedBasis = tf.tidy(() => tf.matMul(concepts.projectionBasis, weight, true, true));
  }

  get outDim(): number {
    return this.weight.shape[0];
  }

  /**
   * E [B, L, in] → [B, L, out]. `targets` [M, out] holds o*_c in concept order (a stack of variables in
   * training). `itemScale` [B], when given, multiplies the edit of each batch item (0 bypasses it: W e).
   */
  apply(context: tf.Tensor3D, targets: tf.Tensor2D, itemScale?: tf.Tensor1D): tf.Tensor3D {
    const [b, l, d] = context.shape;
    const { readouts, projectionReadouts, beta, inverseTau, count } = this.concepts;
    if (targets.shape[0] !== count || targets.shape[1] !== this.outDim) {
      throw new Error(`the edit needs targets [${count}, ${this.outDim}], got [${targets.shape.join(', ')}]`);
    }
    return tf.tidy(() => {
      const e = tf.reshape(context, [b * l, d]) as tf.Tensor2D;
      const alpha = tf.matMul(e, readouts);
      let gate = tf.sigmoid(tf.mul(tf.sub(alpha, beta), inverseTau)) as tf.Tensor2D;
      let coefficients = projectionReadouts ? tf.matMul(e, projectionReadouts) : alpha;
      if (itemScale) {
        const rowScale = tf.reshape(tf.tile(tf.reshape(itemScale, [b, 1]), [1, l]), [b * l, 1]);
        gate = tf.mul(gate, rowScale) as tf.Tensor2D;
        coefficients = tf.mul(coefficients, rowScale) as tf.Tensor2D;
      }
      const h = tf.add(
        tf.matMul(e, this.weight, false, true),
        tf.sub(tf.matMul(gate, targets), tf.matMul(coefficients, this.projectedBasis)),
      );
      return tf.reshape(h, [b, l, this.outDim]);
    });
  }

  dispose(): void {
    this.projectedBasis.dispose();
  }
}

/**
 * The edited projection of E [B, L, in] by W [out, in] for the given concepts, with C⁻¹ [in, in]: [B, L, out].
 * Reads C⁻¹ and the i*s to the JS side (their geometry is computed once in float64), hence async; the
 * differentiable per-token part is `PreparedProjection.apply`, which training calls inside its gradient.
 */
export async function editProjection(
  context: tf.Tensor3D, weight: tf.Tensor2D, cInv: tf.Tensor2D, concepts: readonly EditConcept[], projection: Projection,
): Promise<tf.Tensor3D> {
  const hidden = cInv.shape[0];
  const cInvValues = (await cInv.data()) as Float32Array;
  const gates: ConceptGate[] = [];
  for (const c of concepts) gates.push({ iStar: (await c.iStar.data()) as Float32Array, beta: c.beta, tau: c.tau });
  const prepared = PreparedConcepts.create(cInvValues, hidden, gates, projection);
  const layer = prepared.forWeight(weight);
  try {
    return tf.tidy(() => layer.apply(context, tf.stack(concepts.map((c) => c.oStar)) as tf.Tensor2D));
  } finally {
    layer.dispose();
    prepared.dispose();
  }
}

/** Vectors as the columns of a float32 [rows, vectors.length] tensor. */
function columns(vectors: readonly Float64Array[], rows: number): tf.Tensor2D {
  const data = new Float32Array(rows * vectors.length);
  for (const [j, v] of vectors.entries()) for (let i = 0; i < rows; i++) data[i * vectors.length + j] = v[i]!;
  return tf.tensor2d(data, [rows, vectors.length]);
}
