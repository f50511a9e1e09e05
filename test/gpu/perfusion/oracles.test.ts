// perfusion-spec.md §12, the test oracles, on a random W, a C with SD 1.5's condition number (≈4e3) and random
// concepts; every number is checked against a float64 evaluation written independently in helpers.ts.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { PreparedConcepts, type Projection } from '../../../gpu/perfusion/index.ts';
import {
  conditionedCovariance, randomNormal, randomVector, referenceEdit, relativeError, sigmoid, useWasm, type ReferenceConcept,
} from './helpers.ts';

const N = 64; // text width
const D = 48; // projection width
const next = randomNormal(2023);
const { c: C, cInv: C_INV } = conditionedCovariance(N, next);
const C_INV32 = Float32Array.from(C_INV);
const W = randomVector(D * N, next, 1 / Math.sqrt(N));
const iSuper = randomVector(N, next);
/** o* = W i_sup, as for a locked key */
const lockedTarget = (v: ArrayLike<number>) => Float32Array.from({ length: D }, (_, o) => {
  let s = 0;
  for (let i = 0; i < N; i++) s += W[o * N + i]! * v[i]!;
  return s;
});
const concepts: ReferenceConcept[] = [0, 1, 2].map((k) => ({
  iStar: randomVector(N, next),
  oStar: k === 0 ? lockedTarget(iSuper) : randomVector(D, next),
  beta: [0.7, 0.6, 0.75][k]!,
  tau: [0.15, 0.15, 0.1][k]!,
}));
const tokens = Array.from({ length: 20 }, () => randomVector(N, next));

before(useWasm);

/** The implementation's edited projection of each token (float32, on the device). */
async function edit(
  input: ArrayLike<number>[], list: ReferenceConcept[], projection: Projection = 'exact', cInv: Float32Array = C_INV32,
): Promise<Float32Array[]> {
  const prepared = PreparedConcepts.create(cInv, N, list.map((c) => ({ iStar: Float32Array.from(c.iStar), beta: c.beta, tau: c.tau })), projection);
  const w = tf.tensor2d(W, [D, N]);
  const layer = prepared.forWeight(w);
  try {
    const e = new Float32Array(input.length * N);
    input.forEach((t, i) => e.set(Float32Array.from(t), i * N));
    const h = tf.tidy(() => layer.apply(tf.tensor3d(e, [1, input.length, N]),
      tf.tensor2d(Float32Array.from(list.flatMap((c) => Array.from(c.oStar))), [list.length, D])));
    const values = (await h.data()) as Float32Array;
    h.dispose();
    return input.map((_, i) => values.slice(i * D, (i + 1) * D));
  } finally {
    layer.dispose();
    w.dispose();
    prepared.dispose();
  }
}

const plain = (e: ArrayLike<number>) => lockedTarget(e); // W e
const alphaOf = (e: ArrayLike<number>, c: ReferenceConcept) => referenceEdit(e, W, D, C_INV, [c], 'exact').alpha[0]!;
const norm = (v: ArrayLike<number>) => Math.sqrt(Array.from(v).reduce((s, x) => s + x * x, 0));

test('§12.1 ROME equivalence: with the gate replaced by α, h(e) = [W + (o* − W i*)(C⁻¹i*)ᵀ/(i*ᵀC⁻¹i*)] e', async () => {
  const c = concepts[0]!;
  const h = await edit(tokens, [c]);
  // W' = W + (o* − W i*) uᵀ / ε with u = C⁻¹ i*
  const u = Array.from({ length: N }, (_, i) => Array.from({ length: N }, (_, j) => C_INV[i * N + j]! * c.iStar[j]!).reduce((a, b) => a + b, 0));
  const energy = u.reduce((s, x, i) => s + x * c.iStar[i]!, 0);
  const wIStar = plain(c.iStar);
  for (const [t, e] of tokens.entries()) {
    const alpha = alphaOf(e, c);
    const gate = sigmoid((alpha - c.beta) / c.tau);
    const rome = Float64Array.from({ length: D }, (_, o) => {
      let s = 0;
      for (let i = 0; i < N; i++) s += (W[o * N + i]! + ((c.oStar[o]! - wIStar[o]!) * u[i]!) / energy) * e[i]!;
      return s;
    });
    // swap the implementation's gated term for the linear coefficient α
    const linear = h[t]!.map((x, o) => x - gate * c.oStar[o]! + alpha * c.oStar[o]!);
    assert.ok(relativeError(linear, rome) < 1e-5, `token ${t}: ${relativeError(linear, rome)}`);
  }
});

test('§12.2 concept input: α(i*) = 1 and h(i*) = σ((1−β)/τ)·o*; β → −∞ gives o* = W_K ī_super', async () => {
  const c = concepts[0]!;
  assert.ok(Math.abs(alphaOf(c.iStar, c) - 1) < 1e-12);
  for (const [beta, tau, factor] of [[0.75, 0.1, 0.924142], [0.7, 0.15, 0.880797]] as const) {
    const [h] = await edit([c.iStar], [{ ...c, beta, tau }]);
    assert.ok(relativeError(h!, Float64Array.from(c.oStar, (x) => x * factor)) < 1e-5, `(${beta}, ${tau})`);
    assert.ok(Math.abs(sigmoid((1 - beta) / tau) - factor) < 1e-6);
  }
  const [open] = await edit([c.iStar], [{ ...c, beta: -1e3, tau: 1 }]);
  assert.ok(relativeError(open!, lockedTarget(iSuper)) < 1e-5);
});

test('§12.3 C⁻¹-orthogonal input: h(e) − W e = σ(−β/τ)·o* exactly (the closed gate leaks)', async () => {
  const c = concepts[0]!;
  const x = tokens[0]!;
  const a = alphaOf(x, c);
  const e = Float64Array.from(x, (v, i) => v - a * c.iStar[i]!);
  assert.ok(Math.abs(alphaOf(e, c)) < 1e-12);
  for (const [beta, tau, leak] of [[0.75, 0.1, 5.5278e-4], [0.7, 0.15, 9.3160e-3]] as const) {
    const [h] = await edit([e], [{ ...c, beta, tau }]);
    const we = plain(e);
    const difference = h!.map((v, o) => v - we[o]!);
    assert.ok(relativeError(difference, Float64Array.from(c.oStar, (v) => v * leak)) < 1e-3, `(${beta}, ${tau})`);
    assert.ok(Math.abs(sigmoid(-beta / tau) - leak) < 1e-7);
  }
});

test('§12.4 general identity: h(e) − W e = −α(e) W i* + σ((α(e)−β)/τ) o* for any e', async () => {
  for (const c of concepts) {
    const h = await edit(tokens, [c]);
    const wIStar = plain(c.iStar);
    for (const [t, e] of tokens.entries()) {
      const alpha = alphaOf(e, c);
      const gate = sigmoid((alpha - c.beta) / c.tau);
      const we = plain(e);
      const expected = Float64Array.from({ length: D }, (_, o) => we[o]! - alpha * wIStar[o]! + gate * c.oStar[o]!);
      assert.ok(relativeError(h[t]!, expected) < 1e-5, `token ${t}: ${relativeError(h[t]!, expected)}`);
    }
  }
});

test('§12.5 scale invariance: C → kC leaves the output unchanged', async () => {
  const base = await edit(tokens, concepts, 'exact');
  for (const k of [1e3, 1e-3]) {
    const scaled = await edit(tokens, concepts, 'exact', Float32Array.from(C_INV, (x) => x / k));
    for (const [t, h] of scaled.entries()) assert.ok(relativeError(h, base[t]!) < 1e-6, `k=${k} token ${t}`);
  }
});

test('§12.6 multi-concept basis: BᵀC⁻¹B = I, Σ b(bᵀC⁻¹e) = I(IᵀC⁻¹I)⁻¹IᵀC⁻¹e, e − P e = 0 on the span', async () => {
  const prepared = PreparedConcepts.create(C_INV32, N, concepts.map((c) => ({ iStar: Float32Array.from(c.iStar), beta: c.beta, tau: c.tau })), 'exact');
  try {
    const basis = await prepared.projectionBasis.data();
    const readouts = await prepared.projectionReadouts!.data();
    const m = concepts.length;
    assert.deepEqual(prepared.projectionBasis.shape, [N, m]);
    const column = (data: ArrayLike<number>, j: number) => Float64Array.from({ length: N }, (_, i) => data[i * m + j]!);
    for (let a = 0; a < m; a++) {
      for (let b = 0; b < m; b++) {
        let s = 0;
        const ba = column(basis, a);
        const bb = column(basis, b);
        for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) s += ba[i]! * C_INV[i * N + j]! * bb[j]!;
        assert.ok(Math.abs(s - (a === b ? 1 : 0)) < 1e-5, `(BᵀC⁻¹B)[${a},${b}] = ${s}`);
      }
    }
    // the projection of the implementation, Σ_j b_j (q_jᵀ e), against the reference's closed form (as its residual)
    for (const e of tokens.slice(0, 5)) {
      const projected = new Float64Array(N);
      for (let j = 0; j < m; j++) {
        const q = column(readouts, j);
        const coefficient = q.reduce((s, x, i) => s + x * e[i]!, 0);
        for (let i = 0; i < N; i++) projected[i]! += column(basis, j)[i]! * coefficient;
      }
      // reference: h with o* = 0 and W = I gives e − P_I e
      const identity = Float64Array.from({ length: N * N }, (_, k) => (k % (N + 1) === 0 ? 1 : 0));
      const residual = referenceEdit(e, identity, N, C_INV, concepts.map((c) => ({ ...c, oStar: new Float64Array(N) })), 'exact').h;
      const closedForm = Float64Array.from(e, (x, i) => x - residual[i]!);
      assert.ok(relativeError(projected, closedForm) < 1e-5);
    }
  } finally {
    prepared.dispose();
  }
  // e in span{i*}: the projection term vanishes, only the gated targets remain
  const inSpan = Float64Array.from({ length: N }, (_, i) => 0.5 * concepts[0]!.iStar[i]! - 1.3 * concepts[1]!.iStar[i]! + 0.2 * concepts[2]!.iStar[i]!);
  const [h] = await edit([inSpan], concepts);
  const gates = referenceEdit(inSpan, W, D, C_INV, concepts, 'exact').alpha.map((a, k) => sigmoid((a - concepts[k]!.beta) / concepts[k]!.tau));
  const gatedOnly = Float64Array.from({ length: D }, (_, o) => concepts.reduce((s, c, k) => s + gates[k]! * c.oStar[o]!, 0));
  assert.ok(relativeError(h!, gatedOnly) < 1e-4);
});

test('§12.7 reduction (M = 1 multi = single) and permutation invariance; exact and approx match the reference', async () => {
  const single = await edit(tokens, [concepts[1]!], 'approx');
  const multiOne = await edit(tokens, [concepts[1]!], 'exact');
  for (const [t, h] of single.entries()) assert.ok(relativeError(multiOne[t]!, h) < 1e-6);
  for (const projection of ['exact', 'approx'] as const) {
    const forward = await edit(tokens, concepts, projection);
    const backward = await edit(tokens, [...concepts].reverse(), projection);
    const shuffled = await edit(tokens, [concepts[1]!, concepts[2]!, concepts[0]!], projection);
    for (const [t, e] of tokens.entries()) {
      assert.ok(relativeError(backward[t]!, forward[t]!) < 1e-5, `${projection} reversed, token ${t}`);
      assert.ok(relativeError(shuffled[t]!, forward[t]!) < 1e-5, `${projection} shuffled, token ${t}`);
      assert.ok(relativeError(forward[t]!, referenceEdit(e, W, D, C_INV, concepts, projection).h) < 1e-5, `${projection} vs reference, token ${t}`);
    }
  }
});

test('§12.8 gate monotonicity: decreasing in β; for α > β increasing and for α < β decreasing as τ falls', async () => {
  const c = concepts[0]!;
  // e = s·i* has α = s and e − α i* = 0, so h(e) = g·o* and the gate can be read off the output
  const gateAt = async (s: number, beta: number, tau: number) => {
    const [h] = await edit([Float64Array.from(c.iStar, (x) => s * x)], [{ ...c, beta, tau }]);
    return h!.reduce((acc, x, o) => acc + x * c.oStar[o]!, 0) / norm(c.oStar) ** 2;
  };
  const betas = [0.4, 0.5, 0.6, 0.7, 0.8];
  const byBeta = [];
  for (const beta of betas) byBeta.push(await gateAt(0.65, beta, 0.15));
  for (let i = 1; i < byBeta.length; i++) assert.ok(byBeta[i]! < byBeta[i - 1]!, `β ${betas[i]}`);
  const taus = [0.3, 0.2, 0.15, 0.1, 0.05];
  const above = [];
  const below = [];
  for (const tau of taus) {
    above.push(await gateAt(0.9, 0.7, tau));
    below.push(await gateAt(0.5, 0.7, tau));
  }
  for (let i = 1; i < taus.length; i++) {
    assert.ok(above[i]! > above[i - 1]!, `α > β, τ ${taus[i]}`);
    assert.ok(below[i]! < below[i - 1]!, `α < β, τ ${taus[i]}`);
  }
  assert.ok(Math.abs((await gateAt(0.65, 0.7, 0.15)) - sigmoid(-0.05 / 0.15)) < 1e-5);
});

test('§12.15 no-concept bound: |h(e) − W e| ≤ |α||W i*| + σ((α−β)/τ)|o*| for every token', async () => {
  const c = concepts[2]!;
  const h = await edit(tokens, [c]);
  const wIStar = norm(plain(c.iStar));
  for (const [t, e] of tokens.entries()) {
    const alpha = alphaOf(e, c);
    const we = plain(e);
    const change = norm(h[t]!.map((x, o) => x - we[o]!));
    const bound = Math.abs(alpha) * wIStar + sigmoid((alpha - c.beta) / c.tau) * norm(c.oStar);
    assert.ok(change <= bound * (1 + 1e-5) + 1e-6, `token ${t}: ${change} > ${bound}`);
  }
});
