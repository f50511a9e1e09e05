// What each kind of job reads before it runs and writes when it ends, next to its state transition.
import sharp from 'sharp';
import type { SchedulerName } from '../../gpu/types.ts';
import { truncationNote } from '../../gpu/text/truncation.ts';
import { bytes, type Db, type Job, type Tx } from '../store/prisma.ts';
import { JobRequestError, type JobInput, type JobOutput, type WorkerModel } from './executor.ts';
import { parseParams, strengthToBeta } from './job-params.ts';
import type { FinalWrites } from './job-states.ts';

export interface JobKindsOptions {
  /** a training job checkpoints every this many steps */
  checkpointEvery: number;
  teachBatchSize?: number | null;
  teachGradientAccumulation?: number | null;
}

export class JobKinds implements FinalWrites {
  constructor(private readonly db: Db, private readonly opts: JobKindsOptions) {}

  /** Reads what the job needs from the store and builds the worker request. */
  async prepare(job: Job, model: WorkerModel): Promise<JobInput> {
    const p = parseParams(job.kind, job.params);
    if (p.kind === 'teach') {
      if (job.conceptId === null) throw new JobRequestError('The concept was deleted before it could be taught.');
      const images = await this.db.conceptImage.findMany({ where: { conceptId: job.conceptId }, orderBy: { position: 'asc' } });
      if (images.length === 0) throw new JobRequestError('The concept has no images left to learn from; teach it again.');
      const size = model.resolution;
      const decoded = await Promise.all(images.map(async (img) => {
        // centre crop to the model's square resolution, the way the images are seen in training
        const { data, info } = await sharp(img.png).removeAlpha().resize(size, size, { fit: 'cover', position: 'centre' })
          .raw().toBuffer({ resolveWithObject: true });
        return { width: info.width, height: info.height, rgb: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
      }));
      return {
        kind: 'teach', jobId: job.id,
        request: {
          name: p.params.name, category: p.params.category, images: decoded, steps: p.params.steps, seed: p.params.seed,
          resumeFrom: job.checkpoint ?? undefined, checkpointEvery: this.opts.checkpointEvery,
          // the demo model (random weights) trains one image per step by default, so its short run stays short
          ...(this.opts.teachBatchSize || model.isDemo ? { batchSize: this.opts.teachBatchSize || 1 } : {}),
          ...(this.opts.teachGradientAccumulation || model.isDemo ? { gradientAccumulation: this.opts.teachGradientAccumulation || 1 } : {}),
        },
      };
    }
    const ids = p.params.concepts.map((c) => c.conceptId);
    const rows = ids.length ? await this.db.concept.findMany({ where: { id: { in: ids } } }) : [];
    const concepts = p.params.concepts.map((use) => {
      const row = rows.find((r) => r.id === use.conceptId);
      if (!row || row.status !== 'ready' || !row.artifact) {
        throw new JobRequestError(`<${use.name}> was deleted or is no longer usable, so this image cannot be drawn.`);
      }
      if (row.modelHash && row.modelHash !== model.hash) {
        throw new JobRequestError(`<${use.name}> was taught on a different model than the one the bot uses now (${model.name}); teach it again.`);
      }
      return { artifact: row.artifact, ...(use.strength === null ? {} : { beta: strengthToBeta(use.strength) }) };
    });
    return {
      kind: 'imagine', jobId: job.id,
      request: {
        prompt: p.params.prompt, negativePrompt: p.params.negativePrompt ?? undefined, steps: p.params.steps,
        guidance: p.params.guidance, width: p.params.width, height: p.params.height, seed: p.params.seed,
        scheduler: (p.params.scheduler ?? undefined) as SchedulerName | undefined,
        variation: p.params.variation ?? undefined, concepts,
      },
    };
  }

  /** Writes the result, in the transaction that marks the job succeeded. */
  async succeed(tx: Tx, job: Job, output: JobOutput, model: WorkerModel): Promise<void> {
    const p = parseParams(job.kind, job.params);
    if (p.kind === 'teach' && output.kind === 'teach') {
      if (job.conceptId === null) return;
      await tx.concept.update({
        where: { id: job.conceptId },
        data: { status: 'ready', artifact: bytes(output.artifact), modelHash: model.hash, steps: output.steps, finalLoss: output.finalLoss, error: null },
      });
      return;
    }
    if (p.kind === 'imagine' && output.kind === 'imagine') {
      const rows = p.params.concepts.length
        ? await tx.concept.findMany({ where: { id: { in: p.params.concepts.map((c) => c.conceptId) } }, select: { id: true } })
        : [];
      await tx.generation.create({
        data: {
          jobId: job.id, userId: job.userId, scopeId: job.scopeId,
          prompt: p.params.prompt, negativePrompt: p.params.negativePrompt, seed: output.seed, steps: p.params.steps,
          guidance: p.params.guidance, scheduler: p.params.scheduler ?? model.defaultScheduler,
          width: output.width, height: output.height,
          concepts: JSON.stringify(p.params.concepts.filter((c) => rows.some((r) => r.id === c.conceptId)).map((c) => ({
            ...c, beta: c.strength === null ? null : strengthToBeta(c.strength),
          }))),
          parentId: p.params.parentId, variationSeed: p.params.variation?.seed ?? null, variationAmount: p.params.variation?.amount ?? null,
          modelName: model.name, modelHash: model.hash, backend: model.backend, png: bytes(output.png),
          durationMs: Math.round(output.msPerStep * p.params.steps),
          notes: output.truncated.length ? output.truncated.map(truncationNote).join('\n') : null,
        },
      });
      return;
    }
    throw new Error(`job ${job.id} (${job.kind}) got a ${output.kind} result`);
  }

  /** A cancelled teach job frees the name; a failed one keeps the concept as `failed`, with the reason. */
  async onFailed(tx: Tx, job: Job, state: 'failed' | 'cancelled', message: string): Promise<void> {
    if (job.kind !== 'teach' || job.conceptId === null) return;
    if (state === 'cancelled') await tx.concept.deleteMany({ where: { id: job.conceptId, status: { not: 'ready' } } });
    else await tx.concept.updateMany({ where: { id: job.conceptId, status: { not: 'ready' } }, data: { status: 'failed', error: message } });
  }
}
