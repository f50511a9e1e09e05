// gpu/autodiff.ts against TensorFlow.js's own tf.grads on wasm: the same gradients (the same kernels run), every
// tensor freed, and a lower peak of tensor memory, on a graph built to hit the tape's corner cases and on the real
// sd-tiny-a UNet.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { gradients, grads, variableGrads } from '../../gpu/autodiff.ts';
import { registerGradients } from '../../gpu/gradients.ts';
import { parseUNetConfig } from '../../gpu/model/configs.ts';
import { UNet2DConditionModel } from '../../gpu/sd/unet.ts';
import { ComponentWeights } from '../../gpu/weights/component-weights.ts';

await tf.setBackend('wasm');
registerGradients();

async function maxAbsDiff(a: readonly tf.Tensor[], b: readonly tf.Tensor[]): Promise<number> {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (const [i, t] of a.entries()) {
    assert.deepEqual(t.shape, b[i]!.shape);
    const [x, y] = await Promise.all([t.data(), b[i]!.data()]);
    for (let j = 0; j < x.length; j++) worst = Math.max(worst, Math.abs((x[j] as number) - (y[j] as number)));
  }
  return worst;
}

/** A tensor's gradient handed straight back (tape corner case: a gradient function returning its dy). */
const passThrough = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const [x, save] = args as [tf.Tensor, tf.GradSaveFunc];
  save([]);
  return { value: tf.mul(x, 1), gradFunc: (dy: tf.Tensor) => dy };
});

/**
 * A graph with the tape's corner cases: an input used by several kernels, broadcasting adds, a split whose
 * parts are used unevenly (one not at all), a constant branch, a concat, a reshape, a custom gradient that
 * returns its dy, and an x used only through another x's path.
 */
function cornerCases(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor): tf.Scalar {
  const constant = tf.sigmoid(tf.range(0, 12, 1, 'float32'));
  const h = tf.add(tf.matMul(x, w), b);
  const [p, q] = tf.split(h, [4, 8], 1);
  const r = tf.concat([tf.tanh(p!), tf.mul(passThrough(p!), 2)], 1);
  const s = tf.add(tf.reshape(tf.mul(r, tf.reshape(tf.slice(constant, [0], [8]), [1, 8])), [-1]), tf.sum(x));
  return tf.add(tf.mean(tf.square(s)), tf.mul(tf.mean(q!), 0)) as tf.Scalar;
}

test('the same gradients as tf.grads on a graph with the tape\'s corner cases, and nothing left behind', async () => {
  const x = tf.randomNormal([5, 6], 0, 1, 'float32', 1);
  const w = tf.randomNormal([6, 12], 0, 1, 'float32', 2);
  const b = tf.randomNormal([12], 0, 1, 'float32', 3);
  const expected = tf.grads(cornerCases)([x, w, b]);
  const before = tf.memory().numTensors;
  const got = grads(cornerCases)([x, w, b]);
  assert.equal(tf.memory().numTensors, before + 3, 'only the three gradients are new');
  assert.ok((await maxAbsDiff(got, expected)) <= 1e-6);
  tf.dispose([x, w, b, ...expected, ...got]);
});

test('variableGrads: the value and gradients of trainable variables by name, as tf.variableGrads', async () => {
  const a = tf.variable(tf.randomNormal([4, 3], 0, 1, 'float32', 4), true);
  const frozen = tf.variable(tf.randomNormal([3], 0, 1, 'float32', 5), false);
  const c = tf.variable(tf.randomNormal([3], 0, 1, 'float32', 6), true);
  const f = () => tf.sum(tf.square(tf.add(tf.mul(tf.sigmoid(a), c), frozen))) as tf.Scalar;
  const expected = tf.variableGrads(f, [a, frozen, c]);
  const before = tf.memory().numTensors;
  const got = variableGrads(f, [a, frozen, c]);
  assert.equal(tf.memory().numTensors, before + 3);
  assert.deepEqual(Object.keys(got.grads).sort(), [a.name, c.name].sort());
  assert.ok((await maxAbsDiff([got.value, got.grads[a.name]!, got.grads[c.name]!], [expected.value, expected.grads[a.name]!, expected.grads[c.name]!])) <= 1e-6);
  tf.dispose([a, frozen, c, got.value, expected.value, ...Object.values(got.grads), ...Object.values(expected.grads).filter((g): g is tf.Tensor => g !== null)]);
});

test('a deep chain peaks at its saved activations, not at saved activations plus every gradient', async () => {
  // activations [512, 32] (64 KiB) much larger than the weights [32, 32]: tf.profile counts a buffer once per
  // tensor that shares it, so every weight a matMul saves counts again
  const layers = Array.from({ length: 24 }, (_, i) => tf.randomNormal([32, 32], 0, 0.3, 'float32', 10 + i));
  const x = tf.randomNormal([512, 32], 0, 1, 'float32', 9);
  // blocks of four layers, each in its own tidy, as the model's blocks are
  const block = (h: tf.Tensor, b: number) => tf.tidy(() => layers.slice(4 * b, 4 * b + 4).reduce((a, wl) => tf.sigmoid(tf.matMul(a, wl)), h));
  const f = (v: tf.Tensor) => tf.mean([0, 1, 2, 3, 4, 5].reduce(block, v)) as tf.Scalar;
  const peak = async (run: () => tf.Tensor[]) => {
    const start = tf.memory().numBytes;
    let out: tf.Tensor[] = [];
    const info = await tf.profile(() => { out = run(); return []; });
    const data = await out[0]!.data();
    tf.dispose(out);
    return { bytes: info.peakBytes - start, data };
  };
  const plain = await peak(() => tf.grads(f)([x]));
  const lean = await peak(() => grads(f)([x]));
  assert.deepEqual(lean.data, plain.data);
  assert.ok(lean.bytes < 0.7 * plain.bytes, `peak ${lean.bytes} bytes vs tf.grads's ${plain.bytes}`);
  tf.dispose([x, ...layers]);
});

test('a failing f or a y that does not depend on x frees everything the tape held, and the engine works on', async () => {
  const x = tf.randomNormal([8, 8], 0, 1, 'float32', 7);
  const before = tf.memory().numTensors;
  assert.throws(() => gradients(() => {
    tf.sigmoid(tf.matMul(x, x));
    throw new Error('failed inside f');
  }, [x]), /failed inside f/);
  assert.throws(() => grads(() => tf.sum(tf.ones([2])))([x]), /Cannot compute gradient/);
  assert.equal(tf.memory().numTensors, before);
  const [g] = tf.grads((v: tf.Tensor) => tf.sum(tf.square(v)))([x]);
  assert.ok((await maxAbsDiff([g!], [tf.mul(x, 2)])) <= 1e-6);
  tf.dispose([x, g!]);
});

test('inside an outer gradient (a second derivative) it defers to tfjs\'s tape', async () => {
  const x = tf.tensor1d([0.5, -1, 2]);
  // d²/dx² Σx³ = 6x
  const second = tf.grad((v: tf.Tensor) => tf.sum(grads((u: tf.Tensor) => tf.sum(tf.pow(u, 3)))([v])[0]!))(x);
  assert.deepEqual(Array.from(await second.data()), [3, -6, 12]);
  tf.dispose([x, second]);
});

test('the sd-tiny-a UNet: the same gradient to the text conditioning as tf.grads, with a lower peak', async () => {
  const dir = new URL('../fixtures/sd-tiny-a/model/unet/', import.meta.url).pathname;
  const config = parseUNetConfig(JSON.parse(readFileSync(`${dir}config.json`, 'utf8')));
  const weights = ComponentWeights.open('unet', `${dir}diffusion_pytorch_model.safetensors`);
  const unet = new UNet2DConditionModel(config, weights);
  try {
    const contextDim = config.crossAttentionDim as number;
    const sample = tf.randomNormal([2, 16, 16, config.inChannels], 0, 1, 'float32', 11) as tf.Tensor4D;
    const context = tf.randomNormal([2, 77, contextDim], 0, 1, 'float32', 12) as tf.Tensor3D;
    const loss = (c: tf.Tensor) => tf.mean(tf.square(unet.forward(sample, 500, c as tf.Tensor3D)));
    const start = tf.memory().numBytes;
    let expected!: tf.Tensor;
    const plainPeak = (await tf.profile(() => { [expected] = tf.grads(loss)([context]); return []; })).peakBytes - start;
    let got!: tf.Tensor;
    const leanPeak = (await tf.profile(() => { [got] = grads(loss)([context]); return []; })).peakBytes - start;
    assert.ok((await maxAbsDiff([got], [expected])) === 0, 'identical gradients');
    assert.ok(leanPeak < plainPeak, `peak ${leanPeak} vs ${plainPeak}`);
    tf.dispose([sample, context, expected, got]);
  } finally {
    unet.dispose();
    weights.close();
  }
});
