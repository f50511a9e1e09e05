import { test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { crc32, encodePng, floatToBytes } from '../../gpu/png.ts';
import { SeededRandom } from '../../gpu/random.ts';

function noiseImage(width: number, height: number, channels: 3 | 4, seed: number): Uint8Array {
  const rng = new SeededRandom(seed);
  return Uint8Array.from({ length: width * height * channels }, () => rng.nextUint32() & 0xff);
}

function gradientImage(width: number, height: number): Uint8Array {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      data[i] = x * 4;
      data[i + 1] = y * 4;
      data[i + 2] = (x * y) & 0xff;
    }
  }
  return data;
}

test('an RGB PNG decodes (sharp/libspng) to exactly the pixels encoded', async () => {
  for (const [width, height, data] of [[37, 23, noiseImage(37, 23, 3, 1)], [64, 64, gradientImage(64, 64)], [1, 1, Uint8Array.of(255, 0, 7)]] as const) {
    const png = encodePng({ width, height, channels: 3, data });
    const { data: decoded, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height, info.channels], [width, height, 3]);
    assert.deepEqual(new Uint8Array(decoded), data);
  }
});

test('an RGBA PNG keeps its alpha channel', async () => {
  const data = noiseImage(16, 9, 4, 2);
  const png = encodePng({ width: 16, height: 9, channels: 4, data });
  const { data: decoded, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.channels, 4);
  assert.deepEqual(new Uint8Array(decoded), data);
});

test('filtering makes smooth images small, and tEXt chunks carry the generation parameters', async () => {
  const smooth = encodePng({ width: 64, height: 64, channels: 3, data: gradientImage(64, 64) });
  assert.ok(smooth.length < 64 * 64 * 3 / 4, `a gradient compressed to ${smooth.length} bytes`);
  const png = encodePng({ width: 2, height: 1, channels: 3, data: Uint8Array.of(1, 2, 3, 4, 5, 6) }, {
    text: { parameters: 'a photo of a dog, seed 42', Software: 'perfusion-bot' },
  });
  const meta = await sharp(png).metadata();
  assert.deepEqual(meta.comments, [{ keyword: 'parameters', text: 'a photo of a dog, seed 42' }, { keyword: 'Software', text: 'perfusion-bot' }]);
});

test('chunk checksums are the standard CRC-32 and bad input is refused', () => {
  assert.equal(crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
  assert.equal(crc32(new TextEncoder().encode('IEND')), 0xae426082);
  assert.throws(() => encodePng({ width: 2, height: 2, channels: 3, data: new Uint8Array(11) }), /11 bytes for a 2×2 image with 3 channels \(needs 12\)/);
  assert.throws(() => encodePng({ width: 0, height: 2, channels: 3, data: new Uint8Array(0) }), /not a positive whole number/);
});

test('float pixels in [0, 1] become bytes like diffusers: ×255, rounded, clipped', () => {
  assert.deepEqual(Array.from(floatToBytes(Float32Array.of(0, 1, 0.5, -0.2, 1.7, 0.1))), [0, 255, 128, 0, 255, 26]);
});
