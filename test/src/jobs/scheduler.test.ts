// The scheduler's own logic (fairness, priorities, limits, positions/ETAs, cancellation, crashes, restart,
// shutdown) with a fake executor; everything else is real: the commands, Prisma on SQLite, sharp.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startApp, type App } from '../../../src/app.ts';
import { imagine } from '../../../commands/imagine.ts';
import { teach } from '../../../commands/teach.ts';
import { LOCAL_SCOPE } from '../../../src/chat/local/server.ts';
import type { Requester } from '../../../src/services.ts';
import { interruptedTooOften } from '../../../src/jobs/scheduler.ts';
import { FakeExecutor, pngImage, testConfig, testDataDir, waitFor, type TestDir } from '../helpers.ts';

const who = (name: string): Requester => ({
  user: { platform: 'local', externalId: name, displayName: name, isAdmin: false }, scope: LOCAL_SCOPE, route: { platform: 'local', data: {} },
});

async function boot(executor: FakeExecutor, env: Record<string, string> = {}): Promise<{ app: App; dir: TestDir }> {
  const dir = await testDataDir({ LOCAL_CHAT: 'false', MAX_QUEUED_PER_USER: '20', ...env });
  const app = await startApp(testConfig(dir.env), { executor });
  return { app, dir };
}

const state = async (app: App, id: number) => (await app.services.db.job.findUniqueOrThrow({ where: { id } })).state;

describe('scheduler', () => {
  let images: { filename: string; bytes: Uint8Array }[];
  before(async () => { images = [{ filename: 'a.png', bytes: await pngImage(160, 160) }]; });

  test('one person\'s ten jobs do not starve another\'s one; short jobs go before training', async () => {
    const ex = new FakeExecutor(1);
    const { app, dir } = await boot(ex);
    try {
      const s = app.services;
      const first = await imagine(s, who('ann'), { prompt: 'a cat', steps: 2 });
      await ex.whenRunning(first.job.id);
      const annJobs = [];
      for (let i = 0; i < 9; i++) annJobs.push((await imagine(s, who('ann'), { prompt: `cat ${i}`, steps: 2 })).job.id);
      const training = (await teach(s, who('cy'), { name: 'hugsy', category: 'teddy', images, steps: 20 })).job.id;
      const bob = (await imagine(s, who('bob'), { prompt: 'a dog', steps: 2 })).job.id;

      const st = s.scheduler.status(bob);
      assert.equal(st.position, 1, 'bob is next: ann was just served and training waits for short jobs');
      assert.equal(s.scheduler.status(annJobs[0]!).position, 2);
      assert.equal(s.scheduler.status(training).position, 11, `training goes after every short job: ${JSON.stringify(s.scheduler.snapshot())}`);

      for (let i = 0; i < 11; i++) {
        const id = ex.started.at(-1)!;
        (await ex.whenRunning(id)).resolve();
        await waitFor(() => (ex.started.length > i + 1 ? true : undefined), 10_000, 'next start');
      }
      assert.deepEqual(ex.started.slice(0, 3), [first.job.id, bob, annJobs[0]]);
      assert.equal(ex.started.at(-1), training);
      (await ex.whenRunning(training)).resolve();
      await s.scheduler.onIdle();
      assert.equal(await state(app, training), 'succeeded');
      const concept = await s.db.concept.findFirstOrThrow({ where: { name: 'hugsy' } });
      assert.equal(concept.status, 'ready');
      assert.deepEqual([...concept.artifact!], [1, 2, 3, 4]);
    } finally {
      await app.stop(); dir.cleanup();
    }
  });

  test('a per-person limit on waiting jobs, with a message that says what to do', async () => {
    const ex = new FakeExecutor(1);
    const { app, dir } = await boot(ex, { MAX_QUEUED_PER_USER: '2' });
    try {
      await imagine(app.services, who('ann'), { prompt: 'one' });
      await imagine(app.services, who('ann'), { prompt: 'two' });
      await assert.rejects(imagine(app.services, who('ann'), { prompt: 'three' }), (err: Error & { status: number }) => {
        assert.equal(err.status, 429);
        assert.match(err.message, /already have 2 jobs waiting or running; the limit is 2.*cancel one with \/cancel/);
        return true;
      });
      await imagine(app.services, who('bob'), { prompt: 'others are not limited by ann' });
    } finally {
      await app.stop(); dir.cleanup();
    }
  });

  test('queue positions and ETAs from measured step times', async () => {
    const ex = new FakeExecutor(1);
    const { app, dir } = await boot(ex);
    try {
      const s = app.services;
      const a = await imagine(s, who('ann'), { prompt: 'a', steps: 10 });
      (await ex.whenRunning(a.job.id)).resolve();
      await s.scheduler.onIdle();
      const b = await imagine(s, who('ann'), { prompt: 'b', steps: 10 });
      const c = await imagine(s, who('bob'), { prompt: 'c', steps: 10 });
      const d = await imagine(s, who('cy'), { prompt: 'd', steps: 10 });
      await ex.whenRunning(b.job.id);
      const sc = s.scheduler.status(c.job.id), sd = s.scheduler.status(d.job.id);
      assert.equal(sc.position, 1);
      assert.equal(sd.position, 2);
      assert.ok(sc.etaMs !== null && sd.etaMs !== null && sd.etaMs > sc.etaMs, `ETAs grow with the position (${sc.etaMs}, ${sd.etaMs})`);
      const snap = s.scheduler.snapshot();
      assert.deepEqual(snap.waiting.map((w) => w.id), [c.job.id, d.job.id]);
      assert.equal(snap.running[0]!.id, b.job.id);
    } finally {
      await app.stop(); dir.cleanup();
    }
  });

  test('cancel a queued job and a running one', async () => {
    const ex = new FakeExecutor(1);
    const { app, dir } = await boot(ex);
    try {
      const s = app.services;
      const running = await teach(s, who('ann'), { name: 'rex', category: 'dog', images, steps: 20 });
      await ex.whenRunning(running.job.id);
      const queued = await imagine(s, who('bob'), { prompt: 'later' });
      assert.equal(await s.scheduler.cancel(queued.job.id), 'cancelled');
      assert.equal(await state(app, queued.job.id), 'cancelled');
      assert.equal(await s.scheduler.cancel(running.job.id, 'Cancelled by you.'), 'stopping');
      await waitFor(async () => ((await state(app, running.job.id)) === 'cancelled' ? true : undefined), 10_000, 'cancelled');
      const row = await s.db.job.findUniqueOrThrow({ where: { id: running.job.id } });
      assert.equal(row.error, 'Cancelled by you.');
      assert.equal(await s.db.concept.count({ where: { name: 'rex' } }), 0, 'a cancelled teach frees the name');
      assert.ok(!ex.started.includes(queued.job.id), 'the cancelled queued job never ran');
      assert.equal(await s.scheduler.cancel(queued.job.id), 'not-active');
    } finally {
      await app.stop(); dir.cleanup();
    }
  });

  test('a crashed worker: the job is retried, and failed with a message after 3 attempts', async () => {
    const ex = new FakeExecutor(1);
    const { app, dir } = await boot(ex);
    try {
      const s = app.services;
      const j = await imagine(s, who('ann'), { prompt: 'unlucky' });
      for (let attempt = 1; attempt <= 3; attempt++) {
        const ctl = await ex.whenRunning(j.job.id);
        assert.equal((await s.db.job.findUniqueOrThrow({ where: { id: j.job.id } })).attempts, attempt);
        ctl.crash();
        if (attempt < 3) await waitFor(() => (ex.started.filter((x) => x === j.job.id).length > attempt ? true : undefined), 10_000, 'retry');
      }
      await waitFor(async () => ((await state(app, j.job.id)) === 'failed' ? true : undefined), 10_000, 'failed');
      const row = await s.db.job.findUniqueOrThrow({ where: { id: j.job.id } });
      assert.equal(row.error, interruptedTooOften(3));
    } finally {
      await app.stop(); dir.cleanup();
    }
  });

  test('on start the queue is rebuilt from the rows: running jobs are re-queued, or failed after 3 attempts', async () => {
    const ex = new FakeExecutor(1);
    const { app, dir } = await boot(ex);
    const s = app.services;
    const a = await imagine(s, who('ann'), { prompt: 'interrupted once' });
    const b = await imagine(s, who('bob'), { prompt: 'interrupted thrice' });
    const c = await imagine(s, who('cy'), { prompt: 'still queued' });
    await ex.whenRunning(a.job.id);
    await app.stop(0);
    // make the rows look exactly as a killed process leaves them
    const { openDatabase } = await import('../../../src/store/prisma.ts');
    const db = await openDatabase(testConfig(dir.env).database);
    await db.job.update({ where: { id: a.job.id }, data: { state: 'running', attempts: 1 } });
    await db.job.update({ where: { id: b.job.id }, data: { state: 'running', attempts: 3 } });
    await db.job.update({ where: { id: c.job.id }, data: { state: 'queued' } });
    await db.$disconnect();

    const ex2 = new FakeExecutor(1, 0);
    const restarted = await startApp(testConfig(dir.env), { executor: ex2 });
    try {
      await restarted.services.scheduler.onIdle();
      await waitFor(async () => ((await state(restarted, c.job.id)) === 'succeeded' ? true : undefined), 10_000, 'c done');
      assert.equal(await state(restarted, a.job.id), 'succeeded');
      const rb = await restarted.services.db.job.findUniqueOrThrow({ where: { id: b.job.id } });
      assert.equal(rb.state, 'failed');
      assert.equal(rb.error, interruptedTooOften(3));
      assert.ok(!ex2.started.includes(b.job.id));
      assert.equal(await restarted.services.db.generation.count(), 2);
    } finally {
      await restarted.stop(); dir.cleanup();
    }
  });

  test('shutdown: training stops with its checkpoint and waits in the queue; the attempt does not count', async () => {
    const ex = new FakeExecutor(1);
    const { app, dir } = await boot(ex);
    const s = app.services;
    const t = await teach(s, who('ann'), { name: 'hugsy', category: 'teddy', images, steps: 100 });
    const ctl = await ex.whenRunning(t.job.id);
    await ctl.hooks.onCheckpoint(new Uint8Array([9, 9, 9]), 40);
    const q = await imagine(s, who('bob'), { prompt: 'waits' });
    await app.stop(5000);
    const { openDatabase } = await import('../../../src/store/prisma.ts');
    const db = await openDatabase(testConfig(dir.env).database);
    try {
      const row = await db.job.findUniqueOrThrow({ where: { id: t.job.id } });
      assert.equal(row.state, 'queued');
      assert.equal(row.attempts, 0);
      assert.equal(row.checkpointStep, 40);
      assert.deepEqual([...row.checkpoint!], [9, 9, 9]);
      assert.equal((await db.job.findUniqueOrThrow({ where: { id: q.job.id } })).state, 'queued');
    } finally {
      await db.$disconnect();
    }
    // the next start resumes from the checkpoint
    const ex2 = new FakeExecutor(1);
    const again = await startApp(testConfig(dir.env), { executor: ex2 });
    try {
      const ctl2 = await ex2.whenRunning(t.job.id);
      assert.equal(ctl2.input.kind, 'teach');
      assert.deepEqual([...(ctl2.input.kind === 'teach' ? ctl2.input.request.resumeFrom! : [])], [9, 9, 9]);
      ctl2.resolve();
    } finally {
      await again.stop(); dir.cleanup();
    }
  });
});
