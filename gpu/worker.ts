// The GPU worker thread: owns TensorFlow.js and one pipeline, runs one job at a time, and talks to the bot
// only through gpu/worker-protocol.ts. Started by src/jobs/worker-pool.ts with `WorkerInit` as workerData.
import { parentPort, workerData } from 'node:worker_threads';
import { join } from 'node:path';
import { ensureDemoModel, releaseFreeGpuMemory, StableDiffusionPipeline } from './index.ts';
import { createPerfusionConditioner } from './perfusion/conditioner.ts';
import { parseConcept, teachConcept } from './perfusion/index.ts';
import { seededLatents } from './random.ts';
import type {
  FromWorker, ToWorker, WorkerErrorKind, WorkerGenerateRequest, WorkerInit, WorkerTeachRequest,
} from './worker-protocol.ts';

if (!parentPort) throw new Error('gpu/worker.ts runs as a worker thread');
const port = parentPort;
const init = workerData as WorkerInit;

/** Aborts `controller` when the bot has flagged `jobId` for cancellation (see WorkerInit.cancelFlag). */
function checkCancel(jobId: number, controller: AbortController): void {
  if (Atomics.load(init.cancelFlag, 0) === jobId && !controller.signal.aborted) controller.abort();
}

function send(msg: FromWorker, transfer: ArrayBuffer[] = []): void {
  port.postMessage(msg, transfer);
}

/** Errors whose message is meant for the person who asked (bad request for this model, not a bug). */
const REQUEST_ERRORS = new Set([
  'GenerateRequestError', 'SchedulerError', 'ConceptCompatibilityError', 'ConceptFormatError', 'ConceptPromptError',
  'UnknownConceptError', 'CategoryWordError', 'ConceptError', 'TokenizerError',
]);

function classify(err: unknown, signal?: AbortSignal): { kind: WorkerErrorKind; message: string; stack?: string } {
  const e = err instanceof Error ? err : new Error(String(err));
  if (signal?.aborted || e.name === 'AbortError') return { kind: 'aborted', message: 'cancelled' };
  if (REQUEST_ERRORS.has(e.name) || REQUEST_ERRORS.has(e.constructor?.name)) return { kind: 'request', message: e.message };
  return { kind: 'internal', message: e.message, stack: e.stack };
}

/** Spherical interpolation between two noise tensors of the same size (keeps the noise's scale). */
function slerp(a: Float32Array, b: Float32Array, t: number): Float32Array {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { dot += a[i]! * b[i]!; na += a[i]! * a[i]!; nb += b[i]! * b[i]!; }
  const cos = Math.min(1, Math.max(-1, dot / Math.sqrt(na * nb)));
  const theta = Math.acos(cos);
  const out = new Float32Array(a.length);
  if (theta < 1e-4) { for (let i = 0; i < a.length; i++) out[i] = (1 - t) * a[i]! + t * b[i]!; return out; }
  const wa = Math.sin((1 - t) * theta) / Math.sin(theta);
  const wb = Math.sin(t * theta) / Math.sin(theta);
  for (let i = 0; i < a.length; i++) out[i] = wa * a[i]! + wb * b[i]!;
  return out;
}

const covarianceDir = join(init.cacheDir, 'covariance');

async function main(): Promise<void> {
  let pipeline: StableDiffusionPipeline;
  try {
    const modelDir = init.modelDir ?? ensureDemoModel(init.demoModelDir);
    pipeline = await StableDiffusionPipeline.load(modelDir, {
      backend: init.backend,
      conceptConditioner: createPerfusionConditioner({ cacheDir: covarianceDir }),
    });
  } catch (err) {
    send({ type: 'init-failed', message: err instanceof Error ? err.message : String(err) });
    return;
  }
  const m = pipeline.model;
  send({
    type: 'ready',
    model: {
      dir: m.dir, name: m.name, isDemo: m.isDemo, hash: m.hash, resolution: m.resolution,
      defaultScheduler: m.defaultScheduler, hiddenSize: m.hiddenSize, backend: pipeline.backend,
    },
  });

  const running = new Map<number, AbortController>();
  const latentChannels = pipeline.unet.config.inChannels;
  const vaeScale = 2 ** (pipeline.vae.config.blockOutChannels.length - 1);

  async function generate(jobId: number, r: WorkerGenerateRequest, controller: AbortController): Promise<void> {
    const signal = controller.signal;
    const concepts = r.concepts.map(({ artifact, beta }) => {
      const parsed = parseConcept(artifact);
      return beta === undefined ? parsed : { ...parsed, beta };
    });
    const h = r.height / vaeScale, w = r.width / vaeScale;
    const latents = r.variation
      ? slerp(seededLatents(r.seed, latentChannels, h, w), seededLatents(r.variation.seed, latentChannels, h, w), r.variation.amount)
      : undefined;
    const started = performance.now();
    const result = await pipeline.generate({
      prompt: r.prompt, negativePrompt: r.negativePrompt, steps: r.steps, guidance: r.guidance, scheduler: r.scheduler,
      width: r.width, height: r.height, seed: r.seed, latents, concepts, signal,
      onStep: (step, total) => { checkCancel(jobId, controller); send({ type: 'progress', jobId, step, total }); },
    });
    const png = result.png;
    send({
      type: 'done', jobId,
      output: { kind: 'imagine', png, width: result.width, height: result.height, seed: result.seed, msPerStep: (performance.now() - started) / r.steps, truncated: result.truncated },
    }, [png.buffer as ArrayBuffer]);
  }

  async function teach(jobId: number, r: WorkerTeachRequest, controller: AbortController): Promise<void> {
    const signal = controller.signal;
    const started = performance.now();
    const result = await teachConcept(pipeline, {
      name: r.name, category: r.category, images: r.images, steps: r.steps, seed: r.seed, resumeFrom: r.resumeFrom, signal,
      checkpointEvery: r.checkpointEvery, cacheDir: covarianceDir,
      ...(r.batchSize === undefined ? {} : { batchSize: r.batchSize }),
      ...(r.gradientAccumulation === undefined ? {} : { gradientAccumulation: r.gradientAccumulation }),
      onProgress: (p) => { checkCancel(jobId, controller); send({ type: 'progress', jobId, step: p.step, total: p.total, loss: p.loss }); },
      onCheckpoint: (state, step) => {
        const copy = state.slice();
        send({ type: 'checkpoint', jobId, step, state: copy }, [copy.buffer as ArrayBuffer]);
      },
    });
    const bytes = result.bytes.slice();
    send({
      type: 'done', jobId,
      output: { kind: 'teach', artifact: bytes, finalLoss: result.finalLoss, steps: result.steps, msPerStep: (performance.now() - started) / Math.max(1, r.steps) },
    }, [bytes.buffer as ArrayBuffer]);
  }

  port.on('message', (msg: ToWorker) => {
    switch (msg.type) {
      case 'cancel':
        running.get(msg.jobId)?.abort();
        return;
      case 'check-category': {
        let error: string | null = null;
        try { pipeline.tokenizer.categoryTokenId(msg.word); } catch (e) { error = e instanceof Error ? e.message : String(e); }
        send({ type: 'category-checked', requestId: msg.requestId, error });
        return;
      }
      case 'generate':
      case 'teach': {
        const controller = new AbortController();
        running.set(msg.jobId, controller);
        const work = msg.type === 'generate'
          ? generate(msg.jobId, msg.request, controller)
          : teach(msg.jobId, msg.request, controller);
        work.catch((err) => send({ type: 'failed', jobId: msg.jobId, ...classify(err, controller.signal) }))
          .finally(() => {
            running.delete(msg.jobId);
            // between jobs, GPU memory holds the model and nothing else (tfjs would keep every freed buffer)
            if (running.size === 0) releaseFreeGpuMemory().catch(() => {});
          });
      }
    }
  });
}

void main();
