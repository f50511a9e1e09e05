// Learning on the tiny random model (sd-tiny-a, wasm), as the fixture README calibrates it: four pictures of one
// pattern (a red disc on blue/white stripes, shifted a little), batch 2, 60 steps, C from 160 corpus prompts.
//
// Random weights make every text encoding alike, so the gates open for any prompt and the effects are small
// (README: the concept-versus-category gap is ≈0 after 200 PyTorch steps, 2.5% after 600). Measured here with
// seeds 7, 1, 2, 3 (mean loss first 20 → last 20 steps; ε-MSE on 16 fresh draws with the concept prompt,
// the category prompt through the same edit, the category prompt without it; the unrelated prompt's output
// moved, relative L2):
//   loss 1.143 → 1.104, 1.123 → 0.998, 1.142 → 1.010, 1.162 → 1.076
//   ε-MSE 1.040 / 1.081 / 1.145, 0.986 / 0.996 / 1.145, 0.989 / 1.068 / 1.145, 1.006 / 1.058 / 1.145
//   moved 0.68, 0.67, 0.12, 0.47
// The assertions below hold for all four; the test runs seed 2. About 1.3 s per step on a loaded 2-core machine.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { StableDiffusionPipeline } from '../../../gpu/pipeline.ts';
import { modelCovariance, PerfusionEdit, teachConcept, vaeInput, type Covariance } from '../../../gpu/perfusion/index.ts';
import { SeededRandom } from '../../../gpu/random.ts';
import { addNoiseVariancePreserving, alphasCumprod } from '../../../gpu/schedulers/common.ts';
import { discOnStripes, fixturePath } from './helpers.ts';

const cacheDir = mkdtempSync(join(tmpdir(), 'perfusion-learning-'));
const images = [discOnStripes(0, 0), discOnStripes(6, -4), discOnStripes(-5, 5), discOnStripes(3, 7)];
let pipe: StableDiffusionPipeline;
let covariance: Covariance;

before(async () => {
  pipe = await StableDiffusionPipeline.load(fixturePath('sd-tiny-a/model'), { backend: 'wasm' });
  covariance = await modelCovariance(pipe, { cacheDir, corpusPrompts: 160 });
});
after(() => {
  pipe?.dispose();
  rmSync(cacheDir, { recursive: true, force: true });
});

const mean = (values: readonly number[]) => values.reduce((a, b) => a + b, 0) / values.length;

test('a concept taught from four pictures of one pattern: the loss falls, the concept prompt predicts their noise best, other prompts move boundedly', async (t) => {
  const started = performance.now();
  const losses: number[] = [];
  const { artifact } = await teachConcept(pipe, {
    name: 'hugsy', category: 'teddy', images, steps: 60, batchSize: 2, gradientAccumulation: 1, seed: 2, cacheDir,
    onProgress: (p) => losses.push(p.loss),
  });
  const trainedMs = performance.now() - started;
  const [first, last] = [mean(losses.slice(0, 20)), mean(losses.slice(-20))];
  t.diagnostic(`60 steps × batch 2 in ${(trainedMs / 1000).toFixed(1)} s; loss first 20 ${first.toFixed(4)} → last 20 ${last.toFixed(4)}`);
  assert.ok(last < 0.97 * first, `the mean loss of the last 20 steps (${last}) is clearly below the first 20 (${first})`);

  // 16 fresh (image, t, ε) draws, not the training ones
  const n = 16;
  const rng = new SeededRandom(99);
  const timesteps = Array.from({ length: n }, () => rng.nextUint32() % 1000);
  const noise = tf.tensor4d(rng.normals(n * 16 * 16 * 4), [n, 16, 16, 4]);
  const x0 = tf.tidy(() => tf.concat(Array.from({ length: n }, (_, i) => {
    const image = images[i % images.length]!;
    const pixels = vaeInput({ width: image.width, height: image.height, channels: 3, data: image.rgb }, 128, false);
    return tf.mul(pipe.vae.encode(tf.tensor4d(pixels, [1, 128, 128, 3])).mean, pipe.vae.scalingFactor);
  })));
  const noisy = addNoiseVariancePreserving(alphasCumprod(pipe.schedulerConfig), x0, noise, timesteps) as tf.Tensor4D;
  const t1d = tf.tensor1d(timesteps);
  const placeholder = pipe.tokenizer.vocabSize;
  const embedding = new Map([[placeholder, tf.tensor1d(artifact.embedding)]]);
  const edit = new PerfusionEdit([artifact], { modelHash: pipe.model.hash, covariance, layers: pipe.unet.crossAttentionLayers() });
  const predict = (prompt: string, withEdit: boolean) => tf.tidy(() => {
    const ids = pipe.tokenizer.encode(prompt, { extraTokens: new Map([['<hugsy>', placeholder]]) });
    const context = tf.tile(pipe.encodePrompt([ids], embedding), [n, 1, 1]) as tf.Tensor3D;
    return pipe.unet.forward(noisy, t1d, context, withEdit ? { edit } : {});
  });
  const scalar = async (x: tf.Tensor) => {
    const value = (await x.data())[0]!;
    x.dispose();
    return value;
  };
  const epsMse = async (prompt: string, withEdit: boolean) => scalar(tf.tidy(() => tf.mean(tf.squaredDifference(predict(prompt, withEdit), noise))));
  try {
    const concept = await epsMse('a photo of a <hugsy>', true);
    const categoryEdited = await epsMse('a photo of a teddy', true);
    const category = await epsMse('a photo of a teddy', false);
    const moved = await scalar(tf.tidy(() => {
      const edited = predict('a city street at night', true);
      const plain = predict('a city street at night', false);
      return tf.div(tf.norm(tf.sub(edited, plain)), tf.norm(plain));
    }));
    t.diagnostic(`ε-MSE concept ${concept.toFixed(4)}, category through the edit ${categoryEdited.toFixed(4)}, category without it ${category.toFixed(4)}; unrelated prompt moved ${moved.toFixed(3)}`);
    assert.ok(concept < categoryEdited, `concept prompt ${concept} vs the category prompt through the same edit ${categoryEdited}`);
    assert.ok(concept < 0.95 * category, `concept prompt ${concept} vs the category prompt on the untaught model ${category}`);
    // README: about 0.7 with random weights (the gates open broadly); measured 0.12–0.68 over four seeds
    assert.ok(moved < 0.85, `an unrelated prompt's UNet output moved by ${moved} (relative L2)`);
  } finally {
    edit.dispose();
    tf.dispose([noise, x0, noisy, t1d, ...embedding.values()]);
  }
  t.diagnostic(`whole test ${((performance.now() - started) / 1000).toFixed(1)} s`);
});
