// Taught concepts through the public generate path (sd-tiny-a, wasm, the Perfusion conditioner): save → load →
// generate reproduces the pixels, two and three concepts share a prompt, and concepts that cannot be used —
// made for another model or another C, not mentioned correctly, damaged — are refused with clear errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { StableDiffusionPipeline } from '../../../gpu/pipeline.ts';
import { loadPipeline } from '../../../gpu/index.ts';
import {
  ConceptCompatibilityError, ConceptFormatError, createPerfusionConditioner, modelCovariance, parseConcept, teachConcept,
  UnknownConceptError, type TeachResult,
} from '../../../gpu/perfusion/index.ts';
import type { GenerateRequest } from '../../../gpu/types.ts';
import { discOnStripes, fixturePath, relativeError } from './helpers.ts';

const tmp = mkdtempSync(join(tmpdir(), 'perfusion-generate-'));
const cacheDir = join(tmp, 'cache');
let pipe: StableDiffusionPipeline;
const taught = new Map<string, TeachResult>();

before(async () => {
  // the public loadPipeline plugs Perfusion in by default; C is estimated first from a small corpus (fast) and
  // cached where the default conditioner finds it
  pipe = await loadPipeline(fixturePath('sd-tiny-a/model'), { backend: 'wasm', cacheDir });
  await modelCovariance(pipe, { cacheDir, corpusPrompts: 48 });
  const concepts: [string, string, number][] = [['hugsy', 'teddy', 0], ['rex', 'dog', 9], ['tom', 'cat', -9]];
  for (const [name, category, shift] of concepts) {
    taught.set(name, await teachConcept(pipe, {
      name, category, images: [discOnStripes(shift, 0), discOnStripes(0, shift)], steps: 2, batchSize: 1, gradientAccumulation: 2, seed: 1, cacheDir,
    }));
  }
});
after(() => {
  pipe?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

const request: GenerateRequest = { prompt: 'a photo of <hugsy> on the beach', steps: 2, guidance: 7.5, seed: 42, width: 64, height: 64 };
const concept = (name: string) => taught.get(name)!.artifact;
const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

test('save → load → generate gives the pixels of the concept that was taught, for the same seed and backend', async () => {
  const file = join(tmp, 'hugsy.concept');
  writeFileSync(file, taught.get('hugsy')!.bytes);
  const loaded = parseConcept(new Uint8Array(readFileSync(file)));
  const before = tf.memory().numTensors;
  const fromFile = await pipe.generate({ ...request, concepts: [loaded] });
  const inMemory = await pipe.generate({ ...request, concepts: [concept('hugsy')] });
  assert.ok(same(fromFile.pixels, inMemory.pixels), 'the loaded concept draws exactly what the taught one draws');
  assert.ok(same((await pipe.generate({ ...request, concepts: [loaded] })).pixels, fromFile.pixels), 'and again');
  assert.ok(Buffer.from(fromFile.png).equals(Buffer.from(inMemory.png)));
  const plain = await pipe.generate({ ...request, prompt: 'a photo of teddy on the beach' });
  assert.ok(relativeError(fromFile.pixels, plain.pixels) > 1e-4, 'the concept changes the picture');
  assert.equal(tf.memory().numTensors, before);
});

test('two and three taught concepts in one prompt', async () => {
  const all = ['hugsy', 'rex', 'tom'].map(concept);
  const one = await pipe.generate({ ...request, prompt: 'a <hugsy> next to a dog', concepts: all });
  const two = await pipe.generate({ ...request, prompt: 'a <hugsy> next to a <rex>', concepts: all });
  const three = await pipe.generate({ ...request, prompt: 'a <hugsy> next to a <rex> and a <tom>', concepts: all });
  for (const image of [one, two, three]) assert.ok(image.pixels.every(Number.isFinite) && image.pixels.length === 64 * 64 * 3);
  assert.ok(relativeError(two.pixels, one.pixels) > 1e-4, 'the second concept changes the picture');
  assert.ok(relativeError(three.pixels, two.pixels) > 1e-4, 'the third concept changes the picture');
  // the order the concepts are given in does not matter
  const reordered = await pipe.generate({ ...request, prompt: 'a <hugsy> next to a <rex> and a <tom>', concepts: [...all].reverse() });
  assert.ok(relativeError(reordered.pixels, three.pixels) < 1e-4);
});

test('a concept for another model or another C, an unknown mention and a damaged concept are refused clearly', async () => {
  const hugsy = concept('hugsy');
  const before = tf.memory().numTensors;
  const refuse = (req: Partial<GenerateRequest>, check: (e: unknown) => boolean) => assert.rejects(pipe.generate({ ...request, concepts: [hugsy], ...req }), check);

  await refuse({ concepts: [{ ...hugsy, modelHash: 'f00d'.repeat(16) }] }, (e) =>
    e instanceof ConceptCompatibilityError && e.reason === 'model' && /was taught on a different model \(f00df00df00d\)/.test(e.message));
  await refuse({ prompt: 'a photo of <hugsie>' }, (e) => e instanceof UnknownConceptError && /<hugsie> \(did you mean <hugsy>\?\)/.test(e.message));
  await refuse({ prompt: 'a photo of <hugsy> and <bob>' }, (e) => e instanceof UnknownConceptError && /<bob>/.test(e.message));
  const oV = [...hugsy.oV];
  oV[3] = oV[3]!.subarray(1);
  await refuse({ concepts: [{ ...hugsy, oV }] }, (e) => e instanceof ConceptFormatError && /The concept <hugsy> is damaged \(the targets of .* are not \d+ wide\)/.test(e.message));
  const embedding = hugsy.embedding.slice();
  embedding[0] = Number.NaN;
  await refuse({ concepts: [{ ...hugsy, embedding }] }, (e) => e instanceof ConceptFormatError && /not numbers/.test(e.message));
  assert.equal(tf.memory().numTensors, before);

  // damaged bytes never become a concept
  const bytes = taught.get('hugsy')!.bytes.slice();
  bytes[bytes.length - 10]! ^= 0x40;
  assert.throws(() => parseConcept(bytes), (e: unknown) => e instanceof ConceptFormatError && /does not match its checksum/.test(e.message));
  assert.throws(() => parseConcept(bytes.subarray(0, 100)), ConceptFormatError);

  // the same model with a C estimated from other prompts: the concept would not blend correctly
  const otherCache = join(tmp, 'other-cache');
  const other = await StableDiffusionPipeline.load(fixturePath('sd-tiny-a/model'), {
    backend: 'wasm', conceptConditioner: createPerfusionConditioner({ cacheDir: otherCache, corpusPrompts: 40 }),
  });
  try {
    await assert.rejects(other.generate({ ...request, concepts: [hugsy] }), (e: unknown) =>
      e instanceof ConceptCompatibilityError && e.reason === 'covariance' && /different text covariance/.test(e.message));
  } finally {
    other.dispose();
  }
});
