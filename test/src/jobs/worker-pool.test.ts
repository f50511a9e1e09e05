// The real GPU worker pool (worker threads running gpu/worker.ts on wasm, the tiny fixture model): a worker
// that dies mid-job is replaced and the job fails as a crash (so the scheduler retries it); a cancel stops a
// job between steps; a model folder that cannot be loaded is reported in words.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { JobAbortedError, WorkerCrashError, type ExecutionHooks } from '../../../src/jobs/executor.ts';
import { WorkerPool } from '../../../src/jobs/worker-pool.ts';
import { createLogger } from '../../../src/log.ts';
import { FIXTURE_MODEL, ROOT } from '../helpers.ts';

const hooks = (signal = new AbortController().signal, onStep?: (step: number) => void): ExecutionHooks => ({
  signal, onProgress: (p) => onStep?.(p.step), onCheckpoint: async () => {},
});
const request = (steps: number) => ({ prompt: 'a photo of a dog', steps, guidance: 7.5, width: 64, height: 64, seed: 1, concepts: [] });

describe('GPU worker pool', () => {
  let cache: string;
  let pool: WorkerPool;
  before(() => {
    cache = mkdtempSync(join(tmpdir(), 'perfusion-pool-'));
    pool = new WorkerPool({ init: { modelDir: FIXTURE_MODEL, demoModelDir: join(cache, 'demo'), backend: 'wasm', cacheDir: cache }, workers: 1, log: createLogger('silent'), restartDelayMs: 50 });
  });
  after(async () => { await pool.close(); rmSync(cache, { recursive: true, force: true }); });

  test('reports the model it loaded', async () => {
    const m = await pool.ready();
    assert.equal(m.resolution, 128);
    assert.equal(m.backend, 'wasm');
    assert.equal(m.isDemo, false);
    assert.match(m.hash, /^[0-9a-f]{64}$/);
  });

  test('a worker that dies mid-job: the job fails as a crash, and a new worker takes the next job', async () => {
    const worker = () => (pool as unknown as { workers: { worker: Worker | null }[] }).workers[0]!.worker!;
    const dying = pool.run({ kind: 'imagine', jobId: 1, request: request(60) }, hooks(undefined, (step) => { if (step === 2) void worker().terminate(); }));
    await assert.rejects(dying, (err: Error) => err instanceof WorkerCrashError && /exited/.test(err.message));
    const out = await pool.run({ kind: 'imagine', jobId: 2, request: request(2) }, hooks());
    assert.equal(out.kind, 'imagine');
    assert.equal(out.kind === 'imagine' && out.png[1], 0x50, 'a PNG from the new worker');
  });

  test('cancel stops a job between steps', async () => {
    const ac = new AbortController();
    let last = 0;
    const run = pool.run({ kind: 'imagine', jobId: 3, request: request(100) }, hooks(ac.signal, (step) => { last = step; if (step === 3) ac.abort(); }));
    await assert.rejects(run, JobAbortedError);
    assert.ok(last < 10, `stopped at step ${last}`);
  });

  test('the category check uses the model\'s tokenizer', async () => {
    assert.equal(await pool.checkCategory('dog'), null);
    assert.match((await pool.checkCategory('zqxjvwkpfh'))!, /must be a single token/);
  });

  test('a model folder that cannot be loaded is reported in words', async () => {
    const bad = new WorkerPool({ init: { modelDir: ROOT, demoModelDir: join(cache, 'demo'), backend: 'wasm', cacheDir: cache }, workers: 1, log: createLogger('silent') });
    try {
      await assert.rejects(bad.ready(), (err: Error) => err.name === 'EngineStartError' && err.message.length > 10 && !/\n\s+at /.test(err.message));
    } finally {
      await bad.close();
    }
  });
});
