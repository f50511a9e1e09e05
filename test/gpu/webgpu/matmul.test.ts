// The tiled GEMM program (BatchMatMul / _FusedMatMul replacement) against tfjs's matMul on cpu, on the
// software WebGPU adapter (Dawn → OpenGL ES → Mesa llvmpipe). Shapes are small and deliberately not multiples of
// the tiles, so every edge of the tiling is exercised; both tile sizes are reached.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { compareWithCpu, programsUsed, rand, startCompatGl } from './harness.ts';
import { gemmTuning } from '../../../gpu/webgpu/program-util.ts';
import { setCustomKernels } from '../../../gpu/webgpu/kernels.ts';

const unavailable = await startCompatGl();
const TOL = 1e-5;

describe('tiled matmul on WebGPU (GL compat adapter)', { skip: unavailable ?? false }, () => {
  after(() => { gemmTuning.largeTileMinWorkgroups = 256; });

  const cases: Array<[string, () => tf.Tensor]> = [
    ['A·B, ragged edges', () => tf.matMul(rand([100, 36], 1), rand([36, 44], 2))],
    ['Aᵀ·B', () => tf.matMul(rand([36, 100], 1), rand([36, 44], 2), true, false)],
    ['A·Bᵀ (attention scores layout)', () => tf.matMul(rand([100, 36], 1), rand([44, 36], 2), false, true)],
    ['Aᵀ·Bᵀ', () => tf.matMul(rand([36, 100], 1), rand([44, 36], 2), true, true)],
    ['batched', () => tf.matMul(rand([3, 70, 20], 1), rand([3, 20, 132], 2))],
    ['batch broadcast of an unbatched B (linear layer on [B, L, C])', () => tf.matMul(rand([2, 3, 70, 20], 1), rand([20, 132], 2))],
    ['fused bias + relu', () => tf.fused.matMul({ a: rand([130, 64], 1), b: rand([64, 68], 2), bias: rand([68], 3), activation: 'relu' })],
  ];
  for (const [name, f] of cases) {
    test(name, async () => {
      assert.ok((await programsUsed(f)).has('MatMulTiledProgram'), 'the tiled program ran');
      const c = await compareWithCpu(f);
      assert.ok(c.relErr < TOL, `relative error ${c.relErr}`);
    });
  }

  test('the 128×128 tile (8×8 per thread) on a multi-tile problem', async () => {
    gemmTuning.largeTileMinWorkgroups = 1;
    const c = await compareWithCpu(() => tf.matMul(rand([260, 132], 1), rand([132, 136], 2)));
    gemmTuning.largeTileMinWorkgroups = 256;
    assert.ok(c.relErr < TOL, `relative error ${c.relErr}`);
  });

  test('shapes outside the vec4 constraints fall back to the stock kernel, still correct', async () => {
    const f = () => tf.matMul(rand([50, 37], 1), rand([37, 45], 2));
    assert.ok(!(await programsUsed(f)).has('MatMulTiledProgram'));
    assert.ok((await compareWithCpu(f)).relErr < TOL);
  });

  test('gradients of a matmul go through the tiled program too', async () => {
    const f = () => tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.matMul(a, b), rand([48, 40], 5))))([rand([48, 32], 3), rand([32, 40], 4)]);
    assert.ok((await programsUsed(f)).has('MatMulTiledProgram'));
    assert.ok((await compareWithCpu(f)).relErr < TOL);
  });

  test('switching the custom kernels off restores the stock programs', async () => {
    const f = () => tf.matMul(rand([100, 36], 1), rand([36, 44], 2));
    setCustomKernels(false);
    try {
      const used = await programsUsed(f);
      assert.ok(!used.has('MatMulTiledProgram') && used.size > 0, `stock programs: ${[...used]}`);
    } finally {
      setCustomKernels(true);
    }
    assert.ok((await programsUsed(f)).has('MatMulTiledProgram'));
  });
});
