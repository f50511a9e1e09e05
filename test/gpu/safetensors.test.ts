import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  SafetensorsFile, encodeSafetensors, float16ToFloat32, float32ToFloat16, writeSafetensors,
} from '../../gpu/weights/safetensors.ts';

const fixtureUnet = new URL('../fixtures/sd-tiny-a/model/unet/diffusion_pytorch_model.safetensors', import.meta.url).pathname;
const tmp = mkdtempSync(join(tmpdir(), 'safetensors-'));

test('reads the fixture UNet header and a float32 tensor', () => {
  const f = SafetensorsFile.open(fixtureUnet);
  try {
    const info = f.info('conv_in.weight');
    assert.equal(info.dtype, 'F32');
    assert.deepEqual(info.shape, [32, 4, 3, 3]);
    const w = f.readFloat32('conv_in.weight');
    assert.equal(w.length, 32 * 4 * 9);
    assert.ok(w.every(Number.isFinite));
    assert.ok(f.keys().some((k) => k.includes('attn2.to_k.weight')));
  } finally {
    f.close();
  }
});

test('F16 and BF16 widen to float32; F16 round-trips with round-to-nearest-even', () => {
  const values = Float32Array.from([0, -0, 1, -2.5, 65504, 1e-7, 6.1e-5, 0.1, 3.14159, -1000.5]);
  const half = float32ToFloat16(values);
  const back = float16ToFloat32(half);
  for (let i = 0; i < values.length; i++) {
    const rel = Math.abs(back[i]! - values[i]!) / Math.max(Math.abs(values[i]!), 6e-8);
    assert.ok(rel < 1e-3 || Math.abs(back[i]! - values[i]!) < 6e-8, `value ${values[i]} came back as ${back[i]}`);
  }
  assert.equal(half[2], 0x3c00);
  assert.equal(float16ToFloat32(Uint16Array.of(0x7c00))[0], Infinity);
  assert.equal(float16ToFloat32(Uint16Array.of(0x0001))[0], 2 ** -24);

  const path = join(tmp, 'mixed.safetensors');
  writeSafetensors(path, {
    a: { dtype: 'F16', shape: [2, 5], data: values },
    b: { dtype: 'BF16', shape: [10], data: values },
    ids: { dtype: 'I64', shape: [1, 3], data: [0, 1, 2] },
  }, { format: 'pt' });
  const f = SafetensorsFile.open(path);
  assert.deepEqual(f.metadata, { format: 'pt' });
  assert.deepEqual(Array.from(f.readFloat32('a')), Array.from(back));
  const bf = f.readFloat32('b');
  for (let i = 0; i < values.length; i++) assert.ok(Math.abs(bf[i]! - values[i]!) <= Math.abs(values[i]!) / 128 + 1e-30);
  assert.throws(() => f.readFloat32('ids'), /dtype I64; expected a floating-point dtype/);
  f.close();
});

test('a corrupt header, a truncated file and a missing file each give an error that names the problem', () => {
  const good = encodeSafetensors({ w: { dtype: 'F32', shape: [4], data: [1, 2, 3, 4] } });
  const huge = Uint8Array.from(good); new DataView(huge.buffer).setBigUint64(0, 1n << 40n, true);
  writeFileSync(join(tmp, 'huge.safetensors'), huge);
  assert.throws(() => SafetensorsFile.open(join(tmp, 'huge.safetensors')), /corrupt header/);

  const notJson = Uint8Array.from(good); notJson[8] = 0x7b + 1;
  writeFileSync(join(tmp, 'notjson.safetensors'), notJson);
  assert.throws(() => SafetensorsFile.open(join(tmp, 'notjson.safetensors')), /not valid JSON/);

  writeFileSync(join(tmp, 'trunc.safetensors'), good.subarray(0, good.length - 4));
  assert.throws(() => SafetensorsFile.open(join(tmp, 'trunc.safetensors')), /truncated/);

  const header = JSON.stringify({ x: { dtype: 'F8_E4M3', shape: [1], data_offsets: [0, 1] } });
  const odd = Buffer.concat([Buffer.alloc(8), Buffer.from(header), Buffer.alloc(1)]);
  odd.writeBigUInt64LE(BigInt(header.length), 0);
  writeFileSync(join(tmp, 'odd.safetensors'), odd);
  assert.throws(() => SafetensorsFile.open(join(tmp, 'odd.safetensors')), /unsupported dtype "F8_E4M3"/);

  assert.throws(() => SafetensorsFile.open(join(tmp, 'missing.safetensors')), /file not found/);
});

test('a file larger than 2 GiB: a tensor past the 2 GiB mark is read (a sparse file, nothing large is written)', () => {
  const path = join(tmp, 'large.safetensors');
  const padBytes = 2.5 * 2 ** 30;
  const header = Buffer.from(JSON.stringify({
    padding: { dtype: 'U8', shape: [padBytes], data_offsets: [0, padBytes] },
    late: { dtype: 'F16', shape: [3], data_offsets: [padBytes, padBytes + 6] },
  }));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(header.length));
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, length, 0, 8, 0);
    writeSync(fd, header, 0, header.length, 8);
    ftruncateSync(fd, 8 + header.length + padBytes + 6);
    const late = Buffer.from(float32ToFloat16(new Float32Array([1, -2, 0.5])).buffer);
    writeSync(fd, late, 0, 6, 8 + header.length + padBytes);
  } finally {
    closeSync(fd);
  }
  assert.ok(statSync(path).size > 2 ** 31);
  const file = SafetensorsFile.open(path);
  try {
    assert.deepEqual(Array.from(file.readFloat32('late')), [1, -2, 0.5]);
  } finally {
    file.close();
    rmSync(path);
  }
});

test('a tensor read in several pieces is the tensor read in one (the piecewise loop that large files need)', () => {
  const file = SafetensorsFile.open(fixtureUnet);
  const saved = SafetensorsFile.readChunkBytes;
  try {
    const name = file.keys().find((k) => file.info(k).end - file.info(k).begin > 1000)!;
    const whole = file.readFloat32(name);
    SafetensorsFile.readChunkBytes = 7; // an odd size, so pieces split floats
    assert.deepEqual(file.readFloat32(name), whole);
  } finally {
    SafetensorsFile.readChunkBytes = saved;
    file.close();
  }
});
