// The fused LayerNorm and GEGLU programs against the plain TensorFlow.js computation (nn.ts's primitive path
// on cpu), forward and gradient, on the software WebGPU adapter.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { compareWithCpu, programsUsed, rand, startCompatGl } from './harness.ts';
import { geglu, layerNorm } from '../../../gpu/sd/nn.ts';

const unavailable = await startCompatGl();
const TOL = 2e-5;

function ln(shape: number[], offset = 0) {
  const c = shape[shape.length - 1]!;
  return (x: tf.Tensor, g = rand([c], 2) as tf.Tensor1D, b = rand([c], 3) as tf.Tensor1D) => layerNorm(x, { gamma: g, beta: b }, 1e-5);
}

describe('fused LayerNorm and GEGLU on WebGPU (GL compat adapter)', { skip: unavailable ?? false }, () => {
  const lnCases: Array<[string, number[], number]> = [
    ['LayerNorm, 320 channels (SD 1.5 down_blocks.0), more channels than threads', [2, 33, 320], 0],
    ['LayerNorm, 1280 channels (five vec4s per thread)', [1, 7, 1280], 0],
    ['LayerNorm, a large mean (no cancellation in the variance)', [3, 5, 24], 200],
    ['LayerNorm of a rank-2 input', [6, 16], 0],
  ];
  for (const [name, shape, offset] of lnCases) {
    test(name, async () => {
      const f = () => ln(shape)(tf.add(rand(shape, 1, 3), offset));
      const used = await programsUsed(f);
      assert.ok(used.has('LayerNormProgram') && !used.has('ReduceProgram'), `programs: ${[...used]}`);
      const c = await compareWithCpu(f);
      assert.deepEqual(c.shapes, [shape]);
      assert.ok(c.relErr < TOL, `relative error ${c.relErr}`);
    });
  }

  test('LayerNorm input gradient runs fused and matches autodiff through the primitives', async () => {
    const shape = [2, 9, 320];
    const f = () => {
      const w = rand(shape, 4);
      return [tf.grad((x: tf.Tensor) => tf.sum(tf.mul(ln(shape)(x), w)))(tf.add(rand(shape, 1, 3), 1))];
    };
    const used = await programsUsed(f);
    assert.ok(used.has('LayerNormGradProgram') && !used.has('UnaryOpProgram'), `programs: ${[...used]}`);
    const c = await compareWithCpu(f);
    assert.ok(c.relErr < TOL, `relative error ${c.relErr}`);
  });

  test('LayerNorm gradients with respect to x, gamma and beta match autodiff through the primitives', async () => {
    const shape = [3, 5, 24];
    const c = await compareWithCpu(() => {
      const w = rand(shape, 4);
      return tf.grads((x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(ln(shape)(x, g as tf.Tensor1D, b as tf.Tensor1D), w)))(
        [rand(shape, 1, 2), rand([24], 2), rand([24], 3)]);
    });
    assert.deepEqual(c.shapes, [shape, [24], [24]]);
    assert.ok(c.relErr < TOL, `relative error ${c.relErr}`);
  });

  test('LayerNorm with channels not divisible by 4 uses the primitive path', async () => {
    const f = () => ln([2, 3, 6])(rand([2, 3, 6], 1));
    assert.ok(!(await programsUsed(f)).has('LayerNormProgram'));
    assert.ok((await compareWithCpu(f)).relErr < TOL);
  });

  test('GEGLU forward (value half times the erf GELU of the gate half) runs fused and matches', async () => {
    const f = () => geglu(rand([2, 37, 2 * 96], 1, 4));
    const used = await programsUsed(f);
    assert.ok(used.has('GegluForwardProgram') && !used.has('UnaryOpProgram'), `programs: ${[...used]}`);
    const c = await compareWithCpu(f);
    assert.deepEqual(c.shapes, [[2, 37, 96]]);
    assert.ok(c.relErr < TOL, `relative error ${c.relErr}`);
  });

  test('GEGLU gradient runs fused and matches autodiff through split, erf and multiply', async () => {
    const f = () => {
      const w = rand([3, 11, 40], 4);
      return [tf.grad((x: tf.Tensor) => tf.sum(tf.mul(geglu(x), w)))(rand([3, 11, 80], 1, 4))];
    };
    const used = await programsUsed(f);
    assert.ok(used.has('GegluGradProgram') && !used.has('UnaryOpProgram'), `programs: ${[...used]}`);
    const c = await compareWithCpu(f);
    assert.deepEqual(c.shapes, [[3, 11, 80]]);
    assert.ok(c.relErr < TOL, `relative error ${c.relErr}`);
  });
});
