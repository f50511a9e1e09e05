// Perfusion in the real pipeline (sd-tiny-a on wasm): C estimated with the model's own text encoder and
// cached, `<name>` prompts, the edit in the UNet, key-locking and the unconditional-branch switch.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { StableDiffusionPipeline, type ConceptConditioner } from '../../../gpu/pipeline.ts';
import {
  buildPromptCorpus, ConceptCompatibilityError, corpusSizeFor, ConceptPromptError, createPerfusionConditioner, modelCovariance,
  UnknownConceptError, type Covariance,
} from '../../../gpu/perfusion/index.ts';
import type { ConceptArtifact, GenerateRequest } from '../../../gpu/types.ts';
import { fixturePath, readFixture, referenceEdit, relativeError } from './helpers.ts';

const CORPUS = 48;
const tmp = mkdtempSync(join(tmpdir(), 'perfusion-conditioner-'));
const grad = readFixture('perfusion-grad-a.safetensors');
const gradLayers = (JSON.parse(grad.metadata.perfusion_grad!) as { layers: string[] }).layers;
const value = (key: string) => grad.tensors.get(key)!.data;

let pipe: StableDiffusionPipeline;
let conditioner: ConceptConditioner;
let covariance: Covariance;
let rex: ConceptArtifact;

before(async () => {
  conditioner = createPerfusionConditioner({ cacheDir: tmp, corpusPrompts: CORPUS });
  pipe = await StableDiffusionPipeline.load(fixturePath('sd-tiny-a/model'), { backend: 'wasm', conceptConditioner: conditioner });
  covariance = await modelCovariance(pipe, { cacheDir: tmp, corpusPrompts: CORPUS });
  const layers = pipe.unet.crossAttentionLayers();
  rex = {
    name: 'rex', category: 'dog', categoryTokenId: pipe.tokenizer.categoryTokenId('dog'),
    modelHash: pipe.model.hash, covarianceHash: covariance.hash, beta: 0.7, tau: 0.15,
    layers: layers.map((l) => ({ name: l.name, outDim: l.outDim })),
    embedding: value('v'), iStar: value('istar'),
    oK: layers.map((l) => value(`oK.${gradLayers.indexOf(l.name)}`)),
    oV: layers.map((l) => value(`oV.${gradLayers.indexOf(l.name)}`)),
  };
});
after(() => {
  pipe?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

test('corpus size for C: 10,000 prompts for a full-size text encoder (SD 1.5: 768 wide), 1,000 for tiny ones', () => {
  assert.equal(corpusSizeFor(768), 10_000);
  assert.equal(corpusSizeFor(1024), 10_000);
  assert.equal(corpusSizeFor(32), 1_000);
});

test('the model covariance is the BOS..first-EOS second moment of the corpus through the real text encoder, cached', async () => {
  const prompts = buildPromptCorpus(CORPUS);
  const h = pipe.model.hiddenSize;
  const direct = new Float64Array(h * h);
  for (const prompt of prompts) {
    const ids = pipe.tokenizer.encode(prompt);
    const encoded = pipe.encodePrompt([ids]);
    const e = await encoded.data();
    encoded.dispose();
    for (let t = 0; t <= ids.indexOf(pipe.tokenizer.eosId); t++) {
      for (let i = 0; i < h; i++) for (let j = 0; j < h; j++) direct[i * h + j]! += (e[t * h + i]! * e[t * h + j]!) / prompts.length;
    }
  }
  const scale = Math.max(...direct.map(Math.abs));
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < h; j++) {
      const c = covariance.matrix[i * h + j]! - (i === j ? covariance.ridge : 0);
      assert.ok(Math.abs(c - direct[i * h + j]!) < 1e-5 * scale, `C[${i},${j}] ${c} vs ${direct[i * h + j]}`);
    }
  }
  assert.deepEqual(readdirSync(tmp), [`covariance-${pipe.model.hash}.bin`]);
  const again = await modelCovariance(pipe, { cacheDir: tmp, corpusPrompts: 1 });
  assert.equal(again.hash, covariance.hash, 'the second call reads the cache');
  assert.equal(again.promptCount, CORPUS);
});

test('the conditioning: placeholder ids and embedding, uncond bypass and the global key-lock on the K path', async () => {
  const prompt = 'a photo of <rex> on the beach';
  const c = await conditioner({ pipeline: pipe, prompt, concepts: [rex], globalKeyLock: true, editUnconditional: false, guided: true });
  const layer = pipe.unet.crossAttentionLayers()[3]!;
  const tensors: tf.Tensor[] = [];
  try {
    const placeholder = pipe.tokenizer.vocabSize;
    assert.equal(c.ids.filter((id) => id === placeholder).length, 1);
    assert.deepEqual(Array.from(await c.embeddingOverrides.get(placeholder)!.data()), Array.from(rex.embedding));
    const uncond = pipe.encodePrompt([pipe.tokenize('')]);
    const cond = pipe.encodePrompt([c.ids], c.embeddingOverrides);
    const superIds = pipe.tokenize('a photo of dog on the beach');
    const superEncoding = pipe.encodePrompt([superIds]);
    const context = tf.concat([uncond, cond], 0) as tf.Tensor3D;
    tensors.push(uncond, cond, superEncoding, context);
    const k = tf.tidy(() => c.edit.project(layer, 'k', context));
    const v = tf.tidy(() => c.edit.project(layer, 'v', context));
    tensors.push(k, v);
    const [kData, vData, condData, uncondData, superData, toK, toV] = await Promise.all(
      [k, v, cond, uncond, superEncoding, layer.toK, layer.toV].map((t) => t.data() as Promise<Float32Array>));
    const l = pipe.unet.crossAttentionLayers().indexOf(layer);
    const h = pipe.model.hiddenSize;
    const out = layer.outDim;
    const gate = { iStar: rex.iStar, beta: 0.7, tau: 0.15 };
    for (let t = 0; t < 77; t++) {
      const row = (data: Float32Array, item: number) => data.subarray((item * 77 + t) * out, (item * 77 + t + 1) * out);
      const token = (data: Float32Array) => data.subarray(t * h, (t + 1) * h);
      const plain = (w: Float32Array, e: Float32Array) => Float64Array.from({ length: out }, (_, o) => e.reduce((s, x, i) => s + w[o * h + i]! * x, 0));
      // the unconditional item is not edited
      assert.ok(relativeError(row(kData, 0), plain(toK, token(uncondData))) < 1e-5);
      assert.ok(relativeError(row(vData, 0), plain(toV, token(uncondData))) < 1e-5);
      // the conditional item: K from the super prompt, V from the concept prompt
      const expectK = referenceEdit(token(superData), toK, out, covariance.inverse, [{ ...gate, oStar: rex.oK[l]! }], 'exact').h;
      const expectV = referenceEdit(token(condData), toV, out, covariance.inverse, [{ ...gate, oStar: rex.oV[l]! }], 'exact').h;
      assert.ok(relativeError(row(kData, 1), expectK) < 1e-4, `K token ${t}`);
      assert.ok(relativeError(row(vData, 1), expectV) < 1e-4, `V token ${t}`);
    }
  } finally {
    tf.dispose(tensors);
    c.dispose();
  }
});

test('generate with a concept: deterministic, changes the image, and key-lock / uncond switches take effect; no leaks', async () => {
  const base: GenerateRequest = { prompt: 'a photo of <rex> on the beach', steps: 2, guidance: 7.5, seed: 42, width: 64, height: 64 };
  const before = tf.memory().numTensors;
  const image = async (req: Partial<GenerateRequest>) => (await pipe.generate({ ...base, concepts: [rex], ...req })).pixels;
  const withConcept = await image({});
  assert.equal(tf.memory().numTensors, before);
  assert.ok(Buffer.from((await image({})).buffer).equals(Buffer.from(withConcept.buffer)), 'same seed, same image');
  const plain = (await pipe.generate({ ...base, prompt: 'a photo of dog on the beach' })).pixels;
  assert.ok(relativeError(withConcept, plain) > 1e-3, 'the concept changes the image');
  assert.ok(relativeError(await image({ globalKeyLock: true }), withConcept) > 1e-4, 'global key-locking changes the image');
  assert.ok(relativeError(await image({ editUnconditional: false }), withConcept) > 1e-4, 'bypassing the uncond branch changes the image');
  assert.equal(tf.memory().numTensors, before);
});

test('generate refuses unknown mentions, unmentioned concepts and concepts of another model, with typed errors', async () => {
  const base: GenerateRequest = { prompt: 'a photo of <rexx>', steps: 1, seed: 1, width: 64, height: 64, concepts: [rex] };
  await assert.rejects(pipe.generate(base), (err: unknown) => err instanceof UnknownConceptError && /did you mean <rex>/.test(err.message));
  await assert.rejects(pipe.generate({ ...base, prompt: 'a photo of a dog' }), ConceptPromptError);
  await assert.rejects(pipe.generate({ ...base, prompt: '<rex>', concepts: [{ ...rex, modelHash: 'another-model' }] }),
    (err: unknown) => err instanceof ConceptCompatibilityError && err.reason === 'model');
});
