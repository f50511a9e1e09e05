// Opens a diffusers-format Stable Diffusion 1.x folder: model_index.json, each component's config, the
// tokenizer, and one safetensors weight file per model component (read lazily, tensor by tensor). Every
// problem is a ModelLoadError that says what is wrong, where, and what to do.
import { closeSync, existsSync, fstatSync, openSync, readFileSync, readSync, readdirSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import { ClipTokenizer } from '../text/tokenizer.ts';
import { textEncoderParameterShapes, TEXT_MODEL_PREFIX } from '../sd/text-encoder.ts';
import { ComponentWeights } from '../weights/component-weights.ts';
import { SafetensorsError, SafetensorsFile } from '../weights/safetensors.ts';
import {
  parseClipTextConfig, parseModelIndex, parseSchedulerConfig, parseUNetConfig, parseVaeConfig,
  type ClipTextConfig, type ModelIndex, type SchedulerConfig, type UNetConfig, type VaeConfig,
} from './configs.ts';
import { ModelLoadError } from './errors.ts';

export { ModelLoadError };

export interface SdModelFolder {
  /** absolute path of the folder */
  readonly dir: string;
  readonly modelIndex: ModelIndex;
  readonly textEncoderConfig: ClipTextConfig;
  readonly unetConfig: UNetConfig;
  readonly vaeConfig: VaeConfig;
  readonly schedulerConfig: SchedulerConfig;
  readonly tokenizerDir: string;
  readonly tokenizer: ClipTokenizer;
  /** the safetensors file each component's weights come from (fp32, or the .fp16 variant when only it exists) */
  readonly weightFiles: { readonly textEncoder: string; readonly unet: string; readonly vae: string };
  readonly weights: { readonly textEncoder: ComponentWeights; readonly unet: ComponentWeights; readonly vae: ComponentWeights };
  /** sha256 (hex) of the tokenizer files and of each weight file's header, size and sampled data blocks */
  readonly hash: string;
  /** closes the weight files */
  close(): void;
}

type ComponentKey = 'textEncoder' | 'unet' | 'vae';

/** folder, expected class and weight file base name of each model component */
const MODEL_COMPONENTS: ReadonlyArray<{ key: ComponentKey; folder: string; className: string; weightFile: string }> = [
  { key: 'textEncoder', folder: 'text_encoder', className: 'CLIPTextModel', weightFile: 'model' },
  { key: 'unet', folder: 'unet', className: 'UNet2DConditionModel', weightFile: 'diffusion_pytorch_model' },
  { key: 'vae', folder: 'vae', className: 'AutoencoderKL', weightFile: 'diffusion_pytorch_model' },
];

const FLOAT_DTYPES = new Set(['F32', 'F16', 'BF16']);
const PICKLE_EXTENSIONS = ['.bin', '.ckpt', '.pt', '.pth'];
const HASH_SAMPLE_BLOCKS = 16;
const HASH_BLOCK_BYTES = 64 * 1024;

export function openModelFolder(dir: string): SdModelFolder {
  const root = resolve(dir);
  if (!existsSync(root)) {
    throw new ModelLoadError(
      `The model folder ${root} does not exist. Point MODEL_DIR at a diffusers-format Stable Diffusion 1.x folder ` +
        '(the one holding model_index.json, unet/, vae/, text_encoder/, tokenizer/ and scheduler/).',
    );
  }
  if (!statSync(root).isDirectory()) {
    throw new ModelLoadError(
      `${root} is a file, not a model folder. perfusion-bot needs a diffusers-format Stable Diffusion 1.x folder; ` +
        'a single-file checkpoint has to be converted to that layout first (diffusers: StableDiffusionPipeline.from_single_file(...).save_pretrained(folder)).',
    );
  }
  const indexPath = join(root, 'model_index.json');
  if (!existsSync(indexPath)) {
    const singleFiles = readdirSync(root).filter((f) => /\.(safetensors|ckpt)$/.test(f));
    throw new ModelLoadError(
      `${root} has no model_index.json, so it is not a diffusers-format model folder. ` +
        (singleFiles.length
          ? `It holds the single-file checkpoint ${singleFiles[0]}; convert it with diffusers (StableDiffusionPipeline.from_single_file(...).save_pretrained(folder)) and point MODEL_DIR at the result.`
          : 'Download a Stable Diffusion 1.x model in diffusers format (e.g. stable-diffusion-v1-5/stable-diffusion-v1-5) and point MODEL_DIR at it.'),
    );
  }
  const modelIndex = parseModelIndex(readJsonFile(indexPath), 'model_index.json');
  checkComponents(root, modelIndex);

  const textEncoderConfig = parseClipTextConfig(readJsonFile(join(root, 'text_encoder/config.json')));
  const unetConfig = parseUNetConfig(readJsonFile(join(root, 'unet/config.json')));
  const vaeConfig = parseVaeConfig(readJsonFile(join(root, 'vae/config.json')));
  const schedulerConfig = parseSchedulerConfig(readJsonFile(join(root, 'scheduler/scheduler_config.json')));
  checkArchitecture(root, textEncoderConfig, unetConfig, vaeConfig);

  const tokenizerDir = join(root, 'tokenizer');
  for (const file of ['vocab.json', 'merges.txt']) requireFile(join(tokenizerDir, file), 'tokenizer');
  const tokenizer = ClipTokenizer.fromFolder(tokenizerDir);

  const weightFiles = {} as Record<ComponentKey, string>;
  for (const c of MODEL_COMPONENTS) weightFiles[c.key] = findWeightFile(join(root, c.folder), c.folder, c.weightFile);

  const opened: ComponentWeights[] = [];
  try {
    const open = (key: ComponentKey, folder: string) => {
      const weights = openWeights(folder, weightFiles[key]);
      opened.push(weights);
      return weights;
    };
    const weights = {
      textEncoder: open('textEncoder', 'text_encoder'),
      unet: open('unet', 'unet'),
      vae: open('vae', 'vae'),
    };
    checkTextEncoderShapes(weights.textEncoder, textEncoderConfig);
    checkUNetShapes(weights.unet, unetConfig);
    checkVaeShapes(weights.vae, vaeConfig);
    const hash = modelHash([join(tokenizerDir, 'vocab.json'), join(tokenizerDir, 'merges.txt')], [
      weightFiles.textEncoder, weightFiles.unet, weightFiles.vae,
    ]);
    let closed = false;
    return {
      dir: root,
      modelIndex,
      textEncoderConfig,
      unetConfig,
      vaeConfig,
      schedulerConfig,
      tokenizerDir,
      tokenizer,
      weightFiles,
      weights,
      hash,
      close() {
        if (closed) return;
        closed = true;
        for (const w of opened) w.close();
      },
    };
  } catch (err) {
    for (const w of opened) w.close();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------
// layout and architecture checks

function checkComponents(root: string, index: ModelIndex): void {
  const notSd1 = (why: string) =>
    new ModelLoadError(`${root} is not a Stable Diffusion 1.x model: ${why}. perfusion-bot supports SD 1.x (e.g. SD 1.5) in diffusers format.`);
  if (index.components.text_encoder_2 || /XL/i.test(index.className)) throw notSd1(`it is an SDXL pipeline (${index.className})`);
  const required = [...MODEL_COMPONENTS, { folder: 'tokenizer', className: 'CLIPTokenizer' }, { folder: 'scheduler', className: '' }];
  for (const { folder, className } of required) {
    const entry = index.components[folder];
    if (!entry) throw notSd1(`model_index.json lists no ${folder} component`);
    // tokenizers may be saved as the fast variant; schedulers are of any class
    if (className && entry.className !== className && entry.className !== `${className}Fast`) {
      throw notSd1(`its ${folder} is a ${entry.className}, not a ${className}`);
    }
    if (!existsSync(join(root, folder))) {
      throw new ModelLoadError(`The model folder ${root} is incomplete: the ${folder}/ folder (expected at ${join(root, folder)}) is missing. Download it again.`);
    }
  }
}

function checkArchitecture(root: string, text: ClipTextConfig, unet: UNetConfig, vae: VaeConfig): void {
  const notSd1 = (why: string) =>
    new ModelLoadError(`${root} is not a Stable Diffusion 1.x text-to-image model: ${why}.`);
  if (unet.additionEmbedType !== null) throw notSd1(`its UNet has addition_embed_type "${unet.additionEmbedType}" (an SDXL-style UNet)`);
  if (unet.classEmbedType !== null) throw notSd1(`its UNet has class_embed_type "${unet.classEmbedType}" (an upscaler or variation model)`);
  if (unet.encoderHidDimType !== null || unet.timeCondProjDim !== null) {
    throw notSd1('its UNet takes extra conditioning inputs (encoder_hid_dim_type or time_cond_proj_dim)');
  }
  if (unet.inChannels !== vae.latentChannels) {
    throw notSd1(
      `its UNet takes ${unet.inChannels} input channels but the VAE makes ${vae.latentChannels}-channel latents` +
        (unet.inChannels === 9 ? ' (an inpainting model)' : ''),
    );
  }
  if (typeof unet.crossAttentionDim !== 'number' || unet.crossAttentionDim !== text.hiddenSize) {
    throw notSd1(`its UNet attends to text states of width ${JSON.stringify(unet.crossAttentionDim)} but its text encoder makes width ${text.hiddenSize}`);
  }
}

/** Every text-encoder weight the config implies is present with that shape (the encoder reads exactly these). */
function checkTextEncoderShapes(weights: ComponentWeights, config: ClipTextConfig): void {
  const prefix = weights.has(`${TEXT_MODEL_PREFIX}embeddings.token_embedding.weight`) ? TEXT_MODEL_PREFIX : '';
  for (const [key, shape] of textEncoderParameterShapes(config, prefix)) checkShape(weights, key, shape);
}

/** Spot checks of the UNet against its config; the UNet itself checks every weight when it is built. */
function checkUNetShapes(weights: ComponentWeights, config: UNetConfig): void {
  const first = config.blockOutChannels[0]!;
  checkShape(weights, 'conv_in.weight', [first, config.inChannels, config.convInKernel, config.convInKernel]);
  checkShape(weights, 'conv_out.weight', [config.outChannels, first, config.convOutKernel, config.convOutKernel]);
  checkShape(weights, 'time_embedding.linear_1.weight', [config.timeEmbeddingDim ?? first * 4, first]);
  const crossAttention = 'down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight';
  if (weights.has(crossAttention)) checkShape(weights, crossAttention, [first, config.crossAttentionDim as number]);
}

/** Spot checks of the VAE against its config; the VAE itself checks every weight when it is built. */
function checkVaeShapes(weights: ComponentWeights, config: VaeConfig): void {
  const first = config.blockOutChannels[0]!;
  const last = config.blockOutChannels[config.blockOutChannels.length - 1]!;
  const latent = config.latentChannels;
  checkShape(weights, 'decoder.conv_in.weight', [last, latent, 3, 3]);
  checkShape(weights, 'decoder.conv_out.weight', [config.outChannels, first, 3, 3]);
  checkShape(weights, 'encoder.conv_in.weight', [first, config.inChannels, 3, 3]);
  if (config.usePostQuantConv) checkShape(weights, 'post_quant_conv.weight', [latent, latent, 1, 1]);
}

function checkShape(weights: ComponentWeights, key: string, expected: readonly number[]): void {
  if (!weights.has(key)) {
    throw new ModelLoadError(
      `The ${weights.component} weights in ${weights.path} have no tensor "${key}", which its config.json implies. ` +
        'The weights and the config do not belong together, or the file is not a diffusers-format SD 1.x file.',
    );
  }
  const actual = weights.shape(key);
  if (actual.length !== expected.length || actual.some((d, i) => d !== expected[i])) {
    throw new ModelLoadError(
      `The ${weights.component} weight "${key}" in ${weights.path} has shape [${actual.join(', ')}] but ${weights.component}/config.json implies ` +
        `[${expected.join(', ')}]. The weights and the config do not belong together (a different model's file?).`,
    );
  }
}

// ---------------------------------------------------------------------------------------------------
// files

function readJsonFile(path: string): unknown {
  requireFile(path);
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    throw new ModelLoadError(`${path} is not valid JSON; the file is damaged. Download it again.`);
  }
}

function requireFile(path: string, what?: string): void {
  if (!existsSync(path)) {
    throw new ModelLoadError(`The model folder is incomplete: ${what ? `the ${what} file ` : ''}${path} is missing. Download it again.`);
  }
}

/** `<name>.safetensors`, else `<name>.fp16.safetensors`; PyTorch pickles are refused by name. */
function findWeightFile(folder: string, component: string, name: string): string {
  for (const candidate of [`${name}.safetensors`, `${name}.fp16.safetensors`]) {
    if (existsSync(join(folder, candidate))) return join(folder, candidate);
  }
  const present = existsSync(folder) ? readdirSync(folder) : [];
  if (present.some((f) => f.endsWith('.safetensors.index.json'))) {
    throw new ModelLoadError(`The ${component} weights in ${folder} are split into several files (sharded); perfusion-bot reads one ${name}.safetensors per component.`);
  }
  const pickles = present.filter((f) => PICKLE_EXTENSIONS.some((ext) => f.endsWith(ext)));
  if (pickles.length) {
    throw new ModelLoadError(
      `The ${component} weights in ${folder} are only in PyTorch pickle format (${pickles.join(', ')}); perfusion-bot reads safetensors only. ` +
        `Download ${name}.safetensors for it, or convert the folder with diffusers (save_pretrained(folder, safe_serialization=True)).`,
    );
  }
  throw new ModelLoadError(`The model folder is incomplete: the ${component} weights ${join(folder, `${name}.safetensors`)} are missing. Download them again.`);
}

function openWeights(component: string, path: string): ComponentWeights {
  if (isGitLfsPointer(path)) {
    throw new ModelLoadError(
      `${path} is a Git LFS pointer, not the ${component} weights: the folder was cloned without its large files. Run "git lfs pull" in it.`,
    );
  }
  let file: SafetensorsFile;
  try {
    file = SafetensorsFile.open(path);
  } catch (err) {
    if (!(err instanceof SafetensorsError)) throw err;
    const detail = err.message.replace(/^[^:]*: /, '');
    const advice = /unsupported dtype/.test(detail)
      ? 'perfusion-bot reads F32, F16 and BF16 weights; use the fp32 or fp16 files of the model.'
      : 'The file is damaged or incompletely downloaded; download it again.';
    throw new ModelLoadError(`The ${component} weights in ${path} cannot be read: ${detail}. ${advice}`, { cause: err });
  }
  for (const key of file.keys()) {
    const { dtype } = file.info(key);
    // position_ids is an integer buffer some text-encoder files carry; nothing reads it
    if (!FLOAT_DTYPES.has(dtype) && !key.endsWith('position_ids')) {
      file.close();
      throw new ModelLoadError(
        `The ${component} weight "${key}" in ${path} has dtype ${dtype}; perfusion-bot reads F32, F16 and BF16 weights. Use the fp32 or fp16 files of the model.`,
      );
    }
  }
  return new ComponentWeights(component, file);
}

function isGitLfsPointer(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    if (fstatSync(fd).size > 1024) return false;
    const head = Buffer.alloc(64);
    const n = readSync(fd, head, 0, 64, 0);
    return head.subarray(0, n).toString('latin1').startsWith('version https://git-lfs');
  } finally {
    closeSync(fd);
  }
}

/**
 * A content hash that costs about a megabyte of reading per weight file, whatever its size: the whole
 * tokenizer files; for each weight file its size, its header (names, dtypes, shapes, offsets) and
 * HASH_SAMPLE_BLOCKS evenly spaced blocks of its data (all of it when the data is smaller than that).
 */
export function modelHash(wholeFiles: readonly string[], weightFiles: readonly string[]): string {
  const hash = createHash('sha256');
  for (const path of wholeFiles) hash.update(readFileSync(path));
  for (const path of weightFiles) {
    const fd = openSync(path, 'r');
    try {
      const size = fstatSync(fd).size;
      hash.update(`${size}\n`);
      const lengthBytes = Buffer.alloc(8);
      readSync(fd, lengthBytes, 0, 8, 0);
      const dataStart = 8 + Number(lengthBytes.readBigUInt64LE(0));
      hash.update(readRange(fd, 0, dataStart));
      const dataLength = size - dataStart;
      if (dataLength <= HASH_SAMPLE_BLOCKS * HASH_BLOCK_BYTES) {
        hash.update(readRange(fd, dataStart, dataLength));
      } else {
        const stride = (dataLength - HASH_BLOCK_BYTES) / (HASH_SAMPLE_BLOCKS - 1);
        for (let i = 0; i < HASH_SAMPLE_BLOCKS; i++) hash.update(readRange(fd, dataStart + Math.floor(i * stride), HASH_BLOCK_BYTES));
      }
    } finally {
      closeSync(fd);
    }
  }
  return hash.digest('hex');
}

function readRange(fd: number, position: number, length: number): Buffer {
  const buffer = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buffer, done, length - done, position + done);
    if (n <= 0) break;
    done += n;
  }
  return buffer;
}
