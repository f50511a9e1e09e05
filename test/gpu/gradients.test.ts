import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { registerGradients } from '../../gpu/gradients.ts';

test('registerGradients makes the ops the engine trains through differentiable (idempotent)', async () => {
  await tf.setBackend('wasm');
  registerGradients();
  registerGradients();
  const x = tf.tensor4d(Array.from({ length: 2 * 4 * 4 * 3 }, (_, i) => Math.sin(i)), [2, 4, 4, 3]);
  const w = tf.tensor4d(Array.from({ length: 3 * 3 * 3 * 2 }, (_, i) => Math.cos(i)), [3, 3, 3, 2]);
  const f = (xx: tf.Tensor) => tf.sum(tf.square(tf.conv2d(xx as tf.Tensor4D, w, 1, 'same')));
  const analytic = await tf.grad(f)(x).data();
  // central difference on a few coordinates
  const xv = await x.data();
  for (const i of [0, 7, 31, 95]) {
    const eps = 1e-2;
    const plus = Float32Array.from(xv); plus[i]! += eps;
    const minus = Float32Array.from(xv); minus[i]! -= eps;
    const fp = (await f(tf.tensor4d(plus, x.shape)).data())[0]!;
    const fm = (await f(tf.tensor4d(minus, x.shape)).data())[0]!;
    const numeric = (fp - fm) / (2 * eps);
    assert.ok(Math.abs(numeric - analytic[i]!) <= 1e-2 * Math.max(1, Math.abs(numeric)), `d/dx[${i}]: ${analytic[i]} vs ${numeric}`);
  }
});
