// The one place that moves a job between states (BullMQ-style):
//
//   queued ──start──▶ running ──succeed──▶ succeeded
//     │                 │ ├────fail─────▶ failed
//     │                 │ └───cancel────▶ cancelled
//     │                 └──requeue──▶ queued            (restart, crashed worker, shutdown)
//     ├──fail──▶ failed       (e.g. interrupted too often, found at start)
//     └──cancel──▶ cancelled
//
// Every transition is one guarded UPDATE (`WHERE id = ? AND state IN (…)`) in a transaction with what the
// job's kind must write with it (the concept's artifact, the generation), so a transition happens at most
// once even when a cancel races a finish. The row is written first; the event is emitted after the commit.
import type { JobEventType, JobState } from '../chat/types.ts';
import type { Db, Job, Tx } from '../store/prisma.ts';

export interface JobTransition {
  type: JobEventType;
  job: Job;
}

/** What a job's kind writes together with its final transition (src/jobs/job-kinds.ts). */
export interface FinalWrites {
  onFailed(tx: Tx, job: Job, state: 'failed' | 'cancelled', message: string): Promise<void>;
}

export class JobStates {
  constructor(
    private readonly db: Db,
    private readonly kinds: FinalWrites,
    private readonly emit: (t: JobTransition) => void,
  ) {}

  private async move(
    id: number, from: JobState[], type: JobEventType, data: Record<string, unknown>,
    extra?: (tx: Tx, job: Job) => Promise<void>,
  ): Promise<Job | null> {
    const job = await this.db.$transaction(async (tx) => {
      const { count } = await tx.job.updateMany({ where: { id, state: { in: from } }, data });
      if (count === 0) return null;
      const row = await tx.job.findUniqueOrThrow({ where: { id } });
      if (extra) await extra(tx, row);
      return row;
    });
    if (job) this.emit({ type, job });
    return job;
  }

  /** queued → running; counts an attempt and clears the previous run's progress. */
  start(id: number): Promise<Job | null> {
    return this.move(id, ['queued'], 'started', {
      state: 'running', attempts: { increment: 1 }, startedAt: new Date(), progressStep: null, progressTotal: null, progressLoss: null,
    });
  }

  /** running → queued. An interruption by a clean shutdown does not count as an attempt. */
  requeue(id: number, why: 'restart' | 'crash' | 'shutdown'): Promise<Job | null> {
    return this.move(id, ['running'], 'requeued', {
      state: 'queued', startedAt: null, ...(why === 'shutdown' ? { attempts: { decrement: 1 } } : {}),
    });
  }

  /** running → succeeded, with the kind's result writes in the same transaction. */
  succeed(id: number, msPerStep: number, writes: (tx: Tx, job: Job) => Promise<void>): Promise<Job | null> {
    return this.move(id, ['running'], 'succeeded', { state: 'succeeded', finishedAt: new Date(), msPerStep, checkpoint: null }, writes);
  }

  /** queued | running → failed, with a sentence for people. */
  fail(id: number, message: string): Promise<Job | null> {
    return this.move(id, ['queued', 'running'], 'failed', { state: 'failed', finishedAt: new Date(), error: message, checkpoint: null },
      (tx, job) => this.kinds.onFailed(tx, job, 'failed', message));
  }

  /** queued | running → cancelled. */
  cancel(id: number, message: string): Promise<Job | null> {
    return this.move(id, ['queued', 'running'], 'cancelled', { state: 'cancelled', finishedAt: new Date(), error: message, checkpoint: null },
      (tx, job) => this.kinds.onFailed(tx, job, 'cancelled', message));
  }
}
