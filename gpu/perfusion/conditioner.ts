// Perfusion plugged into the pipeline (gpu/pipeline.ts ConceptConditioner): the prompt's `<name>` mentions
// become placeholder tokens with the concepts' embeddings, and the UNet's cross-attention K/V projections get
// the concepts' edit, with the model's covariance C (estimated once from the built-in corpus and cached).
import { homedir } from 'node:os';
import { join } from 'node:path';
import type * as tf from '@tensorflow/tfjs-core';
import type { ConceptConditioner, ConceptConditioning } from '../pipeline.ts';
import type { CrossAttentionLayer } from '../types.ts';
import { checkCompatible } from './artifact.ts';
import { buildPromptCorpus, corpusDescription, DEFAULT_CORPUS_PROMPTS } from './corpus.ts';
import { cachedCovariance, estimateCovariance, type Covariance } from './covariance.ts';
import type { Projection } from './edit.ts';
import { PerfusionEdit } from './perfusion-edit.ts';
import { ConceptPromptError, embeddingOverrides, prepareConceptPrompt } from './prompt.ts';

/** What Perfusion needs of a loaded pipeline (StableDiffusionPipeline has it). */
export interface PerfusionPipeline {
  readonly model: { readonly hash: string; readonly hiddenSize: number };
  readonly tokenizer: {
    readonly vocabSize: number;
    readonly eosId: number;
    encode(text: string, opts?: { extraTokens?: ReadonlyMap<string, number> }): number[];
  };
  readonly unet: { crossAttentionLayers(): CrossAttentionLayer[] };
  encodePrompt(ids: readonly (readonly number[])[], overrides?: ReadonlyMap<number, tf.Tensor1D>): tf.Tensor3D;
}

export interface CovarianceOptions {
  /** the folder of the per-model covariance cache */
  cacheDir: string;
  /** prompts of the built-in corpus to estimate C from (default: corpusSizeFor(hidden size)) */
  corpusPrompts?: number;
  /** prompts per text-encoder batch (default 32) */
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
  /** stops a first-time estimate (nothing is cached then) */
  signal?: AbortSignal;
}

/**
 * Where the per-model covariance cache lives unless told otherwise: $PERFUSION_CACHE_DIR, else
 * ~/.cache/perfusion-bot. Teaching and generation must read the same C, so both default to this folder.
 */
export function defaultPerfusionCacheDir(env: Readonly<Record<string, string | undefined>> = process.env): string {
  const configured = env.PERFUSION_CACHE_DIR?.trim();
  return configured ? configured : join(homedir(), '.cache', 'perfusion-bot');
}

/** Full-size text encoders (SD 1.5: 768 wide) get the full corpus; the tiny demo model a tenth of it. */
export function corpusSizeFor(hiddenSize: number): number {
  return hiddenSize >= 512 ? DEFAULT_CORPUS_PROMPTS : DEFAULT_CORPUS_PROMPTS / 10;
}

/** The model's C: from the cache, else estimated with the pipeline's own text encoder and written to the cache. */
export async function modelCovariance(pipeline: PerfusionPipeline, opts: CovarianceOptions): Promise<Covariance> {
  const { covariance } = await cachedCovariance(opts.cacheDir, pipeline.model.hash, () => {
    const count = opts.corpusPrompts ?? corpusSizeFor(pipeline.model.hiddenSize);
    const encode = async (prompts: string[]) => {
      const ids = prompts.map((p) => pipeline.tokenizer.encode(p));
      const encoded = pipeline.encodePrompt(ids);
      try {
        return { encodings: (await encoded.data()) as Float32Array, eosPositions: ids.map((row) => row.indexOf(pipeline.tokenizer.eosId)) };
      } finally {
        encoded.dispose();
      }
    };
    return estimateCovariance(encode, buildPromptCorpus(count), {
      hidden: pipeline.model.hiddenSize,
      batchSize: opts.batchSize,
      source: corpusDescription(count),
      onProgress: opts.onProgress,
      signal: opts.signal,
    });
  });
  return covariance;
}

export interface PerfusionConditionerOptions extends CovarianceOptions {
  /** how several concepts share a projection (default 'exact') */
  projection?: Projection;
}

/**
 * The pipeline's ConceptConditioner for Perfusion. C is loaded (or estimated) on first use per model and kept.
 * Concepts given but not mentioned in the prompt are left out; a prompt that mentions none of them is an error.
 */
export function createPerfusionConditioner(opts: PerfusionConditionerOptions): ConceptConditioner {
  const covariances = new Map<string, Promise<Covariance>>();
  return async ({ pipeline, prompt, concepts, globalKeyLock, editUnconditional, guided }): Promise<ConceptConditioning> => {
    let covariance = covariances.get(pipeline.model.hash);
    if (!covariance) {
      covariance = modelCovariance(pipeline, opts);
      covariances.set(pipeline.model.hash, covariance);
      covariance.catch(() => covariances.delete(pipeline.model.hash));
    }
    const cov = await covariance;
    const prepared = prepareConceptPrompt(prompt, concepts, {
      encode: (text, o) => pipeline.tokenizer.encode(text, o),
      firstExtraTokenId: pipeline.tokenizer.vocabSize,
    });
    if (prepared.concepts.length === 0) {
      const names = concepts.map((c) => `<${c.name}>`).join(', ');
      throw new ConceptPromptError(`The prompt does not mention ${names}; write ${concepts.length > 1 ? 'each' : 'it'} where the concept should appear.`);
    }
    const layers = pipeline.unet.crossAttentionLayers();
    // before any tensor is made from a concept's arrays
    for (const c of prepared.concepts) checkCompatible(c, { modelHash: pipeline.model.hash, covarianceHash: cov.hash, layers });
    const overrides = embeddingOverrides(prepared);
    let superContext: tf.Tensor3D | undefined;
    try {
      if (globalKeyLock) superContext = pipeline.encodePrompt([prepared.superIds]);
      const edit = new PerfusionEdit(
        prepared.concepts,
        { modelHash: pipeline.model.hash, covariance: cov, layers },
        {
          projection: opts.projection,
          // the UNet batch is [uncond, cond] with guidance, [cond] without
          editItems: guided && !editUnconditional ? [false, true] : undefined,
          keyContexts: superContext && (guided ? [null, superContext] : [superContext]),
        },
      );
      const held = superContext;
      return {
        ids: prepared.ids,
        promptTokens: pipeline.tokenizer.tokenize(prepared.text, { extraTokens: prepared.extraTokens }),
        embeddingOverrides: overrides,
        edit,
        dispose() {
          edit.dispose();
          for (const t of overrides.values()) t.dispose();
          held?.dispose();
        },
      };
    } catch (err) {
      for (const t of overrides.values()) t.dispose();
      superContext?.dispose();
      throw err;
    }
  };
}
