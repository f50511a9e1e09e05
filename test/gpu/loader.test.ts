import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ModelLoadError, openModelFolder } from '../../gpu/model/loader.ts';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../gpu/weights/safetensors.ts';

const fixtureModel = new URL('../fixtures/sd-tiny-a/model', import.meta.url).pathname;
const tokenizerCases = JSON.parse(readFileSync(new URL('../fixtures/sd-tiny-a/tokenizer_cases.json', import.meta.url), 'utf8')) as {
  cases: Array<{ text: string; input_ids: number[] }>;
};
const tmp = mkdtempSync(join(tmpdir(), 'model-loader-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

let copies = 0;
/** A fresh copy of the fixture model folder to damage. */
function copyModel(): string {
  const dir = join(tmp, `model-${copies++}`);
  cpSync(fixtureModel, dir, { recursive: true });
  return dir;
}

/** Rewrites a safetensors header (the data section is kept byte for byte). */
function rewriteHeader(path: string, mutate: (header: Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>) => void): void {
  const bytes = readFileSync(path);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
  mutate(header);
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([length, json, bytes.subarray(8 + headerLength)]));
}

function editJson(path: string, edit: (json: Record<string, unknown>) => void): void {
  const json = JSON.parse(readFileSync(path, 'utf8'));
  edit(json);
  writeFileSync(path, JSON.stringify(json));
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Asserts that opening `dir` fails with a ModelLoadError whose message matches every pattern. */
function assertLoadError(dir: string, ...patterns: RegExp[]): void {
  const before = openFds();
  assert.throws(() => openModelFolder(dir), (e: unknown) => {
    assert.ok(e instanceof ModelLoadError, `expected a ModelLoadError, got ${String(e)}`);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
  assert.equal(openFds(), before, 'no file left open after the failure');
}

test('opens the fixture folder: configs with class defaults, tokenizer, lazily read weights, hash', () => {
  const model = openModelFolder(fixtureModel);
  try {
    assert.equal(model.modelIndex.className, 'StableDiffusionPipeline');
    assert.deepEqual(model.unetConfig.blockOutChannels, [32, 32, 64, 64]);
    assert.equal(model.unetConfig.crossAttentionDim, 32);
    assert.equal(model.unetConfig.useLinearProjection, false);
    assert.equal(model.vaeConfig.scalingFactor, 0.18215);
    assert.deepEqual(model.vaeConfig.blockOutChannels, [16, 32, 32, 32]);
    assert.equal(model.textEncoderConfig.hiddenSize, 32);
    assert.equal(model.textEncoderConfig.numHiddenLayers, 2);
    assert.equal(model.textEncoderConfig.hiddenAct, 'quick_gelu');
    assert.equal(model.schedulerConfig.className, 'PNDMScheduler');
    assert.equal(model.schedulerConfig.stepsOffset, 1);
    assert.equal(model.schedulerConfig.betaSchedule, 'scaled_linear');
    assert.equal(model.schedulerConfig.skipPrkSteps, true);
    assert.equal(model.tokenizerDir, join(fixtureModel, 'tokenizer'));
    assert.deepEqual(model.tokenizer.encode(tokenizerCases.cases[0]!.text), tokenizerCases.cases[0]!.input_ids);
    assert.equal(model.weightFiles.unet, join(fixtureModel, 'unet/diffusion_pytorch_model.safetensors'));
    assert.equal(model.weights.unet.component, 'unet');

    const direct = SafetensorsFile.open(model.weightFiles.unet);
    assert.deepEqual(model.weights.unet.float32('conv_in.weight', [32, 4, 3, 3]), direct.readFloat32('conv_in.weight'));
    direct.close();

    assert.match(model.hash, /^[0-9a-f]{64}$/);
    const again = openModelFolder(fixtureModel);
    assert.equal(again.hash, model.hash, 'the hash is stable');
    again.close();
  } finally {
    model.close();
  }
  assert.throws(() => model.weights.vae.float32('decoder.conv_in.weight', [32, 4, 3, 3]), /closed/);
});

test('fields a config leaves out take the diffusers class defaults', () => {
  const dir = copyModel();
  editJson(join(dir, 'vae/config.json'), (c) => { delete c.scaling_factor; });
  editJson(join(dir, 'unet/config.json'), (c) => { delete c.use_linear_projection; delete c.upcast_attention; delete c.norm_eps; });
  const model = openModelFolder(dir);
  assert.equal(model.vaeConfig.scalingFactor, 0.18215);
  assert.equal(model.unetConfig.useLinearProjection, false);
  assert.equal(model.unetConfig.upcastAttention, false);
  assert.equal(model.unetConfig.normEps, 1e-5);
  model.close();
});

test('the hash changes with the weights and does not read whole large files', () => {
  const base = openModelFolder(fixtureModel);
  const dir = copyModel();
  const file = join(dir, 'text_encoder/model.safetensors');
  const bytes = readFileSync(file);
  bytes[bytes.length - 3] ^= 0x40; // one bit of the last weight
  writeFileSync(file, bytes);
  const changed = openModelFolder(dir);
  assert.notEqual(changed.hash, base.hash);
  changed.close();

  // a byte in the UNet data (9.8 MB) between the sampled blocks does not change the hash: it is sampled
  const dir2 = copyModel();
  const unet = join(dir2, 'unet/diffusion_pytorch_model.safetensors');
  const unetBytes = readFileSync(unet);
  const dataStart = 8 + Number(unetBytes.readBigUInt64LE(0));
  const stride = (unetBytes.length - dataStart - 65536) / 15;
  unetBytes[dataStart + Math.floor(stride / 2) + 65536] ^= 0x40;
  writeFileSync(unet, unetBytes);
  const sampled = openModelFolder(dir2);
  assert.equal(sampled.hash, base.hash);
  sampled.close();
  base.close();
});

test('a component that has only the .fp16.safetensors variant is read from it', () => {
  const dir = copyModel();
  const fp32Path = join(dir, 'unet/diffusion_pytorch_model.safetensors');
  const fp32 = SafetensorsFile.open(fp32Path);
  const tensors: Record<string, TensorToWrite> = {};
  for (const key of fp32.keys()) tensors[key] = { dtype: 'F16', shape: fp32.info(key).shape, data: fp32.readFloat32(key) };
  const convIn = fp32.readFloat32('conv_in.weight');
  fp32.close();
  writeSafetensors(join(dir, 'unet/diffusion_pytorch_model.fp16.safetensors'), tensors);
  rmSync(fp32Path);

  const model = openModelFolder(dir);
  assert.equal(model.weightFiles.unet, join(dir, 'unet/diffusion_pytorch_model.fp16.safetensors'));
  const half = model.weights.unet.float32('conv_in.weight', [32, 4, 3, 3]);
  for (let i = 0; i < convIn.length; i++) assert.ok(Math.abs(half[i]! - convIn[i]!) <= Math.abs(convIn[i]!) * 1e-3 + 1e-7);
  const reference = openModelFolder(fixtureModel);
  assert.notEqual(model.hash, reference.hash);
  reference.close();
  model.close();
});

test('a missing folder, or one that is not a diffusers folder, is named', () => {
  assertLoadError(join(tmp, 'no-such-model'), /model folder .*no-such-model does not exist/, /MODEL_DIR/);
  const dir = copyModel();
  rmSync(join(dir, 'model_index.json'));
  writeFileSync(join(dir, 'v1-5-pruned.ckpt'), 'not really');
  assertLoadError(dir, /has no model_index\.json/, /single-file checkpoint v1-5-pruned\.ckpt/);
  assertLoadError(join(dir, 'v1-5-pruned.ckpt'), /is a file, not a model folder/);
});

test('a missing file is named with its expected path', () => {
  const dir = copyModel();
  rmSync(join(dir, 'unet/config.json'));
  assertLoadError(dir, new RegExp(`${join(dir, 'unet/config.json')} is missing`));

  const dir2 = copyModel();
  rmSync(join(dir2, 'tokenizer/merges.txt'));
  assertLoadError(dir2, new RegExp(`tokenizer file ${join(dir2, 'tokenizer/merges.txt')} is missing`));

  const dir3 = copyModel();
  rmSync(join(dir3, 'text_encoder/model.safetensors'));
  assertLoadError(dir3, new RegExp(`text_encoder weights ${join(dir3, 'text_encoder/model.safetensors')} are missing`));

  const dir4 = copyModel();
  rmSync(join(dir4, 'vae'), { recursive: true });
  assertLoadError(dir4, /the vae\/ folder .* is missing/);
});

test('a damaged config is named with the file and the key', () => {
  const dir = copyModel();
  writeFileSync(join(dir, 'scheduler/scheduler_config.json'), '{"_class_name": "PNDMScheduler",');
  assertLoadError(dir, /scheduler_config\.json is not valid JSON/);
  const dir2 = copyModel();
  editJson(join(dir2, 'unet/config.json'), (c) => { c.block_out_channels = '32,32'; });
  assertLoadError(dir2, /unet\/config\.json: "block_out_channels" should be a list of numbers/);
});

test('a corrupt safetensors header is reported for its component', () => {
  const dir = copyModel();
  const file = join(dir, 'unet/diffusion_pytorch_model.safetensors');
  const bytes = readFileSync(file);
  bytes.writeBigUInt64LE(1n << 40n, 0);
  writeFileSync(file, bytes);
  assertLoadError(dir, /The unet weights in .*diffusion_pytorch_model\.safetensors cannot be read: corrupt header/, /download it again/);

  const dir2 = copyModel();
  const vae = join(dir2, 'vae/diffusion_pytorch_model.safetensors');
  const vaeBytes = readFileSync(vae);
  writeFileSync(vae, vaeBytes.subarray(0, 8 + Number(vaeBytes.readBigUInt64LE(0)) + 1000)); // truncated download
  assertLoadError(dir2, /The vae weights .* cannot be read: tensor ".*" ends at byte \d+ of a \d+-byte data section/);

  const dir3 = copyModel();
  writeFileSync(join(dir3, 'vae/diffusion_pytorch_model.safetensors'),
    'version https://git-lfs.github.com/spec/v1\noid sha256:0000\nsize 167335342\n');
  assertLoadError(dir3, /Git LFS pointer, not the vae weights/, /git lfs pull/);
});

test('an unsupported dtype is reported with the component and the tensor', () => {
  const dir = copyModel();
  rewriteHeader(join(dir, 'vae/diffusion_pytorch_model.safetensors'), (h) => { h['decoder.conv_in.bias']!.dtype = 'F8_E4M3'; });
  assertLoadError(dir, /The vae weights .* cannot be read: tensor "decoder\.conv_in\.bias" has unsupported dtype "F8_E4M3"/, /F32, F16 and BF16/);

  const dir2 = copyModel();
  rewriteHeader(join(dir2, 'unet/diffusion_pytorch_model.safetensors'), (h) => { h['conv_in.bias']!.dtype = 'I32'; });
  assertLoadError(dir2, /The unet weight "conv_in\.bias" in .* has dtype I32; perfusion-bot reads F32, F16 and BF16 weights/);
});

test('a weight whose shape disagrees with the config names the component and the key', () => {
  const dir = copyModel();
  rewriteHeader(join(dir, 'text_encoder/model.safetensors'), (h) => { h['encoder.layers.1.mlp.fc1.weight']!.shape = [32, 37]; });
  assertLoadError(dir, /The text_encoder weight "encoder\.layers\.1\.mlp\.fc1\.weight" .* has shape \[32, 37\] but text_encoder\/config\.json implies \[37, 32\]/);

  const dir2 = copyModel();
  rewriteHeader(join(dir2, 'unet/diffusion_pytorch_model.safetensors'), (h) => { h['conv_in.weight']!.shape = [32, 4, 9, 1]; });
  assertLoadError(dir2, /The unet weight "conv_in\.weight" .* has shape \[32, 4, 9, 1\] but unet\/config\.json implies \[32, 4, 3, 3\]/);

  const dir3 = copyModel();
  rewriteHeader(join(dir3, 'text_encoder/model.safetensors'), (h) => { delete h['final_layer_norm.bias']; });
  assertLoadError(dir3, /text_encoder weights in .* have no tensor "final_layer_norm\.bias"/);
});

test('a component with only PyTorch pickle weights is refused with what to do', () => {
  const dir = copyModel();
  rmSync(join(dir, 'vae/diffusion_pytorch_model.safetensors'));
  writeFileSync(join(dir, 'vae/diffusion_pytorch_model.bin'), Buffer.from([0x80, 0x02, 0x63]));
  assertLoadError(dir, /vae weights in .* are only in PyTorch pickle format \(diffusion_pytorch_model\.bin\); perfusion-bot reads safetensors only/,
    /safe_serialization=True/);
  assert.ok(existsSync(join(dir, 'vae/diffusion_pytorch_model.bin')));
});

test('a folder of another model family is not taken for SD 1.x', () => {
  const dir = copyModel();
  editJson(join(dir, 'model_index.json'), (c) => {
    c._class_name = 'StableDiffusionXLPipeline';
    c.text_encoder_2 = ['transformers', 'CLIPTextModelWithProjection'];
  });
  assertLoadError(dir, /not a Stable Diffusion 1\.x model: it is an SDXL pipeline/);

  const dir2 = copyModel();
  editJson(join(dir2, 'unet/config.json'), (c) => { c.cross_attention_dim = 64; });
  assertLoadError(dir2, /UNet attends to text states of width 64 but its text encoder makes width 32/);

  const dir3 = copyModel();
  editJson(join(dir3, 'unet/config.json'), (c) => { c.in_channels = 9; });
  assertLoadError(dir3, /UNet takes 9 input channels .* \(an inpainting model\)/);

  const dir4 = copyModel();
  editJson(join(dir4, 'model_index.json'), (c) => { c.text_encoder = ['transformers', 'T5EncoderModel']; });
  assertLoadError(dir4, /its text_encoder is a T5EncoderModel, not a CLIPTextModel/);
});
