// Backend choice (gpu/backend.ts): explicit names, `auto`'s order and fall-through with reasons, the errors a
// person sees, and the webgpu report (adapter, limits, custom kernels) on the software GL adapter.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { BackendUnavailableError, backendInfo, initBackend } from '../../../gpu/backend.ts';

describe('initBackend', () => {
  test('cpu and wasm by name', async () => {
    assert.equal(await initBackend('cpu'), 'cpu');
    assert.deepEqual(backendInfo(), { name: 'cpu' });
    assert.equal(await initBackend('wasm'), 'wasm');
    assert.equal(tf.getBackend(), 'wasm');
  });

  test('tensorflow, when tfjs-node(-gpu) is not installed, is refused with what to install', async () => {
    await assert.rejects(initBackend('tensorflow'), (err: unknown) => {
      assert.ok(err instanceof BackendUnavailableError);
      assert.equal(err.backend, 'tensorflow');
      assert.match(err.message, /@tensorflow\/tfjs-node-gpu is not installed/);
      assert.match(err.message, /Install @tensorflow\/tfjs-node-gpu/);
      return true;
    });
  });

  test('an unknown backend name is refused with the valid names', async () => {
    await assert.rejects(initBackend('metal' as never), /unknown backend "metal": use auto, tensorflow, webgpu, wasm or cpu/);
  });

  test('auto skips tensorflow and an unusable webgpu, says why, and lands on wasm', async () => {
    const saved = process.env.PERFUSION_WEBGPU_ADAPTER;
    process.env.PERFUSION_WEBGPU_ADAPTER = 'no-such-adapter';
    const log: string[] = [];
    try {
      assert.equal(await initBackend('auto', { log: (m) => log.push(m) }), 'wasm');
      await assert.rejects(initBackend('webgpu'), /WebGPU was requested but PERFUSION_WEBGPU_ADAPTER=no-such-adapter is not known: use "compat-gl"/);
    } finally {
      if (saved === undefined) delete process.env.PERFUSION_WEBGPU_ADAPTER; else process.env.PERFUSION_WEBGPU_ADAPTER = saved;
    }
    assert.match(log[0]!, /^backend tensorflow skipped: .*not installed/);
    assert.match(log[1]!, /^backend webgpu skipped: WebGPU was requested/);
    assert.equal(log[2], 'TensorFlow.js backend (auto): wasm');
  });

  test('auto prefers webgpu (here the software GL adapter) and reports it', async (t) => {
    process.env.PERFUSION_WEBGPU_ADAPTER = 'compat-gl';
    let name: string;
    try {
      name = await initBackend('auto');
    } catch (err) {
      if (process.env.CI === 'true') throw err;
      t.skip(`no GL adapter here: ${(err as Error).message}`);
      return;
    }
    if (name !== 'webgpu') {
      assert.notEqual(process.env.CI, 'true', 'CI installs the GL packages, so webgpu must start there');
      t.skip('the software GL adapter is not available here');
      return;
    }
    const info = backendInfo();
    assert.equal(info.name, 'webgpu');
    assert.match(info.adapter!, /\[compat-gl\]$/);
    assert.equal(info.compatibilityMode, true);
    assert.equal(info.customKernels, true);
    assert.ok(info.limits!.maxStorageBufferBindingSize! >= 128 * 2 ** 20, 'the device got the adapter limit, not the 128 MiB default or less');
    assert.ok(info.limits!.maxComputeWorkgroupStorageSize! >= 16384);
    const y = tf.matMul(tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[5], [6]]));
    assert.deepEqual(Array.from(await y.data()), [17, 39]);
    y.dispose();
  });
});
