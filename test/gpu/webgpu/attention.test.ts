// The fused (flash) attention program against the plain TensorFlow.js attention (nn.attention's primitive path
// on cpu), forward and gradient, on the software WebGPU adapter. Sizes are toy ones, but the head dims are SD
// 1.5's (40/80; 160 takes the 80 code path with a larger d), the cross-attention keys are CLIP's 77, and the
// key counts are not multiples of the kernel's blocks or chunks.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { compareWithCpu, programsUsed, rand, startCompatGl } from './harness.ts';
import { attention } from '../../../gpu/sd/nn.ts';

const unavailable = await startCompatGl();
const TOL = 2e-5;

/** nn.attention on [B, L, heads·d] inputs made from seeds (fused on webgpu, primitives on cpu). */
function attn(b: number, lq: number, lk: number, heads: number, d: number) {
  return () => attention(rand([b, lq, heads * d], 1, 2) as tf.Tensor3D, rand([b, lk, heads * d], 2, 2) as tf.Tensor3D, rand([b, lk, heads * d], 3) as tf.Tensor3D, heads);
}

describe('fused attention on WebGPU (GL compat adapter)', { skip: unavailable ?? false }, () => {
  const cases: Array<[string, () => tf.Tensor]> = [
    ['self-attention, head dim 40 (64×64 latents in SD 1.5)', attn(2, 70, 70, 2, 40)],
    ['cross-attention over 77 text tokens, head dim 40', attn(2, 70, 77, 2, 40)],
    ['head dim 80, one query row per thread', attn(1, 40, 77, 2, 80)],
    ['several key blocks and a ragged last chunk (150 keys), head dim 8', attn(1, 150, 150, 3, 8)],
  ];
  for (const [name, f] of cases) {
    test(name, async () => {
      const used = await programsUsed(f);
      assert.ok(used.has('FlashAttentionProgram') && !used.has('SoftmaxProgram'), `programs: ${[...used]}`);
      const c = await compareWithCpu(f);
      assert.ok(c.relErr < TOL, `relative error ${c.relErr}`);
    });
  }

  test('large logits (sharp softmax) stay finite and exact', async () => {
    const f = () => attention(rand([1, 33, 16], 1, 30) as tf.Tensor3D, rand([1, 20, 16], 2, 30) as tf.Tensor3D, rand([1, 20, 16], 3) as tf.Tensor3D, 2);
    const c = await compareWithCpu(f);
    assert.ok(c.relErr < TOL, `relative error ${c.relErr}`);
  });

  const gradCase = (lq: number, lk: number, heads: number, d: number, batch = 2) => () => {
    const w = rand([batch, lq, heads * d], 4);
    const loss = (q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) => tf.sum(tf.mul(attention(q as tf.Tensor3D, k as tf.Tensor3D, v as tf.Tensor3D, heads), w));
    return tf.grads(loss)([rand([batch, lq, heads * d], 1, 2), rand([batch, lk, heads * d], 2, 2), rand([batch, lk, heads * d], 3)]);
  };

  test('gradients (fused backward, head dim 40, 77 keys) match autodiff through the primitives', async () => {
    const f = gradCase(37, 77, 2, 40);
    const used = await programsUsed(f);
    assert.ok(['FlashAttentionProgram', 'AttentionRowStatsProgram', 'AttentionGradQProgram', 'AttentionGradKVProgram'].every((p) => used.has(p)), `programs: ${[...used]}`);
    assert.ok(!used.has('SoftmaxProgram'), 'no score matrix is recomputed with primitives');
    const c = await compareWithCpu(f);
    assert.deepEqual(c.shapes, [[2, 37, 80], [2, 77, 80], [2, 77, 80]]);
    assert.ok(c.relErr < TOL, `relative error ${c.relErr}`);
  });

  test('gradients, several query and key blocks (130 × 150, head dim 8)', async () => {
    const c = await compareWithCpu(gradCase(130, 150, 3, 8));
    assert.ok(c.relErr < TOL, `relative error ${c.relErr}`);
  });

  test('gradients stay exact when the batch size changes within one process (compiled programs keyed by batch)', async () => {
    // the 130 × 150 case above compiled head dim 8 at batch 2; teaching changes micro-batch sizes mid-run
    for (const batch of [1, 3]) {
      const c = await compareWithCpu(gradCase(40, 50, 3, 8, batch));
      assert.ok(c.relErr < TOL, `batch ${batch}: relative error ${c.relErr}`);
    }
  });

  test('gradients for head dim 80 (no fused backward) recompute with primitives, still exact', async () => {
    const f = gradCase(20, 77, 2, 80);
    const used = await programsUsed(f);
    assert.ok(used.has('FlashAttentionProgram') && used.has('SoftmaxProgram') && !used.has('AttentionGradKVProgram'), `programs: ${[...used]}`);
    const c = await compareWithCpu(f);
    assert.ok(c.relErr < TOL, `relative error ${c.relErr}`);
  });

  test('a mask (CLIP causal attention) or an unsupported head dim uses the primitive path', async () => {
    const causal = () => attention(rand([1, 7, 16], 1) as tf.Tensor3D, rand([1, 7, 16], 2) as tf.Tensor3D, rand([1, 7, 16], 3) as tf.Tensor3D, 2,
      tf.mul(tf.sub(tf.linalg.bandPart(tf.ones([7, 7]), -1, 0), 1), 1e9));
    assert.ok(!(await programsUsed(causal)).has('FlashAttentionProgram'));
    assert.ok((await compareWithCpu(causal)).relErr < TOL);
    assert.ok(!(await programsUsed(attn(1, 9, 9, 1, 6))).has('FlashAttentionProgram'));
  });
});
