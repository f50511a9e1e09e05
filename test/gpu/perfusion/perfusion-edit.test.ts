// PerfusionEdit / PerfusionTrainingEdit on the real sd-tiny-a UNet's attn2 to_k/to_v weights, with the
// encodings, i*, C⁻¹ and targets of perfusion-grad-a (its full UNet forward/backward check is for the trainer).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { registerGradients } from '../../../gpu/gradients.ts';
import {
  ConceptCompatibilityError, PerfusionEdit, PerfusionTrainingEdit, type EditModel,
} from '../../../gpu/perfusion/index.ts';
import type { ConceptArtifact, CrossAttentionLayer } from '../../../gpu/types.ts';
import { SafetensorsFile } from '../../../gpu/weights/safetensors.ts';
import { fixturePath, randomNormal, randomVector, readFixture, referenceEdit, relativeError, sigmoid, useWasm } from './helpers.ts';

const grad = readFixture('perfusion-grad-a.safetensors');
const meta = JSON.parse(grad.metadata.perfusion_grad!) as { layers: string[]; beta: number; tau: number };
const value = (key: string) => grad.tensors.get(key)!.data;
const HIDDEN = 32;
const encodings = value('encodings'); // [2, 77, 32]
const cInv = value('Cinv');
const iStar = value('istar');
const oK = meta.layers.map((_, k) => value(`oK.${k}`));
const oV = meta.layers.map((_, k) => value(`oV.${k}`));

/** The 16 attn2 layers with their real weights, in the fixture's (diffusers module) order. */
let layers: CrossAttentionLayer[] = [];
let weights: { k: Float32Array; v: Float32Array }[] = [];

before(async () => {
  await useWasm();
  registerGradients();
  const unet = SafetensorsFile.open(fixturePath('sd-tiny-a/model/unet/diffusion_pytorch_model.safetensors'));
  try {
    weights = meta.layers.map((name) => ({ k: unet.readFloat32(`${name}.to_k.weight`), v: unet.readFloat32(`${name}.to_v.weight`) }));
    layers = meta.layers.map((name, index) => {
      const outDim = unet.info(`${name}.to_k.weight`).shape[0]!;
      return {
        name, index, inDim: HIDDEN, outDim,
        toK: tf.tensor2d(weights[index]!.k, [outDim, HIDDEN]),
        toV: tf.tensor2d(weights[index]!.v, [outDim, HIDDEN]),
      };
    });
  } finally {
    unet.close();
  }
});
after(() => {
  for (const l of layers) tf.dispose([l.toK, l.toV]);
});

const token = (data: Float32Array, t: number) => data.subarray(t * HIDDEN, (t + 1) * HIDDEN);
const tokenCount = encodings.length / HIDDEN;

/** Every token of `context` through the float64 reference, as one flat array [tokens·out]. */
function reference(context: Float32Array, w: Float32Array, out: number, concepts: { iStar: ArrayLike<number>; oStar: ArrayLike<number>; beta: number; tau: number }[], projection: 'exact' | 'approx' = 'exact'): Float64Array {
  const tokens = context.length / HIDDEN;
  const result = new Float64Array(tokens * out);
  for (let t = 0; t < tokens; t++) result.set(referenceEdit(token(context, t), w, out, cInv, concepts, projection).h, t * out);
  return result;
}

async function project(edit: { project: PerfusionEdit['project'] }, layer: CrossAttentionLayer, which: 'k' | 'v', context: Float32Array): Promise<Float32Array> {
  const h = tf.tidy(() => edit.project(layer, which, tf.tensor3d(context, [context.length / (77 * HIDDEN), 77, HIDDEN])));
  const data = (await h.data()) as Float32Array;
  h.dispose();
  return data;
}

function concept(name: string, overrides: Partial<ConceptArtifact> = {}): ConceptArtifact {
  return {
    name, category: 'dog', categoryTokenId: 707, modelHash: 'tiny-model', covarianceHash: 'tiny-c', beta: 0.7, tau: 0.15,
    layers: layers.map((l) => ({ name: l.name, outDim: l.outDim })),
    embedding: value('v'), iStar, oK, oV, ...overrides,
  };
}

const model = (): EditModel => ({ modelHash: 'tiny-model', covariance: { hidden: HIDDEN, inverse: cInv, hash: 'tiny-c' }, layers });

test('training edit: every layer’s K and V match the float64 formula at β 0.75, τ 0.1 on the fixture encodings', async () => {
  const edit = new PerfusionTrainingEdit(layers, { hidden: HIDDEN, inverse: cInv }, { iStar, oK, oV });
  try {
    assert.equal(edit.beta, meta.beta);
    assert.equal(edit.tau, meta.tau);
    for (const [l, layer] of layers.entries()) {
      for (const which of ['k', 'v'] as const) {
        const h = await project(edit, layer, which, encodings);
        const expected = reference(encodings, weights[l]![which], layer.outDim, [{ iStar, oStar: (which === 'k' ? oK : oV)[l]!, beta: 0.75, tau: 0.1 }]);
        assert.ok(relativeError(h, expected) < 1e-5, `${layer.name} ${which}: ${relativeError(h, expected)}`);
      }
    }
  } finally {
    edit.dispose();
  }
});

test('training edit: gradients reach the context and o*_V (float64 analytic gradients), not o*_K', async () => {
  const l = layers.findIndex((x) => x.outDim === 64);
  const layer = layers[l]!;
  const edit = new PerfusionTrainingEdit(layers, { hidden: HIDDEN, inverse: cInv }, { iStar, oK, oV });
  const next = randomNormal(5);
  const upstream = randomVector(2 * 77 * layer.outDim, next);
  try {
    const context = tf.tensor3d(encodings, [2, 77, HIDDEN]);
    const r = tf.tensor3d(upstream, [2, 77, layer.outDim]);
    const loss = (e: tf.Tensor3D) => tf.sum(tf.mul(edit.project(layer, 'v', e), r)) as tf.Scalar;
    const { grads } = tf.variableGrads(() => loss(context));
    assert.deepEqual(Object.keys(grads), [edit.valueTargets[l]!.name], 'only o*_V of this layer gets a gradient');
    const gradOV = await grads[edit.valueTargets[l]!.name]!.data();
    const [gradE] = tf.grads((e: tf.Tensor) => loss(e as tf.Tensor3D))([context]);
    const gradEValues = await gradE!.data();
    tf.dispose([context, r, gradE!, ...Object.values(grads)]);

    // d/do* Σ h·R = Σ_n g_n R_n;  d/de_n = Wᵀ R_n − r (R_n·W i*) + r g_n(1−g_n)/τ (R_n·o*)
    const w = weights[l]!.v;
    const out = layer.outDim;
    const u = Array.from({ length: HIDDEN }, (_, i) => Array.from({ length: HIDDEN }, (_, j) => cInv[i * HIDDEN + j]! * iStar[j]!).reduce((a, b) => a + b, 0));
    const energy = u.reduce((s, x, i) => s + x * iStar[i]!, 0);
    const readout = u.map((x) => x / energy);
    const wIStar = Array.from({ length: out }, (_, o) => Array.from({ length: HIDDEN }, (_, i) => w[o * HIDDEN + i]! * iStar[i]!).reduce((a, b) => a + b, 0));
    const expectedOV = new Float64Array(out);
    const expectedE = new Float64Array(encodings.length);
    for (let n = 0; n < tokenCount; n++) {
      const e = token(encodings, n);
      const alpha = readout.reduce((s, x, i) => s + x * e[i]!, 0);
      const g = sigmoid((alpha - 0.75) / 0.1);
      const rn = upstream.subarray(n * out, (n + 1) * out);
      let rWi = 0;
      let rO = 0;
      for (let o = 0; o < out; o++) {
        expectedOV[o]! += g * rn[o]!;
        rWi += rn[o]! * wIStar[o]!;
        rO += rn[o]! * oV[l]![o]!;
      }
      for (let i = 0; i < HIDDEN; i++) {
        let s = 0;
        for (let o = 0; o < out; o++) s += w[o * HIDDEN + i]! * rn[o]!;
        expectedE[n * HIDDEN + i] = s - readout[i]! * rWi + (readout[i]! * g * (1 - g) * rO) / 0.1;
      }
    }
    assert.ok(relativeError(gradOV, expectedOV) < 1e-5, `o*_V: ${relativeError(gradOV, expectedOV)}`);
    assert.ok(relativeError(gradEValues, expectedE) < 1e-5, `E: ${relativeError(gradEValues, expectedE)}`);
  } finally {
    edit.dispose();
  }
});

test('training edit: an optimiser moves o*_V and leaves the locked o*_K bit-identical', async () => {
  const edit = new PerfusionTrainingEdit(layers, { hidden: HIDDEN, inverse: cInv }, { iStar, oK, oV });
  const optimizer = tf.train.adam(0.03);
  try {
    const context = tf.tensor3d(encodings, [2, 77, HIDDEN]);
    for (let step = 0; step < 3; step++) {
      optimizer.minimize(() => tf.addN(layers.flatMap((layer) =>
        (['k', 'v'] as const).map((which) => tf.mean(tf.square(edit.project(layer, which, context)))))) as tf.Scalar, false, [...edit.valueTargets]);
    }
    context.dispose();
    const state = await edit.state();
    for (let l = 0; l < layers.length; l++) {
      assert.ok(Buffer.from(state.oK[l]!.buffer).equals(Buffer.from(Float32Array.from(oK[l]!).buffer)), `o*_K of layer ${l} changed`);
      assert.ok(relativeError(state.oV[l]!, oV[l]!) > 1e-4, `o*_V of layer ${l} did not move`);
    }
  } finally {
    optimizer.dispose();
    edit.dispose();
  }
});

test('§12.10 EMA: after k updates with a constant x, i* = 0.99^k x0 + (1 − 0.99^k) x; forward passes leave i* alone', async () => {
  const next = randomNormal(11);
  const x0 = randomVector(HIDDEN, next);
  const x = randomVector(HIDDEN, next);
  const edit = new PerfusionTrainingEdit(layers, { hidden: HIDDEN, inverse: cInv }, { iStar: x0, oK, oV });
  try {
    const k = 25;
    for (let s = 0; s < k; s++) {
      edit.updateIStar(x);
      tf.dispose(edit.project(layers[0]!, 'v', tf.tensor3d(encodings, [2, 77, HIDDEN])));
    }
    const expected = Float64Array.from(x0, (v, i) => 0.99 ** k * v + (1 - 0.99 ** k) * x[i]!);
    assert.ok(relativeError(edit.iStar, expected) < 1e-6);
    // the edit uses the new i*: α(i*) = 1, so h(i*) = σ((1−β)/τ) o*_K
    const e = new Float32Array(77 * HIDDEN);
    e.set(edit.iStar);
    const h = await project(edit, layers[2]!, 'k', e);
    assert.ok(relativeError(h.subarray(0, layers[2]!.outDim), Float64Array.from(oK[2]!, (v) => v * sigmoid(0.25 / 0.1))) < 1e-5);
  } finally {
    edit.dispose();
  }
});

test('training edit initial state: o*_K = W_K ī_super, o*_V = W_V ī_super', async () => {
  const next = randomNormal(3);
  const iSuper = randomVector(HIDDEN, next);
  const state = await PerfusionTrainingEdit.initialState(layers, iSuper, iStar);
  for (const [l, layer] of layers.entries()) {
    for (const [which, targets] of [['k', state.oK], ['v', state.oV]] as const) {
      const w = weights[l]![which];
      const expected = Float64Array.from({ length: layer.outDim }, (_, o) => iSuper.reduce((s, x, i) => s + w[o * HIDDEN + i]! * x, 0));
      assert.ok(relativeError(targets[l]!, expected) < 1e-5);
    }
  }
  assert.deepEqual(state.iStar, iStar);
});

test('generation edit: one concept, K with o*_K and V with o*_V at the artifact’s β/τ; no tensors leak', async () => {
  const before = tf.memory().numTensors;
  const edit = new PerfusionEdit([concept('rex')], model());
  try {
    for (const l of [0, 4, 15]) {
      for (const which of ['k', 'v'] as const) {
        const h = await project(edit, layers[l]!, which, encodings);
        const expected = reference(encodings, weights[l]![which], layers[l]!.outDim, [{ iStar, oStar: (which === 'k' ? oK : oV)[l]!, beta: 0.7, tau: 0.15 }]);
        assert.ok(relativeError(h, expected) < 1e-5, `layer ${l} ${which}`);
      }
    }
  } finally {
    edit.dispose();
  }
  assert.equal(tf.memory().numTensors, before);
});

test('generation edit: two concepts with their own β/τ, exact and approximate projections', async () => {
  const next = randomNormal(9);
  const second = concept('bella', {
    beta: 0.55, tau: 0.2, iStar: randomVector(HIDDEN, next),
    oK: layers.map((l) => randomVector(l.outDim, next)), oV: layers.map((l) => randomVector(l.outDim, next)),
  });
  const first = concept('rex');
  for (const projection of ['exact', 'approx'] as const) {
    const edit = new PerfusionEdit([first, second], model(), { projection });
    try {
      const l = 9;
      const h = await project(edit, layers[l]!, 'v', encodings);
      const expected = reference(encodings, weights[l]!.v, layers[l]!.outDim, [
        { iStar, oStar: oV[l]!, beta: 0.7, tau: 0.15 },
        { iStar: second.iStar, oStar: second.oV[l]!, beta: 0.55, tau: 0.2 },
      ], projection);
      assert.ok(relativeError(h, expected) < 1e-5, `${projection}: ${relativeError(h, expected)}`);
    } finally {
      edit.dispose();
    }
  }
});

test('§12.16 global key-locking wiring: K sees the super prompt (the uncond item its own), V the concept prompt; off, both see the prompt', async () => {
  const next = randomNormal(21);
  const superEncoding = randomVector(77 * HIDDEN, next);
  const superContext = tf.tensor3d(superEncoding, [1, 77, HIDDEN]);
  // item 0 plays the unconditional branch (keeps its own encoding on K), item 1 the conditional one
  const locked = new PerfusionEdit([concept('rex')], model(), { keyContexts: [null, superContext] });
  const local = new PerfusionEdit([concept('rex')], model());
  try {
    const l = 5;
    const out = layers[l]!.outDim;
    const gates = { beta: 0.7, tau: 0.15 };
    const expect = (context: Float32Array, which: 'k' | 'v') =>
      reference(context, weights[l]![which], out, [{ iStar, oStar: (which === 'k' ? oK : oV)[l]!, ...gates }]);
    const kLocked = await project(locked, layers[l]!, 'k', encodings);
    const vLocked = await project(locked, layers[l]!, 'v', encodings);
    const keyInputs = new Float32Array(encodings.length);
    keyInputs.set(encodings.subarray(0, 77 * HIDDEN));
    keyInputs.set(superEncoding, 77 * HIDDEN);
    assert.ok(relativeError(kLocked, expect(keyInputs, 'k')) < 1e-5);
    assert.ok(relativeError(vLocked, expect(encodings, 'v')) < 1e-5);
    assert.ok(relativeError(kLocked.subarray(77 * out), expect(encodings, 'k').subarray(77 * out)) > 1e-2, 'K of the conditional item must change');
    const kLocal = await project(local, layers[l]!, 'k', encodings);
    assert.ok(relativeError(kLocal, expect(encodings, 'k')) < 1e-5);
    assert.ok(Buffer.from(kLocal.slice(0, 77 * out).buffer).equals(Buffer.from(kLocked.slice(0, 77 * out).buffer)));
    assert.ok(Buffer.from((await project(local, layers[l]!, 'v', encodings)).buffer).equals(Buffer.from(vLocked.buffer)));
    assert.throws(() => tf.tidy(() => locked.project(layers[l]!, 'k', tf.zeros([1, 77, HIDDEN]) as tf.Tensor3D)), /key-lock contexts are set up for 2/);
  } finally {
    locked.dispose();
    local.dispose();
    superContext.dispose();
  }
});

test('the edit can be bypassed per batch item (the unconditional branch): those items get exactly W·e', async () => {
  const edit = new PerfusionEdit([concept('rex')], model(), { editItems: [false, true] });
  try {
    const l = 12;
    const h = await project(edit, layers[l]!, 'v', encodings);
    const plain = tf.tidy(() => tf.matMul(tf.tensor2d(encodings, [2 * 77, HIDDEN]), layers[l]!.toV, false, true));
    const plainValues = (await plain.data()) as Float32Array;
    plain.dispose();
    const half = 77 * layers[l]!.outDim;
    assert.ok(Buffer.from(h.slice(0, half).buffer).equals(Buffer.from(plainValues.slice(0, half).buffer)));
    const edited = reference(encodings.subarray(77 * HIDDEN), weights[l]!.v, layers[l]!.outDim, [{ iStar, oStar: oV[l]!, beta: 0.7, tau: 0.15 }]);
    assert.ok(relativeError(h.subarray(half), edited) < 1e-5);
    assert.throws(() => tf.tidy(() => edit.project(layers[l]!, 'v', tf.zeros([4, 77, HIDDEN]) as tf.Tensor3D)), /set up for 2 batch items/);
  } finally {
    edit.dispose();
  }
});

test('concepts for other layers, models or covariances are refused; unknown layers are an error', () => {
  const before = tf.memory().numTensors;
  const missing = concept('rex', { layers: concept('rex').layers.slice(1), oK: oK.slice(1), oV: oV.slice(1) });
  assert.throws(() => new PerfusionEdit([missing], model()), (err: unknown) => err instanceof ConceptCompatibilityError && err.reason === 'layers');
  assert.throws(() => new PerfusionEdit([concept('rex', { modelHash: 'other' })], model()), (err: unknown) => err instanceof ConceptCompatibilityError && err.reason === 'model');
  assert.throws(() => new PerfusionEdit([concept('rex', { covarianceHash: 'other' })], model()), (err: unknown) => err instanceof ConceptCompatibilityError && err.reason === 'covariance');
  assert.throws(() => new PerfusionEdit([concept('rex'), concept('rex')], model()), /given twice/);
  assert.equal(tf.memory().numTensors, before);
  const edit = new PerfusionEdit([concept('rex')], model());
  try {
    const stranger = { ...layers[0]!, name: 'down_blocks.9.attentions.0.transformer_blocks.0.attn2' };
    assert.throws(() => tf.tidy(() => edit.project(stranger, 'k', tf.zeros([1, 77, HIDDEN]) as tf.Tensor3D)), /no edit for the cross-attention layer/);
  } finally {
    edit.dispose();
  }
});
