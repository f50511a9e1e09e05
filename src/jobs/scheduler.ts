// The GPU job scheduler. The database is the source of truth: a job row exists (state `queued`) before
// `submit` is called, and `start()` rebuilds the queue from the rows. p-queue bounds how many jobs run at
// once (one per GPU worker); which job a free slot takes is decided at that moment by policy.ts (fair across
// people, short jobs first). Every state change goes through job-states.ts; this file decides when.
import { EventEmitter } from 'node:events';
import PQueue from 'p-queue';
import type { JobEventType } from '../chat/types.ts';
import { INTERNAL_ERROR_MESSAGE, UnavailableError } from '../errors.ts';
import { jobLogger, type Logger } from '../log.ts';
import { bytes, type Db, type Job } from '../store/prisma.ts';
import { finishTimes, StepTimes } from './eta.ts';
import {
  JobAbortedError, JobRequestError, WorkerCrashError, type JobExecutor, type JobOutput, type WorkerModel,
} from './executor.ts';
import type { JobKinds } from './job-kinds.ts';
import { parseParams, workUnits } from './job-params.ts';
import { JobStates, type JobTransition } from './job-states.ts';
import { pickNext, predictOrder, type Waiting } from './policy.ts';

export interface SchedulerOptions {
  /** runs of one job before it fails (interruptions by a crash or a restart count) */
  maxAttempts: number;
  /** a training job that waited this long competes with short jobs */
  teachAgingMs?: number;
  /** how often the progress of a running job is written to its row */
  progressWriteMs?: number;
  /** queue-position events are sent at most this often */
  positionIntervalMs?: number;
  log: Logger;
  now?: () => number;
}

/** What the scheduler emits on 'job'. Transitions carry the row just written; progress/position do not. */
export interface SchedulerEvent {
  type: JobEventType;
  jobId: number;
  job?: Job;
}

interface Running {
  id: number;
  userId: number;
  kind: 'teach' | 'imagine';
  controller: AbortController;
  stop: null | { reason: 'cancel'; message: string } | { reason: 'shutdown' };
  startedAt: number;
  units: number;
  progress: { step: number; total: number; loss?: number } | null;
  lastProgressWrite: number;
}

interface WaitingJob extends Waiting {
  units: number;
}

export interface LiveStatus {
  position: number | null;
  etaMs: number | null;
  progress: { step: number; total: number; loss?: number } | null;
}

export interface QueueSnapshot {
  running: { id: number; userId: number; kind: 'teach' | 'imagine'; progress: LiveStatus['progress']; etaMs: number | null }[];
  waiting: { id: number; userId: number; kind: 'teach' | 'imagine'; position: number; etaMs: number | null }[];
}

export const interruptedTooOften = (attempts: number) =>
  `This job was interrupted ${attempts} times (the GPU worker stopped or the bot restarted while it ran), so it was given up. Try again; if it keeps happening, tell the bot's host.`;

export class Scheduler extends EventEmitter<{ job: [SchedulerEvent] }> {
  private readonly queue: PQueue;
  private readonly states: JobStates;
  private readonly waiting = new Map<number, WaitingJob>();
  private readonly running = new Map<number, Running>();
  private readonly served = new Map<number, number>();
  private servedCounter = 0;
  private seq = 0;
  private accepting = false;
  private orderCache: WaitingJob[] | null = null;
  /** bumped whenever what waits or runs changes; live() is cached per version for LIVE_CACHE_MS */
  private version = 0;
  private liveCache: { version: number; at: number; map: Map<number, LiveStatus> } | null = null;
  private positionTimer: NodeJS.Timeout | null = null;
  private lastPositions = new Map<number, number>();
  readonly stepTimes = new StepTimes();
  private readonly opts: Required<Omit<SchedulerOptions, 'log'>> & { log: Logger };

  constructor(
    private readonly db: Db,
    private readonly executor: JobExecutor,
    private readonly kinds: JobKinds,
    options: SchedulerOptions,
  ) {
    super();
    this.opts = {
      teachAgingMs: 10 * 60_000, progressWriteMs: 1000, positionIntervalMs: 1000, now: Date.now, ...options,
    };
    this.queue = new PQueue({ concurrency: executor.slots });
    this.states = new JobStates(db, kinds, (t) => this.onTransition(t));
  }

  get isAccepting(): boolean { return this.accepting; }

  /** Rebuilds the queue from the rows: running jobs were interrupted (re-queued, or failed after too many attempts). */
  async start(): Promise<void> {
    const recent = await this.db.job.findMany({
      where: { state: 'succeeded', msPerStep: { not: null } }, orderBy: { finishedAt: 'desc' }, take: 20,
    });
    for (const j of recent.reverse()) this.recordSpeed(j.kind as 'teach' | 'imagine', j, j.msPerStep!);

    const interrupted = await this.db.job.findMany({ where: { state: 'running' }, orderBy: { id: 'asc' } });
    for (const job of interrupted) {
      if (job.cancelRequested) await this.states.cancel(job.id, 'Cancelled.');
      else if (job.attempts >= this.opts.maxAttempts) await this.states.fail(job.id, interruptedTooOften(job.attempts));
      else await this.states.requeue(job.id, 'restart');
    }
    this.accepting = true;
    const queued = await this.db.job.findMany({ where: { state: 'queued' }, orderBy: { id: 'asc' } });
    for (const job of queued) this.enqueue(job);
    this.opts.log.info({ requeued: interrupted.length, queued: queued.length }, 'scheduler started');
  }

  /** Queues a job whose row (state `queued`) was just written; emits its 'queued' event. */
  submit(job: Job): void {
    if (!this.accepting) throw new UnavailableError('The bot is shutting down; your request was saved and will run after the restart.');
    this.enqueue(job);
    this.emit('job', { type: 'queued', jobId: job.id, job });
  }

  private enqueue(job: Job): void {
    if (this.waiting.has(job.id) || this.running.has(job.id)) return;
    const params = parseParams(job.kind, job.params);
    this.waiting.set(job.id, {
      id: job.id, userId: job.userId, kind: params.kind, queuedAt: job.updatedAt.getTime(), seq: this.seq++, units: workUnits(params),
    });
    this.orderCache = null; this.version++;
    void this.queue.add(() => this.runNext()).catch((err) => this.opts.log.error({ err }, 'scheduler slot failed'));
  }

  /**
   * Cancels a queued or running job. A queued job is cancelled at once; a running one is stopped
   * (its worker aborts between steps) and becomes `cancelled` when it has stopped.
   */
  async cancel(jobId: number, message = 'Cancelled.'): Promise<'cancelled' | 'stopping' | 'not-active'> {
    const run = this.running.get(jobId);
    if (run) {
      if (!run.stop) {
        run.stop = { reason: 'cancel', message };
        await this.db.job.updateMany({ where: { id: jobId, state: 'running' }, data: { cancelRequested: true } });
        run.controller.abort();
      }
      return 'stopping';
    }
    if (this.waiting.delete(jobId)) { this.orderCache = null; this.version++; }
    const done = await this.states.cancel(jobId, message);
    this.schedulePositions();
    return done ? 'cancelled' : 'not-active';
  }

  private order(): WaitingJob[] {
    if (!this.orderCache) {
      this.orderCache = predictOrder([...this.waiting.values()], this.served, this.servedCounter, this.opts.now(), this.opts) as WaitingJob[];
    }
    return this.orderCache;
  }

  private runningRemaining(r: Running): number | null {
    const total = this.stepTimes.estimate(r.kind, r.units);
    if (r.progress && r.progress.step > 0) {
      const elapsed = this.opts.now() - r.startedAt;
      return (elapsed / r.progress.step) * Math.max(0, r.progress.total - r.progress.step);
    }
    return total === null ? null : Math.max(0, total - (this.opts.now() - r.startedAt));
  }

  /** Position, ETA and progress of every active job (recomputed when something changed, at most every 200 ms). */
  private live(): Map<number, LiveStatus> {
    const now = this.opts.now();
    if (this.liveCache && this.liveCache.version === this.version && now - this.liveCache.at < 200) return this.liveCache.map;
    const map = this.computeLive();
    this.liveCache = { version: this.version, at: now, map };
    return map;
  }

  private computeLive(): Map<number, LiveStatus> {
    const out = new Map<number, LiveStatus>();
    const runs = [...this.running.values()];
    const remaining = runs.map((r) => this.runningRemaining(r));
    runs.forEach((r, i) => out.set(r.id, { position: null, etaMs: remaining[i]!, progress: r.progress }));
    const order = this.order();
    const ends = finishTimes(remaining, order.map((w) => this.stepTimes.estimate(w.kind, w.units)), this.executor.slots);
    order.forEach((w, i) => out.set(w.id, { position: i + 1, etaMs: ends[i]!, progress: null }));
    return out;
  }

  /** jobs of one person waiting or running (the scheduler holds every active job once started) */
  activeCount(userId: number): number {
    let n = 0;
    for (const w of this.waiting.values()) if (w.userId === userId) n++;
    for (const r of this.running.values()) if (r.userId === userId) n++;
    return n;
  }

  status(jobId: number): LiveStatus {
    return this.live().get(jobId) ?? { position: null, etaMs: null, progress: null };
  }

  snapshot(): QueueSnapshot {
    const live = this.live();
    return {
      running: [...this.running.values()].map((r) => ({ id: r.id, userId: r.userId, kind: r.kind, progress: r.progress, etaMs: live.get(r.id)!.etaMs })),
      waiting: this.order().map((w) => ({ id: w.id, userId: w.userId, kind: w.kind, position: live.get(w.id)!.position!, etaMs: live.get(w.id)!.etaMs })),
    };
  }

  /** Resolves when nothing runs or waits. */
  onIdle(): Promise<void> { return this.queue.onIdle(); }

  private onTransition(t: JobTransition): void {
    this.emit('job', { type: t.type, jobId: t.job.id, job: t.job });
  }

  private schedulePositions(): void {
    if (this.positionTimer || this.listenerCount('job') === 0) return;
    this.positionTimer = setTimeout(() => {
      this.positionTimer = null;
      const order = this.order();
      const next = new Map<number, number>();
      order.forEach((w, i) => next.set(w.id, i + 1));
      for (const [id, pos] of next) if (this.lastPositions.get(id) !== pos) this.emit('job', { type: 'position', jobId: id });
      this.lastPositions = next;
    }, this.opts.positionIntervalMs);
    this.positionTimer.unref();
  }

  private recordSpeed(kind: 'teach' | 'imagine', job: Job, msPerStep: number): void {
    try {
      const p = parseParams(job.kind, job.params);
      const steps = p.kind === 'teach' ? p.params.steps : p.params.steps;
      this.stepTimes.record(kind, (msPerStep * steps) / workUnits(p));
    } catch { /* an old row with other params: ignore */ }
  }

  private async runNext(): Promise<void> {
    if (!this.accepting) return;
    const next = pickNext([...this.waiting.values()], this.served, this.opts.now(), this.opts) as WaitingJob | undefined;
    if (!next) return;
    this.waiting.delete(next.id);
    this.served.set(next.userId, this.servedCounter++);
    this.orderCache = null; this.version++;
    const run: Running = {
      id: next.id, userId: next.userId, kind: next.kind, controller: new AbortController(), stop: null,
      startedAt: this.opts.now(), units: next.units, progress: null, lastProgressWrite: 0,
    };
    this.running.set(next.id, run);
    this.schedulePositions();
    const log = jobLogger(this.opts.log, next.id, next.kind);
    try {
      const job = await this.states.start(next.id);
      if (!job) return; // cancelled or finished meanwhile
      await this.execute(job, run, log);
    } catch (err) {
      log.error({ err }, 'job bookkeeping failed');
    } finally {
      if (this.running.get(next.id) === run) this.running.delete(next.id);
      this.orderCache = null; this.version++;
      this.schedulePositions();
    }
  }

  private async execute(job: Job, run: Running, log: Logger): Promise<void> {
    let model: WorkerModel;
    let output: JobOutput;
    try {
      model = await this.executor.ready();
      const input = await this.kinds.prepare(job, model);
      log.info({ attempt: job.attempts }, 'job started');
      output = await this.executor.run(input, {
        signal: run.controller.signal,
        onProgress: (p) => this.onProgress(run, p, log),
        onCheckpoint: async (state, step) => {
          await this.db.job.updateMany({ where: { id: job.id, state: 'running' }, data: { checkpoint: bytes(state), checkpointStep: step } });
          log.debug({ step, bytes: state.byteLength }, 'checkpoint saved');
        },
      });
    } catch (err) {
      await this.afterError(job, run, err, log);
      return;
    }
    if (run.stop?.reason === 'cancel') {
      // finished in the same moment it was cancelled: the person asked to stop, so honour that
      await this.states.cancel(job.id, run.stop.message);
      return;
    }
    this.recordSpeed(run.kind, job, output.msPerStep);
    const done = await this.states.succeed(job.id, output.msPerStep, (tx, row) => this.kinds.succeed(tx, row, output, model));
    log.info({ ms: this.opts.now() - run.startedAt, msPerStep: Math.round(output.msPerStep) }, done ? 'job succeeded' : 'job result dropped');
  }

  private async afterError(job: Job, run: Running, err: unknown, log: Logger): Promise<void> {
    if (err instanceof JobAbortedError || run.controller.signal.aborted) {
      if (run.stop?.reason === 'shutdown') {
        await this.states.requeue(job.id, 'shutdown');
        log.info('job interrupted by shutdown; it resumes after the restart');
      } else {
        await this.states.cancel(job.id, run.stop?.reason === 'cancel' ? run.stop.message : 'Cancelled.');
        log.info('job cancelled while running');
      }
    } else if (err instanceof JobRequestError) {
      log.info({ reason: err.message }, 'job refused by the engine');
      await this.states.fail(job.id, err.message);
    } else if (err instanceof WorkerCrashError) {
      log.warn({ err: err.message, attempt: job.attempts }, 'GPU worker crashed during the job');
      if (job.attempts >= this.opts.maxAttempts) {
        await this.states.fail(job.id, interruptedTooOften(job.attempts));
      } else {
        const again = await this.states.requeue(job.id, 'crash');
        if (again && this.accepting) { this.running.delete(job.id); this.enqueue(again); }
      }
    } else if (err instanceof Error && err.name === 'EngineStartError') {
      await this.states.fail(job.id, `The image model could not be loaded, so this job cannot run: ${err.message}`);
    } else {
      log.error({ err }, 'job failed');
      await this.states.fail(job.id, err instanceof UnavailableError ? err.message : INTERNAL_ERROR_MESSAGE);
    }
  }

  private onProgress(run: Running, p: { step: number; total: number; loss?: number }, log: Logger): void {
    run.progress = p;
    this.version++;
    this.emit('job', { type: 'progress', jobId: run.id });
    const now = this.opts.now();
    if (now - run.lastProgressWrite >= this.opts.progressWriteMs || p.step === p.total) {
      run.lastProgressWrite = now;
      this.db.job.updateMany({
        where: { id: run.id, state: 'running' },
        data: { progressStep: p.step, progressTotal: p.total, progressLoss: p.loss ?? null },
      }).catch((err) => log.warn({ err }, 'progress write failed'));
    }
  }

  /**
   * Stops taking new work; running jobs may finish within `graceMs`, then they are stopped (a training
   * job keeps its last checkpoint) and put back in the queue for the next start. Waiting jobs stay queued.
   */
  async shutdown(graceMs: number): Promise<void> {
    this.accepting = false;
    this.queue.clear();
    this.waiting.clear();
    if (this.positionTimer) { clearTimeout(this.positionTimer); this.positionTimer = null; }
    const active = this.queue.onIdle();
    for (const r of this.running.values()) {
      // training is long: stop it now (it resumes from its checkpoint); a short job may finish
      if (r.kind === 'teach' && !r.stop) { r.stop = { reason: 'shutdown' }; r.controller.abort(); }
    }
    const timer = setTimeout(() => {
      for (const r of this.running.values()) if (!r.stop) { r.stop = { reason: 'shutdown' }; r.controller.abort(); }
    }, graceMs);
    try { await active; } finally { clearTimeout(timer); }
  }
}
