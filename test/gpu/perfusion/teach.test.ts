// Teaching on the real sd-tiny-a model (wasm): the request checks, determinism, the key-lock and EMA oracles
// under real training (spec §12 items 9 and 10), checkpoint → resume, abort, and the automatic batch lowering
// when memory runs short (injected through the test seam). Runs are a few steps long: what they check is the
// mechanics, not learning (teach-learning.test.ts).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { StableDiffusionPipeline } from '../../../gpu/pipeline.ts';
import {
  ConceptError, drawStep, ISTAR_DECAY, modelCovariance, parseCheckpoint, parseConcept, teachConcept, TRAINING_TEMPLATES,
  type Covariance, type TeachProgress, type TeachRequest, type TeachResult, type TrainingCheckpoint,
} from '../../../gpu/perfusion/index.ts';
import { discOnStripes, fixturePath, relativeError } from './helpers.ts';

const cacheDir = mkdtempSync(join(tmpdir(), 'perfusion-teach-'));
const images = [discOnStripes(0, 0), discOnStripes(6, -4), discOnStripes(-5, 5)];
let pipe: StableDiffusionPipeline;
let covariance: Covariance;

before(async () => {
  pipe = await StableDiffusionPipeline.load(fixturePath('sd-tiny-a/model'), { backend: 'wasm' });
  covariance = await modelCovariance(pipe, { cacheDir, corpusPrompts: 48 });
});
after(() => {
  pipe?.dispose();
  rmSync(cacheDir, { recursive: true, force: true });
});

const base: TeachRequest = { name: 'hugsy', category: 'teddy', images, steps: 4, batchSize: 1, gradientAccumulation: 2, seed: 5, cacheDir };

/** A run, with every progress report and checkpoint it made. */
async function run(req: Partial<TeachRequest> = {}, hooks = {}) {
  const progress: TeachProgress[] = [];
  const checkpoints = new Map<number, Uint8Array>();
  const result = await teachConcept(pipe, {
    ...base, ...req,
    onProgress: (p) => progress.push(p),
    onCheckpoint: (state, step) => { checkpoints.set(step, state); },
  }, hooks);
  return { result, progress, checkpoints };
}

let reference: Promise<Awaited<ReturnType<typeof run>>> | undefined;
/** base, checkpointing every 2 steps: shared by the determinism and resume tests */
const referenceRun = () => (reference ??= run({ checkpointEvery: 2 }));

test('requests a person must change are ConceptErrors, before any training; the category must be one CLIP token', async () => {
  await assert.rejects(teachConcept(pipe, { ...base, category: 'teddy bear' }), (err: unknown) => {
    assert.ok(err instanceof ConceptError);
    assert.match(err.message, /The category "teddy bear" is 2 CLIP tokens, but it must be a single token/);
    assert.deepEqual(err.suggestions.slice(0, 2), ['bear', 'teddy']);
    return true;
  });
  const cases: [Partial<TeachRequest>, RegExp][] = [
    [{ name: 'hug sy' }, /cannot be a concept name/],
    [{ images: [] }, /at least one picture/],
    [{ images: [{ width: 40, height: 200, rgb: new Uint8Array(40 * 200 * 3) }] }, /only 40×200 pixels/],
    [{ images: [{ width: 64, height: 64, rgb: new Uint8Array(10) }] }, /Picture 1 is damaged/],
    [{ images: [images[0]!, { ...images[1]!, mask: new Uint8Array(5) }] }, /mask of picture 2 must be one 8-bit value per pixel/],
    [{ images: [{ ...images[0]!, mask: new Uint8Array(128 * 128) }] }, /mask of picture 1 is empty/],
    [{ steps: 0 }, /steps must be a whole number/],
    [{ batchSize: 2.5 }, /batchSize must be a whole number/],
    [{ seed: -1 }, /seed must be a whole number/],
  ];
  for (const [req, message] of cases) await assert.rejects(teachConcept(pipe, { ...base, ...req }), (err: unknown) => err instanceof ConceptError && message.test(err.message));
});

test('the artifact: placeholder embedding and targets for every layer, training facts; same seed ⇒ same bytes', async () => {
  const { result, progress } = await referenceRun();
  const { artifact } = result;
  const layers = pipe.unet.crossAttentionLayers();
  assert.equal(artifact.name, 'hugsy');
  assert.equal(artifact.categoryTokenId, pipe.tokenizer.categoryTokenId('teddy'));
  assert.equal(artifact.modelHash, pipe.model.hash);
  assert.equal(artifact.covarianceHash, covariance.hash);
  assert.deepEqual([artifact.beta, artifact.tau], [0.7, 0.15]);
  assert.deepEqual(artifact.layers, layers.map((l) => ({ name: l.name, outDim: l.outDim })));
  assert.deepEqual(parseConcept(result.bytes), artifact);
  assert.equal(result.steps, 4);
  const losses = progress.map((p) => p.loss);
  assert.deepEqual(progress.map((p) => p.step), [1, 2, 3, 4]);
  assert.ok(losses.every((l) => Number.isFinite(l) && l > 0));
  assert.ok(progress.every((p) => p.total === 4 && p.etaMs >= 0 && p.batchSize === 1 && p.gradientAccumulation === 2));
  assert.equal(progress.at(-1)!.etaMs, 0);
  assert.ok(Math.abs(result.finalLoss - losses.reduce((a, b) => a + b, 0) / 4) < 1e-12, 'final loss: the mean of the last (up to 20) steps');
  assert.deepEqual(artifact.training, {
    steps: 4, images: 3, masks: 0, batchSize: 1, gradientAccumulation: 2, effectiveBatch: 2, finalLoss: result.finalLoss,
    beta: 0.75, tau: 0.1, seed: 5, flip: true, learningRates: { embedding: 0.006, values: 0.03 }, iStarDecay: 0.99,
  });
  // the embedding started at the category word's and moved
  const category = pipe.textEncoder.wordEmbedding(artifact.categoryTokenId);
  const start = await category.data();
  category.dispose();
  const moved = Math.max(...artifact.embedding.map((x, i) => Math.abs(x - start[i]!)));
  // an Adam step moves an element by at most about lr·(1 − β₁)/√(1 − β₂) ≈ 3.2·lr
  assert.ok(moved > 1e-4 && moved < 4 * 0.006 * 3.2, `the embedding moved by up to ${moved}`);

  const again = await teachConcept(pipe, { ...base });
  assert.ok(Buffer.from(again.bytes).equals(Buffer.from(result.bytes)), 'same seed and backend: identical bytes');
  const other = await teachConcept(pipe, { ...base, seed: 6 });
  assert.ok(!Buffer.from(other.bytes).equals(Buffer.from(result.bytes)), 'another seed, another concept');
});

test('key-locking and the i* EMA under real training (spec §12, 9 and 10)', async () => {
  const { result, checkpoints } = await run({ steps: 3, batchSize: 2, gradientAccumulation: 1, seed: 11, checkpointEvery: 1 });
  const [first, second] = [1, 2].map((s) => parseCheckpoint(checkpoints.get(s)!));
  const layers = pipe.unet.crossAttentionLayers();
  const hidden = pipe.model.hiddenSize;
  const { artifact } = result;

  // the mean placeholder (or category) encoding of a step's samples, in float64 from the real text encoder
  const shape = { seed: 11, effectiveBatch: 2, images: 3, variants: 2, timesteps: 1000, latentShape: [16, 16, 4] as const };
  const placeholder = pipe.tokenizer.vocabSize;
  const meanEncoding = async (step: number, embedding?: Float32Array) => {
    const x = new Float64Array(hidden);
    const { samples } = drawStep(shape, step);
    for (const s of samples) {
      const template = TRAINING_TEMPLATES[s.template]!;
      const ids = embedding
        ? pipe.tokenizer.encode(template.replace('{}', '<hugsy>'), { extraTokens: new Map([['<hugsy>', placeholder]]) })
        : pipe.tokenizer.encode(template.replace('{}', 'teddy'));
      const position = ids.indexOf(embedding ? placeholder : artifact.categoryTokenId);
      const override = embedding && tf.tensor1d(embedding);
      const e = pipe.encodePrompt([ids], override ? new Map([[placeholder, override]]) : undefined);
      const values = await e.data();
      tf.dispose([e, ...(override ? [override] : [])]);
      for (let i = 0; i < hidden; i++) x[i]! += values[position * hidden + i]! / samples.length;
    }
    return x;
  };
  const project = async (w: tf.Tensor2D, x: ArrayLike<number>) => {
    const values = await w.data();
    const out = w.shape[0];
    return Float64Array.from({ length: out }, (_, o) => {
      let s = 0;
      for (let i = 0; i < hidden; i++) s += values[o * hidden + i]! * x[i]!;
      return s;
    });
  };

  // 9: o*_K = W_K ī_super (first batch's super-prompt encodings), bit-identical at every step, no optimiser state
  const superMean = await meanEncoding(0);
  for (const [l, layer] of layers.entries()) {
    const expected = await project(layer.toK, superMean);
    assert.ok(relativeError(artifact.oK[l]!, expected) < 1e-5, `o*_K ${layer.name}: ${relativeError(artifact.oK[l]!, expected)}`);
    for (const c of [first, second]) assert.deepEqual(Array.from(c.oK[l]!), Array.from(artifact.oK[l]!), 'o*_K never changes');
    const initialV = await project(layer.toV, superMean);
    assert.ok(relativeError(artifact.oV[l]!, initialV) > 1e-3, `o*_V of ${layer.name} was trained`);
  }
  const sizes = (c: TrainingCheckpoint) => c.firstMoments.map((m) => m.length);
  assert.deepEqual(sizes(first), [hidden, ...layers.map((l) => l.outDim)], 'AdamW state: the embedding and each o*_V, nothing for o*_K');
  assert.deepEqual(second.secondMoments.map((m) => m.length), sizes(first));

  // 10: at step 0 the placeholder encodes like the category word, so i* stays ī_super; then
  //     i*_k = 0.99·i*_{k−1} + 0.01·x_k with x_k the step's mean placeholder encoding under the current v
  assert.ok(relativeError(first.iStar, superMean) < 1e-6, `i* after step 0: ${relativeError(first.iStar, superMean)}`);
  const x1 = await meanEncoding(1, first.embedding);
  const expected = first.iStar.map((v, i) => ISTAR_DECAY * v + (1 - ISTAR_DECAY) * x1[i]!);
  assert.ok(relativeError(second.iStar, expected) < 1e-7, `i* after step 1: ${relativeError(second.iStar, expected)}`);
  assert.ok(relativeError(second.iStar, first.iStar) > 1e-6, 'the EMA moved i*');
  const x2 = await meanEncoding(2, second.embedding);
  const final = second.iStar.map((v, i) => ISTAR_DECAY * v + (1 - ISTAR_DECAY) * x2[i]!);
  assert.ok(relativeError(artifact.iStar, final) < 1e-6, 'the artifact keeps the last i*');
});

test('checkpoint → resume gives the uninterrupted run\'s bytes; checkpoints of another job or damaged ones are refused', async () => {
  const { result, checkpoints } = await referenceRun();
  assert.deepEqual([...checkpoints.keys()], [2], 'every 2 steps, not after the last');
  const saved = parseCheckpoint(checkpoints.get(2)!);
  assert.equal(saved.step, 2);
  assert.equal(saved.losses.length, 2);
  const progress: number[] = [];
  const resumed = await teachConcept(pipe, { ...base, resumeFrom: checkpoints.get(2)!, onProgress: (p) => progress.push(p.step) });
  assert.deepEqual(progress, [3, 4], 'only the remaining steps run');
  assert.ok(Buffer.from(resumed.bytes).equals(Buffer.from(result.bytes)), 'identical to the run that was not interrupted');

  const refused = async (req: Partial<TeachRequest>, message: RegExp) =>
    assert.rejects(teachConcept(pipe, { ...base, resumeFrom: checkpoints.get(2)!, ...req }), (e: unknown) => e instanceof ConceptError && message.test(e.message));
  await refused({ name: 'other' }, /does not belong to this teaching job \(it belongs to the concept <hugsy>/);
  await refused({ images: images.slice(0, 2) }, /made from other pictures/);
  const damaged = checkpoints.get(2)!.slice();
  damaged[damaged.length - 1]! ^= 0xff;
  await refused({ resumeFrom: damaged }, /cannot be used \(the saved teaching progress is damaged/);
});

test('abort mid-training: the signal\'s AbortError, nothing left on the device', async () => {
  await referenceRun();
  const before = tf.memory().numTensors;
  const controller = new AbortController();
  await assert.rejects(
    teachConcept(pipe, { ...base, steps: 10, signal: controller.signal, onProgress: (p) => { if (p.step === 2) controller.abort(); } }),
    (err: unknown) => (err as Error).name === 'AbortError',
  );
  assert.equal(tf.memory().numTensors, before);
  await assert.rejects(teachConcept(pipe, { ...base, signal: AbortSignal.abort() }), (err: unknown) => (err as Error).name === 'AbortError');
  assert.equal(tf.memory().numTensors, before);
});

test('a stop leaves a checkpoint of the finished steps (between steps or inside one) that resumes to the uninterrupted run\'s bytes', async () => {
  const { result } = await referenceRun();
  // between steps: stopped as step 3 is reported, no periodic checkpoint due (every 25 by default)
  const between = new AbortController();
  const left = new Map<number, Uint8Array>();
  await assert.rejects(teachConcept(pipe, {
    ...base, signal: between.signal, onProgress: (p) => { if (p.step === 3) between.abort(); }, onCheckpoint: (state, step) => { left.set(step, state); },
  }), (err: unknown) => (err as Error).name === 'AbortError');
  assert.deepEqual([...left.keys()], [3]);
  // inside a step: stopped while the first micro-batch of step 2 runs (steps 0 and 1 are done), seen before the second
  const inside = new AbortController();
  await assert.rejects(teachConcept(pipe, { ...base, signal: inside.signal, onCheckpoint: (state, step) => { left.set(step, state); } }, {
    beforeMicroBatch: ({ step, microBatch }) => { if (step === 2 && microBatch === 0) inside.abort(); },
  }), (err: unknown) => (err as Error).name === 'AbortError');
  assert.deepEqual([...left.keys()].sort(), [2, 3]);
  for (const [step, state] of left) {
    assert.equal(parseCheckpoint(state).step, step);
    const progress: number[] = [];
    const resumed = await teachConcept(pipe, { ...base, resumeFrom: state, onProgress: (p) => progress.push(p.step) });
    assert.deepEqual(progress, Array.from({ length: 4 - step }, (_, i) => step + 1 + i), 'only the unfinished steps run');
    assert.ok(Buffer.from(resumed.bytes).equals(Buffer.from(result.bytes)), `resumed from step ${step}: identical to the run that was not interrupted`);
  }
});

test('out of memory: the step is retried with half the batch and twice the accumulation, said in progress', async () => {
  const req: Partial<TeachRequest> = { steps: 3, batchSize: 2, gradientAccumulation: 1, seed: 21 };
  const plain = await run(req);
  let injected = 0;
  const lowered = await run(req, {
    beforeMicroBatch: ({ step, batchSize }: { step: number; batchSize: number }) => {
      if (step === 1 && batchSize > 1) {
        injected++;
        throw new RangeError('Array buffer allocation failed');
      }
    },
  });
  assert.equal(injected, 1);
  assert.deepEqual(lowered.progress.map((p) => [p.batchSize, p.gradientAccumulation]), [[2, 1], [1, 2], [1, 2]]);
  assert.match(lowered.progress[1]!.notice!, /memory ran short at batch 2 × 1: continuing with batch 1 × 2 gradient accumulation \(same effective batch 2/);
  assert.equal(lowered.progress.filter((p) => p.notice).length, 1);
  assert.deepEqual([lowered.result.artifact.training!.batchSize, lowered.result.artifact.training!.gradientAccumulation], [1, 2]);
  // the same samples split differently: the same concept up to float rounding
  const a = plain.result.artifact;
  const b = lowered.result.artifact;
  assert.ok(relativeError(b.embedding, a.embedding) < 1e-5, `embedding ${relativeError(b.embedding, a.embedding)}`);
  a.oV.forEach((o, l) => assert.ok(relativeError(b.oV[l]!, o) < 1e-4, `o*_V ${l}: ${relativeError(b.oV[l]!, o)}`));

  const before = tf.memory().numTensors;
  await assert.rejects(run({ ...req, batchSize: 1 }, { beforeMicroBatch: () => { throw new RangeError('Array buffer allocation failed'); } }),
    (e: unknown) => e instanceof ConceptError && /not enough memory to teach a concept on this model, even one picture at a time/.test(e.message));
  await assert.rejects(run(req, { beforeMicroBatch: () => { throw new TypeError('a bug'); } }), (e: unknown) => e instanceof TypeError);
  assert.equal(tf.memory().numTensors, before);
});

test('a soft mask weights the loss: a full mask changes nothing, a partial one changes the concept', async () => {
  const req: Partial<TeachRequest> = { steps: 2, batchSize: 2, gradientAccumulation: 1, seed: 3 };
  const payload = (r: TeachResult) => [r.artifact.embedding, ...r.artifact.oV].map((a) => Array.from(a));
  const plain = await run(req);
  const full = await run({ ...req, images: images.map((i) => ({ ...i, mask: new Uint8Array(128 * 128).fill(255) })) });
  assert.deepEqual(payload(full.result), payload(plain.result));
  assert.equal(full.result.artifact.training!.masks, 3);
  // the disc only
  const disc = new Uint8Array(128 * 128).map((_, i) => ((i % 128) - 64) ** 2 + (Math.floor(i / 128) - 64) ** 2 < 30 ** 2 ? 255 : 0);
  const partial = await run({ ...req, images: images.map((i) => ({ ...i, mask: disc })) });
  assert.ok(relativeError(partial.result.artifact.embedding, plain.result.artifact.embedding) > 1e-6);
  assert.ok(partial.progress[0]!.loss < plain.progress[0]!.loss, 'zero weights outside the disc lower the mean');
});
