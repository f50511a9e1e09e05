import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { ClipTextEncoder, TextEncoderError, textEncoderParameterShapes } from '../../gpu/sd/text-encoder.ts';
import { parseClipTextConfig } from '../../gpu/model/configs.ts';
import { ComponentWeights, WeightError } from '../../gpu/weights/component-weights.ts';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../gpu/weights/safetensors.ts';
import { ClipTokenizer } from '../../gpu/text/tokenizer.ts';

await tf.setBackend('wasm');
await registerGradients();

/**
 * `import '@tensorflow/tfjs-core/dist/register_all_gradients'` fails under tsx: it reaches dist/base.js, whose
 * `from './gradients'` names both a file and a folder (ERR_UNSUPPORTED_DIR_IMPORT). Register the gradient
 * configs file by file instead; Prod_grad.js is the one that imports base.js (no Prod op is used here).
 */
async function registerGradients(): Promise<void> {
  const dir = join(dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-core/package.json')), 'dist/gradients');
  for (const file of readdirSync(dir).filter((f) => f.endsWith('_grad.js') && f !== 'Prod_grad.js')) {
    const configs = Object.values(await import(pathToFileURL(join(dir, file)).href) as Record<string, unknown>);
    for (const c of configs) if (typeof c === 'object' && c !== null && 'gradFunc' in c) tf.registerGradient(c as tf.GradConfig);
  }
}

const fixture = new URL('../fixtures/sd-tiny-a/', import.meta.url).pathname;
const config = parseClipTextConfig(JSON.parse(readFileSync(`${fixture}model/text_encoder/config.json`, 'utf8')));
const weights = ComponentWeights.open('text_encoder', `${fixture}model/text_encoder/model.safetensors`);
const encoder = new ClipTextEncoder(config, weights);
const reference = SafetensorsFile.open(`${fixture}reference.safetensors`);
const tokenizer = ClipTokenizer.fromFolder(`${fixture}model/tokenizer`);

after(() => {
  encoder.dispose();
  weights.close();
  reference.close();
});

/** text.input_ids is stored as float [3,77]; back to rows of integer ids */
function referenceIds(): number[][] {
  const flat = reference.readFloat32('text.input_ids');
  const [batch, length] = reference.info('text.input_ids').shape as [number, number];
  return Array.from({ length: batch }, (_, b) => Array.from(flat.subarray(b * length, (b + 1) * length), Math.round));
}

function relativeError(out: Float32Array, ref: Float32Array): number {
  assert.equal(out.length, ref.length);
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < ref.length; i++) {
    diff += (out[i]! - ref[i]!) ** 2;
    norm += ref[i]! ** 2;
  }
  return Math.sqrt(diff / norm);
}

test('every weight key and shape of the fixture file is what the config implies', () => {
  // the fixture was saved by transformers 5, which drops SD 1.5's `text_model.` key prefix
  const shapes = textEncoderParameterShapes(config, '');
  assert.ok([...textEncoderParameterShapes(config).keys()].every((k) => k.startsWith('text_model.')));
  const fileKeys = weights.keys().filter((k) => !k.endsWith('embeddings.position_ids'));
  assert.deepEqual([...shapes.keys()].sort(), fileKeys.sort());
  for (const [key, shape] of shapes) assert.deepEqual([...weights.shape(key)], shape, key);
});

test('the reference prompts tokenize to the reference ids', () => {
  const prompts = ['a photo of a dog', 'a watercolor of a teddy bear wearing sunglasses', ''];
  assert.deepEqual(prompts.map((p) => tokenizer.encode(p)), referenceIds());
});

test('last_hidden_state matches transformers within 1e-4 relative', async () => {
  const out = encoder.encode(referenceIds());
  assert.deepEqual(out.shape, [3, 77, config.hiddenSize]);
  const error = relativeError((await out.data()) as Float32Array, reference.readFloat32('text.last_hidden_state'));
  out.dispose();
  assert.ok(error < 1e-4, `relative error ${error}`);
  if (process.env.VERBOSE) console.log(`last_hidden_state relative error ${error.toExponential(2)}`);
});

test('a file in SD 1.5 layout (`text_model.` keys, int64 position_ids) gives the same output', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'text-encoder-'));
  try {
    const tensors: Record<string, TensorToWrite> = {
      'text_model.embeddings.position_ids': { dtype: 'I64', shape: [1, 77], data: Array.from({ length: 77 }, (_, i) => i) },
    };
    for (const key of weights.keys()) {
      tensors[`text_model.${key}`] = { dtype: 'F32', shape: weights.shape(key), data: weights.float32(key, weights.shape(key)) };
    }
    writeSafetensors(join(tmp, 'model.safetensors'), tensors);
    const sdWeights = ComponentWeights.open('text_encoder', join(tmp, 'model.safetensors'));
    const sdEncoder = new ClipTextEncoder(config, sdWeights);
    const [a, b] = [encoder.encode(referenceIds()), sdEncoder.encode(referenceIds())];
    assert.deepEqual(await b.data(), await a.data());
    tf.dispose([a, b]);
    sdEncoder.dispose();
    sdWeights.close();
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('replacing the word embedding of a token reproduces the custom-embedding reference', async () => {
  const ids = referenceIds();
  const dog = tokenizer.tokenIdOf('dog')!;
  assert.equal(ids[0]![5], dog, 'position 5 of prompt 0 is "dog"');
  assert.equal(ids.flat().filter((t) => t === dog).length, 1, '"dog" occurs once');
  const vector = tf.tensor1d(reference.readFloat32('text.custom_embedding.vector'));
  const expected = reference.readFloat32('text.custom_embedding.last_hidden_state');

  // overriding the existing id
  const out = encoder.encode(ids, { embeddingOverrides: new Map([[dog, vector]]) });
  const error = relativeError((await out.data()) as Float32Array, expected);
  assert.ok(error < 1e-4, `relative error ${error}`);
  if (process.env.VERBOSE) console.log(`custom embedding relative error ${error.toExponential(2)}`);

  // a new placeholder id after the vocabulary, as Perfusion uses it
  const placeholder = config.vocabSize;
  const withPlaceholder = ids.map((row) => row.map((t) => (t === dog ? placeholder : t)));
  const out2 = encoder.encode(withPlaceholder, { embeddingOverrides: new Map([[placeholder, vector]]) });
  const error2 = relativeError((await out2.data()) as Float32Array, expected);
  assert.ok(error2 < 1e-4, `relative error ${error2}`);

  // and the override really changes the output (the plain reference differs)
  assert.ok(relativeError((await out.data()) as Float32Array, reference.readFloat32('text.last_hidden_state')) > 1e-2);
  tf.dispose([vector, out, out2]);
});

test('an id past the vocabulary without an override, or a wrongly shaped override, is refused', () => {
  const ids = referenceIds();
  const bad = ids.map((row) => [...row]);
  bad[1]![3] = config.vocabSize + 7;
  assert.throws(() => encoder.encode(bad), (e: unknown) =>
    e instanceof TextEncoderError && /prompt 1, position 3: token id 753 is past the vocabulary \(746 entries\)/.test(e.message));
  const wrong = tf.zeros([config.hiddenSize + 1]) as tf.Tensor1D;
  assert.throws(() => encoder.encode(ids, { embeddingOverrides: new Map([[5, wrong]]) }), /expected \[32\]/);
  wrong.dispose();
  assert.throws(() => encoder.encode([ids[0]!, ids[1]!.slice(0, 10)]), /prompt 1 has 10 token ids/);
  assert.throws(() => encoder.encode([new Array(78).fill(0)]), /more than the text encoder's 77 positions/);
});

test('the override vector receives the gradient (matches finite differences)', async () => {
  const placeholder = config.vocabSize;
  const ids = [tokenizer.encode('a photo of <x> on the beach', { extraTokens: new Map([['<x>', placeholder]]) })];
  const start = encoder.wordEmbedding(tokenizer.tokenIdOf('dog')!);
  const weightsOfLoss = tf.randomNormal([1, 77, config.hiddenSize], 0, 1, 'float32', 7);
  const loss = (v: tf.Tensor1D) =>
    tf.tidy(() => tf.sum(tf.mul(encoder.encode(ids, { embeddingOverrides: new Map([[placeholder, v]]) }), weightsOfLoss)));

  const before = tf.memory().numTensors;
  const grad = tf.grad((v: tf.Tensor) => loss(v as tf.Tensor1D))(start);
  const g = (await grad.data()) as Float32Array;
  assert.ok(g.every(Number.isFinite), 'finite gradient');
  const gradNorm = Math.hypot(...g);
  assert.ok(gradNorm > 1e-3, `nonzero gradient (norm ${gradNorm})`);

  // directional derivative along the gradient vs a central difference
  const eps = 1e-2;
  const direction = tf.div(grad, gradNorm);
  const [up, down] = tf.tidy(() => [loss(tf.add(start, tf.mul(direction, eps))), loss(tf.sub(start, tf.mul(direction, eps)))]);
  const numeric = ((await up!.data())[0]! - (await down!.data())[0]!) / (2 * eps);
  assert.ok(Math.abs(numeric - gradNorm) / gradNorm < 2e-2, `analytic ${gradNorm} vs numeric ${numeric}`);
  if (process.env.VERBOSE) console.log(`gradient norm ${gradNorm}, central difference ${numeric}`);
  tf.dispose([grad, direction, up!, down!]);
  assert.equal(tf.memory().numTensors, before, 'no tensors leak from the gradient pass');
  tf.dispose([start, weightsOfLoss]);
});

test('repeated encodes do not grow the number of live tensors', async () => {
  const ids = referenceIds();
  const vector = tf.tensor1d(reference.readFloat32('text.custom_embedding.vector'));
  const warm = encoder.encode(ids);
  warm.dispose();
  const before = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) {
    const a = encoder.encode(ids);
    const b = encoder.encode(ids, { embeddingOverrides: new Map([[config.vocabSize, vector], [tokenizer.tokenIdOf('dog')!, vector]]) });
    await a.data();
    tf.dispose([a, b]);
  }
  assert.equal(tf.memory().numTensors, before);
  vector.dispose();
});

test('a weight whose shape disagrees with the config names the key and frees what was loaded', () => {
  const before = tf.memory().numTensors;
  assert.throws(() => new ClipTextEncoder({ ...config, intermediateSize: config.intermediateSize + 1 }, weights), (e: unknown) =>
    e instanceof WeightError && /text_encoder weight "encoder\.layers\.0\.mlp\.fc1\.weight" has shape \[37, 32\]/.test(e.message));
  assert.equal(tf.memory().numTensors, before);
});

test('a disposed encoder refuses to encode', () => {
  const other = new ClipTextEncoder(config, weights);
  const before = tf.memory().numTensors;
  other.dispose();
  assert.ok(tf.memory().numTensors < before);
  assert.throws(() => other.encode(referenceIds()), /disposed/);
});
