// Messages between the bot (src/jobs/worker-pool.ts) and a GPU worker thread (gpu/worker.ts). Plain data
// only (structured clone); byte arrays are transferred. One worker runs one job at a time and owns its
// TensorFlow.js backend and pipeline; the bot keeps the queue, the database and every decision.
import type { BackendName, PromptTruncation, SchedulerName } from './types.ts';

/** `workerData` of a GPU worker. */
export interface WorkerInit {
  /** diffusers-format SD 1.x folder; null: the built-in demo model, written to `demoModelDir` */
  modelDir: string | null;
  demoModelDir: string;
  backend: BackendName;
  /** where Perfusion caches the model's covariance */
  cacheDir: string;
  /**
   * Int32Array over a SharedArrayBuffer, slot 0: the id of a job to stop. The worker reads it at every
   * step, because a running job may not yield to the message loop until it ends (TensorFlow.js on wasm/cpu
   * computes synchronously), so a `cancel` message alone could arrive too late.
   */
  cancelFlag: Int32Array;
}

/** What a worker reports about its model once loaded (ModelInfo as plain data, and the backend in use). */
export interface WorkerModel {
  dir: string;
  name: string;
  isDemo: boolean;
  hash: string;
  resolution: number;
  defaultScheduler: SchedulerName;
  hiddenSize: number;
  backend: string;
}

export interface WorkerGenerateRequest {
  prompt: string;
  negativePrompt?: string;
  steps: number;
  guidance: number;
  scheduler?: SchedulerName;
  width: number;
  height: number;
  seed: number;
  /**
   * A variation: the start noise is the seed's noise mixed with `seed`'s noise by spherical interpolation,
   * `amount` 0 (the same image) … 1 (a different image).
   */
  variation?: { seed: number; amount: number };
  /** serialized concept artifacts (gpu/perfusion artifact format), each with an optional strength (beta) override */
  concepts: { artifact: Uint8Array; beta?: number }[];
}

export interface WorkerTeachImage {
  width: number;
  height: number;
  /** HWC RGB, 8 bits */
  rgb: Uint8Array;
}

export interface WorkerTeachRequest {
  name: string;
  category: string;
  images: WorkerTeachImage[];
  steps: number;
  seed?: number;
  /** images per forward pass and micro-batches per step (engine defaults when absent) */
  batchSize?: number;
  gradientAccumulation?: number;
  /** the last checkpoint of an interrupted run */
  resumeFrom?: Uint8Array;
  /** send a checkpoint every this many steps */
  checkpointEvery: number;
}

export type ToWorker =
  | { type: 'generate'; jobId: number; request: WorkerGenerateRequest }
  | { type: 'teach'; jobId: number; request: WorkerTeachRequest }
  /** stop the job: it ends with `failed` kind 'aborted' (teach jobs send a last checkpoint first when they can) */
  | { type: 'cancel'; jobId: number }
  /** is `word` usable as a concept category (one CLIP token)? answered with `category-checked` */
  | { type: 'check-category'; requestId: number; word: string };

export type GenerateOutput = {
  kind: 'imagine'; png: Uint8Array; width: number; height: number; seed: number; msPerStep: number;
  /** prompts the text encoder could not read whole */
  truncated: PromptTruncation[];
};
export type TeachOutput = { kind: 'teach'; artifact: Uint8Array; finalLoss: number; steps: number; msPerStep: number };

/**
 * `request`: the request cannot be done as asked (bad size, a concept for another model, a category that is
 * not one token…): `message` is for people. `aborted`: cancelled. `internal`: a bug or a device failure.
 */
export type WorkerErrorKind = 'request' | 'aborted' | 'internal';

export type FromWorker =
  | { type: 'ready'; model: WorkerModel }
  /** the model or backend could not be loaded; `message` is for people (ModelLoadError/BackendUnavailableError) */
  | { type: 'init-failed'; message: string }
  | { type: 'progress'; jobId: number; step: number; total: number; loss?: number }
  | { type: 'checkpoint'; jobId: number; step: number; state: Uint8Array }
  | { type: 'done'; jobId: number; output: GenerateOutput | TeachOutput }
  | { type: 'failed'; jobId: number; kind: WorkerErrorKind; message: string; stack?: string }
  | { type: 'category-checked'; requestId: number; error: string | null };
