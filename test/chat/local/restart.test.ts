// The bot as a real process (`node --import tsx src/main.ts`, what `npm start` runs), killed with SIGKILL
// while a teach job runs, then started again: the job resumes from its checkpoint and completes, and nothing
// is lost (the queued job behind it runs, earlier images stay). SIGTERM: a clean exit with the job kept.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { openDatabase } from '../../../src/store/prisma.ts';
import { pngImage, ROOT, testConfig, testDataDir, waitFor, type TestDir } from '../../src/helpers.ts';


interface Bot { child: ChildProcess; url: string; output: () => string; exited: Promise<number | null> }

async function startBot(env: Record<string, string>): Promise<Bot> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT, env: { ...process.env, ...env, LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => { out += d; });
  child.stderr!.on('data', (d) => { out += d; });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = await waitFor(() => /Local chat: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out)?.[1], 60_000, `the bot to start:\n${out}`);
  return { child, url, output: () => out, exited };
}

async function get(url: string) { return (await fetch(url)).json() as Promise<Record<string, any>>; }

describe('restarts', () => {
  let dir: TestDir;
  let bot: Bot | null = null;
  before(async () => {
    dir = await testDataDir({ TEACH_BATCH_SIZE: '1', TEACH_GRADIENT_ACCUMULATION: '1', CHECKPOINT_EVERY: '2', SHUTDOWN_GRACE_MS: '10000' });
  });
  after(async () => {
    if (bot && bot.child.exitCode === null) { bot.child.kill('SIGKILL'); await bot.exited; }
    dir.cleanup();
  });

  test('SIGKILL during training: after a restart the job resumes from its checkpoint and completes', async () => {
    bot = await startBot(dir.env);
    const before = await fetch(`${bot.url}api/imagine`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'made before the kill', steps: 2 }) }).then((r) => r.json());
    await waitFor(async () => ((await get(`${bot!.url}api/jobs/${before.jobId}`)).state === 'succeeded' ? true : undefined), 60_000, 'the first image');

    const fd = new FormData();
    fd.set('name', 'rex'); fd.set('category', 'dog'); fd.set('steps', '24');
    for (const c of ['#3060c0', '#2858b8', '#3868c8']) fd.append('images', new Blob([await pngImage(160, 160, c) as Uint8Array<ArrayBuffer>], { type: 'image/png' }), 'rex.png');
    const taught = await fetch(`${bot.url}api/teach`, { method: 'POST', body: fd }).then((r) => r.json());
    const queued = await fetch(`${bot.url}api/imagine`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'queued behind the training', steps: 2, user: 'bob' }) }).then((r) => r.json());

    const db = await openDatabase(testConfig(dir.env).database);
    try {
      // wait for a checkpoint with training still far from done, then kill the process outright
      const killedAt = await waitFor(async () => {
        const row = await db.job.findUniqueOrThrow({ where: { id: taught.jobId } });
        return row.checkpointStep !== null && row.checkpointStep >= 4 ? row.checkpointStep : undefined;
      }, 180_000, 'a training checkpoint');
      bot.child.kill('SIGKILL');
      assert.equal(await bot.exited, null);
      const killed = await db.job.findUniqueOrThrow({ where: { id: taught.jobId } });
      assert.equal(killed.state, 'running', 'a killed process leaves the job running in the store');
      assert.ok(killed.checkpointStep! >= killedAt && killed.checkpointStep! < 24);

      bot = await startBot(dir.env);
      const evs = await fetch(`${bot.url}api/jobs/${taught.jobId}/events`).then((r) => r.text());
      const steps = [...evs.matchAll(/"progress":\{"step":(\d+)/g)].map((m) => Number(m[1]));
      assert.ok(evs.includes('event: succeeded'), evs.slice(-500));
      assert.ok(steps.length > 0 && steps[0]! > killed.checkpointStep!, `resumed after step ${killed.checkpointStep}, first step seen ${steps[0]}`);
      const row = await db.job.findUniqueOrThrow({ where: { id: taught.jobId } });
      assert.equal(row.state, 'succeeded');
      assert.equal(row.attempts, 2);
      const concept = await db.concept.findFirstOrThrow({ where: { name: 'rex' }, include: { _count: { select: { images: true } } } });
      assert.equal(concept.status, 'ready');
      assert.equal(concept.steps, 24);
      assert.equal(concept._count.images, 3);
      await waitFor(async () => ((await get(`${bot!.url}api/jobs/${queued.jobId}`)).state === 'succeeded' ? true : undefined), 60_000, 'the queued image');
      assert.equal((await get(`${bot.url}api/jobs/${before.jobId}`)).state, 'succeeded');
      assert.equal(await db.generation.count(), 2);
    } finally {
      await db.$disconnect();
    }
  });

  test('SIGTERM: stop taking work, checkpoint the training, exit cleanly; it resumes next time', async () => {
    if (!bot || bot.child.exitCode !== null) bot = await startBot(dir.env);
    const fd = new FormData();
    fd.set('name', 'max'); fd.set('category', 'dog'); fd.set('steps', '40');
    fd.append('images', new Blob([await pngImage(160, 160) as Uint8Array<ArrayBuffer>], { type: 'image/png' }), 'max.png');
    const taught = await fetch(`${bot.url}api/teach`, { method: 'POST', body: fd }).then((r) => r.json());
    await waitFor(async () => ((await get(`${bot!.url}api/jobs/${taught.jobId}`)).progress?.step >= 3 ? true : undefined), 120_000, 'training to run');
    bot.child.kill('SIGTERM');
    assert.equal(await bot.exited, 0, bot.output().slice(-2000));
    assert.match(bot.output(), /stopped cleanly/);
    const db = await openDatabase(testConfig(dir.env).database);
    try {
      const row = await db.job.findUniqueOrThrow({ where: { id: taught.jobId } });
      assert.equal(row.state, 'queued');
      assert.equal(row.attempts, 0, 'a clean shutdown does not use up an attempt');
      // no periodic checkpoint was due (every 25 steps): the one it has was written as it stopped
      assert.ok(row.checkpoint && row.checkpointStep !== null && row.checkpointStep >= 3, `checkpoint at step ${row.checkpointStep}`);
    } finally {
      await db.$disconnect();
    }
  });
});
