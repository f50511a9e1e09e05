// Whole text-to-image runs through the public engine surface on the wasm backend, against diffusers'
// StableDiffusionPipeline on the same tiny model (test/fixtures/sd-tiny-a, reference.json): the latents
// after every step and the final image, for each scheduler; plus the contract's promises (seeds, PNG,
// no leaked tensors, aborts, errors that name the problem).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import { GenerateRequestError, loadPipeline, StableDiffusionPipeline, type ConceptConditioner } from '../../gpu/index.ts';
import { floatToBytes } from '../../gpu/png.ts';
import type { ConceptArtifact, SchedulerName } from '../../gpu/types.ts';
import { fixtureModelDir, reference, relativeError } from './sd-tiny-reference.ts';

let pipe: StableDiffusionPipeline;

before(async () => {
  pipe = await loadPipeline(fixtureModelDir, { backend: 'wasm' });
});

after(() => pipe?.dispose());

const runs: Array<{ prefix: string; scheduler: SchedulerName; steps: number; prompt: string; negativePrompt?: string; guidance: number; perStep: boolean }> = [
  { prefix: 'ddim', scheduler: 'ddim', steps: 10, prompt: 'a photo of a dog', guidance: 7.5, perStep: true },
  { prefix: 'pndm', scheduler: 'pndm', steps: 10, prompt: 'a photo of a dog', guidance: 7.5, perStep: true },
  { prefix: 'euler', scheduler: 'euler', steps: 10, prompt: 'a photo of a dog', guidance: 7.5, perStep: true },
  { prefix: 'dpmpp2m', scheduler: 'dpmpp-2m', steps: 12, prompt: 'a photo of a dog', negativePrompt: 'blurry', guidance: 7.5, perStep: true },
  { prefix: 'ddim_nocfg', scheduler: 'ddim', steps: 5, prompt: 'a painting of a cat', guidance: 1, perStep: false },
];

for (const run of runs) {
  test(`${run.prefix}: a whole run from the given latents matches diffusers (every step's latents and the image, 1e-3)`, async () => {
    const init = reference(`${run.prefix}.latents_init`);
    const perStep: Float32Array[] = [];
    const progress: Array<[number, number]> = [];
    const before = tf.memory().numTensors;
    const result = await pipe.generate({
      prompt: run.prompt, negativePrompt: run.negativePrompt, steps: run.steps, guidance: run.guidance,
      scheduler: run.scheduler, latents: init.data, onStep: (step, total) => progress.push([step, total]),
    }, { onLatents: (_step, latents) => perStep.push(latents) });
    assert.equal(tf.memory().numTensors, before, 'tensors leaked by generate');

    const image = reference(`${run.prefix}.image`);
    assert.deepEqual([result.height, result.width, 3], image.shape.slice(1));
    const imageError = relativeError(result.pixels, image.data);
    assert.ok(imageError < 1e-3, `image relative error ${imageError}`);

    if (run.perStep) {
      const ref = reference(`${run.prefix}.latents_per_step`);
      const stepSize = ref.data.length / ref.shape[0]!;
      assert.equal(perStep.length, ref.shape[0], 'one latents capture per scheduler step');
      perStep.forEach((latents, i) => {
        const err = relativeError(latents, ref.data.subarray(i * stepSize, (i + 1) * stepSize));
        assert.ok(err < 1e-3, `latents after step ${i + 1}: relative error ${err}`);
      });
      // onStep after each step, with the number of model evaluations (PNDM: steps + 1)
      assert.deepEqual(progress, perStep.map((_, i) => [i + 1, ref.shape[0]]));
    }
  });
}

test('the same seed gives identical pixels, another seed other pixels; the PNG decodes to the same pixels', async () => {
  const request = { prompt: 'a watercolor of a teddy bear', steps: 3, scheduler: 'euler' as const, seed: 424242 };
  const a = await pipe.generate(request);
  const b = await pipe.generate(request);
  const c = await pipe.generate({ ...request, seed: 424243 });
  assert.equal(a.seed, 424242);
  assert.deepEqual(a.pixels, b.pixels);
  assert.notDeepEqual(a.pixels, c.pixels);
  assert.equal(a.pixels.length, 128 * 128 * 3);
  assert.ok(a.pixels.every((v) => v >= 0 && v <= 1));

  const { data, info } = await sharp(a.png).raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([info.width, info.height, info.channels], [128, 128, 3]);
  assert.deepEqual(new Uint8Array(data), floatToBytes(a.pixels));
  const meta = await sharp(a.png).metadata();
  const parameters = meta.comments?.find((c) => c.keyword === 'parameters')?.text ?? '';
  assert.match(parameters, /^a watercolor of a teddy bear\nSteps: 3, Sampler: euler, CFG scale: 7.5, Seed: 424242, Size: 128x128$/);

  // without a seed, one is drawn and reported: it reproduces the image
  const drawn = await pipe.generate({ prompt: request.prompt, steps: 2 });
  const again = await pipe.generate({ prompt: request.prompt, steps: 2, seed: drawn.seed });
  assert.deepEqual(drawn.pixels, again.pixels);
});

test('defaults: the model\'s resolution and its scheduler (PNDM for SD 1.5\'s config); other sizes in multiples of 8', async () => {
  assert.equal(pipe.model.resolution, 128);
  assert.equal(pipe.model.defaultScheduler, 'pndm');
  assert.equal(pipe.model.isDemo, false);
  assert.equal(pipe.backend, 'wasm');
  const steps: number[] = [];
  const wide = await pipe.generate({ prompt: 'a boat', steps: 2, width: 192, height: 72, seed: 1, onStep: (s, total) => steps.push(total) });
  assert.deepEqual([wide.width, wide.height, wide.pixels.length], [192, 72, 192 * 72 * 3]);
  assert.deepEqual(steps, [3, 3, 3], 'PNDM evaluates 2 steps in 3 model calls');
});

test('a prompt longer than the text encoder reads is cut at 75 tokens and the result says what was left out', async () => {
  const vocabulary = ['a', 'red', 'cat', 'sits', 'on', 'the', 'big', 'green', 'mat', 'near'];
  const words = Array.from({ length: 80 }, (_, i) => vocabulary[i % 10]).join(' ') + ' at dawn';
  const limit = pipe.tokenizer.maxLength - 2;
  assert.equal(limit, 75);
  const total = pipe.tokenizer.countTokens(words);
  const long = await pipe.generate({ prompt: words, negativePrompt: 'blurry', steps: 2, seed: 5 });
  assert.equal(long.truncated.length, 1);
  const [t] = long.truncated;
  assert.equal(t!.field, 'prompt');
  assert.equal(t!.tokens, total);
  assert.equal(t!.limit, 75);
  assert.equal(t!.droppedText, pipe.tokenizer.decode(pipe.tokenizer.tokenize(words).slice(75)).trim());
  assert.ok(total > 75 && words.endsWith(t!.droppedText) && t!.droppedText.endsWith('at dawn'), `"${t!.droppedText}" is the end of the prompt`);
  // the image is the one of the prompt's first 75 tokens: what comes after changes nothing
  const longer = await pipe.generate({ prompt: `${words} under a blue sky`, negativePrompt: 'blurry', steps: 2, seed: 5 });
  assert.match(longer.truncated[0]!.droppedText, /at dawn under a blue sky$/);
  assert.deepEqual(longer.pixels, long.pixels);
  const short = await pipe.generate({ prompt: 'a red cat', negativePrompt: 'blurry', steps: 2, seed: 5 });
  assert.deepEqual(short.truncated, []);
  // a long negative prompt is reported too (it is encoded only with guidance)
  const negative = await pipe.generate({ prompt: 'a cat', negativePrompt: words, steps: 1, seed: 5 });
  assert.deepEqual(negative.truncated.map((x) => x.field), ['negativePrompt']);
  const unguided = await pipe.generate({ prompt: 'a cat', negativePrompt: words, steps: 1, seed: 5, guidance: 1 });
  assert.deepEqual(unguided.truncated, []);
});

test('an abort between steps rejects with an AbortError and leaves no tensors behind', async () => {
  const controller = new AbortController();
  const seen: number[] = [];
  const before = tf.memory().numTensors;
  await assert.rejects(
    pipe.generate({
      prompt: 'a dog', steps: 6, scheduler: 'dpmpp-2m', seed: 3, signal: controller.signal,
      onStep: (step) => { seen.push(step); if (step === 2) controller.abort(); },
    }),
    (err: Error) => err.name === 'AbortError',
  );
  assert.deepEqual(seen, [1, 2]);
  assert.equal(tf.memory().numTensors, before);
  // an already aborted signal stops before any work
  await assert.rejects(pipe.generate({ prompt: 'a dog', signal: AbortSignal.abort() }), { name: 'AbortError' });
  assert.equal(tf.memory().numTensors, before);
});

test('a bad request gets an error that names the problem', async () => {
  const bad = async (req: Parameters<typeof pipe.generate>[0], message: RegExp) =>
    assert.rejects(pipe.generate(req), (err: Error) => err instanceof GenerateRequestError && message.test(err.message));
  const before = tf.memory().numTensors;
  await bad({ prompt: 'x', width: 100 }, /width must be a multiple of 8 pixels; got 100/);
  await bad({ prompt: 'x', height: 56 }, /height must be from 64 to 2048 pixels; got 56/);
  await bad({ prompt: 'x', width: 4096 }, /width must be from 64 to 2048 pixels; got 4096/);
  await bad({ prompt: 'x', steps: 0 }, /steps must be a whole number from 1 to 500; got 0/);
  await bad({ prompt: 'x', steps: 2.5 }, /steps must be a whole number from 1 to 500; got 2.5/);
  await bad({ prompt: 'x', guidance: Number.NaN }, /guidance must be a number from 0 to 50/);
  await bad({ prompt: 'x', scheduler: 'lms' as SchedulerName }, /unknown scheduler "lms"; choose one of pndm, ddim, euler, dpmpp-2m/);
  await bad({ prompt: 'x', latents: new Float32Array(10) }, /latents must hold 1024 values \(NCHW \[1, 4, 16, 16\] for 128×128\); got 10/);
  await bad({ prompt: 'x', seed: -1 }, /seed must be a whole number from 0 to 4294967295; got -1/);
  const concept = { name: 'hugsy' } as unknown as NonNullable<Parameters<typeof pipe.generate>[0]['concepts']>[number];
  // loadPipeline plugs Perfusion in by default; a pipeline built without a conditioner refuses concepts
  const bare = await StableDiffusionPipeline.load(fixtureModelDir, { backend: 'wasm' });
  try {
    await assert.rejects(bare.generate({ prompt: 'a photo of <hugsy>', steps: 1, concepts: [concept] }),
      (err: Error) => err instanceof GenerateRequestError && /cannot use taught concepts yet/.test(err.message));
  } finally {
    bare.dispose();
  }
  assert.equal(tf.memory().numTensors, before);
});

test('the concept seam: a conditioner\'s ids, embedding overrides and K/V edit reach the text encoder and the UNet', async () => {
  // A stand-in conditioner (Perfusion's own is tested with Perfusion): it swaps in the ids of the ddim_nocfg
  // prompt, overrides the word embedding of "cat" with the model's own, and projects K/V with the unedited
  // weights, so the run must reproduce the diffusers reference exactly while every hook is exercised.
  const catId = pipe.tokenizer.tokenIdOf('cat')!;
  const projections = new Map<string, number>();
  let disposed = 0;
  let seen: unknown;
  let overrideWith: 'own' | 'zeros' = 'own';
  const conceptConditioner: ConceptConditioner = (input) => {
    seen = { prompt: input.prompt, concepts: input.concepts.length, guided: input.guided, globalKeyLock: input.globalKeyLock, editUnconditional: input.editUnconditional };
    const overrides = new Map([[catId, overrideWith === 'own' ? pipe.textEncoder.wordEmbedding(catId) : tf.zeros([pipe.model.hiddenSize]) as tf.Tensor1D]]);
    return {
      ids: pipe.tokenize('a painting of a cat'),
      embeddingOverrides: overrides,
      edit: {
        project(layer, which, context) {
          projections.set(`${layer.name}.${which}`, (projections.get(`${layer.name}.${which}`) ?? 0) + 1);
          const w = which === 'k' ? layer.toK : layer.toV;
          const [b, l, d] = context.shape;
          return tf.reshape(tf.matMul(tf.reshape(context, [b * l, d]), w, false, true), [b, l, w.shape[0]]) as tf.Tensor3D;
        },
      },
      dispose() { disposed++; tf.dispose([...overrides.values()]); },
    };
  };
  // the same parts (not disposed here: `pipe` owns them) with a conditioner
  const withConcepts = new StableDiffusionPipeline(
    { tokenizer: pipe.tokenizer, textEncoder: pipe.textEncoder, unet: pipe.unet, vae: pipe.vae, schedulerConfig: pipe.schedulerConfig, model: pipe.model },
    { backend: pipe.backend, conceptConditioner },
  );
  const concept = { name: 'kitty' } as ConceptArtifact;
  const before = tf.memory().numTensors;
  const conditioned = await withConcepts.generate({
    prompt: 'a painting of <kitty>', steps: 5, guidance: 1, scheduler: 'ddim', latents: reference('ddim_nocfg.latents_init').data, concepts: [concept],
  });
  assert.equal(tf.memory().numTensors, before);
  assert.deepEqual(seen, { prompt: 'a painting of <kitty>', concepts: 1, guided: false, globalKeyLock: false, editUnconditional: true });
  assert.equal(disposed, 1);
  assert.equal(projections.size, 2 * pipe.unet.crossAttentionLayers().length);
  assert.ok([...projections.values()].every((n) => n === 5), 'each K and V projection is edited once per step');
  assert.ok(relativeError(conditioned.pixels, reference('ddim_nocfg.image').data) < 1e-3);

  // a different embedding for "cat" changes the image: the overrides reach the text encoder
  overrideWith = 'zeros';
  const changed = await withConcepts.generate({
    prompt: 'a painting of <kitty>', steps: 5, guidance: 1, scheduler: 'ddim', latents: reference('ddim_nocfg.latents_init').data, concepts: [concept],
  });
  assert.ok(relativeError(changed.pixels, conditioned.pixels) > 1e-3);
  assert.equal(disposed, 2);
});
