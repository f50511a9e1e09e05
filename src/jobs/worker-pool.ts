// The real JobExecutor: GPU worker threads (gpu/worker.ts), one job each at a time. A worker that dies or
// hangs is replaced; the job it ran fails with WorkerCrashError so the scheduler can retry it.
import { Worker } from 'node:worker_threads';
import type { FromWorker, ToWorker, WorkerInit, WorkerModel } from '../../gpu/worker-protocol.ts';
import type { Logger } from '../log.ts';
import {
  JobAbortedError, JobRequestError, WorkerCrashError, type ExecutionHooks, type JobExecutor, type JobInput, type JobOutput,
} from './executor.ts';

const WORKER_URL = new URL('../../gpu/worker.ts', import.meta.url);
// The worker is TypeScript: it registers tsx's loader itself before importing gpu/worker.ts.
const BOOTSTRAP = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(WORKER_URL.href)}); })`;

export interface WorkerPoolOptions {
  init: Omit<WorkerInit, 'cancelFlag'>;
  workers: number;
  log: Logger;
  /** after a cancel, how long a worker may take to stop before it is terminated and replaced */
  abortGraceMs?: number;
  /** wait before replacing a crashed worker (grows with consecutive crashes) */
  restartDelayMs?: number;
}

/** The model could not be loaded; the message says what to fix (from the engine's ModelLoadError etc.). */
export class EngineStartError extends Error {
  constructor(message: string) { super(message); this.name = 'EngineStartError'; }
}

interface Current {
  jobId: number;
  hooks: ExecutionHooks;
  resolve: (o: JobOutput) => void;
  reject: (e: Error) => void;
  checkpoints: Promise<void>;
  abortTimer: NodeJS.Timeout | null;
}

class GpuWorker {
  worker: Worker | null = null;
  model: WorkerModel | null = null;
  current: Current | null = null;
  private readyWaiters: { resolve: (m: WorkerModel) => void; reject: (e: Error) => void }[] = [];
  private checks = new Map<number, (error: string | null) => void>();
  private crashes = 0;
  closed = false;
  /** shared with the worker: the id of the job to stop (WorkerInit.cancelFlag) */
  private readonly cancelFlag = new Int32Array(new SharedArrayBuffer(4));
  private restartTimer: NodeJS.Timeout | null = null;

  constructor(private readonly index: number, private readonly pool: WorkerPool) {}

  start(): void {
    const init: WorkerInit = { ...this.pool.opts.init, cancelFlag: this.cancelFlag };
    const w = new Worker(BOOTSTRAP, { eval: true, workerData: init });
    this.worker = w;
    this.model = null;
    w.on('message', (msg: FromWorker) => this.onMessage(msg));
    w.on('error', (err) => this.onExit(`the GPU worker failed: ${err.message}`, err));
    w.on('exit', (code) => this.onExit(`the GPU worker exited (code ${code})`));
  }

  whenReady(): Promise<WorkerModel> {
    if (this.model) return Promise.resolve(this.model);
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  private onMessage(msg: FromWorker): void {
    switch (msg.type) {
      case 'ready':
        this.model = msg.model;
        this.crashes = 0;
        for (const w of this.readyWaiters.splice(0)) w.resolve(msg.model);
        this.pool.workerReady(this);
        return;
      case 'init-failed': {
        const err = new EngineStartError(msg.message);
        this.closed = true;
        for (const w of this.readyWaiters.splice(0)) w.reject(err);
        this.pool.workerFailed(this, err);
        void this.worker?.terminate();
        return;
      }
      case 'category-checked':
        this.checks.get(msg.requestId)?.(msg.error);
        this.checks.delete(msg.requestId);
        return;
    }
    const cur = this.current;
    if (!cur || msg.jobId !== cur.jobId) return;
    switch (msg.type) {
      case 'progress':
        cur.hooks.onProgress({ step: msg.step, total: msg.total, ...(msg.loss === undefined ? {} : { loss: msg.loss }) });
        return;
      case 'checkpoint':
        cur.checkpoints = cur.checkpoints.then(() => cur.hooks.onCheckpoint(msg.state, msg.step))
          .catch((err) => this.pool.opts.log.warn({ err, jobId: cur.jobId }, 'checkpoint write failed'));
        return;
      case 'done':
        void cur.checkpoints.then(() => this.finish(cur, null, msg.output));
        return;
      case 'failed': {
        const err = msg.kind === 'aborted' ? new JobAbortedError()
          : msg.kind === 'request' ? new JobRequestError(msg.message)
            : Object.assign(new Error(msg.message), { stack: msg.stack ?? msg.message });
        void cur.checkpoints.then(() => this.finish(cur, err));
      }
    }
  }

  private finish(cur: Current, err: Error | null, output?: JobOutput): void {
    if (this.current !== cur) return;
    this.current = null;
    if (cur.abortTimer) clearTimeout(cur.abortTimer);
    if (err) cur.reject(err); else cur.resolve(output!);
    this.pool.workerIdle(this);
  }

  private onExit(reason: string, err?: Error): void {
    if (!this.worker) return;
    this.worker = null;
    this.model = null;
    for (const resolve of this.checks.values()) resolve(null);
    this.checks.clear();
    const cur = this.current;
    if (cur) {
      this.current = null;
      if (cur.abortTimer) clearTimeout(cur.abortTimer);
      cur.reject(cur.hooks.signal.aborted ? new JobAbortedError() : new WorkerCrashError(reason));
    }
    if (this.closed) return;
    this.pool.opts.log.warn({ worker: this.index, reason, err }, 'GPU worker stopped; starting a new one');
    this.crashes++;
    const delay = Math.min(30_000, (this.pool.opts.restartDelayMs ?? 500) * 2 ** (this.crashes - 1));
    this.restartTimer = setTimeout(() => { this.restartTimer = null; if (!this.closed) this.start(); }, delay);
  }

  run(input: JobInput, hooks: ExecutionHooks): Promise<JobOutput> {
    return new Promise<JobOutput>((resolve, reject) => {
      const cur: Current = { jobId: input.jobId, hooks, resolve, reject, checkpoints: Promise.resolve(), abortTimer: null };
      this.current = cur;
      const onAbort = () => {
        Atomics.store(this.cancelFlag, 0, input.jobId);
        this.post({ type: 'cancel', jobId: input.jobId });
        cur.abortTimer = setTimeout(() => {
          if (this.current !== cur) return;
          this.pool.opts.log.warn({ jobId: input.jobId }, 'GPU worker did not stop in time; replacing it');
          void this.worker?.terminate(); // onExit rejects with JobAbortedError and restarts the worker
        }, this.pool.opts.abortGraceMs ?? 30_000);
      };
      if (hooks.signal.aborted) { this.current = null; this.pool.workerIdle(this); reject(new JobAbortedError()); return; }
      hooks.signal.addEventListener('abort', onAbort, { once: true });
      const msg: ToWorker = input.kind === 'teach'
        ? { type: 'teach', jobId: input.jobId, request: input.request }
        : { type: 'generate', jobId: input.jobId, request: input.request };
      this.post(msg);
    });
  }

  checkCategory(requestId: number, word: string): Promise<string | null> {
    return new Promise((resolve) => {
      this.checks.set(requestId, resolve);
      this.post({ type: 'check-category', requestId, word });
    });
  }

  private post(msg: ToWorker): void {
    this.worker?.postMessage(msg);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const w = this.worker;
    this.worker = null;
    for (const resolve of this.checks.values()) resolve(null);
    if (this.current) { this.current.reject(new WorkerCrashError('the bot is shutting down')); this.current = null; }
    if (w) await w.terminate();
  }
}

export class WorkerPool implements JobExecutor {
  readonly slots: number;
  private readonly workers: GpuWorker[] = [];
  private idleWaiters: ((w: GpuWorker) => void)[] = [];
  private readonly busy = new Set<GpuWorker>();
  private requestIds = 0;
  private readyPromise: Promise<WorkerModel>;
  private settleReady!: { resolve: (m: WorkerModel) => void; reject: (e: Error) => void };
  private failures = 0;

  constructor(readonly opts: WorkerPoolOptions) {
    this.slots = opts.workers;
    this.readyPromise = new Promise((resolve, reject) => { this.settleReady = { resolve, reject }; });
    this.readyPromise.catch(() => {});
    for (let i = 0; i < opts.workers; i++) {
      const w = new GpuWorker(i, this);
      this.workers.push(w);
      w.start();
    }
  }

  ready(): Promise<WorkerModel> { return this.readyPromise; }

  workerReady(w: GpuWorker): void {
    this.settleReady.resolve(w.model!);
    this.workerIdle(w);
  }

  workerFailed(_w: GpuWorker, err: Error): void {
    if (++this.failures === this.workers.length) this.settleReady.reject(err);
  }

  workerIdle(w: GpuWorker): void {
    this.busy.delete(w);
    if (!w.model) return;
    const next = this.idleWaiters.shift();
    if (next) { this.busy.add(w); next(w); }
  }

  private acquire(): Promise<GpuWorker> {
    const free = this.workers.find((w) => w.model && !w.current && !this.busy.has(w));
    if (free) { this.busy.add(free); return Promise.resolve(free); }
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  async run(input: JobInput, hooks: ExecutionHooks): Promise<JobOutput> {
    await this.ready();
    const w = await this.acquire();
    return w.run(input, hooks);
  }

  async checkCategory(word: string): Promise<string | null> {
    await this.ready();
    const w = this.workers.find((x) => x.model && !x.current) ?? this.workers.find((x) => x.model);
    if (!w) return null;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<null>((resolve) => { timer = setTimeout(() => resolve(null), 15_000); });
    try {
      return await Promise.race([w.checkCategory(++this.requestIds, word), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    for (const waiter of this.idleWaiters.splice(0)) void waiter;
    await Promise.all(this.workers.map((w) => w.close()));
  }
}
