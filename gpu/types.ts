// The engine's public contract (DESIGN.md, "Engine contract"). The worker, the command-line tools and the
// acceptance tests use these names and shapes; gpu/index.ts re-exports them.
import type * as tf from '@tensorflow/tfjs-core';

export type BackendName = 'auto' | 'webgpu' | 'tensorflow' | 'wasm' | 'cpu';
export type SchedulerName = 'pndm' | 'ddim' | 'euler' | 'dpmpp-2m';

export interface LoadOptions {
  backend?: BackendName;
}

/** What the loaded model is, for messages, caches and artifact compatibility checks. */
export interface ModelInfo {
  /** the model folder that was loaded */
  readonly dir: string;
  /** a short name for people: the folder name, or "built-in demo model" */
  readonly name: string;
  /** true for the tiny random-weight model the engine writes itself when no MODEL_DIR is configured */
  readonly isDemo: boolean;
  /** content hash of the weights (hex); concepts record it and are refused by other models */
  readonly hash: string;
  /** default image size in pixels (vae sample_size, 512 for SD 1.5) */
  readonly resolution: number;
  /** the scheduler the model's scheduler config names */
  readonly defaultScheduler: SchedulerName;
  /** text-encoder width (768 for SD 1.5) */
  readonly hiddenSize: number;
}

export interface Pipeline {
  /** the TensorFlow.js backend actually in use */
  readonly backend: string;
  readonly model: ModelInfo;
  /** 77 CLIP ids, padded with the model's pad token */
  tokenize(text: string): number[];
  generate(req: GenerateRequest): Promise<GenerateResult>;
  dispose(): void;
}

export interface GenerateRequest {
  prompt: string;
  negativePrompt?: string;
  steps?: number;
  guidance?: number;
  /** default: what the model's scheduler config names */
  scheduler?: SchedulerName;
  /** multiples of 8 */
  width?: number;
  height?: number;
  /** same seed + backend => same image */
  seed?: number;
  /** initial latents NCHW [1,4,h/8,w/8], before init_noise_sigma */
  latents?: Float32Array;
  /** Perfusion concepts used by the prompt, each mentioned as `<name>`; beta/tau override the artifact's defaults */
  concepts?: ConceptArtifact[];
  /** Perfusion's global key-locking (the K path sees the prompt with each concept replaced by its category word) */
  globalKeyLock?: boolean;
  /** apply the concept edit to the unconditional branch of classifier-free guidance too (default true) */
  editUnconditional?: boolean;
  onStep?: (step: number, total: number) => void;
  signal?: AbortSignal;
}

export interface GenerateResult {
  /** NHWC [height, width, 3], values in [0, 1] */
  pixels: Float32Array;
  width: number;
  height: number;
  png: Uint8Array;
  seed: number;
  /** the prompts the text encoder could not read whole (empty when both fit) */
  truncated: PromptTruncation[];
}

/** A prompt longer than the text encoder reads (75 tokens for CLIP's 77 with BOS and EOS): its end was left out. */
export interface PromptTruncation {
  field: 'prompt' | 'negativePrompt';
  /** tokens in the whole text */
  tokens: number;
  /** tokens the text encoder read */
  limit: number;
  /** the text that was left out, as the tokenizer spells it (lower case) */
  droppedText: string;
}

/**
 * A taught Perfusion concept (perfusion-spec.md §8): what reproduces the concept exactly at generation time.
 * Stored as a small versioned binary (gpu/perfusion/artifact.ts): a JSON header and little-endian float32 payload.
 */
export interface ConceptArtifact {
  /** the name used in prompts as `<name>` */
  name: string;
  /** the super-category word (one CLIP token) and its token id */
  category: string;
  categoryTokenId: number;
  /** ModelInfo.hash of the model it was taught on */
  modelHash: string;
  /** hash of the input covariance C it was taught with */
  covarianceHash: string;
  /** generation-time gate bias (strength) and temperature; defaults 0.7 / 0.15 */
  beta: number;
  tau: number;
  /** the edited cross-attention layers in the UNet's module order, with their output widths */
  layers: { name: string; outDim: number }[];
  /** the placeholder's word embedding v [hidden] */
  embedding: Float32Array;
  /** target input i* [hidden] */
  iStar: Float32Array;
  /** per layer: locked key target o*_K [outDim] and value target o*_V [outDim] */
  oK: Float32Array[];
  oV: Float32Array[];
  /** free-form facts about the training run (steps, images, loss), kept in the header */
  training?: Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------------
// Internal seams between the engine's parts (UNet ↔ Perfusion).

/** One cross-attention (attn2) layer of the UNet, whose K and V projections Perfusion edits. */
export interface CrossAttentionLayer {
  /** diffusers module name, e.g. "down_blocks.0.attentions.0.transformer_blocks.0.attn2" */
  readonly name: string;
  /** position in the UNet's module order (0-based) */
  readonly index: number;
  readonly inDim: number;
  readonly outDim: number;
  /** to_k / to_v weights in PyTorch Linear layout [outDim, inDim] */
  readonly toK: tf.Tensor2D;
  readonly toV: tf.Tensor2D;
}

/**
 * Replaces the K and V projections of every cross-attention layer during one UNet forward.
 * `context` is the text conditioning [B, L, inDim] the layer would project; the result must be [B, L, outDim].
 */
export interface CrossAttentionEdit {
  project(layer: CrossAttentionLayer, which: 'k' | 'v', context: tf.Tensor3D): tf.Tensor3D;
}
