// Typed views of a diffusers SD-1.x folder's config files, with the library class defaults filled in for
// every field the file leaves out (diffusers `UNet2DConditionModel`, `AutoencoderKL`, the schedulers;
// transformers `CLIPTextConfig`). Field names are the config keys in camelCase: `block_out_channels` →
// `blockOutChannels`. A field of the wrong type is a ModelLoadError that names the file and the key.
import { ModelLoadError } from './errors.ts';

/** diffusers UNet2DConditionModel config (models/unets/unet_2d_condition.py), the fields SD 1.x uses. */
export interface UNetConfig {
  /** latent size the model was trained at (64 for SD 1.5); null when the file does not say */
  sampleSize: number | null;
  inChannels: number;
  outChannels: number;
  centerInputSample: boolean;
  flipSinToCos: boolean;
  freqShift: number;
  downBlockTypes: string[];
  midBlockType: string | null;
  upBlockTypes: string[];
  onlyCrossAttention: boolean | boolean[];
  blockOutChannels: number[];
  layersPerBlock: number | number[];
  downsamplePadding: number;
  midBlockScaleFactor: number;
  dropout: number;
  actFn: string;
  normNumGroups: number | null;
  normEps: number;
  crossAttentionDim: number | number[];
  transformerLayersPerBlock: number | number[];
  /** diffusers' naming bug: in SD 1.x configs this is the number of heads, not the head size (sd-engine.md §0.6) */
  attentionHeadDim: number | number[];
  /** when set, the real number of heads (then attentionHeadDim is ignored by diffusers for heads) */
  numAttentionHeads: number | number[] | null;
  dualCrossAttention: boolean;
  useLinearProjection: boolean;
  classEmbedType: string | null;
  additionEmbedType: string | null;
  numClassEmbeds: number | null;
  upcastAttention: boolean;
  resnetTimeScaleShift: string;
  resnetSkipTimeAct: boolean;
  resnetOutScaleFactor: number;
  timeEmbeddingType: string;
  timeEmbeddingDim: number | null;
  timeEmbeddingActFn: string | null;
  timestepPostAct: string | null;
  timeCondProjDim: number | null;
  convInKernel: number;
  convOutKernel: number;
  encoderHidDim: number | null;
  encoderHidDimType: string | null;
  attentionType: string;
  crossAttentionNorm: string | null;
  midBlockOnlyCrossAttention: boolean | null;
}

/** diffusers AutoencoderKL config (models/autoencoders/autoencoder_kl.py). */
export interface VaeConfig {
  inChannels: number;
  outChannels: number;
  downBlockTypes: string[];
  upBlockTypes: string[];
  blockOutChannels: number[];
  layersPerBlock: number;
  actFn: string;
  latentChannels: number;
  normNumGroups: number;
  /** image size in pixels the model was trained at (512 for SD 1.5) */
  sampleSize: number;
  /** latents are multiplied by this after encoding and divided by it before decoding (absent in SD 1.5's file → 0.18215) */
  scalingFactor: number;
  shiftFactor: number | null;
  latentsMean: number[] | null;
  latentsStd: number[] | null;
  forceUpcast: boolean;
  useQuantConv: boolean;
  usePostQuantConv: boolean;
  midBlockAddAttention: boolean;
}

export type ClipHiddenAct = 'quick_gelu' | 'gelu';

/** transformers CLIPTextConfig (models/clip/configuration_clip.py). */
export interface ClipTextConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  projectionDim: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  maxPositionEmbeddings: number;
  hiddenAct: ClipHiddenAct;
  layerNormEps: number;
  /** stale in SD 1.5's file (0/2/1); the tokenizer files are the source of truth for token ids */
  bosTokenId: number;
  eosTokenId: number;
  padTokenId: number;
}

/**
 * A diffusers scheduler config. The fields every scheduler shares are filled with their common defaults;
 * the fields whose default depends on the scheduler class that reads them (diffusers `from_config` keeps
 * only what the file says) are undefined when the file leaves them out, so each scheduler applies its own.
 */
export interface SchedulerConfig {
  /** `_class_name`, e.g. "PNDMScheduler" */
  className: string;
  numTrainTimesteps: number;
  betaStart: number;
  betaEnd: number;
  betaSchedule: string;
  trainedBetas: number[] | null;
  predictionType: string;
  stepsOffset: number;
  timestepSpacing?: string;
  setAlphaToOne?: boolean;
  skipPrkSteps?: boolean;
  clipSample?: boolean;
  /** the file as read, for scheduler-specific keys not listed here */
  raw: Readonly<Record<string, unknown>>;
}

/** model_index.json: the pipeline class and, per component, [library, class] (null for absent components). */
export interface ModelIndex {
  className: string;
  components: Record<string, { library: string; className: string } | null>;
}

// ---------------------------------------------------------------------------------------------------

/** Reads typed fields from one parsed JSON config, with defaults; errors name the file and the key. */
class ConfigFields {
  constructor(private readonly json: Record<string, unknown>, private readonly file: string) {}

  private value(key: string): unknown {
    return this.json[key];
  }

  private wrong(key: string, expected: string): ModelLoadError {
    return new ModelLoadError(
      `${this.file}: "${key}" should be ${expected} but is ${JSON.stringify(this.value(key))}. ` +
        'The config file looks damaged or is not a diffusers Stable Diffusion 1.x config.',
    );
  }

  number(key: string, fallback: number): number {
    const v = this.value(key);
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw this.wrong(key, 'a number');
    return v;
  }

  positiveInt(key: string, fallback: number): number {
    const v = this.number(key, fallback);
    if (!Number.isInteger(v) || v <= 0) throw this.wrong(key, 'a positive whole number');
    return v;
  }

  numberOrNull(key: string, fallback: number | null): number | null {
    const v = this.value(key);
    if (v === undefined) return fallback;
    if (v === null) return null;
    return this.number(key, 0);
  }

  numbers(key: string, fallback: number[]): number[] {
    const v = this.value(key);
    if (v === undefined || v === null) return [...fallback];
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) throw this.wrong(key, 'a list of numbers');
    return [...v] as number[];
  }

  numbersOrNull(key: string, fallback: number[] | null): number[] | null {
    const v = this.value(key);
    if (v === undefined) return fallback;
    if (v === null) return null;
    return this.numbers(key, []);
  }

  numberOrNumbers(key: string, fallback: number | number[]): number | number[] {
    const v = this.value(key);
    if (v === undefined || v === null) return fallback;
    return Array.isArray(v) ? this.numbers(key, []) : this.number(key, 0);
  }

  numberOrNumbersOrNull(key: string, fallback: number | number[] | null): number | number[] | null {
    const v = this.value(key);
    if (v === undefined) return fallback;
    if (v === null) return null;
    return this.numberOrNumbers(key, 0);
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.value(key);
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') throw this.wrong(key, 'true or false');
    return v;
  }

  boolOrNull(key: string, fallback: boolean | null): boolean | null {
    const v = this.value(key);
    if (v === undefined) return fallback;
    if (v === null) return null;
    return this.bool(key, false);
  }

  boolOrBools(key: string, fallback: boolean | boolean[]): boolean | boolean[] {
    const v = this.value(key);
    if (v === undefined || v === null) return fallback;
    if (typeof v === 'boolean') return v;
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'boolean')) throw this.wrong(key, 'true/false or a list of them');
    return [...v] as boolean[];
  }

  optionalBool(key: string): boolean | undefined {
    return this.value(key) === undefined || this.value(key) === null ? undefined : this.bool(key, false);
  }

  string(key: string, fallback: string): string {
    const v = this.value(key);
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'string') throw this.wrong(key, 'a string');
    return v;
  }

  stringOrNull(key: string, fallback: string | null): string | null {
    const v = this.value(key);
    if (v === undefined) return fallback;
    if (v === null) return null;
    return this.string(key, '');
  }

  optionalString(key: string): string | undefined {
    return this.value(key) === undefined || this.value(key) === null ? undefined : this.string(key, '');
  }

  strings(key: string, fallback: string[]): string[] {
    const v = this.value(key);
    if (v === undefined || v === null) return [...fallback];
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw this.wrong(key, 'a list of strings');
    return [...v] as string[];
  }
}

function asObject(json: unknown, file: string): Record<string, unknown> {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ModelLoadError(`${file} should hold a JSON object but holds ${Array.isArray(json) ? 'a list' : JSON.stringify(json)}.`);
  }
  return json as Record<string, unknown>;
}

/** `json` is the parsed config.json; `file` names it in errors (e.g. "unet/config.json"). */
export function parseUNetConfig(json: unknown, file = 'unet/config.json'): UNetConfig {
  const f = new ConfigFields(asObject(json, file), file);
  return {
    sampleSize: f.numberOrNull('sample_size', null),
    inChannels: f.positiveInt('in_channels', 4),
    outChannels: f.positiveInt('out_channels', 4),
    centerInputSample: f.bool('center_input_sample', false),
    flipSinToCos: f.bool('flip_sin_to_cos', true),
    freqShift: f.number('freq_shift', 0),
    downBlockTypes: f.strings('down_block_types', ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D']),
    midBlockType: f.stringOrNull('mid_block_type', 'UNetMidBlock2DCrossAttn'),
    upBlockTypes: f.strings('up_block_types', ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D']),
    onlyCrossAttention: f.boolOrBools('only_cross_attention', false),
    blockOutChannels: f.numbers('block_out_channels', [320, 640, 1280, 1280]),
    layersPerBlock: f.numberOrNumbers('layers_per_block', 2),
    downsamplePadding: f.number('downsample_padding', 1),
    midBlockScaleFactor: f.number('mid_block_scale_factor', 1),
    dropout: f.number('dropout', 0),
    actFn: f.string('act_fn', 'silu'),
    normNumGroups: f.numberOrNull('norm_num_groups', 32),
    normEps: f.number('norm_eps', 1e-5),
    crossAttentionDim: f.numberOrNumbers('cross_attention_dim', 1280),
    transformerLayersPerBlock: f.numberOrNumbers('transformer_layers_per_block', 1),
    attentionHeadDim: f.numberOrNumbers('attention_head_dim', 8),
    numAttentionHeads: f.numberOrNumbersOrNull('num_attention_heads', null),
    dualCrossAttention: f.bool('dual_cross_attention', false),
    useLinearProjection: f.bool('use_linear_projection', false),
    classEmbedType: f.stringOrNull('class_embed_type', null),
    additionEmbedType: f.stringOrNull('addition_embed_type', null),
    numClassEmbeds: f.numberOrNull('num_class_embeds', null),
    upcastAttention: f.bool('upcast_attention', false),
    resnetTimeScaleShift: f.string('resnet_time_scale_shift', 'default'),
    resnetSkipTimeAct: f.bool('resnet_skip_time_act', false),
    resnetOutScaleFactor: f.number('resnet_out_scale_factor', 1),
    timeEmbeddingType: f.string('time_embedding_type', 'positional'),
    timeEmbeddingDim: f.numberOrNull('time_embedding_dim', null),
    timeEmbeddingActFn: f.stringOrNull('time_embedding_act_fn', null),
    timestepPostAct: f.stringOrNull('timestep_post_act', null),
    timeCondProjDim: f.numberOrNull('time_cond_proj_dim', null),
    convInKernel: f.positiveInt('conv_in_kernel', 3),
    convOutKernel: f.positiveInt('conv_out_kernel', 3),
    encoderHidDim: f.numberOrNull('encoder_hid_dim', null),
    encoderHidDimType: f.stringOrNull('encoder_hid_dim_type', null),
    attentionType: f.string('attention_type', 'default'),
    crossAttentionNorm: f.stringOrNull('cross_attention_norm', null),
    midBlockOnlyCrossAttention: f.boolOrNull('mid_block_only_cross_attention', null),
  };
}

export function parseVaeConfig(json: unknown, file = 'vae/config.json'): VaeConfig {
  const f = new ConfigFields(asObject(json, file), file);
  return {
    inChannels: f.positiveInt('in_channels', 3),
    outChannels: f.positiveInt('out_channels', 3),
    downBlockTypes: f.strings('down_block_types', ['DownEncoderBlock2D']),
    upBlockTypes: f.strings('up_block_types', ['UpDecoderBlock2D']),
    blockOutChannels: f.numbers('block_out_channels', [64]),
    layersPerBlock: f.positiveInt('layers_per_block', 1),
    actFn: f.string('act_fn', 'silu'),
    latentChannels: f.positiveInt('latent_channels', 4),
    normNumGroups: f.positiveInt('norm_num_groups', 32),
    sampleSize: f.positiveInt('sample_size', 32),
    scalingFactor: f.number('scaling_factor', 0.18215),
    shiftFactor: f.numberOrNull('shift_factor', null),
    latentsMean: f.numbersOrNull('latents_mean', null),
    latentsStd: f.numbersOrNull('latents_std', null),
    forceUpcast: f.bool('force_upcast', true),
    useQuantConv: f.bool('use_quant_conv', true),
    usePostQuantConv: f.bool('use_post_quant_conv', true),
    midBlockAddAttention: f.bool('mid_block_add_attention', true),
  };
}

export function parseClipTextConfig(json: unknown, file = 'text_encoder/config.json'): ClipTextConfig {
  const f = new ConfigFields(asObject(json, file), file);
  const hiddenAct = f.string('hidden_act', 'quick_gelu');
  if (hiddenAct !== 'quick_gelu' && hiddenAct !== 'gelu') {
    throw new ModelLoadError(`${file}: hidden_act "${hiddenAct}" is not supported; a CLIP text encoder uses "quick_gelu" (SD 1.x) or "gelu".`);
  }
  const config: ClipTextConfig = {
    vocabSize: f.positiveInt('vocab_size', 49408),
    hiddenSize: f.positiveInt('hidden_size', 512),
    intermediateSize: f.positiveInt('intermediate_size', 2048),
    projectionDim: f.positiveInt('projection_dim', 512),
    numHiddenLayers: f.positiveInt('num_hidden_layers', 12),
    numAttentionHeads: f.positiveInt('num_attention_heads', 8),
    maxPositionEmbeddings: f.positiveInt('max_position_embeddings', 77),
    hiddenAct,
    layerNormEps: f.number('layer_norm_eps', 1e-5),
    bosTokenId: f.number('bos_token_id', 49406),
    eosTokenId: f.number('eos_token_id', 49407),
    padTokenId: f.number('pad_token_id', 1),
  };
  if (config.hiddenSize % config.numAttentionHeads !== 0) {
    throw new ModelLoadError(
      `${file}: hidden_size ${config.hiddenSize} is not divisible by num_attention_heads ${config.numAttentionHeads}.`,
    );
  }
  return config;
}

export function parseSchedulerConfig(json: unknown, file = 'scheduler/scheduler_config.json'): SchedulerConfig {
  const raw = asObject(json, file);
  const f = new ConfigFields(raw, file);
  return {
    className: f.string('_class_name', ''),
    numTrainTimesteps: f.positiveInt('num_train_timesteps', 1000),
    betaStart: f.number('beta_start', 0.0001),
    betaEnd: f.number('beta_end', 0.02),
    betaSchedule: f.string('beta_schedule', 'linear'),
    trainedBetas: f.numbersOrNull('trained_betas', null),
    predictionType: f.string('prediction_type', 'epsilon'),
    stepsOffset: f.number('steps_offset', 0),
    timestepSpacing: f.optionalString('timestep_spacing'),
    setAlphaToOne: f.optionalBool('set_alpha_to_one'),
    skipPrkSteps: f.optionalBool('skip_prk_steps'),
    clipSample: f.optionalBool('clip_sample'),
    raw,
  };
}

export function parseModelIndex(json: unknown, file = 'model_index.json'): ModelIndex {
  const obj = asObject(json, file);
  const f = new ConfigFields(obj, file);
  const components: ModelIndex['components'] = {};
  for (const [name, value] of Object.entries(obj)) {
    if (name.startsWith('_') || !Array.isArray(value)) continue;
    const [library, className] = value as unknown[];
    components[name] = typeof library === 'string' && typeof className === 'string' ? { library, className } : null;
  }
  return { className: f.string('_class_name', ''), components };
}
