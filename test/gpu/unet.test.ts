// UNet2DConditionModel against diffusers' outputs for the tiny SD-1.x fixture (test/fixtures/sd-tiny-a),
// on the wasm backend: per-item and scalar timesteps, the Perfusion edit hook and its gradient path.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { registerGradients } from '../../gpu/gradients.ts';
import { SafetensorsFile } from '../../gpu/weights/safetensors.ts';
import { ComponentWeights } from '../../gpu/weights/component-weights.ts';
import { parseUNetConfig } from '../../gpu/model/configs.ts';
import { UNet2DConditionModel, unetParameterShapes } from '../../gpu/sd/unet.ts';
import type { CrossAttentionEdit, CrossAttentionLayer } from '../../gpu/types.ts';

const fixtures = new URL('../fixtures/', import.meta.url).pathname;
const unetDir = `${fixtures}sd-tiny-a/model/unet/`;
const config = parseUNetConfig(JSON.parse(readFileSync(`${unetDir}config.json`, 'utf8')));
const reference = SafetensorsFile.open(`${fixtures}sd-tiny-a/reference.safetensors`);
const gradFixture = SafetensorsFile.open(`${fixtures}perfusion-grad-a.safetensors`);

let weights: ComponentWeights;
let unet: UNet2DConditionModel;

/** A reference tensor in its stored (PyTorch) layout. */
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

/** context [B,L,in] · Wᵀ for W [out,in], as a batched matMul (the model itself uses one 2-D matMul) */
function projectBatched(context: tf.Tensor3D, w: tf.Tensor2D): tf.Tensor3D {
  return tf.matMul(context, tf.tile(tf.expandDims(tf.transpose(w), 0), [context.shape[0], 1, 1]) as tf.Tensor3D);
}

before(async () => {
  await tf.setBackend('wasm');
  registerGradients();
  weights = ComponentWeights.open('unet', `${unetDir}diffusion_pytorch_model.safetensors`);
  unet = new UNet2DConditionModel(config, weights);
});

after(() => {
  unet.dispose();
  weights.close();
  reference.close();
  gradFixture.close();
});

test('uses every weight of the file, and unetParameterShapes lists exactly the file\'s keys and shapes', () => {
  assert.deepEqual(weights.unusedKeys(), []);
  const shapes = unetParameterShapes(config);
  const file = SafetensorsFile.open(weights.path);
  try {
    assert.deepEqual([...shapes.keys()].sort(), file.keys().sort());
    for (const key of file.keys()) assert.deepEqual(shapes.get(key), [...file.info(key).shape], key);
  } finally {
    file.close();
  }
});

test('per-item timesteps: matches diffusers within 1e-4 relative, and leaks no tensors', async () => {
  const sample = refNhwc(reference, 'unet.sample');
  const timesteps = ref(reference, 'unet.timesteps') as tf.Tensor1D;
  const context = ref(reference, 'unet.encoder_hidden_states') as tf.Tensor3D;
  const expected = refNhwc(reference, 'unet.out');
  const before = tf.memory().numTensors;
  const out = unet.forward(sample, timesteps, context);
  assert.equal(tf.memory().numTensors, before + 1);
  assert.deepEqual(out.shape, [2, 16, 16, 4]);
  const err = await relativeError(out, expected);
  assert.ok(err < 1e-4, `relative error ${err}`);
  tf.dispose([sample, timesteps, context, expected, out]);
});

test('scalar timestep 10 for the whole batch matches diffusers within 1e-4 relative', async () => {
  const sample = refNhwc(reference, 'unet.sample');
  const context = ref(reference, 'unet.encoder_hidden_states') as tf.Tensor3D;
  const expected = refNhwc(reference, 'unet.out_scalar_t');
  const out = unet.forward(sample, 10, context);
  const err = await relativeError(out, expected);
  assert.ok(err < 1e-4, `relative error ${err}`);
  // the same timestep as a one-element tensor is broadcast over the batch
  const asTensor = tf.tensor1d([10]);
  const out2 = unet.forward(sample, asTensor, context);
  assert.ok((await relativeError(out2, expected)) < 1e-4);
  tf.dispose([sample, context, expected, out, asTensor, out2]);
});

test('crossAttentionLayers: every attn2 in diffusers\' module order, with [out, in] to_k / to_v', async () => {
  const layers = unet.crossAttentionLayers();
  const expectedNames = JSON.parse(gradFixture.metadata.perfusion_grad!).layers as string[];
  assert.deepEqual(layers.map((l) => l.name), expectedNames);
  assert.deepEqual(layers.map((l) => l.index), expectedNames.map((_, i) => i));
  const file = SafetensorsFile.open(weights.path);
  try {
    assert.equal(layers.length, file.keys().filter((k) => k.endsWith('attn2.to_k.weight')).length);
    for (const layer of layers) {
      assert.deepEqual(layer.toK.shape, [...file.info(`${layer.name}.to_k.weight`).shape]);
      assert.deepEqual([layer.outDim, layer.inDim], layer.toK.shape);
      assert.deepEqual(Array.from(await layer.toV.data()), Array.from(file.readFloat32(`${layer.name}.to_v.weight`)));
    }
  } finally {
    file.close();
  }
});

test('the edit hook is called once for K and once for V of exactly the attn2 layers, and context·Wᵀ reproduces the plain output', async () => {
  const sample = refNhwc(reference, 'unet.sample');
  const timesteps = ref(reference, 'unet.timesteps') as tf.Tensor1D;
  const context = ref(reference, 'unet.encoder_hidden_states') as tf.Tensor3D;
  const calls: string[] = [];
  const edit: CrossAttentionEdit = {
    project(layer: CrossAttentionLayer, which: 'k' | 'v', ctx: tf.Tensor3D): tf.Tensor3D {
      calls.push(`${layer.name}:${which}`);
      assert.deepEqual(ctx.shape, [2, 77, layer.inDim]);
      const out = projectBatched(ctx, which === 'k' ? layer.toK : layer.toV);
      assert.deepEqual(out.shape, [2, 77, layer.outDim]);
      return out;
    },
  };
  const plain = unet.forward(sample, timesteps, context);
  const before = tf.memory().numTensors;
  const edited = unet.forward(sample, timesteps, context, { edit });
  assert.equal(tf.memory().numTensors, before + 1);
  const names = unet.crossAttentionLayers().map((l) => l.name);
  assert.deepEqual([...calls].sort(), names.flatMap((n) => [`${n}:k`, `${n}:v`]).sort());
  assert.ok((await relativeError(edited, plain)) < 1e-6);
  tf.dispose([sample, timesteps, context, plain, edited]);
});

test('gradients flow from the output through every edited layer into the edit\'s inputs (wasm)', async () => {
  const sample = refNhwc(reference, 'unet.sample');
  const timesteps = ref(reference, 'unet.timesteps') as tf.Tensor1D;
  const context = ref(reference, 'unet.encoder_hidden_states') as tf.Tensor3D;
  const layers = unet.crossAttentionLayers();
  // one offset per layer added to its V output: its gradient is the sum of the attention's dL/dV
  const offsets = layers.map((l) => tf.zeros([l.outDim]) as tf.Tensor1D);
  const before = tf.memory().numTensors;
  const grads = tf.grads((...xs: tf.Tensor[]) => {
    const edit: CrossAttentionEdit = {
      project(layer, which, ctx) {
        const base = projectBatched(ctx, which === 'k' ? layer.toK : layer.toV);
        return which === 'v' ? tf.add(base, xs[layer.index]!) : base;
      },
    };
    return tf.mean(unet.forward(sample, timesteps, context, { edit }));
  })(offsets);
  assert.equal(grads.length, layers.length);
  for (const [i, g] of grads.entries()) {
    const values = await g.data();
    assert.ok(values.every(Number.isFinite), `${layers[i]!.name}: non-finite gradient`);
    assert.ok(values.some((v) => v !== 0), `${layers[i]!.name}: zero gradient`);
  }
  tf.dispose(grads);
  assert.equal(tf.memory().numTensors, before);
  tf.dispose([sample, timesteps, context, ...offsets]);
});

test('one Perfusion training step: prediction, loss and dLoss/do*_V of every attn2 match PyTorch (perfusion-grad-a)', async () => {
  // The gated rank-1 edit written out here (perfusion-spec.md §3.2) only to drive the UNet's backward pass:
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
    return tf.div(cinvIstar, tf.sum(tf.mul(tf.reshape(istar, [-1, 1]), cinvIstar))) as tf.Tensor2D; // [in, 1]
  });
  const noisy = tf.tidy(() => {
    const coef = (f: (a: number) => number) => tf.tensor4d(timestepValues.map((t) => f(alphasCumprod[t]!)), [2, 1, 1, 1]);
    return tf.add(tf.mul(coef(Math.sqrt), x0), tf.mul(coef((a) => Math.sqrt(1 - a)), noise)) as tf.Tensor4D;
  });

  let prediction: tf.Tensor4D | undefined;
  const { value: loss, grads } = tf.valueAndGrads((...targets: tf.Tensor[]) => {
    const edit: CrossAttentionEdit = {
      project(layer, which, ctx) {
        const [b, l, d] = ctx.shape;
        const w = which === 'k' ? layer.toK : layer.toV;
        const target = which === 'k' ? oK[layer.index]! : targets[layer.index]!;
        const flat = tf.reshape(ctx, [b * l, d]) as tf.Tensor2D;
        const alpha = tf.matMul(flat, r); // [bl, 1]
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

test('unetParameterShapes of SD 1.5\'s config: 686 tensors, 859,520,964 parameters, attn2 to_k [C, 768]', () => {
  // unet/config.json of stable-diffusion-v1-5 (sd-engine.md §1.1); the rest are class defaults
  const sd15 = parseUNetConfig({
    in_channels: 4, out_channels: 4, sample_size: 64, block_out_channels: [320, 640, 1280, 1280], layers_per_block: 2,
    attention_head_dim: 8, cross_attention_dim: 768, norm_num_groups: 32, norm_eps: 1e-5, act_fn: 'silu',
    down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
    up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
    flip_sin_to_cos: true, freq_shift: 0, downsample_padding: 1, mid_block_scale_factor: 1, center_input_sample: false,
  });
  const shapes = unetParameterShapes(sd15);
  assert.equal(shapes.size, 686);
  assert.equal([...shapes.values()].reduce((sum, s) => sum + s.reduce((a, b) => a * b, 1), 0), 859_520_964);
  const toK = [...shapes.entries()].filter(([k]) => k.endsWith('attn2.to_k.weight'));
  // perfusion-spec.md §11: 16 layers whose output widths sum to 12,480
  assert.equal(toK.length, 16);
  assert.equal(toK.reduce((sum, [, s]) => sum + s[0]!, 0), 12_480);
  assert.ok(toK.every(([, s]) => s[1] === 768));
  assert.deepEqual(shapes.get('up_blocks.3.resnets.0.conv_shortcut.weight'), [320, 960, 1, 1]);
  assert.deepEqual(shapes.get('down_blocks.0.attentions.0.proj_in.weight'), [320, 320, 1, 1]);
});
