// The gradients gpu/webgpu/ops.ts registers for tfjs's _FusedMatMul and FusedConv2D kernels (run directly by
// nn.ts's linear and conv2d) against autodiff through the plain ops, on cpu (the only backend with every
// convolution gradient kernel); and nn.ts's linear/conv2d on wasm, whose fused kernels want rank-3 operands.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { registerGradients } from '../../gpu/gradients.ts';
import { conv2d, linear } from '../../gpu/sd/nn.ts';
import '../../gpu/webgpu/ops.ts';

registerGradients();

async function maxRelDiff(a: readonly tf.Tensor[], b: readonly tf.Tensor[]): Promise<number> {
  let worst = 0;
  for (const [i, t] of a.entries()) {
    assert.deepEqual(t.shape, b[i]!.shape);
    const [x, y] = await Promise.all([t.data(), b[i]!.data()]);
    let scale = 1;
    for (const v of y) scale = Math.max(scale, Math.abs(v as number));
    for (let j = 0; j < x.length; j++) worst = Math.max(worst, Math.abs((x[j] as number) - (y[j] as number)) / scale);
  }
  return worst;
}

const rand = (shape: number[], seed: number) => tf.randomUniform(shape, -1, 1, 'float32', seed);

test('_FusedMatMul with bias: gradients of a, b and bias for every transpose combination match matMul + add', async () => {
  await tf.setBackend('cpu');
  for (const transposeA of [false, true]) {
    for (const transposeB of [false, true]) {
      const a = rand(transposeA ? [2, 5, 3] : [2, 3, 5], 1);
      const b = rand(transposeB ? [2, 4, 5] : [2, 5, 4], 2);
      const bias = rand([4], 3);
      const w = rand([2, 3, 4], 4);
      const fused = tf.grads((x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) => tf.sum(tf.mul(w,
        tf.engine().runKernel('_FusedMatMul', { a: x, b: y, bias: z }, { transposeA, transposeB, activation: 'linear' }) as tf.Tensor)))([a, b, bias]);
      const plain = tf.grads((x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) => tf.sum(tf.mul(w, tf.add(tf.matMul(x, y, transposeA, transposeB), z))))([a, b, bias]);
      assert.ok((await maxRelDiff(fused, plain)) < 1e-6, `transposeA ${transposeA}, transposeB ${transposeB}`);
      tf.dispose([a, b, bias, w, ...fused, ...plain]);
    }
  }
});

test('FusedConv2D with bias, strides 1 and 2, explicit padding: gradients of x, filter and bias match conv2d + add', async () => {
  await tf.setBackend('cpu');
  for (const stride of [1, 2]) {
    const x = rand([2, 7, 6, 3], 5) as tf.Tensor4D;
    const filter = rand([3, 3, 3, 4], 6) as tf.Tensor4D;
    const bias = rand([4], 7);
    const pad: tf.backend_util.ExplicitPadding = [[0, 0], [1, 1], [0, 1], [0, 0]];
    const fused = (a: tf.Tensor, f: tf.Tensor, b: tf.Tensor) => tf.engine().runKernel('FusedConv2D', { x: a, filter: f, bias: b },
      { strides: [stride, stride], pad, dataFormat: 'NHWC', dilations: [1, 1], activation: 'linear' } as unknown as tf.NamedAttrMap) as tf.Tensor;
    const plain = (a: tf.Tensor, f: tf.Tensor, b: tf.Tensor) => tf.add(tf.conv2d(a as tf.Tensor4D, f as tf.Tensor4D, stride, pad), b);
    const w = tf.tidy(() => rand(fused(x, filter, bias).shape, 8));
    const loss = (op: typeof plain) => (a: tf.Tensor, f: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(w, op(a, f, b)));
    const got = tf.grads(loss(fused))([x, filter, bias]);
    const expected = tf.grads(loss(plain))([x, filter, bias]);
    assert.ok((await maxRelDiff(got, expected)) < 1e-5, `stride ${stride}`);
    tf.dispose([x, filter, bias, w, ...got, ...expected]);
  }
});

test('nn.linear and nn.conv2d on wasm: values and input gradients as the plain ops, on rank-2, rank-3 and rank-1 inputs', async () => {
  await tf.setBackend('wasm');
  const weight = rand([6, 5], 9) as tf.Tensor2D;
  const b = rand([5], 10) as tf.Tensor1D;
  for (const shape of [[4, 6], [2, 3, 6], [6]]) {
    const x = rand(shape, 11);
    const plain = (v: tf.Tensor) => tf.add(tf.reshape(tf.matMul(tf.reshape(v, [-1, 6]), weight), [...shape.slice(0, -1), 5]), b);
    assert.ok((await maxRelDiff([linear(x, { weight, bias: b })], [plain(x)])) < 1e-6);
    const [got] = tf.grads((v: tf.Tensor) => tf.sum(tf.square(linear(v, { weight, bias: b }))))([x]);
    const [expected] = tf.grads((v: tf.Tensor) => tf.sum(tf.square(plain(v))))([x]);
    assert.ok((await maxRelDiff([got!], [expected!])) < 1e-5, `shape [${shape}]`);
    tf.dispose([x, got!, expected!]);
  }
  const x = rand([1, 6, 6, 3], 12) as tf.Tensor4D;
  const filter = rand([3, 3, 3, 4], 13) as tf.Tensor4D;
  const cb = rand([4], 14) as tf.Tensor1D;
  const [got] = tf.grads((v: tf.Tensor) => tf.sum(tf.square(conv2d(v as tf.Tensor4D, { filter, bias: cb }, 2, [0, 1, 0, 1]))))([x]);
  const [expected] = tf.grads((v: tf.Tensor) => tf.sum(tf.square(tf.add(tf.conv2d(v as tf.Tensor4D, filter, 2, [[0, 0], [0, 1], [0, 1], [0, 0]]), cb))))([x]);
  assert.ok((await maxRelDiff([got!], [expected!])) < 1e-5);
  tf.dispose([weight, b, x, filter, cb, got!, expected!]);
});
