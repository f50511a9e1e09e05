// GPU memory on the software WebGPU adapter: tfjs pools the buffers of freed tensors; releaseFreeGpuMemory gives
// them back (allocated memory falls to what live tensors use) without touching a live tensor, and the model
// loader does it after building the weights.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { startCompatGl } from './harness.ts';
import { gpuMemory, releaseFreeGpuMemory } from '../../../gpu/backend.ts';
import { StableDiffusionPipeline } from '../../../gpu/pipeline.ts';
import { takeDeviceErrors } from '../../../gpu/webgpu/device.ts';

const unavailable = await startCompatGl();

describe('releasing tfjs\'s pool of freed GPU buffers (GL compat adapter)', { skip: unavailable ?? false }, () => {
  test('allocated memory falls to the live tensors; live tensors keep their values and new work runs', async () => {
    await tf.setBackend('webgpu');
    await releaseFreeGpuMemory();
    const keep = tf.tidy(() => tf.add(tf.range(0, 4096, 1, 'float32'), 1));
    // temporaries of many sizes, all freed: their buffers stay in the pool
    for (let n = 1; n <= 8; n++) {
      const t = tf.tidy(() => tf.mul(tf.ones([n * 65536]), n));
      await t.data();
      t.dispose();
    }
    const before = gpuMemory()!;
    assert.ok(before.allocatedBytes - before.inUseBytes >= 36 * 65536 * 4, `pool ${before.allocatedBytes - before.inUseBytes} bytes`);
    const released = await releaseFreeGpuMemory();
    const after = gpuMemory()!;
    assert.equal(after.allocatedBytes, after.inUseBytes);
    assert.equal(released, before.allocatedBytes - after.allocatedBytes);
    assert.deepEqual(Array.from((await keep.data()).slice(0, 3)), [1, 2, 3]);
    const next = tf.tidy(() => tf.sum(tf.mul(keep, 2)));
    assert.equal((await next.data())[0], 4096 * 4097);
    tf.dispose([keep, next]);
    // buffers freed after a release go back to the pool as before
    const again = tf.ones([65536]);
    await again.data();
    again.dispose();
    assert.ok(gpuMemory()!.allocatedBytes > gpuMemory()!.inUseBytes);
    assert.deepEqual(takeDeviceErrors(), []);
  });

  test('loading a model gives the temporaries of its weights back', async () => {
    const modelDir = new URL('../../fixtures/sd-tiny-a/model/', import.meta.url).pathname;
    const pipeline = await StableDiffusionPipeline.load(modelDir, { backend: 'webgpu' });
    try {
      const m = gpuMemory()!;
      assert.equal(m.allocatedBytes, m.inUseBytes);
      const image = await pipeline.generate({ prompt: 'a red disc', steps: 2, width: 64, height: 64, seed: 3 });
      assert.ok(image.png.length > 0);
      assert.deepEqual(takeDeviceErrors(), []);
    } finally {
      pipeline.dispose();
    }
  });
});
