// AutoencoderKL against diffusers' outputs for the tiny SD-1.x fixture (test/fixtures/sd-tiny-a), on wasm:
// decode, encode (mean and logvar), the legacy attention key names of SD 1.5's VAE file, no tensor leaks.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../gpu/weights/safetensors.ts';
import { ComponentWeights } from '../../gpu/weights/component-weights.ts';
import { parseVaeConfig } from '../../gpu/model/configs.ts';
import { AutoencoderKL, vaeParameterShapes } from '../../gpu/sd/vae.ts';

const fixtures = new URL('../fixtures/', import.meta.url).pathname;
const vaeDir = `${fixtures}sd-tiny-a/model/vae/`;
const vaeFile = `${vaeDir}diffusion_pytorch_model.safetensors`;
const config = parseVaeConfig(JSON.parse(readFileSync(`${vaeDir}config.json`, 'utf8')));
const reference = SafetensorsFile.open(`${fixtures}sd-tiny-a/reference.safetensors`);
const tmp = mkdtempSync(join(tmpdir(), 'vae-test-'));

let weights: ComponentWeights;
let vae: AutoencoderKL;

/** An NCHW reference tensor as NHWC. */
function refNhwc(name: string): tf.Tensor4D {
  const nchw = tf.tensor(reference.readFloat32(name), [...reference.info(name).shape]);
  const nhwc = tf.transpose(nchw, [0, 2, 3, 1]) as tf.Tensor4D;
  nchw.dispose();
  return nhwc;
}

/** ‖out − expected‖ / ‖expected‖ */
async function relativeError(out: tf.Tensor, expected: tf.Tensor): Promise<number> {
  const [diff, norm] = await Promise.all([tf.norm(tf.sub(out, expected)).data(), tf.norm(expected).data()]);
  return diff[0]! / norm[0]!;
}

before(async () => {
  await tf.setBackend('wasm');
  weights = ComponentWeights.open('vae', vaeFile);
  vae = new AutoencoderKL(config, weights);
});

after(() => {
  vae.dispose();
  weights.close();
  reference.close();
  rmSync(tmp, { recursive: true, force: true });
});

test('uses every weight of the file, and vaeParameterShapes lists exactly the file\'s keys and shapes', () => {
  assert.deepEqual(weights.unusedKeys(), []);
  assert.equal(vae.scalingFactor, 0.18215);
  const shapes = vaeParameterShapes(config);
  const file = SafetensorsFile.open(vaeFile);
  try {
    assert.deepEqual([...shapes.keys()].sort(), file.keys().sort());
    for (const key of file.keys()) assert.deepEqual(shapes.get(key), [...file.info(key).shape], key);
  } finally {
    file.close();
  }
});

test('decode matches diffusers within 1e-4 relative and leaks no tensors', async () => {
  const latents = refNhwc('vae.latents');
  const expected = refNhwc('vae.decoded');
  const before = tf.memory().numTensors;
  const image = vae.decode(latents);
  assert.equal(tf.memory().numTensors, before + 1);
  assert.deepEqual(image.shape, [1, 128, 128, 3]);
  const err = await relativeError(image, expected);
  assert.ok(err < 1e-4, `relative error ${err}`);
  tf.dispose([latents, expected, image]);
});

test('encode: mean and logvar match diffusers within 1e-4 relative and leak no tensors', async () => {
  const image = refNhwc('vae.image');
  const expectedMean = refNhwc('vae.encoded_mean');
  const expectedLogvar = refNhwc('vae.encoded_logvar');
  const before = tf.memory().numTensors;
  const { mean, logvar } = vae.encode(image);
  assert.equal(tf.memory().numTensors, before + 2);
  assert.deepEqual(mean.shape, [1, 16, 16, 4]);
  assert.deepEqual(logvar.shape, [1, 16, 16, 4]);
  const errMean = await relativeError(mean, expectedMean);
  const errLogvar = await relativeError(logvar, expectedLogvar);
  assert.ok(errMean < 1e-4, `mean: relative error ${errMean}`);
  assert.ok(errLogvar < 1e-4, `logvar: relative error ${errLogvar}`);
  tf.dispose([image, expectedMean, expectedLogvar, mean, logvar]);
});

test('a file with the legacy attention names and conv-shaped [C,C,1,1] weights decodes the same', async () => {
  const legacyNames: Record<string, string> = { to_q: 'query', to_k: 'key', to_v: 'value', 'to_out.0': 'proj_attn' };
  const source = SafetensorsFile.open(vaeFile);
  const tensors: Record<string, TensorToWrite> = {};
  let renamed = 0;
  for (const key of source.keys()) {
    const m = /^(.*\.mid_block\.attentions\.0)\.(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/.exec(key);
    const shape = [...source.info(key).shape];
    const data = source.readFloat32(key);
    if (m) {
      renamed++;
      tensors[`${m[1]}.${legacyNames[m[2]!]}.${m[3]}`] = { dtype: 'F32', shape: m[3] === 'weight' ? [...shape, 1, 1] : shape, data };
    } else {
      tensors[key] = { dtype: 'F32', shape, data };
    }
  }
  source.close();
  assert.equal(renamed, 16);
  const legacyPath = join(tmp, 'legacy.safetensors');
  writeSafetensors(legacyPath, tensors);

  const legacyWeights = ComponentWeights.open('vae', legacyPath);
  const legacyVae = new AutoencoderKL(config, legacyWeights);
  try {
    assert.deepEqual(legacyWeights.unusedKeys(), []);
    const latents = refNhwc('vae.latents');
    const expected = refNhwc('vae.decoded');
    const image = legacyVae.decode(latents);
    assert.ok((await relativeError(image, expected)) < 1e-4);
    tf.dispose([latents, expected, image]);
  } finally {
    legacyVae.dispose();
    legacyWeights.close();
  }
});

test('vaeParameterShapes of SD 1.5\'s VAE config: 248 tensors, 83,653,863 parameters', () => {
  const sd15 = parseVaeConfig({
    in_channels: 3, out_channels: 3, latent_channels: 4, block_out_channels: [128, 256, 512, 512], layers_per_block: 2,
    down_block_types: Array(4).fill('DownEncoderBlock2D'), up_block_types: Array(4).fill('UpDecoderBlock2D'),
    norm_num_groups: 32, act_fn: 'silu', sample_size: 512,
  });
  const shapes = vaeParameterShapes(sd15);
  assert.equal(shapes.size, 248);
  assert.equal([...shapes.values()].reduce((sum, s) => sum + s.reduce((a, b) => a * b, 1), 0), 83_653_863);
  assert.deepEqual(shapes.get('decoder.up_blocks.3.resnets.0.conv_shortcut.weight'), [128, 256, 1, 1]);
  assert.deepEqual(shapes.get('encoder.mid_block.attentions.0.to_q.weight'), [512, 512]);
});
