// The custom WebGPU kernels inside the real model parts: the tiny SD-1.x fixture's UNet and VAE
// (test/fixtures/sd-tiny-a) on the webgpu backend over the software GL adapter, against diffusers' outputs,
// and one Perfusion training step through the UNet's backward against PyTorch (perfusion-grad-a).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { programsUsed, startCompatGl } from './harness.ts';
import { SafetensorsFile } from '../../../gpu/weights/safetensors.ts';
import { ComponentWeights } from '../../../gpu/weights/component-weights.ts';
import { parseUNetConfig, parseVaeConfig } from '../../../gpu/model/configs.ts';
import { UNet2DConditionModel } from '../../../gpu/sd/unet.ts';
import { AutoencoderKL } from '../../../gpu/sd/vae.ts';
import type { CrossAttentionEdit } from '../../../gpu/types.ts';

const unavailable = await startCompatGl();
const fixtures = new URL('../../fixtures/', import.meta.url).pathname;
const modelDir = `${fixtures}sd-tiny-a/model/`;

function ref(file: SafetensorsFile, name: string): tf.Tensor {
  return tf.tensor(file.readFloat32(name), [...file.info(name).shape]);
}

/** An NCHW reference tensor as NHWC. */
function refNhwc(file: SafetensorsFile, name: string): tf.Tensor4D {
  return tf.tidy(() => tf.transpose(ref(file, name), [0, 2, 3, 1]) as tf.Tensor4D);
}

/** ‖out − expected‖ / ‖expected‖ */
async function relativeError(out: tf.Tensor, expected: tf.Tensor): Promise<number> {
  const [diff, norm] = await Promise.all([tf.norm(tf.sub(out, expected)).data(), tf.norm(expected).data()]);
  return diff[0]! / norm[0]!;
}

describe('SD-1.x model parts on WebGPU with the custom kernels (GL compat adapter)', { skip: unavailable ?? false }, () => {
  let reference: SafetensorsFile;
  let gradFixture: SafetensorsFile;
  let unetWeights: ComponentWeights;
  let unet: UNet2DConditionModel;

  before(() => {
    reference = SafetensorsFile.open(`${fixtures}sd-tiny-a/reference.safetensors`);
    gradFixture = SafetensorsFile.open(`${fixtures}perfusion-grad-a.safetensors`);
    const config = parseUNetConfig(JSON.parse(readFileSync(`${modelDir}unet/config.json`, 'utf8')));
    unetWeights = ComponentWeights.open('unet', `${modelDir}unet/diffusion_pytorch_model.safetensors`);
    unet = new UNet2DConditionModel(config, unetWeights);
  });

  after(() => {
    unet?.dispose();
    unetWeights?.close();
    reference?.close();
    gradFixture?.close();
  });

  test('UNet forward matches diffusers within 1e-4 relative, through the fused and tiled programs', async () => {
    const sample = refNhwc(reference, 'unet.sample');
    const timesteps = ref(reference, 'unet.timesteps') as tf.Tensor1D;
    const context = ref(reference, 'unet.encoder_hidden_states') as tf.Tensor3D;
    const expected = refNhwc(reference, 'unet.out');
    const used = await programsUsed(() => unet.forward(sample, timesteps, context));
    for (const p of ['FlashAttentionProgram', 'GroupNormApplyProgram', 'Conv2dTiledProgram', 'MatMulTiledProgram']) assert.ok(used.has(p), `${p} ran`);
    assert.ok(!used.has('SoftmaxProgram'), 'no attention took the primitive path');
    const out = unet.forward(sample, timesteps, context);
    const err = await relativeError(out, expected);
    assert.ok(err < 1e-4, `relative error ${err}`);
    tf.dispose([sample, timesteps, context, expected, out]);
  });

  test('VAE decode matches diffusers within 1e-4 relative', async () => {
    const config = parseVaeConfig(JSON.parse(readFileSync(`${modelDir}vae/config.json`, 'utf8')));
    const weights = ComponentWeights.open('vae', `${modelDir}vae/diffusion_pytorch_model.safetensors`);
    const vae = new AutoencoderKL(config, weights);
    try {
      const latents = refNhwc(reference, 'vae.latents');
      const expected = refNhwc(reference, 'vae.decoded');
      const image = vae.decode(latents);
      const err = await relativeError(image, expected);
      assert.ok(err < 1e-4, `relative error ${err}`);
      tf.dispose([latents, expected, image]);
    } finally {
      vae.dispose();
      weights.close();
    }
  });

  test('one Perfusion training step: prediction, loss and dLoss/do*_V of every attn2 match PyTorch (perfusion-grad-a)', async () => {
    // The gated rank-1 edit (perfusion-spec.md §3.2), written out only to drive the UNet's backward pass:
    // h(e) = W e − α(e) W i* + σ((α(e) − β)/τ) o*, α(e) = (i*ᵀ C⁻¹ e)/(i*ᵀ C⁻¹ i*); i*, C⁻¹, o*_K constant.
    const g = gradFixture;
    const meta = JSON.parse(g.metadata.perfusion_grad!) as { layers: string[]; beta: number; tau: number };
    const layers = unet.crossAttentionLayers();
    const fixtureIndex = layers.map((l) => meta.layers.indexOf(l.name));
    const alphasCumprod = reference.readFloat32('ddpm.alphas_cumprod');
    const timestepValues = Array.from(g.readFloat32('timesteps'));
    const [x0, noise] = [refNhwc(g, 'x0'), refNhwc(g, 'noise')];
    const timesteps = ref(g, 'timesteps') as tf.Tensor1D;
    const encodings = ref(g, 'encodings') as tf.Tensor3D;
    const expectedPrediction = refNhwc(g, 'prediction');
    const istar = ref(g, 'istar') as tf.Tensor1D;
    const cinv = ref(g, 'Cinv') as tf.Tensor2D;
    const oK = fixtureIndex.map((k) => ref(g, `oK.${k}`) as tf.Tensor1D);
    const oV = fixtureIndex.map((k) => ref(g, `oV.${k}`) as tf.Tensor1D);
    const r = tf.tidy(() => {
      const cinvIstar = tf.matMul(cinv, tf.reshape(istar, [-1, 1]));
      return tf.div(cinvIstar, tf.sum(tf.mul(tf.reshape(istar, [-1, 1]), cinvIstar))) as tf.Tensor2D;
    });
    const noisy = tf.tidy(() => {
      const coef = (f: (a: number) => number) => tf.tensor4d(timestepValues.map((t) => f(alphasCumprod[t]!)), [2, 1, 1, 1]);
      return tf.add(tf.mul(coef(Math.sqrt), x0), tf.mul(coef((a) => Math.sqrt(1 - a)), noise)) as tf.Tensor4D;
    });
    let prediction: tf.Tensor4D | undefined;
    const step = () => tf.valueAndGrads((...targets: tf.Tensor[]) => {
      const edit: CrossAttentionEdit = {
        project(layer, which, ctx) {
          const [b, l, d] = ctx.shape;
          const w = which === 'k' ? layer.toK : layer.toV;
          const target = which === 'k' ? oK[layer.index]! : targets[layer.index]!;
          const flat = tf.reshape(ctx, [b * l, d]) as tf.Tensor2D;
          const alpha = tf.matMul(flat, r);
          const wIstar = tf.reshape(tf.matMul(w, tf.reshape(istar, [-1, 1])), [1, -1]);
          const gate = tf.sigmoid(tf.div(tf.sub(alpha, meta.beta), meta.tau));
          const h = tf.add(tf.sub(tf.matMul(flat, w, false, true), tf.mul(alpha, wIstar)), tf.mul(gate, tf.reshape(target, [1, -1])));
          return tf.reshape(h, [b, l, layer.outDim]) as tf.Tensor3D;
        },
      };
      const out = unet.forward(noisy, timesteps, encodings, { edit });
      prediction = tf.keep(out);
      return tf.mean(tf.square(tf.sub(out, noise)));
    })(oV);
    const used = await programsUsed(() => { const s = step(); prediction!.dispose(); return [s.value, ...s.grads]; });
    for (const p of ['AttentionGradKVProgram', 'GroupNormGradApplyProgram']) assert.ok(used.has(p), `${p} ran in the backward pass`);
    const { value: loss, grads } = step();
    assert.ok((await relativeError(prediction!, expectedPrediction)) < 1e-4);
    const expectedLoss = g.readFloat32('loss')[0]!;
    assert.ok(Math.abs((await loss.data())[0]! - expectedLoss) / expectedLoss < 1e-5);
    for (const [i, grad] of grads.entries()) {
      const expected = ref(g, `grad_oV.${fixtureIndex[i]}`);
      const err = await relativeError(grad, expected);
      assert.ok(err < 1e-3, `${layers[i]!.name}: dLoss/do*_V relative error ${err}`);
      expected.dispose();
    }
    tf.dispose([x0, noise, timesteps, encodings, expectedPrediction, istar, cinv, ...oK, ...oV, r, noisy, prediction!, loss, ...grads]);
  });
});
