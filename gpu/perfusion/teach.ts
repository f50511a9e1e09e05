// Teaching a concept with Perfusion (perfusion-spec.md §4–§6): a new placeholder token whose embedding v starts
// at the category word's, every cross-attention K/V projection edited at the training gate (β 0.75, τ 0.1),
// local key-locking (o*_K = W_K ī_super, frozen), o*_V and v trained by AdamW (two groups: v at 0.006, o*_V at
// 0.03), i* an exponential moving average (0.99) of the placeholder's encoding, the ε-MSE loss (optionally
// weighted by a soft mask), 400 steps of an effective batch of 16 by default.
//
// The step is kept lean for the GPU. Everything frozen is computed outside the gradient tape: the images'
// latents (the VAE mean, encoded once per image and per flip — SD's VAE posterior is nearly deterministic,
// so the mean stands in for a sample, which keeps a step free of latent noise), the noised latents, and the
// encodings the EMA needs. Each step reads back from the device once: its loss together with the next step's
// placeholder encoding for the EMA (computed after the optimiser's update, so i* follows the spec's order).
// Gradients come from gpu/autodiff.ts, which frees each saved activation and intermediate gradient as soon as the
// backward pass has used it (tf.variableGrads holds all of them until the end: several times the memory).
//
// Determinism: every random draw of step k (images, flips, templates, timesteps, noise) comes from a
// SeededRandom seeded by (seed, k), so the same seed on the same backend gives the same artifact bytes, a
// resumed run continues exactly where the checkpoint left off, and a step retried with a smaller batch after an
// out-of-memory failure uses the same draws (the effective batch stays; only its split into micro-batches
// changes). The EMA is updated once per optimiser step with the mean over the effective batch, so the split
// does not change the math either.
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs-core';
import { variableGrads } from '../autodiff.ts';
import { releaseFreeGpuMemory } from '../backend.ts';
import { registerGradients } from '../gradients.ts';
import type { StableDiffusionPipeline } from '../pipeline.ts';
import { MAX_SEED, randomSeed, SeededRandom } from '../random.ts';
import { addNoiseVariancePreserving, alphasCumprod } from '../schedulers/common.ts';
import { CategoryWordError } from '../text/tokenizer.ts';
import type { ConceptArtifact } from '../types.ts';
import { AdamW } from './adamw.ts';
import { serializeConcept } from './artifact.ts';
import { CheckpointFormatError, parseCheckpoint, serializeCheckpoint, type CheckpointIdentity, type TrainingCheckpoint } from './checkpoint.ts';
import { defaultPerfusionCacheDir, modelCovariance } from './conditioner.ts';
import { latentMask, vaeInput } from './images.ts';
import {
  DEFAULT_BETA, DEFAULT_TAU, ISTAR_DECAY, PerfusionTrainingEdit, TRAINING_BETA, TRAINING_TAU, type TrainingState,
} from './perfusion-edit.ts';
import { CONCEPT_NAME } from './prompt.ts';

/** A training picture: 8-bit RGB, HWC. `mask` (optional): 8-bit H×W, high where the concept is. */
export interface TeachImage {
  width: number;
  height: number;
  rgb: Uint8Array;
  /** a soft segmentation of the concept (0 background … 255 concept); weights the loss (spec §6.1) */
  mask?: Uint8Array;
}

export interface TeachProgress {
  /** steps done */
  step: number;
  total: number;
  /** this step's loss (the ε-MSE over its effective batch) */
  loss: number;
  /** estimated time left */
  etaMs: number;
  /** the split of the effective batch now in use */
  batchSize?: number;
  gradientAccumulation?: number;
  /** something the user should hear about, e.g. that the batch was lowered because memory ran short */
  notice?: string;
}

export interface TeachRequest {
  /** the name used in prompts as `<name>` */
  name: string;
  /** the super-category: one CLIP token (e.g. "teddy", "dog", "mug") */
  category: string;
  images: TeachImage[];
  /** optimiser steps (default 400) */
  steps?: number;
  /** images per forward pass (default 4); lowered automatically when memory is short */
  batchSize?: number;
  /** micro-batches per optimiser step (default: 16 / batchSize, so that the effective batch is 16) */
  gradientAccumulation?: number;
  /** same seed + backend ⇒ the same artifact (default: random, recorded in artifact.training.seed) */
  seed?: number;
  /** a checkpoint from onCheckpoint: continue that run */
  resumeFrom?: Uint8Array;
  onCheckpoint?: (state: Uint8Array, step: number) => void | Promise<void>;
  /** steps between checkpoints (default 50) */
  checkpointEvery?: number;
  onProgress?: (p: TeachProgress) => void;
  signal?: AbortSignal;
  /** random horizontal flips (default true; turn off for asymmetric concepts such as text or logos) */
  flip?: boolean;
  /** where the model's text covariance C is cached (default defaultPerfusionCacheDir()) */
  cacheDir?: string;
}

export interface TeachResult {
  artifact: ConceptArtifact;
  /** serializeConcept(artifact) */
  bytes: Uint8Array;
  /** the mean loss of the last (up to) 20 steps */
  finalLoss: number;
  steps: number;
}

/** A teaching request that cannot be carried out as given; the message says what to change. */
export class ConceptError extends Error {
  constructor(message: string, readonly suggestions: readonly string[] = [], options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConceptError';
  }
}

/** Test seams: not part of the engine contract. */
export interface TeachHooks {
  /** called before every micro-batch is run (tests inject failures here) */
  beforeMicroBatch?: (info: { step: number; microBatch: number; batchSize: number }) => void;
}

export const DEFAULT_TEACH_STEPS = 400;
export const DEFAULT_EFFECTIVE_BATCH = 16;
export const DEFAULT_BATCH_SIZE = 4;
export const DEFAULT_CHECKPOINT_EVERY = 50;
export const EMBEDDING_LEARNING_RATE = 0.006;
export const VALUE_LEARNING_RATE = 0.03;
export const MAX_TEACH_STEPS = 10_000;
export const MAX_TEACH_IMAGES = 64;
export const MIN_IMAGE_SIDE = 64;
const MAX_BATCH_SIZE = 64;
const MAX_ACCUMULATION = 256;
/** the final loss is the mean over this many last steps */
const FINAL_LOSS_STEPS = 20;

/** The prompt templates of [C] (perfusion-spec.md §6.3); `{}` is the placeholder or the category word. */
export const TRAINING_TEMPLATES: readonly string[] = [
  'a photo of a {}', 'a good photo of a {}', 'the photo of a {}', 'a good photo of the {}', 'image of a {}',
  'image of the {}', 'A photograph of {}', 'A {} shown in a photo', 'A photo of {}',
];

interface Plan {
  name: string;
  category: string;
  categoryTokenId: number;
  steps: number;
  batchSize: number;
  gradientAccumulation: number;
  effectiveBatch: number;
  seed: number;
  flip: boolean;
  checkpointEvery: number;
}

/** Checks the request against the model; every problem a person can fix is a ConceptError. */
function plan(pipeline: StableDiffusionPipeline, req: TeachRequest): Plan {
  if (typeof req.name !== 'string' || !CONCEPT_NAME.test(req.name)) {
    throw new ConceptError(`"${String(req.name)}" cannot be a concept name: use 1 to 64 letters, digits, "_" or "-" (it is written <name> in prompts).`);
  }
  const category = typeof req.category === 'string' ? req.category.trim() : '';
  let categoryTokenId: number;
  try {
    categoryTokenId = pipeline.tokenizer.categoryTokenId(category);
  } catch (err) {
    if (err instanceof CategoryWordError) throw new ConceptError(err.message, err.suggestions, { cause: err });
    throw err;
  }
  if (!Array.isArray(req.images) || req.images.length === 0) {
    throw new ConceptError('Give at least one picture of the concept to teach it (3 to 10 varied pictures work best).');
  }
  if (req.images.length > MAX_TEACH_IMAGES) {
    throw new ConceptError(`${req.images.length} pictures is more than the ${MAX_TEACH_IMAGES} a concept can be taught from; pick the best ${MAX_TEACH_IMAGES} or fewer.`);
  }
  req.images.forEach((image, i) => {
    const which = `Picture ${i + 1}`;
    const { width, height } = image ?? {};
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1 || !(image.rgb instanceof Uint8Array)) {
      throw new ConceptError(`${which} could not be read as an RGB image.`);
    }
    if (image.rgb.length !== width * height * 3) {
      throw new ConceptError(`${which} is damaged: a ${width}×${height} RGB image has ${width * height * 3} bytes, but it has ${image.rgb.length}.`);
    }
    if (Math.min(width, height) < MIN_IMAGE_SIDE) {
      throw new ConceptError(`${which} is only ${width}×${height} pixels; use pictures at least ${MIN_IMAGE_SIDE} pixels on their shorter side (${pipeline.model.resolution} or more works best).`);
    }
    if (image.mask !== undefined) {
      if (!(image.mask instanceof Uint8Array) || image.mask.length !== width * height) {
        throw new ConceptError(`The mask of picture ${i + 1} must be one 8-bit value per pixel (${width}×${height}).`);
      }
      if (!image.mask.some((m) => m > 0)) throw new ConceptError(`The mask of picture ${i + 1} is empty: it marks no part of the picture as the concept.`);
    }
  });
  const whole = (field: string, value: number | undefined, fallback: number, max: number) => {
    if (value === undefined) return fallback;
    if (!Number.isInteger(value) || value < 1 || value > max) throw new ConceptError(`${field} must be a whole number from 1 to ${max}; got ${value}.`);
    return value;
  };
  const steps = whole('steps', req.steps, DEFAULT_TEACH_STEPS, MAX_TEACH_STEPS);
  const batchSize = whole('batchSize', req.batchSize, DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE);
  const gradientAccumulation = whole('gradientAccumulation', req.gradientAccumulation,
    Math.max(1, Math.round(DEFAULT_EFFECTIVE_BATCH / batchSize)), MAX_ACCUMULATION);
  const checkpointEvery = whole('checkpointEvery', req.checkpointEvery, DEFAULT_CHECKPOINT_EVERY, MAX_TEACH_STEPS);
  if (req.seed !== undefined && (!Number.isInteger(req.seed) || req.seed < 0 || req.seed > MAX_SEED)) {
    throw new ConceptError(`seed must be a whole number from 0 to ${MAX_SEED}; got ${req.seed}.`);
  }
  return {
    name: req.name, category, categoryTokenId, steps, batchSize, gradientAccumulation,
    effectiveBatch: batchSize * gradientAccumulation, seed: req.seed ?? randomSeed(), flip: req.flip ?? true, checkpointEvery,
  };
}

/** Whether `err` is a backend's failure to allocate memory (then a smaller batch may succeed). */
export function isOutOfMemoryError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err.name === 'GPUOutOfMemoryError' || err.name === 'TrainingOutOfMemory') return true;
  return /out of memory|\bOOM\b|ResourceExhausted|failed to allocate|allocation failed|Maximum memory size|Cannot enlarge memory|Array buffer allocation/i
    .test(err.message);
}

/**
 * On WebGPU an allocation failure does not throw: the device reports it to the innermost error scope. Around a
 * step's micro-batches this scope catches it; `release()` says whether one happened.
 */
function memoryScope(): { release(): Promise<boolean> } {
  type ScopedDevice = { pushErrorScope(filter: 'out-of-memory'): void; popErrorScope(): Promise<unknown> };
  const device = tf.getBackend() === 'webgpu' ? (tf.backend() as unknown as { device?: ScopedDevice }).device : undefined;
  if (!device || typeof device.pushErrorScope !== 'function') return { release: async () => false };
  device.pushErrorScope('out-of-memory');
  return { release: async () => (await device.popErrorScope()) != null };
}

/** The token ids of every template with the placeholder and with the category word, and where they stand. */
interface TemplatePrompts {
  placeholderId: number;
  conceptIds: number[][];
  superIds: number[][];
  positions: number[];
}

function templatePrompts(pipeline: StableDiffusionPipeline, p: Plan): TemplatePrompts {
  const placeholderId = pipeline.tokenizer.vocabSize;
  const extraTokens = new Map([[`<${p.name}>`, placeholderId]]);
  const conceptIds: number[][] = [];
  const superIds: number[][] = [];
  const positions: number[] = [];
  for (const template of TRAINING_TEMPLATES) {
    const ids = pipeline.tokenizer.encode(template.replace('{}', `<${p.name}>`), { extraTokens });
    const superPrompt = pipeline.tokenizer.encode(template.replace('{}', p.category));
    const n = ids.indexOf(placeholderId);
    // the category is one token, so both prompts line up token for token
    if (n < 0 || superPrompt[n] !== p.categoryTokenId || ids.some((id, i) => i !== n && id !== superPrompt[i])) {
      throw new Error(`the template "${template}" does not line up with the category "${p.category}"`);
    }
    conceptIds.push(ids);
    superIds.push(superPrompt);
    positions.push(n);
  }
  return { placeholderId, conceptIds, superIds, positions };
}

/** The random draws of one optimiser step: a function of (seed, step) alone. */
export interface StepDraw {
  samples: Sample[];
  /** ε for every sample, NHWC, in sample order */
  noise: Float32Array;
}

/** One sample of a step: which latent (image·variants + flipped), which template, which timestep. */
export interface Sample {
  slot: number;
  template: number;
  timestep: number;
}

/** How a run draws its samples: the same shape on resume, whatever the batch split. */
export interface DrawShape {
  seed: number;
  effectiveBatch: number;
  images: number;
  /** 2 with random flips, else 1 */
  variants: number;
  /** the training timesteps T (t is drawn from 0..T−1) */
  timesteps: number;
  /** latent [h, w, C] */
  latentShape: readonly [number, number, number];
}

/** The draws of step `step` (exported for the tests' independent checks of the EMA and key-lock). */
export function drawStep(shape: DrawShape, step: number): StepDraw {
  const rng = new SeededRandom((shape.seed ^ Math.imul(step + 1, 0x9e3779b1)) >>> 0);
  const order = Array.from({ length: shape.images }, (_, i) => i);
  const samples: Sample[] = [];
  for (let i = 0; i < shape.effectiveBatch; i++) {
    // every image equally often: a fresh shuffle for each pass over them
    if (i % shape.images === 0) {
      for (let j = shape.images - 1; j > 0; j--) {
        const k = rng.nextUint32() % (j + 1);
        [order[j], order[k]] = [order[k]!, order[j]!];
      }
    }
    const flipped = shape.variants === 2 ? rng.nextUint32() & 1 : 0;
    samples.push({
      slot: order[i % shape.images]! * shape.variants + flipped,
      template: rng.nextUint32() % TRAINING_TEMPLATES.length,
      timestep: rng.nextUint32() % shape.timesteps,
    });
  }
  const [h, w, c] = shape.latentShape;
  return { samples, noise: rng.normals(shape.effectiveBatch * h * w * c) };
}

/** Latents are [slots, h, w, C]: slot = image·variants + (flipped ? 1 : 0). */
interface LatentCache {
  latents: tf.Tensor4D;
  /** [slots, h, w, 1] loss weights, or null when no image has a mask */
  masks: tf.Tensor4D | null;
  variants: number;
  latentShape: [number, number, number];
}

/** The VAE means of every image (and its mirror image when flipping), and the masks on the latent grid. */
async function encodeImages(pipeline: StableDiffusionPipeline, images: readonly TeachImage[], flip: boolean, signal?: AbortSignal): Promise<LatentCache> {
  const side = pipeline.model.resolution;
  const variants = flip ? 2 : 1;
  const encoded: tf.Tensor4D[] = [];
  const masks: Float32Array[] = [];
  const anyMask = images.some((i) => i.mask);
  try {
    for (const image of images) {
      for (let f = 0; f < variants; f++) {
        signal?.throwIfAborted();
        const pixels = vaeInput({ width: image.width, height: image.height, channels: 3, data: image.rgb }, side, f === 1);
        encoded.push(tf.tidy(() => {
          const { mean } = pipeline.vae.encode(tf.tensor4d(pixels, [1, side, side, 3]));
          return tf.mul(mean, pipeline.vae.scalingFactor) as tf.Tensor4D;
        }));
        // wait for each image, so that a large batch of pictures never sits on the device at once
        await encoded[encoded.length - 1]!.data();
      }
    }
    const [, h, w, c] = encoded[0]!.shape;
    if (anyMask) {
      for (const image of images) {
        for (let f = 0; f < variants; f++) {
          masks.push(image.mask
            ? latentMask({ width: image.width, height: image.height, channels: 1, data: image.mask }, h, f === 1)!
            : new Float32Array(h * w).fill(1));
        }
      }
    }
    const latents = tf.concat(encoded) as tf.Tensor4D;
    const maskTensor = anyMask ? tf.tensor4d(concatFloats(masks), [masks.length, h, w, 1]) : null;
    return { latents, masks: maskTensor, variants, latentShape: [h, w, c] };
  } finally {
    tf.dispose(encoded);
  }
}

function concatFloats(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

function imagesHash(images: readonly TeachImage[]): string {
  const hash = createHash('sha256');
  for (const image of images) {
    hash.update(`${image.width}x${image.height}:${image.mask ? 'mask' : 'nomask'};`);
    hash.update(image.rgb);
    if (image.mask) hash.update(image.mask);
  }
  return hash.digest('hex');
}

function sameIdentity(a: CheckpointIdentity, b: CheckpointIdentity): string | null {
  if (a.modelHash !== b.modelHash) return 'it was made with another model';
  if (a.covarianceHash !== b.covarianceHash) return 'it was made with another text covariance';
  if (a.name !== b.name || a.category !== b.category) return `it belongs to the concept <${a.name}> (${a.category})`;
  if (a.imagesHash !== b.imagesHash) return 'it was made from other pictures';
  if (a.flip !== b.flip) return 'it was made with another flip setting';
  return null;
}

/**
 * Teaches `req.name` from `req.images` on the pipeline's model and returns the concept artifact. ConceptError
 * for requests a person must change; the signal's reason (an AbortError) when aborted, with every tensor freed.
 */
export async function teachConcept(pipeline: StableDiffusionPipeline, req: TeachRequest, hooks: TeachHooks = {}): Promise<TeachResult> {
  registerGradients();
  const p = plan(pipeline, req);
  const signal = req.signal;
  signal?.throwIfAborted();
  const covariance = await modelCovariance(pipeline, { cacheDir: req.cacheDir ?? defaultPerfusionCacheDir(), signal });
  const layers = pipeline.unet.crossAttentionLayers();
  const hidden = pipeline.model.hiddenSize;
  const identity: CheckpointIdentity = {
    name: p.name, category: p.category, modelHash: pipeline.model.hash, covarianceHash: covariance.hash,
    imagesHash: imagesHash(req.images), seed: p.seed, flip: p.flip, effectiveBatch: p.effectiveBatch,
  };
  let resumed: TrainingCheckpoint | null = null;
  if (req.resumeFrom) {
    try {
      resumed = parseCheckpoint(req.resumeFrom);
    } catch (err) {
      if (err instanceof CheckpointFormatError) throw new ConceptError(`The saved progress of this teaching job cannot be used (${err.message}); start the job again.`, [], { cause: err });
      throw err;
    }
    const mismatch = sameIdentity(resumed, identity);
    if (mismatch) throw new ConceptError(`The saved progress does not belong to this teaching job (${mismatch}); start the job again.`);
    // the draws depend on the run's seed and effective batch: continue with the saved ones
    identity.seed = resumed.seed;
    identity.effectiveBatch = resumed.effectiveBatch;
  }
  const seed = identity.seed;
  const effectiveBatch = identity.effectiveBatch;
  let batchSize = resumed ? resumed.batchSize : Math.min(p.batchSize, effectiveBatch);
  let accumulation = Math.ceil(effectiveBatch / batchSize);
  const prompts = templatePrompts(pipeline, p);
  const ac = alphasCumprod(pipeline.schedulerConfig);
  const predictionType = pipeline.schedulerConfig.predictionType;
  if (predictionType !== 'epsilon' && predictionType !== 'v_prediction') {
    throw new ConceptError(`This model predicts "${predictionType}", which teaching does not support (it supports epsilon and v_prediction models).`);
  }

  const owned: { dispose(): void }[] = [];
  const disposeAll = () => {
    for (const o of owned.reverse()) o.dispose();
  };
  try {
    const cache = await encodeImages(pipeline, req.images, p.flip, signal);
    owned.push({ dispose: () => tf.dispose([cache.latents, ...(cache.masks ? [cache.masks] : [])]) });
    const shape: DrawShape = {
      seed, effectiveBatch, images: req.images.length, variants: cache.variants, timesteps: ac.length, latentShape: cache.latentShape,
    };
    const draw = (step: number) => drawStep(shape, step);

    // the placeholder's encoding averaged over a step's samples (no gradient): the EMA's input
    const placeholderMean = (d: StepDraw, rows: number[][], overrides?: ReadonlyMap<number, tf.Tensor1D>) => tf.tidy(() => {
      const counts = new Map<number, number>();
      for (const s of d.samples) counts.set(s.template, (counts.get(s.template) ?? 0) + 1);
      const templates = [...counts.keys()].sort((a, b) => a - b);
      const encoded = pipeline.encodePrompt(templates.map((t) => rows[t]!), overrides);
      const length = encoded.shape[1];
      const weights = new Float32Array(templates.length * length);
      templates.forEach((t, u) => { weights[u * length + prompts.positions[t]!] = counts.get(t)! / d.samples.length; });
      return tf.reshape(tf.matMul(tf.tensor2d(weights, [1, weights.length]), tf.reshape(encoded, [weights.length, hidden])), [hidden]) as tf.Tensor1D;
    });

    let state: TrainingState;
    let startStep = 0;
    const losses: number[] = [];
    if (resumed) {
      if (resumed.hidden !== hidden || resumed.layers.length !== layers.length || resumed.layers.some((l, i) => l.name !== layers[i]!.name || l.outDim !== layers[i]!.outDim)) {
        throw new ConceptError('The saved progress does not fit this model\'s layers; start the job again.');
      }
      state = { iStar: resumed.iStar, oK: resumed.oK, oV: resumed.oV };
      startStep = resumed.step;
      losses.push(...resumed.losses);
    } else {
      // ī_super: the first batch's super-prompt encodings at the category position (spec §4.2); i* starts there
      const superMean = placeholderMean(draw(0), prompts.superIds);
      const superInput = Float32Array.from(await superMean.data());
      superMean.dispose();
      state = await PerfusionTrainingEdit.initialState(layers, superInput, Float64Array.from(superInput));
    }
    const edit = new PerfusionTrainingEdit(layers, covariance, state, { beta: TRAINING_BETA, tau: TRAINING_TAU, decay: ISTAR_DECAY });
    owned.push(edit);
    // v starts at the category word's embedding (spec §5)
    const embeddingInit = resumed ? tf.tensor1d(resumed.embedding) : pipeline.textEncoder.wordEmbedding(p.categoryTokenId);
    const embedding = tf.variable(embeddingInit, true) as tf.Variable<tf.Rank.R1>;
    embeddingInit.dispose();
    owned.push(embedding);
    const optimizer = new AdamW([
      { learningRate: EMBEDDING_LEARNING_RATE, params: [embedding] },
      { learningRate: VALUE_LEARNING_RATE, params: edit.valueTargets },
    ]);
    owned.push(optimizer);
    if (resumed) optimizer.restore({ step: resumed.optimizerStep, firstMoments: resumed.firstMoments, secondMoments: resumed.secondMoments });
    const params: tf.Variable[] = [embedding, ...edit.valueTargets];
    const overrides = new Map<number, tf.Tensor1D>([[prompts.placeholderId, embedding]]);

    /** The summed, size-weighted loss and gradients of one step's micro-batches, or an out-of-memory failure. */
    const accumulate = (step: number, d: StepDraw): { loss: tf.Scalar; grads: tf.Tensor[] } => {
      let loss: tf.Scalar | null = null;
      let grads: tf.Tensor[] | null = null;
      try {
        for (let start = 0, micro = 0; start < effectiveBatch; start += batchSize, micro++) {
          signal?.throwIfAborted();
          hooks.beforeMicroBatch?.({ step, microBatch: micro, batchSize });
          const samples = d.samples.slice(start, start + batchSize);
          const { value, grads: g } = microBatch(samples, d.noise, start);
          loss = loss ? keepSum(loss, value) as tf.Scalar : value;
          const ordered = params.map((v) => g[v.name]!);
          grads = grads ? grads.map((a, i) => keepSum(a, ordered[i]!)) : ordered;
        }
        return { loss: loss!, grads: grads! };
      } catch (err) {
        tf.dispose([...(loss ? [loss] : []), ...(grads ?? [])]);
        throw err;
      }
    };

    const [lh, lw, lc] = cache.latentShape;
    const latentSize = lh * lw * lc;
    const microBatch = (samples: Sample[], noiseAll: Float32Array, offset: number) => {
      const n = samples.length;
      const { noisy, target, timesteps, weights } = tf.tidy(() => {
        const slots = tf.tensor1d(samples.map((s) => s.slot), 'int32');
        const x0 = tf.gather(cache.latents, slots) as tf.Tensor4D;
        const noise = tf.tensor4d(noiseAll.subarray(offset * latentSize, (offset + n) * latentSize), [n, lh, lw, lc]);
        const ts = samples.map((s) => s.timestep);
        const noisy = addNoiseVariancePreserving(ac, x0, noise, ts);
        // v-prediction's target: √ᾱ·ε − √(1 − ᾱ)·x0
        const target = predictionType === 'epsilon' ? noise : tf.sub(
          tf.mul(noise, tf.tensor(ts.map((t) => Math.sqrt(ac[t]!)), [n, 1, 1, 1])),
          tf.mul(x0, tf.tensor(ts.map((t) => Math.sqrt(1 - ac[t]!)), [n, 1, 1, 1])));
        return {
          noisy: noisy as tf.Tensor4D, target, timesteps: tf.tensor1d(ts, 'float32'),
          weights: cache.masks ? tf.gather(cache.masks, slots) : undefined,
        };
      });
      const ids = samples.map((s) => prompts.conceptIds[s.template]!);
      try {
        return variableGrads(() => {
          const context = pipeline.encodePrompt(ids, overrides);
          const predicted = pipeline.unet.forward(noisy, timesteps, context, { edit });
          const squared = tf.squaredDifference(predicted, target);
          const error = weights ? tf.mul(squared, weights) : squared;
          // each micro-batch's share of the effective batch, so the sum is the mean over all of it
          return tf.mul(tf.mean(error), n / effectiveBatch) as tf.Scalar;
        }, params);
      } finally {
        tf.dispose([noisy, target, timesteps, ...(weights ? [weights] : [])]);
      }
    };

    let notice: string | undefined;
    /**
     * The step's micro-batches; when the backend runs out of memory, the same step again with half the batch
     * and twice the accumulation (same draws, same effective batch).
     */
    const withMemoryRetry = async (step: number, d: StepDraw): Promise<{ loss: tf.Scalar; grads: tf.Tensor[] }> => {
      for (;;) {
        const scope = memoryScope();
        let failure: unknown = null;
        let attempt: { loss: tf.Scalar; grads: tf.Tensor[] } | null = null;
        try {
          attempt = accumulate(step, d);
        } catch (err) {
          failure = err;
        }
        const deviceOutOfMemory = await scope.release();
        if (attempt && !deviceOutOfMemory) return attempt;
        if (attempt) tf.dispose([attempt.loss, ...attempt.grads]);
        if (!deviceOutOfMemory && !isOutOfMemoryError(failure)) throw failure;
        if (batchSize === 1) {
          throw new ConceptError('There is not enough memory to teach a concept on this model, even one picture at a time. Free memory (fewer jobs at once) or use a larger GPU.',
            [], { cause: failure });
        }
        // the pool holds buffers sized for the larger batch, which the smaller one cannot use
        await releaseFreeGpuMemory();
        const before = `${batchSize} × ${accumulation}`;
        batchSize = Math.ceil(batchSize / 2);
        accumulation = Math.ceil(effectiveBatch / batchSize);
        notice = `memory ran short at batch ${before}: continuing with batch ${batchSize} × ${accumulation} gradient accumulation (same effective batch ${effectiveBatch}, slower)`;
      }
    };

    const started = performance.now();
    const stepsAtStart = startStep;
    let next = startStep < p.steps ? draw(startStep) : null;
    let nextMean: Float32Array | null = null;
    if (next) {
      const mean = placeholderMean(next, prompts.conceptIds, overrides);
      nextMean = Float32Array.from(await mean.data());
      mean.dispose();
    }
    /** Writes a checkpoint after `done` steps; `iStar` is i* as it was when step `done` began. */
    let checkpointed = startStep;
    const checkpointAfter = async (done: number, iStar: Float64Array) => {
      const moments = await optimizer.state();
      const trained = await edit.state();
      const checkpoint: TrainingCheckpoint = {
        ...identity, step: done, batchSize, gradientAccumulation: accumulation, losses: losses.slice(0, done), hidden,
        layers: layers.map((l) => ({ name: l.name, outDim: l.outDim })), iStar,
        embedding: Float32Array.from(await embedding.data()), oK: trained.oK, oV: trained.oV,
        optimizerStep: moments.step, firstMoments: moments.firstMoments, secondMoments: moments.secondMoments,
      };
      await req.onCheckpoint!(serializeCheckpoint(checkpoint), done);
      checkpointed = done;
    };

    for (let step = startStep; step < p.steps; step++) {
      const iStarBefore = edit.iStarExact;
      let result: Awaited<ReturnType<typeof withMemoryRetry>>;
      try {
        signal?.throwIfAborted();
        edit.updateIStar(nextMean!);
        result = await withMemoryRetry(step, next!);
      } catch (err) {
        // stopped between or inside a step (a restart, a cancel): keep what the finished steps learnt, so the
        // next run resumes here rather than at the last periodic checkpoint; the unfinished step is redone
        if (signal?.aborted && req.onCheckpoint && step > checkpointed) await checkpointAfter(step, iStarBefore);
        throw err;
      }
      optimizer.apply(result.grads);
      tf.dispose(result.grads);
      next = step + 1 < p.steps ? draw(step + 1) : null;
      // one read per step: this step's loss and, for the next step's EMA, the placeholder's encoding with the updated v
      const readout = tf.tidy(() => {
        const loss = tf.reshape(result.loss, [1]);
        return next ? tf.concat([loss, placeholderMean(next, prompts.conceptIds, overrides)]) : loss;
      });
      result.loss.dispose();
      const values = (await readout.data()) as Float32Array;
      readout.dispose();
      losses.push(values[0]!);
      nextMean = next ? values.slice(1) : null;

      const done = step + 1;
      const perStep = (performance.now() - started) / (done - stepsAtStart);
      req.onProgress?.({
        step: done, total: p.steps, loss: values[0]!, etaMs: perStep * (p.steps - done), batchSize, gradientAccumulation: accumulation,
        ...(notice ? { notice } : {}),
      });
      notice = undefined;
      if (req.onCheckpoint && done % p.checkpointEvery === 0 && done < p.steps) await checkpointAfter(done, edit.iStarExact);
    }

    const trained = await edit.state();
    const tail = losses.slice(-FINAL_LOSS_STEPS);
    const finalLoss = tail.length ? tail.reduce((a, b) => a + b, 0) / tail.length : Number.NaN;
    const artifact: ConceptArtifact = {
      name: p.name, category: p.category, categoryTokenId: p.categoryTokenId, modelHash: pipeline.model.hash,
      covarianceHash: covariance.hash, beta: DEFAULT_BETA, tau: DEFAULT_TAU,
      layers: layers.map((l) => ({ name: l.name, outDim: l.outDim })),
      embedding: Float32Array.from(await embedding.data()), iStar: edit.iStar, oK: trained.oK, oV: trained.oV,
      training: {
        steps: p.steps, images: req.images.length, masks: req.images.filter((i) => i.mask).length, batchSize,
        gradientAccumulation: accumulation, effectiveBatch, finalLoss, beta: TRAINING_BETA, tau: TRAINING_TAU,
        seed, flip: p.flip, learningRates: { embedding: EMBEDDING_LEARNING_RATE, values: VALUE_LEARNING_RATE },
        iStarDecay: ISTAR_DECAY,
      },
    };
    return { artifact, bytes: serializeConcept(artifact), finalLoss, steps: p.steps };
  } finally {
    disposeAll();
    // the pool keeps buffers sized for training's activations, far more than generation needs
    await releaseFreeGpuMemory();
  }
}

/** a + b as a new tensor; both inputs are disposed. */
function keepSum(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const sum = tf.add(a, b);
  a.dispose();
  b.dispose();
  return sum;
}
