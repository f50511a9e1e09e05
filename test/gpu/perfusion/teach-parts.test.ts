// The parts of teaching that need no model: image preparation, AdamW against torch's algorithm in float64,
// the checkpoint format, the out-of-memory classifier.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import {
  AdamW, centreSquare, CheckpointFormatError, isOutOfMemoryError, latentMask, parseCheckpoint, serializeCheckpoint,
  squareResize, vaeInput, type TrainingCheckpoint,
} from '../../../gpu/perfusion/index.ts';
import { randomNormal, randomVector, relativeError, useWasm } from './helpers.ts';

before(useWasm);

test('images: the centred square, resized with a widening triangle filter, mirrored on request', () => {
  assert.deepEqual(centreSquare(300, 200), [50, 0, 200]);
  assert.deepEqual(centreSquare(120, 161), [0, 20, 120]);
  // 300×200, left 50 columns red, right 50 blue, middle green: the crop keeps only green
  const width = 300;
  const height = 200;
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) data.set(x < 50 ? [255, 0, 0] : x >= 250 ? [0, 0, 255] : [0, 255, 0], (y * width + x) * 3);
  }
  const green = squareResize({ width, height, channels: 3, data }, 64);
  for (let i = 0; i < green.length; i += 3) assert.deepEqual([green[i], green[i + 1], green[i + 2]], [0, 1, 0]);

  // a one-pixel checkerboard halved: every output is the triangle-weighted average, exactly grey
  const side = 32;
  const board = new Uint8Array(side * side).map((_, i) => ((i % side) + Math.floor(i / side)) % 2 ? 255 : 0);
  const grey = squareResize({ width: side, height: side, channels: 1, data: board }, 16);
  // the border outputs see a truncated filter; inside, the average is exactly ½
  for (let y = 1; y < 15; y++) for (let x = 1; x < 15; x++) assert.ok(Math.abs(grey[y * 16 + x]! - 0.5) < 1e-9, `(${x}, ${y}) = ${grey[y * 16 + x]}`);

  // a left-to-right ramp, mirrored, and as VAE input in [-1, 1]
  const ramp = new Uint8Array(64 * 64).map((_, i) => (i % 64) * 4);
  const plain = squareResize({ width: 64, height: 64, channels: 1, data: ramp }, 64);
  const mirrored = squareResize({ width: 64, height: 64, channels: 1, data: ramp }, 64, true);
  for (let y = 0; y < 64; y++) for (let x = 0; x < 64; x++) assert.equal(mirrored[y * 64 + x], plain[y * 64 + 63 - x]);
  const input = vaeInput({ width: 64, height: 64, channels: 1, data: ramp }, 64, false);
  assert.equal(input[0], -1);
  assert.ok(Math.abs(input[63]! - (2 * 252) / 255 + 1) < 1e-6);

  // a mask on the latent grid is divided by its maximum; an empty one is null
  const mask = new Uint8Array(64 * 64).map((_, i) => (i % 64 < 32 ? 100 : 0));
  const m = latentMask({ width: 64, height: 64, channels: 1, data: mask }, 8, false)!;
  assert.equal(Math.max(...m), 1);
  assert.equal(m[0], 1);
  assert.equal(m[7], 0);
  assert.equal(latentMask({ width: 64, height: 64, channels: 1, data: new Uint8Array(64 * 64) }, 8, false), null);
});

/** torch.optim.AdamW's single-tensor update, written out in float64 (torch/optim/adamw.py, non-capturable path). */
function torchAdamW(params: Float64Array[], grads: Float64Array[][], lrs: number[], wd = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8): Float64Array[] {
  const p = params.map((x) => Float64Array.from(x));
  const m = params.map((x) => new Float64Array(x.length));
  const v = params.map((x) => new Float64Array(x.length));
  grads.forEach((stepGrads, s) => {
    const step = s + 1;
    p.forEach((param, i) => {
      const g = stepGrads[i]!;
      for (let j = 0; j < param.length; j++) {
        param[j]! *= 1 - lrs[i]! * wd;
        m[i]![j] = m[i]![j]! + (g[j]! - m[i]![j]!) * (1 - b1);
        v[i]![j] = v[i]![j]! * b2 + (1 - b2) * g[j]! * g[j]!;
        const denom = Math.sqrt(v[i]![j]!) / Math.sqrt(1 - b2 ** step) + eps;
        param[j]! -= (lrs[i]! / (1 - b1 ** step)) * (m[i]![j]! / denom);
      }
    });
  });
  return p;
}

test('AdamW matches torch.optim.AdamW (two groups, decoupled weight decay, bias correction), saves and restores its state', async () => {
  const next = randomNormal(11);
  const initial = [randomVector(32, next), randomVector(48, next, 3)];
  const grads = Array.from({ length: 6 }, () => [randomVector(32, next, 0.1), randomVector(48, next, 10)]);
  const expected = torchAdamW(initial.map((x) => Float64Array.from(x)), grads.map((g) => g.map((x) => Float64Array.from(x))), [0.006, 0.03]);

  const variables = initial.map((x) => tf.variable(tf.tensor1d(x)));
  const optimizer = new AdamW([{ learningRate: 0.006, params: [variables[0]!] }, { learningRate: 0.03, params: [variables[1]!] }]);
  const before = tf.memory().numTensors;
  for (const g of grads.slice(0, 3)) {
    const tensors = g.map((x) => tf.tensor1d(x));
    optimizer.apply(tensors);
    tf.dispose(tensors);
  }
  assert.equal(tf.memory().numTensors, before, 'a step keeps no tensors');
  // the second half in a new optimiser restored from the first one's state
  const saved = await optimizer.state();
  assert.equal(saved.step, 3);
  optimizer.dispose();
  const resumed = new AdamW([{ learningRate: 0.006, params: [variables[0]!] }, { learningRate: 0.03, params: [variables[1]!] }]);
  resumed.restore(saved);
  for (const g of grads.slice(3)) {
    const tensors = g.map((x) => tf.tensor1d(x));
    resumed.apply(tensors);
    tf.dispose(tensors);
  }
  for (const [i, variable] of variables.entries()) {
    const got = await variable.data();
    assert.ok(relativeError(got, expected[i]!) < 1e-6, `param ${i}: ${relativeError(got, expected[i]!)}`);
  }
  resumed.dispose();
  tf.dispose(variables);
});

test('checkpoints round-trip exactly (float64 i*) and refuse damaged bytes', () => {
  const next = randomNormal(5);
  const layers = [{ name: 'a.attn2', outDim: 6 }, { name: 'b.attn2', outDim: 4 }];
  const c: TrainingCheckpoint = {
    name: 'hugsy', category: 'teddy', modelHash: 'm', covarianceHash: 'c', imagesHash: 'i', seed: 9, flip: true, effectiveBatch: 16,
    step: 50, batchSize: 2, gradientAccumulation: 8, losses: [1.25, 0.1 + 0.2, 1 / 3], hidden: 5, layers,
    iStar: Float64Array.from({ length: 5 }, () => next() / 3), embedding: randomVector(5, next),
    oK: layers.map((l) => randomVector(l.outDim, next)), oV: layers.map((l) => randomVector(l.outDim, next)),
    optimizerStep: 50, firstMoments: [5, 6, 4].map((n) => randomVector(n, next)), secondMoments: [5, 6, 4].map((n) => randomVector(n, next)),
  };
  const bytes = serializeCheckpoint(c);
  assert.deepEqual(parseCheckpoint(bytes), c);
  // a copy at an odd offset reads the same
  const shifted = new Uint8Array(bytes.length + 3);
  shifted.set(bytes, 3);
  assert.deepEqual(parseCheckpoint(shifted.subarray(3)), c);
  const damaged = bytes.slice();
  damaged[damaged.length - 2]! ^= 1;
  assert.throws(() => parseCheckpoint(damaged), (e: unknown) => e instanceof CheckpointFormatError && /checksum/.test(e.message));
  assert.throws(() => parseCheckpoint(bytes.subarray(0, bytes.length - 4)), CheckpointFormatError);
  assert.throws(() => parseCheckpoint(new TextEncoder().encode('PRFSNCPT and more')), CheckpointFormatError);
});

test('out-of-memory failures are told apart from other errors', () => {
  for (const e of [
    new RangeError('Array buffer allocation failed'),
    new Error('OOM when allocating tensor with shape[4,320,64,64]'),
    Object.assign(new Error('Out of memory'), { name: 'GPUOutOfMemoryError' }),
    new Error('Aborted(OOM). Build with -sASSERTIONS for more info.'),
    new Error('WebAssembly.Memory.grow(): Maximum memory size exceeded'),
  ]) assert.ok(isOutOfMemoryError(e), e.message);
  for (const e of [new Error('shapes do not match'), new DOMException('This operation was aborted', 'AbortError'), 'OOM']) {
    assert.ok(!isOutOfMemoryError(e), String(e));
  }
});
