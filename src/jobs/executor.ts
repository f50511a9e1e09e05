// The seam between the scheduler and whatever runs a job. The real one is the GPU worker pool
// (worker-pool.ts); tests of the scheduler's own logic use a fake.
import type { GenerateOutput, TeachOutput, WorkerGenerateRequest, WorkerModel, WorkerTeachRequest } from '../../gpu/worker-protocol.ts';

export type { GenerateOutput, TeachOutput, WorkerModel } from '../../gpu/worker-protocol.ts';

export type JobInput =
  | { kind: 'teach'; jobId: number; request: WorkerTeachRequest }
  | { kind: 'imagine'; jobId: number; request: WorkerGenerateRequest };

export type JobOutput = GenerateOutput | TeachOutput;

export interface ExecutionHooks {
  /** aborted on cancel or shutdown; the run then rejects with JobAbortedError */
  signal: AbortSignal;
  onProgress(p: { step: number; total: number; loss?: number }): void;
  /** a teach job's resumable state; awaited before the next checkpoint is taken */
  onCheckpoint(state: Uint8Array, step: number): Promise<void>;
}

export interface JobExecutor {
  /** how many jobs can run at once (GPU workers) */
  readonly slots: number;
  /** resolves once the model is loaded, with what it is; rejects with a worded error when it cannot load */
  ready(): Promise<WorkerModel>;
  run(input: JobInput, hooks: ExecutionHooks): Promise<JobOutput>;
  /** null when `word` can be a concept category, else why not (with suggestions) */
  checkCategory(word: string): Promise<string | null>;
  close(): Promise<void>;
}

/** The run stopped because its signal was aborted. */
export class JobAbortedError extends Error {
  constructor() { super('cancelled'); this.name = 'JobAbortedError'; }
}

/** The request cannot be done as asked; the message is for people. Not retried. */
export class JobRequestError extends Error {
  constructor(message: string) { super(message); this.name = 'JobRequestError'; }
}

/** The worker died or stopped answering while running it; retried up to the attempt limit. */
export class WorkerCrashError extends Error {
  constructor(message: string) { super(message); this.name = 'WorkerCrashError'; }
}
