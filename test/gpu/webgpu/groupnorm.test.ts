// The GroupNorm(+SiLU) programs against the plain TensorFlow.js GroupNorm (nn.groupNorm's primitive path on
// cpu), forward and gradient, on the software WebGPU adapter. Group widths that are not multiples of 4 (SD's
// 320 channels / 32 groups = 10) make one vec4 of channels span two groups.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { compareWithCpu, programsUsed, rand, startCompatGl } from './harness.ts';
import { groupNorm } from '../../../gpu/sd/nn.ts';

const unavailable = await startCompatGl();
const TOL = 2e-5;

function gn(shape: [number, number, number, number], groups: number, silu: boolean, offset = 0) {
  const c = shape[3];
  return () => groupNorm(tf.add(rand(shape, 1, 3), offset) as tf.Tensor4D, { gamma: rand([c], 2) as tf.Tensor1D, beta: rand([c], 3) as tf.Tensor1D }, groups, 1e-5, silu);
}

describe('fused GroupNorm on WebGPU (GL compat adapter)', { skip: unavailable ?? false }, () => {
  const cases: Array<[string, () => tf.Tensor]> = [
    ['GroupNorm + SiLU, 10 channels per group (as SD 320/32)', gn([2, 9, 11, 40], 4, true)],
    ['GroupNorm without SiLU', gn([1, 16, 16, 24], 3, false)],
    ['a large mean (no cancellation in the variance)', gn([1, 12, 12, 16], 2, false, 300)],
    ['one pixel per slice and many slices (1×1 image, 32 groups)', gn([3, 1, 1, 64], 32, true)],
  ];
  for (const [name, f] of cases) {
    test(name, async () => {
      const used = await programsUsed(f);
      assert.ok(used.has('GroupNormApplyProgram') && !used.has('ReduceProgram'), `programs: ${[...used]}`);
      const c = await compareWithCpu(f);
      assert.ok(c.relErr < TOL, `relative error ${c.relErr}`);
    });
  }

  const gradCase = (silu: boolean, wrt: 'x' | 'all') => () => {
    const w = rand([2, 5, 6, 16], 4);
    const gamma = rand([16], 2);
    const beta = rand([16], 3);
    const x = tf.add(rand([2, 5, 6, 16], 1, 3), 1);
    const norm = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => groupNorm(x as tf.Tensor4D, { gamma: g as tf.Tensor1D, beta: b as tf.Tensor1D }, 4, 1e-5, silu);
    return wrt === 'x'
      ? [tf.grad((x: tf.Tensor) => tf.sum(tf.mul(norm(x, gamma, beta), w)))(x)]
      : tf.grads((x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(norm(x, g, b), w)))([x, gamma, beta]);
  };

  for (const silu of [true, false]) {
    test(`input gradient${silu ? ' through the SiLU' : ''} runs fused and matches autodiff through the primitives`, async () => {
      const f = gradCase(silu, 'x');
      const used = await programsUsed(f);
      assert.ok(used.has('GroupNormGradApplyProgram') && !used.has('UnaryOpProgram'), `programs: ${[...used]}`);
      const c = await compareWithCpu(f);
      assert.ok(c.relErr < TOL, `relative error ${c.relErr}`);
    });
  }

  test('gradients with respect to x, gamma and beta match autodiff through the primitives', async () => {
    const c = await compareWithCpu(gradCase(true, 'all'));
    assert.deepEqual(c.shapes, [[2, 5, 6, 16], [16], [16]]);
    assert.ok(c.relErr < TOL, `relative error ${c.relErr}`);
  });

  test('channels not divisible by 4 use the primitive path', async () => {
    const f = gn([1, 4, 4, 6], 3, true);
    assert.ok(!(await programsUsed(f)).has('GroupNormApplyProgram'));
    assert.ok((await compareWithCpu(f)).relErr < TOL);
  });
});
