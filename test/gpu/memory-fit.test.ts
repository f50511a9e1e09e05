// A model too large for the chosen backend is refused before any weight is read, with the way out named:
// SD 1.5 on wasm (4 GiB of linear memory at most) is the case people meet.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../gpu/backend.ts';
import { ModelTooLargeError, StableDiffusionPipeline } from '../../gpu/index.ts';
import { parseClipTextConfig, parseUNetConfig, parseVaeConfig } from '../../gpu/model/configs.ts';
import { checkModelFitsBackend, WASM_MEMORY_LIMIT_BYTES, WORKING_MEMORY_BYTES } from '../../gpu/model/memory-fit.ts';
import { SD15_CONFIGS } from '../../gpu/model/sd15-configs.ts';
import { textEncoderParameterShapes } from '../../gpu/sd/text-encoder.ts';
import { unetParameterShapes } from '../../gpu/sd/unet.ts';
import { vaeParameterShapes } from '../../gpu/sd/vae.ts';
import { fixtureModelDir } from './sd-tiny-reference.ts';

const count = (shapes: Map<string, number[]>) => [...shapes.values()].reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);

test('SD 1.5 (1,066,235,307 parameters, 3.97 GiB as float32) is refused on wasm, naming the GPU backends; it is allowed elsewhere', () => {
  const parameters = count(textEncoderParameterShapes(parseClipTextConfig(SD15_CONFIGS.textEncoder)))
    + count(unetParameterShapes(parseUNetConfig(SD15_CONFIGS.unet))) + count(vaeParameterShapes(parseVaeConfig(SD15_CONFIGS.vae)));
  assert.equal(parameters, 1_066_235_307);
  const weightBytes = parameters * 4;
  assert.equal(WASM_MEMORY_LIMIT_BYTES, 65536 * 65536, '65,536 wasm pages of 64 KiB');
  assert.ok(weightBytes < WASM_MEMORY_LIMIT_BYTES && weightBytes + WORKING_MEMORY_BYTES > WASM_MEMORY_LIMIT_BYTES,
    'the weights alone would squeeze in; drawing would not');

  for (const chosenByAuto of [false, true]) {
    assert.throws(() => checkModelFitsBackend({ modelName: 'The model sd15', weightBytes, backend: 'wasm', chosenByAuto }), (err: Error) => {
      assert.ok(err instanceof ModelTooLargeError);
      assert.match(err.message, /^The model sd15 is too large for the wasm backend: its weights take 3\.97 GiB as float32 and drawing needs about 1\.75 GiB more, but wasm holds at most 4\.00 GiB/);
      assert.match(err.message, /GPU_BACKEND=webgpu for the bot, --backend webgpu for npm run imagine/);
      assert.match(err.message, /@tensorflow\/tfjs-node-gpu/);
      assert.equal(/no GPU backend could be started, so auto chose wasm/.test(err.message), chosenByAuto);
      return true;
    });
  }
  for (const backend of ['webgpu', 'tensorflow', 'cpu']) {
    assert.doesNotThrow(() => checkModelFitsBackend({ modelName: 'sd15', weightBytes, backend, chosenByAuto: false }));
  }
});

test('loading refuses a model over the backend\'s limit before reading a weight; under it the model loads', async () => {
  // the tiny fixture model on wasm, as if wasm held only its working memory plus 1 KiB
  await initBackend('wasm');
  const before = tf.memory().numTensors;
  await assert.rejects(
    StableDiffusionPipeline.load(fixtureModelDir, { backend: 'wasm', memoryLimitBytes: WORKING_MEMORY_BYTES + 1024 }),
    (err: Error) => err instanceof ModelTooLargeError && /^The model model is too large for the wasm backend: its weights take \d+\.\d MiB as float32/.test(err.message),
  );
  assert.equal(tf.memory().numTensors, before, 'no weight was uploaded');
  const pipe = await StableDiffusionPipeline.load(fixtureModelDir, { backend: 'wasm' });
  assert.equal(pipe.backend, 'wasm');
  pipe.dispose();
});
