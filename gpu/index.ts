// The engine's public surface (DESIGN.md, "Engine contract"): the worker, the command-line tools and the
// acceptance tests load a pipeline here and talk to it through the contract types.
import { StableDiffusionPipeline, type ConceptConditioner } from './pipeline.ts';
import { createPerfusionConditioner, defaultPerfusionCacheDir } from './perfusion/conditioner.ts';
import type { LoadOptions, Pipeline } from './types.ts';

export type {
  BackendName, ConceptArtifact, CrossAttentionEdit, CrossAttentionLayer, GenerateRequest, GenerateResult, LoadOptions, PromptTruncation,
  ModelInfo, Pipeline, SchedulerName,
} from './types.ts';
export { StableDiffusionPipeline, GenerateRequestError, DEFAULT_GUIDANCE, DEFAULT_STEPS, MAX_STEPS, MIN_SIDE, MAX_SIDE } from './pipeline.ts';
export type { ConceptConditioner, ConceptConditionerInput, ConceptConditioning } from './pipeline.ts';
export { BackendUnavailableError, backendInfo, gpuMemory, releaseFreeGpuMemory, type GpuMemory } from './backend.ts';
export { ModelLoadError } from './model/errors.ts';
export { ModelTooLargeError, WASM_MEMORY_LIMIT_BYTES } from './model/memory-fit.ts';
export { defaultDemoModelDir, ensureDemoModel, isDemoModel } from './model/demo-model.ts';
export { SCHEDULER_NAMES, SchedulerError } from './schedulers/index.ts';
export { MAX_SEED } from './random.ts';

/**
 * Starts the TensorFlow.js backend (`auto` by default: tensorflow → webgpu → wasm → cpu), reads the
 * diffusers-format SD 1.x folder `modelDir` and builds the pipeline on the device. GenerateRequest.concepts
 * work through Perfusion's conditioner, whose text covariance C is cached under `cacheDir`
 * (default: $PERFUSION_CACHE_DIR or ~/.cache/perfusion-bot); `conceptConditioner` replaces it.
 */
export async function loadPipeline(
  modelDir: string, opts: LoadOptions & { conceptConditioner?: ConceptConditioner; cacheDir?: string } = {},
): Promise<Pipeline & StableDiffusionPipeline> {
  const conceptConditioner = opts.conceptConditioner
    ?? createPerfusionConditioner({ cacheDir: opts.cacheDir ?? defaultPerfusionCacheDir() });
  return StableDiffusionPipeline.load(modelDir, { backend: opts.backend, conceptConditioner });
}
