import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  checkCompatible, ConceptCompatibilityError, ConceptFormatError, conceptPayloadFloats, parseConcept, serializeConcept,
} from '../../../gpu/perfusion/index.ts';
import type { ConceptArtifact } from '../../../gpu/types.ts';
import { randomNormal, randomVector, readFixture } from './helpers.ts';

const SD15_OUT_DIMS = [320, 320, 640, 640, 1280, 1280, 1280, 1280, 1280, 1280, 640, 640, 640, 320, 320, 320];
const SD15_NAMES = [
  'down_blocks.0.attentions.0', 'down_blocks.0.attentions.1', 'down_blocks.1.attentions.0', 'down_blocks.1.attentions.1',
  'down_blocks.2.attentions.0', 'down_blocks.2.attentions.1', 'mid_block.attentions.0',
  'up_blocks.1.attentions.0', 'up_blocks.1.attentions.1', 'up_blocks.1.attentions.2',
  'up_blocks.2.attentions.0', 'up_blocks.2.attentions.1', 'up_blocks.2.attentions.2',
  'up_blocks.3.attentions.0', 'up_blocks.3.attentions.1', 'up_blocks.3.attentions.2',
].map((p) => `${p}.transformer_blocks.0.attn2`);

function makeConcept(hidden: number, layers: { name: string; outDim: number }[], seed = 1): ConceptArtifact {
  const next = randomNormal(seed);
  return {
    name: 'hugsy',
    category: 'teddy',
    categoryTokenId: 27003,
    modelHash: 'a'.repeat(64),
    covarianceHash: 'c'.repeat(64),
    beta: 0.7,
    tau: 0.15,
    layers,
    embedding: randomVector(hidden, next),
    iStar: randomVector(hidden, next),
    oK: layers.map((l) => randomVector(l.outDim, next)),
    oV: layers.map((l) => randomVector(l.outDim, next)),
    training: { beta: 0.75, tau: 0.1, steps: 400, images: 5, finalLoss: 0.123 },
  };
}

const sd15Layers = SD15_NAMES.map((name, i) => ({ name, outDim: SD15_OUT_DIMS[i]! }));

function payloadBytes(bytes: Uint8Array): number {
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset).getUint32(12, true);
  return bytes.byteLength - ((16 + headerLength + 3) & ~3);
}

test('an SD 1.5-shaped concept has a payload of exactly 26,496 floats = 105,984 bytes', () => {
  assert.equal(SD15_OUT_DIMS.reduce((a, b) => a + b, 0), 12_480);
  assert.equal(conceptPayloadFloats(768, SD15_OUT_DIMS), 26_496);
  const bytes = serializeConcept(makeConcept(768, sd15Layers));
  assert.equal(payloadBytes(bytes), 105_984);
  assert.ok(bytes.byteLength < 105_984 + 4096, `the whole file is ${bytes.byteLength} bytes`);
});

test('a tiny-model concept has 4·(2h + 2Σd_l) payload bytes (the sd-tiny-a layer list)', () => {
  const meta = JSON.parse(readFixture('perfusion-grad-a.safetensors').metadata.perfusion_grad!) as { layers: string[] };
  const grad = readFixture('perfusion-grad-a.safetensors').tensors;
  const layers = meta.layers.map((name, k) => ({ name, outDim: grad.get(`oK.${k}`)!.shape[0]! }));
  const sum = layers.reduce((a, l) => a + l.outDim, 0);
  assert.equal(sum, 10 * 32 + 6 * 64);
  assert.equal(payloadBytes(serializeConcept(makeConcept(32, layers))), 4 * (2 * 32 + 2 * sum));
});

test('the payload is laid out as documented: v, i*, then o*_K and o*_V of each layer in list order, little-endian float32', () => {
  const layers = [{ name: 'a.attn2', outDim: 3 }, { name: 'b.attn2', outDim: 2 }];
  const concept = makeConcept(4, layers, 7);
  const bytes = serializeConcept(concept);
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset).getUint32(12, true);
  const start = (16 + headerLength + 3) & ~3;
  assert.equal(new TextDecoder().decode(bytes.subarray(0, 8)), 'PRFSNCPT');
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + headerLength))) as { layers: { name: string }[] };
  assert.deepEqual(header.layers.map((l) => l.name), ['a.attn2', 'b.attn2']);
  const payload = new DataView(bytes.buffer, bytes.byteOffset + start);
  const floats = Array.from({ length: (bytes.byteLength - start) / 4 }, (_, i) => payload.getFloat32(4 * i, true));
  const expected = [
    ...concept.embedding, ...concept.iStar, ...concept.oK[0]!, ...concept.oV[0]!, ...concept.oK[1]!, ...concept.oV[1]!,
  ].map((x) => Math.fround(x));
  assert.deepEqual(floats, expected);
});

test('serialize → parse round-trips bit-exactly, including NaN payloads and -0', () => {
  const a = makeConcept(768, sd15Layers, 7);
  const bits = new Uint32Array(a.oV[3]!.buffer, a.oV[3]!.byteOffset, a.oV[3]!.length);
  bits[0] = 0x7fc01234; // a NaN with a payload
  a.iStar[5] = -0;
  const bytes = serializeConcept(a);
  const b = parseConcept(bytes);
  assert.deepEqual({ ...b, embedding: 0, iStar: 0, oK: 0, oV: 0 }, { ...a, embedding: 0, iStar: 0, oK: 0, oV: 0 });
  const asBytes = (x: Float32Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);
  assert.ok(asBytes(b.embedding).equals(asBytes(a.embedding)));
  assert.ok(asBytes(b.iStar).equals(asBytes(a.iStar)));
  for (let l = 0; l < a.layers.length; l++) {
    assert.ok(asBytes(b.oK[l]!).equals(asBytes(a.oK[l]!)), `oK ${l}`);
    assert.ok(asBytes(b.oV[l]!).equals(asBytes(a.oV[l]!)), `oV ${l}`);
  }
  assert.ok(Buffer.from(serializeConcept(b)).equals(Buffer.from(bytes)));
  // parsing an unaligned view of the bytes works too
  const shifted = new Uint8Array(bytes.byteLength + 1);
  shifted.set(bytes, 1);
  assert.equal(parseConcept(shifted.subarray(1)).oV[15]![7], a.oV[15]![7]);
});

test('corrupt, truncated and unknown-version data give ConceptFormatError with a clear message', () => {
  const bytes = serializeConcept(makeConcept(32, [{ name: 'x.attn2', outDim: 48 }, { name: 'y.attn2', outDim: 64 }]));
  const expectFormatError = (data: Uint8Array, pattern: RegExp) =>
    assert.throws(() => parseConcept(data), (err: unknown) => err instanceof ConceptFormatError && pattern.test(err.message));

  expectFormatError(new TextEncoder().encode('PK\x03\x04 not a concept at all'), /not a Perfusion concept/);
  expectFormatError(bytes.subarray(0, 10), /not a Perfusion concept/);
  expectFormatError(bytes.subarray(0, 40), /truncated/);
  expectFormatError(bytes.subarray(0, bytes.byteLength - 1), /truncated/);
  const longer = new Uint8Array(bytes.byteLength + 4);
  longer.set(bytes);
  expectFormatError(longer, /unexpected bytes/);

  const flipped = bytes.slice();
  flipped[flipped.byteLength - 3]! ^= 0x10;
  expectFormatError(flipped, /checksum/);

  const newer = bytes.slice();
  new DataView(newer.buffer).setUint32(8, 2, true);
  expectFormatError(newer, /version 2.*update the bot/);

  const badJson = bytes.slice();
  badJson[16] = 0x7b + 1; // '{' → '|'
  expectFormatError(badJson, /header is not readable JSON/);

  const headerLength = new DataView(bytes.buffer).getUint32(12, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(16, 16 + headerLength)));
  header.layers[1].outDim = 63;
  const text = new TextEncoder().encode(JSON.stringify(header).padEnd(headerLength, ' '));
  assert.equal(text.byteLength, headerLength);
  const lying = bytes.slice();
  lying.set(text, 16);
  expectFormatError(lying, /declared as .* floats but the layers need/);
});

test('checkCompatible refuses a concept made for another model, another C or another layer set', () => {
  const a = makeConcept(32, [{ name: 'x.attn2', outDim: 48 }, { name: 'y.attn2', outDim: 64 }]);
  const target = { modelHash: a.modelHash, covarianceHash: a.covarianceHash, layers: [{ name: 'y.attn2', outDim: 64, inDim: 32 }, { name: 'x.attn2', outDim: 48, inDim: 32 }] };
  checkCompatible(a, target); // the same layers in another order are matched by name
  const reason = (t: typeof target) => {
    try {
      checkCompatible(a, t);
    } catch (err) {
      assert.ok(err instanceof ConceptCompatibilityError);
      assert.match(err.message, /<hugsy>/);
      return [err.reason, err.message] as const;
    }
    return null;
  };
  const model = reason({ ...target, modelHash: 'b'.repeat(64) });
  assert.equal(model?.[0], 'model');
  assert.match(model![1], /different model .*Teach it again/);
  assert.equal(reason({ ...target, covarianceHash: 'd'.repeat(64) })?.[0], 'covariance');
  assert.equal(reason({ ...target, layers: target.layers.slice(1) })?.[0], 'layers');
  assert.match(reason({ ...target, layers: [{ name: 'x.attn2', outDim: 48, inDim: 32 }, { name: 'y.attn2', outDim: 32, inDim: 32 }] })![1], /y\.attn2 is 32 wide/);
  assert.match(reason({ ...target, layers: target.layers.map((l) => ({ ...l, inDim: 768 })) })![1], /text width is 768/);
});
