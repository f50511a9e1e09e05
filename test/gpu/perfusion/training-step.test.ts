// One Perfusion training step on the real sd-tiny-a model against perfusion-grad-a.safetensors (PyTorch +
// diffusers): the concept's embedding v through the CLIP text encoder, the edited UNet with PerfusionTrainingEdit
// (β 0.75, τ 0.1, i*, C⁻¹ and o*_K constant), the ε-MSE loss, and the gradients to v and every o*_V.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { registerGradients } from '../../../gpu/gradients.ts';
import { loadPipeline } from '../../../gpu/index.ts';
import type { StableDiffusionPipeline } from '../../../gpu/pipeline.ts';
import { PerfusionTrainingEdit } from '../../../gpu/perfusion/index.ts';
import { addNoiseVariancePreserving, alphasCumprod } from '../../../gpu/schedulers/common.ts';
import { fixturePath, readFixture, relativeError } from './helpers.ts';

const grad = readFixture('perfusion-grad-a.safetensors');
const meta = JSON.parse(grad.metadata.perfusion_grad!) as { layers: string[]; beta: number; tau: number; prompts: string[]; category_token_id: number };
const value = (key: string) => grad.tensors.get(key)!.data;
const fixtureIndex = (name: string) => meta.layers.indexOf(name);

let pipe: StableDiffusionPipeline;

before(async () => {
  pipe = await loadPipeline(fixturePath('sd-tiny-a/model'), { backend: 'wasm' });
  registerGradients();
});
after(() => pipe?.dispose());

test('forward: encodings, edited UNet prediction and loss match PyTorch; gradients to v and o*_V within 1e-3', async () => {
  const ids = [0, 1].map((b) => Array.from(value('input_ids').subarray(b * 77, (b + 1) * 77), Math.round));
  assert.deepEqual(ids, meta.prompts.map((p) => pipe.tokenizer.encode(p)));
  // the concept's placeholder token stands where the category word was
  const placeholder = pipe.tokenizer.vocabSize;
  const positions = Array.from(value('positions'), Math.round);
  positions.forEach((p, b) => {
    assert.equal(ids[b]![p], meta.category_token_id);
    ids[b]![p] = placeholder;
  });

  const layers = pipe.unet.crossAttentionLayers();
  assert.deepEqual([...layers.map((l) => l.name)].sort(), [...meta.layers].sort());
  const edit = new PerfusionTrainingEdit(layers, { hidden: 32, inverse: value('Cinv') }, {
    iStar: value('istar'),
    oK: layers.map((l) => value(`oK.${fixtureIndex(l.name)}`)),
    oV: layers.map((l) => value(`oV.${fixtureIndex(l.name)}`)),
  });
  const v = tf.variable(tf.tensor1d(value('v')), true, 'perfusion/v');
  const timesteps = Array.from(value('timesteps'), Math.round);
  const nhwc = (key: string) => tf.tidy(() => tf.transpose(tf.tensor4d(value(key), [2, 4, 16, 16]), [0, 2, 3, 1]) as tf.Tensor4D);
  const x0 = nhwc('x0');
  const noise = nhwc('noise');
  const noisy = addNoiseVariancePreserving(alphasCumprod(pipe.schedulerConfig), x0, noise, timesteps) as tf.Tensor4D;
  const t = tf.tensor1d(timesteps);
  try {
    const kept: tf.Tensor[] = [];
    const { value: loss, grads } = tf.variableGrads(() => {
      const context = pipe.encodePrompt(ids, new Map([[placeholder, v as tf.Tensor1D]]));
      const predicted = pipe.unet.forward(noisy, t, context, { edit });
      kept.push(tf.keep(context), tf.keep(tf.transpose(predicted, [0, 3, 1, 2])));
      return tf.mean(tf.square(tf.sub(predicted, noise))) as tf.Scalar;
    }, [v, ...edit.valueTargets]);
    const [encodings, prediction] = await Promise.all(kept.map((k) => k.data()));
    tf.dispose(kept);

    assert.ok(relativeError(encodings, value('encodings')) < 1e-5, `encodings ${relativeError(encodings, value('encodings'))}`);
    assert.ok(relativeError(prediction, value('prediction')) < 1e-4, `prediction ${relativeError(prediction, value('prediction'))}`);
    const lossValue = (await loss.data())[0]!;
    assert.ok(Math.abs(lossValue - value('loss')[0]!) / value('loss')[0]! < 1e-4, `loss ${lossValue} vs ${value('loss')[0]}`);

    const gradV = await grads[v.name]!.data();
    assert.ok(relativeError(gradV, value('grad_v')) < 1e-3, `grad v ${relativeError(gradV, value('grad_v'))}`);
    for (const [l, layer] of layers.entries()) {
      const g = await grads[edit.valueTargets[l]!.name]!.data();
      const expected = value(`grad_oV.${fixtureIndex(layer.name)}`);
      assert.ok(relativeError(g, expected) < 1e-3, `grad o*_V ${layer.name}: ${relativeError(g, expected)}`);
    }
    tf.dispose([loss, ...Object.values(grads)]);
  } finally {
    tf.dispose([v, x0, noise, noisy, t]);
    edit.dispose();
  }
});
