// The implicit-GEMM convolution program (Conv2D / FusedConv2D / stride-1 Conv2DBackpropInput replacement)
// against tfjs's conv2d and its gradient on cpu, on the software WebGPU adapter. The geometries are the
// UNet/VAE ones at toy sizes: 3×3 with PyTorch's symmetric pad, stride 2 downsampling, 1×1 shortcuts.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { compareWithCpu, programsUsed, rand, startCompatGl } from './harness.ts';

const unavailable = await startCompatGl();
const TOL = 1e-5;
const pad1: tf.backend_util.ExplicitPadding = [[0, 0], [1, 1], [1, 1], [0, 0]];
const x4 = (shape: number[], seed: number) => rand(shape, seed) as tf.Tensor4D;

describe('tiled conv2d on WebGPU (GL compat adapter)', { skip: unavailable ?? false }, () => {
  const forward: Array<[string, () => tf.Tensor]> = [
    ['3×3, symmetric pad 1', () => tf.conv2d(x4([2, 9, 7, 8], 1), x4([3, 3, 8, 12], 2), 1, pad1)],
    ['3×3 stride 2, symmetric pad 1 (UNet Downsample2D)', () => tf.conv2d(x4([1, 10, 9, 8], 1), x4([3, 3, 8, 12], 2), 2, pad1)],
    ["3×3 stride 2, 'same' (VAE encoder downsample)", () => tf.conv2d(x4([1, 10, 9, 8], 1), x4([3, 3, 8, 12], 2), 2, 'same')],
    ['1×1 (shortcut)', () => tf.conv2d(x4([2, 8, 8, 12], 1), x4([1, 1, 12, 16], 2), 1, 'valid')],
    ['3×3 dilated', () => tf.conv2d(x4([1, 12, 12, 4], 1), x4([3, 3, 4, 8], 2), 1, 'same', 'NHWC', 2)],
    ['fused bias', () => tf.fused.conv2d({ x: x4([2, 9, 7, 8], 1), filter: x4([3, 3, 8, 12], 2), strides: 1, pad: pad1, bias: rand([12], 3) })],
  ];
  for (const [name, f] of forward) {
    test(name, async () => {
      assert.ok((await programsUsed(f)).has('Conv2dTiledProgram'), 'the tiled program ran');
      const c = await compareWithCpu(f);
      assert.ok(c.relErr < TOL, `relative error ${c.relErr}`);
    });
  }

  for (const [name, pad, outHW] of [['pad 1', pad1, [9, 7]], ['valid', 'valid', [7, 5]]] as const) {
    test(`input gradient of a stride-1 3×3 conv (${name}) runs as a conv of the flipped filter`, async () => {
      const f = () => {
        const w = rand([2, ...outHW, 12], 4);
        return tf.grad((x: tf.Tensor) => tf.sum(tf.mul(tf.conv2d(x as tf.Tensor4D, x4([3, 3, 8, 12], 2), 1, pad as never), w)))(x4([2, 9, 7, 8], 1));
      };
      const used = await programsUsed(f);
      assert.ok(!used.has('Conv2DDerInputProgram') && used.has('Conv2dTiledProgram'), `programs: ${[...used]}`);
      const c = await compareWithCpu(f);
      assert.ok(c.relErr < TOL, `relative error ${c.relErr}`);
    });
  }

  test('channels that are not multiples of 4 (the VAE input, 3 channels) use the stock kernel, still correct', async () => {
    const f = () => tf.conv2d(x4([1, 8, 8, 3], 1), x4([3, 3, 3, 8], 2), 1, pad1);
    assert.ok(!(await programsUsed(f)).has('Conv2dTiledProgram'));
    assert.ok((await compareWithCpu(f)).relErr < TOL);
  });
});
