// editProjection against perfusion-edit-a.safetensors: a float64 NumPy evaluation of the spec's formulas.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { editProjection, PreparedConcepts, type EditConcept, type Projection } from '../../../gpu/perfusion/index.ts';
import { invertSpd } from '../../../gpu/perfusion/linalg.ts';
import { readFixture, relativeError, useWasm } from './helpers.ts';

const fixture = readFixture('perfusion-edit-a.safetensors');
const meta = JSON.parse(fixture.metadata.perfusion!) as { betas: number[]; taus: number[]; in_dim: number; out_dim: number };
const get = (key: string) => {
  const t = fixture.tensors.get(key);
  if (!t) throw new Error(`fixture has no ${key}`);
  return t;
};

before(useWasm);

async function run(concepts: number[], projection: Projection, gates?: { beta: number; tau: number }): Promise<Float32Array> {
  const n = meta.in_dim;
  const cInv = Float32Array.from(invertSpd(get('C').data, n));
  const tensors: tf.Tensor[] = [];
  const keep = <T extends tf.Tensor>(t: T) => (tensors.push(t), t);
  try {
    const e = keep(tf.tensor3d(get('E').data, get('E').shape as [number, number, number]));
    const w = keep(tf.tensor2d(get('W').data, [meta.out_dim, n]));
    const c = keep(tf.tensor2d(cInv, [n, n]));
    const list: EditConcept[] = concepts.map((k) => ({
      iStar: keep(tf.tensor1d(get(`istar.${k}`).data)),
      oStar: keep(tf.tensor1d(get(`ostar.${k}`).data)),
      beta: gates?.beta ?? meta.betas[k]!,
      tau: gates?.tau ?? meta.taus[k]!,
    }));
    const h = keep(await editProjection(e, w, c, list, projection));
    assert.deepEqual(h.shape, [2, 77, meta.out_dim]);
    return (await h.data()) as Float32Array;
  } finally {
    tf.dispose(tensors);
  }
}

const cases: Array<[string, number[], Projection, { beta: number; tau: number }?]> = [
  ['single.h', [0], 'exact', { beta: 0.7, tau: 0.15 }],
  ['single.h', [0], 'approx', { beta: 0.7, tau: 0.15 }],
  ['single_train.h', [0], 'exact', { beta: 0.75, tau: 0.1 }],
  ['multi1_exact.h', [0], 'exact'],
  ['multi2_exact.h', [0, 1], 'exact'],
  ['multi3_exact.h', [0, 1, 2], 'exact'],
  ['multi3_approx.h', [0, 1, 2], 'approx'],
];

for (const [key, concepts, projection, gates] of cases) {
  test(`editProjection reproduces ${key} (concepts ${concepts.join(',')}, ${projection}) within 1e-5`, async () => {
    const h = await run(concepts, projection, gates);
    const err = relativeError(h, get(key).data);
    assert.ok(err < 1e-5, `relative error ${err.toExponential(2)}`);
  });
}

test('the exact and approximate multi-concept projections differ on this fixture (the test can tell them apart)', async () => {
  const exact = await run([0, 1, 2], 'exact');
  const approx = await run([0, 1, 2], 'approx');
  assert.ok(relativeError(exact, approx) > 1e-3);
});

test('no tensors leak from editProjection', async () => {
  const before = tf.memory().numTensors;
  await run([0, 1, 2], 'exact');
  assert.equal(tf.memory().numTensors, before);
});

test('the gate read-out r = C⁻¹i*/(i*ᵀC⁻¹i*) gives single.alpha for every token', async () => {
  const n = meta.in_dim;
  const prepared = PreparedConcepts.create(Float32Array.from(invertSpd(get('C').data, n)), n,
    [{ iStar: get('istar.0').data, beta: 0.7, tau: 0.15 }], 'exact');
  try {
    const alpha = tf.tidy(() => tf.matMul(tf.tensor2d(get('E').data, [2 * 77, n]), prepared.readouts));
    const values = await alpha.data();
    alpha.dispose();
    assert.ok(relativeError(values, get('single.alpha').data) < 1e-5);
  } finally {
    prepared.dispose();
  }
});
