// Text-to-image with Stable Diffusion 1.x, wired like diffusers' StableDiffusionPipeline.__call__
// (pipelines/stable_diffusion/pipeline_stable_diffusion.py): encode the prompt and the unconditional
// (empty or negative) prompt → prepare the initial latents × init_noise_sigma → for each timestep:
// scale the input, run the UNet on the batch [uncond, cond], apply classifier-free guidance, scheduler step
// → decode latents / scaling_factor with the VAE → image in [0, 1] → PNG.
//
// The pipeline owns no model code: the parts are built from the model folder by `load`, and the loop
// treats every scheduler alike. Latents are NHWC on the device; the request's `latents` and the seeded
// noise are NCHW (the layout of diffusers and of the reference fixtures) and are transposed once.
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, releaseFreeGpuMemory } from './backend.ts';
import { isDemoModel } from './model/demo-model.ts';
import { openModelFolder } from './model/loader.ts';
import { checkModelFitsBackend, float32WeightBytes } from './model/memory-fit.ts';
import type { SchedulerConfig } from './model/configs.ts';
import { encodePng, floatToBytes } from './png.ts';
import { MAX_SEED, randomSeed, seededLatents } from './random.ts';
import { createScheduler, defaultSchedulerName, isSchedulerName, SCHEDULER_NAMES, type Scheduler } from './schedulers/index.ts';
import { ClipTextEncoder } from './sd/text-encoder.ts';
import { UNet2DConditionModel } from './sd/unet.ts';
import { AutoencoderKL } from './sd/vae.ts';
import type { ClipTokenizer } from './text/tokenizer.ts';
import type {
  BackendName, ConceptArtifact, CrossAttentionEdit, GenerateRequest, GenerateResult, ModelInfo, Pipeline, PromptTruncation, SchedulerName,
} from './types.ts';

/** A request the engine cannot run as given; the message says which field is wrong and what is allowed. */
export class GenerateRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GenerateRequestError';
  }
}

export const DEFAULT_GUIDANCE = 7.5;
export const DEFAULT_STEPS = 50;
export const MAX_STEPS = 500;
/** image sides in pixels: multiples of 8 within these bounds */
export const MIN_SIDE = 64;
export const MAX_SIDE = 2048;

// ---------------------------------------------------------------------------------------------------
// The Perfusion seam

/**
 * What a request's concepts change in the pipeline, made by a ConceptConditioner (Perfusion,
 * perfusion-spec.md): the conditional prompt's token ids (with each concept's placeholder token), the word
 * embeddings of those placeholder tokens, and the edit of the UNet's cross-attention K/V projections.
 */
export interface ConceptConditioning {
  /** the conditional prompt's ids (maxLength of the tokenizer), placeholders included */
  ids: number[];
  /** the prompt's tokens before truncation, placeholders counted as one (to report a prompt cut short) */
  promptTokens?: number[];
  /** placeholder token id → its word embedding [hidden] */
  embeddingOverrides: ReadonlyMap<number, tf.Tensor1D>;
  /** applied to the whole UNet batch, which is [uncond, cond] with guidance and [cond] without */
  edit: CrossAttentionEdit;
  /** frees the tensors of this conditioning (called once the image is made, or on abort/error) */
  dispose(): void;
}

export interface ConceptConditionerInput {
  pipeline: StableDiffusionPipeline;
  prompt: string;
  concepts: ConceptArtifact[];
  /** GenerateRequest.globalKeyLock (default false) */
  globalKeyLock: boolean;
  /** GenerateRequest.editUnconditional (default true) */
  editUnconditional: boolean;
  /** whether the UNet batch holds the unconditional branch first (classifier-free guidance is on) */
  guided: boolean;
}

/** Turns a prompt and its concepts into a ConceptConditioning. Perfusion provides one (gpu/perfusion/). */
export type ConceptConditioner = (input: ConceptConditionerInput) => ConceptConditioning | Promise<ConceptConditioning>;

// ---------------------------------------------------------------------------------------------------

export interface PipelineParts {
  tokenizer: ClipTokenizer;
  textEncoder: ClipTextEncoder;
  unet: UNet2DConditionModel;
  vae: AutoencoderKL;
  schedulerConfig: SchedulerConfig;
  model: ModelInfo;
}

export interface PipelineOptions {
  /** the TensorFlow.js backend the parts live on (reported as Pipeline.backend) */
  backend: string;
  /** enables GenerateRequest.concepts */
  conceptConditioner?: ConceptConditioner;
}

/** Debug hooks for tests and tools; not part of the engine contract. */
export interface GenerateTrace {
  /** the latents after each scheduler step, NCHW [1, C, h/8, w/8] like diffusers' */
  onLatents?: (step: number, latentsNCHW: Float32Array) => void;
}

export class StableDiffusionPipeline implements Pipeline {
  readonly backend: string;
  readonly tokenizer: ClipTokenizer;
  readonly textEncoder: ClipTextEncoder;
  readonly unet: UNet2DConditionModel;
  readonly vae: AutoencoderKL;
  readonly schedulerConfig: SchedulerConfig;
  readonly model: ModelInfo;
  private readonly conceptConditioner?: ConceptConditioner;
  private readonly latentChannels: number;
  private readonly vaeScaleFactor: number;
  private disposed = false;

  constructor(parts: PipelineParts, options: PipelineOptions) {
    this.tokenizer = parts.tokenizer;
    this.textEncoder = parts.textEncoder;
    this.unet = parts.unet;
    this.vae = parts.vae;
    this.schedulerConfig = parts.schedulerConfig;
    this.model = parts.model;
    this.backend = options.backend;
    this.conceptConditioner = options.conceptConditioner;
    this.latentChannels = parts.unet.config.inChannels;
    this.vaeScaleFactor = 2 ** (parts.vae.config.blockOutChannels.length - 1);
  }

  /**
   * Starts the backend, opens the diffusers folder and builds the text encoder, UNet and VAE on the device.
   * Model-folder problems are ModelLoadErrors, backend problems BackendUnavailableErrors.
   */
  static async load(
    modelDir: string,
    opts: {
      backend?: BackendName; conceptConditioner?: ConceptConditioner;
      /** the most memory the backend holds; default: its own limit (4 GiB on wasm, none elsewhere) */
      memoryLimitBytes?: number | null;
    } = {},
  ): Promise<StableDiffusionPipeline> {
    const backend = await initBackend(opts.backend ?? 'auto');
    const folder = openModelFolder(modelDir);
    const built: Array<{ dispose(): void }> = [];
    try {
      const demo = isDemoModel(folder.dir);
      const name = demo ? 'built-in demo model' : folder.dir.split(/[\\/]/).filter(Boolean).pop() ?? folder.dir;
      // before any weight is read: on wasm a model too large would fail half-way with an opaque memory error
      checkModelFitsBackend({
        modelName: `The model ${name}`,
        weightBytes: float32WeightBytes([folder.weights.textEncoder, folder.weights.unet, folder.weights.vae]),
        backend, chosenByAuto: (opts.backend ?? 'auto') === 'auto', limitBytes: opts.memoryLimitBytes,
      });
      const textEncoder = new ClipTextEncoder(folder.textEncoderConfig, folder.weights.textEncoder);
      built.push(textEncoder);
      const unet = new UNet2DConditionModel(folder.unetConfig, folder.weights.unet);
      built.push(unet);
      const vae = new AutoencoderKL(folder.vaeConfig, folder.weights.vae);
      built.push(vae);
      const vaeScale = 2 ** (folder.vaeConfig.blockOutChannels.length - 1);
      const model: ModelInfo = {
        dir: folder.dir,
        name,
        isDemo: demo,
        hash: folder.hash,
        resolution: folder.unetConfig.sampleSize !== null ? folder.unetConfig.sampleSize * vaeScale : folder.vaeConfig.sampleSize,
        defaultScheduler: defaultSchedulerName(folder.schedulerConfig),
        hiddenSize: folder.textEncoderConfig.hiddenSize,
      };
      const pipeline = new StableDiffusionPipeline(
        { tokenizer: folder.tokenizer, textEncoder, unet, vae, schedulerConfig: folder.schedulerConfig, model },
        { backend, conceptConditioner: opts.conceptConditioner },
      );
      // the weights' upload and layout changes went through temporaries that tfjs's GPU pool would keep
      await releaseFreeGpuMemory();
      return pipeline;
    } catch (err) {
      for (const part of built) part.dispose();
      throw err;
    } finally {
      // every weight is on the device now
      folder.close();
    }
  }

  tokenize(text: string): number[] {
    return this.tokenizer.encode(text);
  }

  /**
   * Text conditioning [B, L, hidden] for token id rows (each `tokenizer.maxLength` long); `overrides` replaces
   * the word embedding of the given token ids (Perfusion's placeholders). The caller disposes the result.
   */
  encodePrompt(ids: readonly (readonly number[])[], overrides?: ReadonlyMap<number, tf.Tensor1D>): tf.Tensor3D {
    return this.textEncoder.encode(ids, overrides ? { embeddingOverrides: overrides } : undefined);
  }

  /** What the text encoder leaves out of a prompt of these tokens (it reads maxLength − 2 between BOS and EOS). */
  private truncation(field: PromptTruncation['field'], tokens: readonly number[]): PromptTruncation | null {
    const limit = this.tokenizer.maxLength - 2;
    if (tokens.length <= limit) return null;
    return { field, tokens: tokens.length, limit, droppedText: this.tokenizer.decode(tokens.slice(limit)).trim() };
  }

  async generate(req: GenerateRequest, trace: GenerateTrace = {}): Promise<GenerateResult> {
    this.assertUsable();
    const r = this.resolve(req);
    req.signal?.throwIfAborted();
    const scheduler = createScheduler(r.scheduler, this.schedulerConfig);
    scheduler.setTimesteps(r.steps);
    const guided = r.guidance > 1;

    let conditioning: ConceptConditioning | undefined;
    let context: tf.Tensor3D | undefined;
    let latents: tf.Tensor4D | undefined;
    try {
      if (req.concepts?.length) {
        if (!this.conceptConditioner) {
          throw new GenerateRequestError('this engine cannot use taught concepts yet (Perfusion is not wired into the pipeline); generate without concepts');
        }
        conditioning = await this.conceptConditioner({
          pipeline: this, prompt: req.prompt, concepts: req.concepts, guided,
          globalKeyLock: req.globalKeyLock ?? false, editUnconditional: req.editUnconditional ?? true,
        });
      }
      const condIds = conditioning?.ids ?? this.tokenize(req.prompt);
      const truncated = [
        this.truncation('prompt', conditioning?.promptTokens ?? this.tokenizer.tokenize(req.prompt)),
        guided ? this.truncation('negativePrompt', this.tokenizer.tokenize(req.negativePrompt ?? '')) : null,
      ].filter((t): t is PromptTruncation => t !== null);
      // both branches in one batch [uncond, cond]; the overrides touch only the placeholder ids
      const rows = guided ? [this.tokenize(req.negativePrompt ?? ''), condIds] : [condIds];
      context = this.encodePrompt(rows, conditioning?.embeddingOverrides);
      const [h, w] = [r.height / this.vaeScaleFactor, r.width / this.vaeScaleFactor];
      const initial = r.latents;
      latents = tf.tidy(() =>
        tf.mul(tf.transpose(tf.tensor4d(initial, [1, this.latentChannels, h, w]), [0, 2, 3, 1]), scheduler.initNoiseSigma) as tf.Tensor4D);

      latents = await denoise({
        unet: this.unet, scheduler, context, latents, guidance: r.guidance, edit: conditioning?.edit,
        signal: req.signal, onStep: req.onStep, onLatents: trace.onLatents,
      });

      req.signal?.throwIfAborted();
      const image = tf.tidy(() => {
        const decoded = this.vae.decode(tf.div(latents!, this.vae.scalingFactor) as tf.Tensor4D);
        return tf.clipByValue(tf.add(tf.mul(decoded, 0.5), 0.5), 0, 1);
      });
      const pixels = (await image.data()) as Float32Array;
      image.dispose();
      const png = encodePng(
        { width: r.width, height: r.height, channels: 3, data: floatToBytes(pixels) },
        { text: { parameters: describeParameters(req, r), Software: 'perfusion-bot' } },
      );
      return { pixels, width: r.width, height: r.height, png, seed: r.seed, truncated };
    } finally {
      if (context) context.dispose();
      if (latents) latents.dispose();
      scheduler.dispose();
      conditioning?.dispose();
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.textEncoder.dispose();
    this.unet.dispose();
    this.vae.dispose();
  }

  private assertUsable(): void {
    if (this.disposed) throw new Error('this pipeline has been disposed; load the model again');
  }

  /** The request with defaults filled in and every field checked. */
  private resolve(req: GenerateRequest): ResolvedRequest {
    if (typeof req.prompt !== 'string') throw new GenerateRequestError('the prompt must be text');
    const steps = req.steps ?? DEFAULT_STEPS;
    if (!Number.isInteger(steps) || steps < 1 || steps > MAX_STEPS) {
      throw new GenerateRequestError(`steps must be a whole number from 1 to ${MAX_STEPS}; got ${steps}`);
    }
    const guidance = req.guidance ?? DEFAULT_GUIDANCE;
    if (!Number.isFinite(guidance) || guidance < 0 || guidance > 50) {
      throw new GenerateRequestError(`guidance must be a number from 0 to 50 (7.5 is usual; 1 or less turns guidance off); got ${guidance}`);
    }
    const scheduler = req.scheduler ?? this.model.defaultScheduler;
    if (!isSchedulerName(scheduler)) {
      throw new GenerateRequestError(`unknown scheduler "${scheduler}"; choose one of ${SCHEDULER_NAMES.join(', ')}`);
    }
    const width = req.width ?? this.model.resolution;
    const height = req.height ?? this.model.resolution;
    for (const [name, side] of [['width', width], ['height', height]] as const) {
      if (!Number.isInteger(side) || side % 8 !== 0) {
        throw new GenerateRequestError(`${name} must be a multiple of 8 pixels; got ${side}`);
      }
      if (side < MIN_SIDE || side > MAX_SIDE) {
        throw new GenerateRequestError(`${name} must be from ${MIN_SIDE} to ${MAX_SIDE} pixels; got ${side}`);
      }
    }
    const latentCount = this.latentChannels * (height / this.vaeScaleFactor) * (width / this.vaeScaleFactor);
    let seed = req.seed;
    if (seed !== undefined && (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED)) {
      throw new GenerateRequestError(`seed must be a whole number from 0 to ${MAX_SEED}; got ${seed}`);
    }
    let latents: Float32Array;
    if (req.latents) {
      if (req.latents.length !== latentCount) {
        throw new GenerateRequestError(
          `latents must hold ${latentCount} values (NCHW [1, ${this.latentChannels}, ${height / this.vaeScaleFactor}, ${width / this.vaeScaleFactor}] ` +
            `for ${width}×${height}); got ${req.latents.length}`,
        );
      }
      latents = req.latents;
      seed ??= 0;
    } else {
      seed ??= randomSeed();
      latents = seededLatents(seed, this.latentChannels, height / this.vaeScaleFactor, width / this.vaeScaleFactor);
    }
    return { steps, guidance, scheduler, width, height, seed, latents };
  }
}

interface ResolvedRequest {
  steps: number;
  guidance: number;
  scheduler: SchedulerName;
  width: number;
  height: number;
  seed: number;
  latents: Float32Array;
}

export interface DenoiseInput {
  unet: UNet2DConditionModel;
  /** set to its timesteps already */
  scheduler: Scheduler;
  /** [2, L, hidden] as [uncond, cond] when guidance > 1, else [1, L, hidden] */
  context: tf.Tensor3D;
  /** NHWC [1, h, w, C], already scaled by initNoiseSigma; consumed (disposed) */
  latents: tf.Tensor4D;
  guidance: number;
  edit?: CrossAttentionEdit;
  signal?: AbortSignal;
  onStep?: (step: number, total: number) => void;
  onLatents?: (step: number, latentsNCHW: Float32Array) => void;
}

/**
 * The sampling loop: for each timestep, the scaled input through the UNet (both guidance branches in one
 * batch), guidance, scheduler step. Returns the final latents (NHWC); the input latents are disposed.
 * Between steps it waits for the step to finish on the device, reports progress and honours `signal`
 * (throwing its AbortError with nothing left allocated).
 */
export async function denoise(input: DenoiseInput): Promise<tf.Tensor4D> {
  const { unet, scheduler, context, guidance, edit, signal, onStep, onLatents } = input;
  const guided = guidance > 1;
  const timesteps = scheduler.timesteps;
  let latents = input.latents;
  try {
    for (let i = 0; i < timesteps.length; i++) {
      signal?.throwIfAborted();
      const t = timesteps[i]!;
      const next = tf.tidy(() => {
        const scaled = scheduler.scaleModelInput(latents, t) as tf.Tensor4D;
        const batch = guided ? (tf.concat([scaled, scaled], 0) as tf.Tensor4D) : scaled;
        const noise = unet.forward(batch, t, context, edit ? { edit } : {});
        let eps: tf.Tensor = noise;
        if (guided) {
          const [uncond, cond] = tf.split(noise, 2, 0) as [tf.Tensor, tf.Tensor];
          eps = tf.add(uncond, tf.mul(tf.sub(cond, uncond), guidance));
        }
        return scheduler.step(eps, t, latents) as tf.Tensor4D;
      });
      latents.dispose();
      latents = next;
      if (onLatents) {
        const nchw = tf.transpose(latents, [0, 3, 1, 2]);
        onLatents(i, (await nchw.data()) as Float32Array);
        nchw.dispose();
      } else {
        // one value read back: the step has finished on the device before it is reported
        const probe = tf.slice(latents, [0, 0, 0, 0], [1, 1, 1, 1]);
        await probe.data();
        probe.dispose();
      }
      onStep?.(i + 1, timesteps.length);
    }
    return latents;
  } catch (err) {
    latents.dispose();
    throw err;
  }
}

/** The generation parameters as one line, stored in the PNG (like other SD tools' "parameters" text). */
function describeParameters(req: GenerateRequest, r: ResolvedRequest): string {
  const parts = [
    req.prompt,
    req.negativePrompt ? `Negative prompt: ${req.negativePrompt}` : '',
    `Steps: ${r.steps}, Sampler: ${r.scheduler}, CFG scale: ${r.guidance}, Seed: ${req.latents ? 'given latents' : r.seed}, Size: ${r.width}x${r.height}`,
  ];
  return parts.filter(Boolean).join('\n');
}
