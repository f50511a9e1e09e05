// The built-in demo model: a tiny Stable-Diffusion-1.x folder with random weights, written on first use
// when no MODEL_DIR is configured, so the bot and the tools run end to end without a 4 GB download. It has
// the real diffusers layout (model_index.json, every config, safetensors weights with the SD 1.5 key names,
// a CLIP-format tokenizer, SD 1.5's scheduler config) at the sizes of test/fixtures/sd-tiny-a: 128×128
// images, 16×16 latents. Its images are noise-like patterns; they show the machinery works, not a model.
//
// The folder is the same bytes every time: weights come from a seeded generator (one stream per weight,
// seeded by its name), the tokenizer is learnt deterministically (demo-bpe.ts), JSON keys are in a fixed
// order. It is built in a sibling temp folder and renamed into place with a marker file written last, so a
// crash never leaves a half-written folder behind under the final name, and one that lacks the marker (or
// has an older one) is rebuilt.
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { SeededRandom } from '../random.ts';
import { textEncoderParameterShapes } from '../sd/text-encoder.ts';
import { unetParameterShapes } from '../sd/unet.ts';
import { vaeParameterShapes } from '../sd/vae.ts';
import { writeSafetensors, type TensorToWrite } from '../weights/safetensors.ts';
import { parseClipTextConfig, parseUNetConfig, parseVaeConfig } from './configs.ts';
import { DEMO_WORDS, learnBpe, mergesTxt, vocabJson } from './demo-bpe.ts';
import { ModelLoadError } from './errors.ts';

/** The marker file; its content names the demo format, so a folder from an older format is rebuilt. */
export const DEMO_MARKER = 'perfusion-demo-model.json';
const DEMO_FORMAT = { format: 'perfusion-bot demo model', version: 1 };
const DEMO_ENTRIES = new Set(['model_index.json', 'scheduler', 'text_encoder', 'tokenizer', 'unet', 'vae', DEMO_MARKER]);

/** Where the bot and the tools keep the demo model when nothing else is configured: <repo>/data/demo-model. */
export function defaultDemoModelDir(): string {
  return resolve(new URL('../../data/demo-model', import.meta.url).pathname);
}

/** True when `dir` holds a complete demo model of the current format. */
export function isDemoModel(dir: string): boolean {
  try {
    return readFileSync(join(dir, DEMO_MARKER), 'utf8') === markerText();
  } catch {
    return false;
  }
}

/**
 * Writes the demo model into `dir` unless a complete one is already there; returns the absolute folder path.
 * A folder that exists but is not a demo model (it holds other files) is left alone and refused.
 */
export function ensureDemoModel(dir: string): string {
  const target = resolve(dir);
  if (isDemoModel(target)) return target;
  if (existsSync(target)) {
    const foreign = readdirSync(target).filter((name) => !DEMO_ENTRIES.has(name));
    if (foreign.length) {
      throw new ModelLoadError(
        `Cannot write the built-in demo model into ${target}: that folder already holds other files (${foreign.slice(0, 3).join(', ')}). ` +
          'Choose an empty or new folder for it, or point MODEL_DIR at a real model.',
      );
    }
  }
  mkdirSync(dirname(target), { recursive: true });
  const staging = `${target}.partial-${process.pid}-${Date.now()}`;
  try {
    writeDemoModel(staging);
    // an incomplete or outdated demo folder under the final name is replaced
    if (existsSync(target)) rmSync(target, { recursive: true, force: true });
    try {
      renameSync(staging, target);
    } catch (err) {
      // another process finished first: its folder is as good as ours
      if (!isDemoModel(target)) throw err;
    }
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  return target;
}

function markerText(): string {
  return `${JSON.stringify(DEMO_FORMAT, null, 2)}\n`;
}

/** Writes every file of the demo model into `dir` (created), the marker last. */
function writeDemoModel(dir: string): void {
  const { vocab, merges } = learnBpe(DEMO_WORDS);
  const bosId = vocab.get('<|startoftext|>')!;
  const eosId = vocab.get('<|endoftext|>')!;
  const configs = demoConfigs(vocab.size, bosId, eosId);

  for (const sub of ['scheduler', 'text_encoder', 'tokenizer', 'unet', 'vae']) mkdirSync(join(dir, sub), { recursive: true });
  const json = (path: string, value: unknown) => writeFileSync(join(dir, path), `${JSON.stringify(value, null, 2)}\n`);
  json('model_index.json', configs.modelIndex);
  json('scheduler/scheduler_config.json', configs.scheduler);
  json('text_encoder/config.json', configs.textEncoder);
  json('unet/config.json', configs.unet);
  json('vae/config.json', configs.vae);
  writeFileSync(join(dir, 'tokenizer/vocab.json'), vocabJson(vocab));
  writeFileSync(join(dir, 'tokenizer/merges.txt'), mergesTxt(merges));
  json('tokenizer/tokenizer_config.json', configs.tokenizer);
  json('tokenizer/special_tokens_map.json', configs.specialTokens);

  const metadata = { format: 'pt' };
  writeSafetensors(join(dir, 'text_encoder/model.safetensors'),
    randomTensors(textEncoderParameterShapes(parseClipTextConfig(configs.textEncoder)), 'text_encoder'), metadata);
  writeSafetensors(join(dir, 'unet/diffusion_pytorch_model.safetensors'),
    randomTensors(unetParameterShapes(parseUNetConfig(configs.unet)), 'unet'), metadata);
  writeSafetensors(join(dir, 'vae/diffusion_pytorch_model.safetensors'),
    randomTensors(vaeParameterShapes(parseVaeConfig(configs.vae)), 'vae'), metadata);

  writeFileSync(join(dir, DEMO_MARKER), markerText());
}

/** The config files, as diffusers/transformers write them for an SD 1.x pipeline (sizes of sd-tiny-a). */
export function demoConfigs(vocabSize: number, bosId: number, eosId: number) {
  const special = { bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', pad_token: '<|endoftext|>', unk_token: '<|endoftext|>' };
  return {
    modelIndex: {
      _class_name: 'StableDiffusionPipeline',
      _diffusers_version: '0.30.0',
      _name_or_path: 'perfusion-bot built-in demo model',
      feature_extractor: [null, null],
      image_encoder: [null, null],
      requires_safety_checker: false,
      safety_checker: [null, null],
      scheduler: ['diffusers', 'PNDMScheduler'],
      text_encoder: ['transformers', 'CLIPTextModel'],
      tokenizer: ['transformers', 'CLIPTokenizer'],
      unet: ['diffusers', 'UNet2DConditionModel'],
      vae: ['diffusers', 'AutoencoderKL'],
    },
    // SD 1.5's own scheduler config
    scheduler: {
      _class_name: 'PNDMScheduler',
      _diffusers_version: '0.30.0',
      beta_end: 0.012,
      beta_schedule: 'scaled_linear',
      beta_start: 0.00085,
      clip_sample: false,
      num_train_timesteps: 1000,
      prediction_type: 'epsilon',
      set_alpha_to_one: false,
      skip_prk_steps: true,
      steps_offset: 1,
      timestep_spacing: 'leading',
      trained_betas: null,
    },
    textEncoder: {
      architectures: ['CLIPTextModel'],
      attention_dropout: 0.0,
      bos_token_id: bosId,
      eos_token_id: eosId,
      hidden_act: 'quick_gelu',
      hidden_size: 32,
      initializer_factor: 1.0,
      initializer_range: 0.02,
      intermediate_size: 37,
      layer_norm_eps: 1e-5,
      max_position_embeddings: 77,
      model_type: 'clip_text_model',
      num_attention_heads: 4,
      num_hidden_layers: 2,
      pad_token_id: eosId,
      projection_dim: 32,
      torch_dtype: 'float32',
      vocab_size: vocabSize,
    },
    unet: {
      _class_name: 'UNet2DConditionModel',
      _diffusers_version: '0.30.0',
      act_fn: 'silu',
      attention_head_dim: 2,
      block_out_channels: [32, 32, 64, 64],
      center_input_sample: false,
      cross_attention_dim: 32,
      down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
      downsample_padding: 1,
      flip_sin_to_cos: true,
      freq_shift: 0,
      in_channels: 4,
      layers_per_block: 2,
      mid_block_scale_factor: 1,
      norm_eps: 1e-5,
      norm_num_groups: 8,
      out_channels: 4,
      sample_size: 16,
      up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
    },
    vae: {
      _class_name: 'AutoencoderKL',
      _diffusers_version: '0.30.0',
      act_fn: 'silu',
      block_out_channels: [16, 32, 32, 32],
      down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
      in_channels: 3,
      latent_channels: 4,
      layers_per_block: 1,
      norm_num_groups: 8,
      out_channels: 3,
      sample_size: 128,
      scaling_factor: 0.18215,
      up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
    },
    tokenizer: {
      add_prefix_space: false,
      clean_up_tokenization_spaces: true,
      do_lower_case: true,
      errors: 'replace',
      model_max_length: 77,
      tokenizer_class: 'CLIPTokenizer',
      ...special,
    },
    specialTokens: special,
  };
}

/**
 * How a freshly initialised weight is distributed, by its name and shape (PyTorch's and transformers'
 * default initialisations, which keep activations in a sane range through the random network):
 * norm scales 1, biases near 0, CLIP embeddings N(0, 0.02²) / N(0, 0.01²), other weights with standard
 * deviation 1/√(3·fan_in) (the spread of PyTorch's kaiming-uniform default).
 */
export function initialDistribution(key: string, shape: readonly number[]): { mean: number; std: number } {
  if (shape.length === 1) return key.endsWith('.weight') ? { mean: 1, std: 0.02 } : { mean: 0, std: 0.02 };
  if (key.endsWith('token_embedding.weight')) return { mean: 0, std: 0.02 };
  if (key.endsWith('position_embedding.weight')) return { mean: 0, std: 0.01 };
  const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
  return { mean: 0, std: 1 / Math.sqrt(3 * fanIn) };
}

/** A seed per weight name (FNV-1a), so that adding a weight to the model never changes the others. */
export function weightSeed(component: string, key: string): number {
  let h = 0x811c9dc5;
  for (const ch of `${component}/${key}`) {
    h ^= ch.codePointAt(0)!;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

function randomTensors(shapes: ReadonlyMap<string, readonly number[]>, component: string): Record<string, TensorToWrite> {
  const out: Record<string, TensorToWrite> = {};
  for (const [key, shape] of shapes) {
    const { mean, std } = initialDistribution(key, shape);
    const values = new SeededRandom(weightSeed(component, key)).normals(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < values.length; i++) values[i] = mean + std * values[i]!;
    out[key] = { dtype: 'F32', shape, data: values };
  }
  return out;
}

