// The commands through BotCore, as an adapter drives them: option validation, replies, ownership and admin
// rights, buttons that work after a restart, autocomplete, typed text, and job updates delivered to a sink
// in order (and again after a restart when the platform was down). Real store; a fake GPU executor.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startApp, type App } from '../../src/app.ts';
import { parseCommandText } from '../../src/chat/parse-text.ts';
import type { ChatScope, ChatUser, CommandContext, JobUpdate, OutgoingMessage } from '../../src/chat/types.ts';
import { FAKE_MODEL, FakeExecutor, pngImage, testConfig, testDataDir, waitFor, type TestDir } from '../src/helpers.ts';

const guild: ChatScope = { platform: 'discord', kind: 'community', externalId: '111111111111111111', name: 'Test guild' };
const dm: ChatScope = { platform: 'discord', kind: 'dm', externalId: '222' };
const ann: ChatUser = { platform: 'discord', externalId: '1001', displayName: 'Ann', isAdmin: false };
const bob: ChatUser = { platform: 'discord', externalId: '1002', displayName: 'Bob', isAdmin: false };
const mod: ChatUser = { platform: 'discord', externalId: '1003', displayName: 'Mod', isAdmin: true };

function ctx(command: string, user: ChatUser, options: CommandContext['options'] = {}, subcommand?: string, scope = guild) {
  const replies: OutgoingMessage[] = [];
  const c: CommandContext = {
    command, ...(subcommand ? { subcommand } : {}), user, scope, options,
    route: { platform: 'discord', data: { channelId: '333', interactionToken: 'tok' } },
    reply: async (m) => { replies.push(m); },
  };
  return { c, replies };
}

async function boot(dir?: TestDir) {
  const d = dir ?? await testDataDir({ LOCAL_CHAT: 'false' });
  const app = await startApp(testConfig(d.env), { executor: new FakeExecutor(1, 0) });
  return { app, dir: d };
}

async function run(app: App, command: string, user: ChatUser, options: CommandContext['options'] = {}, sub?: string, scope = guild) {
  const { c, replies } = ctx(command, user, options, sub, scope);
  await app.bot.dispatch(c);
  assert.equal(replies.length, 1, 'a command replies exactly once');
  return replies[0]!;
}

async function teachHugsy(app: App, user = ann) {
  const r = await run(app, 'teach', user, { name: 'hugsy', category: 'teddy', images: [{ filename: 'a.png', bytes: await pngImage(160, 160) }], steps: 20 });
  assert.match(r.text, /<hugsy> \(a teddy\) will learn from 1 image in 20 steps/);
  await waitFor(async () => ((await app.services.db.concept.findFirst({ where: { name: 'hugsy' } }))?.status === 'ready' ? true : undefined), 20_000, 'hugsy');
}

describe('commands through BotCore', () => {
  test('options are validated against the description before the handler runs', async () => {
    const { app, dir } = await boot();
    try {
      assert.match((await run(app, 'imagine', ann, {})).text, /\/imagine needs prompt/);
      assert.match((await run(app, 'imagine', ann, { prompt: 'x', steps: 500 })).text, /steps must be at most 150/);
      assert.match((await run(app, 'imagine', ann, { prompt: 'x', seed: 1.5 })).text, /seed must be a whole number/);
      assert.match((await run(app, 'teach', ann, { name: 'rex', category: 'dog' })).text, /\/teach needs images: attach 1–10 files/);
      assert.match((await run(app, 'concepts', ann, {})).text, /\/concepts needs one of: list, info, delete/);
      const unknown = await run(app, 'dance', ann);
      assert.match(unknown.text, /There is no \/dance command/);
      assert.equal(unknown.private, true);
    } finally { await app.stop(); dir.cleanup(); }
  });

  test('without a steps option, teaching runs 400 steps on a real model and a short one-image-per-step run on the demo model', async () => {
    const image = [{ filename: 'a.png', bytes: await pngImage(160, 160) }];
    const real = await boot();
    try {
      assert.match((await run(real.app, 'teach', ann, { name: 'hugsy', category: 'teddy', images: image })).text, /in 400 steps/);
    } finally { await real.app.stop(); real.dir.cleanup(); }

    class DemoModelExecutor extends FakeExecutor {
      override ready() { return Promise.resolve({ ...FAKE_MODEL, isDemo: true }); }
    }
    const executor = new DemoModelExecutor(1, null);
    const dir = await testDataDir({ LOCAL_CHAT: 'false' });
    const app = await startApp(testConfig(dir.env), { executor });
    try {
      assert.match((await run(app, 'teach', ann, { name: 'hugsy', category: 'teddy', images: image })).text, /in 30 steps/);
      const job = await app.services.db.job.findFirstOrThrow({ where: { kind: 'teach' } });
      const running = await executor.whenRunning(job.id);
      assert.equal(running.input.kind, 'teach');
      if (running.input.kind === 'teach') {
        assert.equal(running.input.request.steps, 30);
        assert.equal(running.input.request.batchSize, 1);
        assert.equal(running.input.request.gradientAccumulation, 1);
      }
    } finally { await app.stop(); dir.cleanup(); }
  });

  test('concepts: list, info, and delete by the owner or an admin only', async () => {
    const { app, dir } = await boot();
    try {
      await teachHugsy(app);
      assert.match((await run(app, 'concepts', bob, {}, 'list')).text, /<hugsy> — a teddy, by Ann/);
      assert.match((await run(app, 'concepts', bob, { name: '<Hugsy>' }, 'info')).text, /<hugsy> — a teddy, taught by Ann .*\nstatus: ready · 1 images · 20 steps · final loss 0\.500/);
      assert.match((await run(app, 'concepts', ann, {}, 'list', dm)).text, /No concepts have been taught here yet/, 'a DM does not see the guild\'s concepts');
      const denied = await run(app, 'concepts', bob, { name: 'hugsy' }, 'delete');
      assert.match(denied.text, /<hugsy> was taught by Ann; only they or an admin can delete it/);
      assert.equal(await app.services.db.concept.count(), 1);
      assert.match((await run(app, 'concepts', mod, { name: 'hugsy' }, 'delete')).text, /<hugsy> is deleted, with its images/);
      assert.equal(await app.services.db.conceptImage.count(), 0);
      await teachHugsy(app, bob);
      assert.match((await run(app, 'concepts', bob, { name: 'hugsy' }, 'delete')).text, /is deleted/);
      assert.match((await run(app, 'concepts', bob, { name: 'hugsi' }, 'info')).text, /There is no concept <hugsi> here/);
    } finally { await app.stop(); dir.cleanup(); }
  });

  test('cancel: yours, or any as an admin; queue shows positions', async () => {
    const ex = new FakeExecutor(1);
    const dir = await testDataDir({ LOCAL_CHAT: 'false' });
    const app = await startApp(testConfig(dir.env), { executor: ex });
    try {
      await run(app, 'imagine', ann, { prompt: 'first' });
      await ex.whenRunning(1);
      await run(app, 'imagine', ann, { prompt: 'second' });
      const q = await run(app, 'queue', ann);
      assert.match(q.text, /▶️ #1 image by Ann · step 0\/10/);
      assert.match(q.text, /your #2 image by Ann · position 1/);
      assert.match((await run(app, 'cancel', bob, { job: 2 })).text, /Job #2 is someone else's; only they or an admin can cancel it/);
      assert.match((await run(app, 'cancel', ann, {})).text, /Job #2 is cancelled/, 'default: your latest job');
      assert.match((await run(app, 'cancel', mod, { job: 1 })).text, /Stopping job #1/);
      await waitFor(async () => ((await app.services.db.job.findUniqueOrThrow({ where: { id: 1 } })).state === 'cancelled' ? true : undefined), 5000, 'cancelled');
      assert.equal((await app.services.db.job.findUniqueOrThrow({ where: { id: 1 } })).error, 'Cancelled by Mod.');
      assert.match((await run(app, 'cancel', ann, {})).text, /You have no waiting or running jobs to cancel/);
    } finally { await app.stop(); dir.cleanup(); }
  });

  test('progress held back by a sink\'s rate limit is still sent once the interval has passed', async () => {
    const executor = new FakeExecutor(1, null);
    const dir = await testDataDir({ LOCAL_CHAT: 'false' });
    const app = await startApp(testConfig(dir.env), { executor });
    const progress: number[] = [];
    app.bot.addSink({ platform: 'discord', progressIntervalMs: 300, deliver: async (u) => { if (u.event === 'progress') progress.push(u.job.progress?.step ?? -1); } });
    try {
      const reply = await run(app, 'imagine', ann, { prompt: 'a red boat', steps: 10 });
      const job = await executor.whenRunning(reply.jobId!);
      await waitFor(() => (progress.length ? true : undefined), 5_000, 'first progress');
      for (const step of [1, 2, 3]) job.hooks.onProgress({ step, total: 10 }); // a burst inside the interval
      await waitFor(() => (progress.at(-1) === 3 ? true : undefined), 3_000, 'the held-back step 3');
      assert.ok(!progress.includes(1) || !progress.includes(2), `the burst was thinned: ${progress}`);
      job.resolve();
      await app.services.scheduler.onIdle();
    } finally { await app.stop(); dir.cleanup(); }
  });

  test('job updates reach the adapter\'s sink in order, with the image and buttons; buttons work after a restart', async () => {
    const { app, dir } = await boot();
    const updates: JobUpdate[] = [];
    app.bot.addSink({ platform: 'discord', deliver: async (u) => { updates.push(u); } });
    let genId: number;
    try {
      await teachHugsy(app);
      const reply = await run(app, 'imagine', ann, { prompt: 'a photo of <hugsy> at sea', seed: 42, steps: 4, width: 96, height: 64 });
      assert.match(reply.text, /job #\d+ is queued|job #\d+ is starting/);
      assert.equal(reply.jobId, 2);
      await waitFor(() => (updates.some((u) => u.job.id === 2 && u.final) ? true : undefined), 10_000, 'final update');
      const mine = updates.filter((u) => u.job.id === 2);
      assert.deepEqual(mine.map((u) => u.event).filter((e) => e !== 'progress' && e !== 'position'), ['queued', 'started', 'succeeded']);
      const done = mine.at(-1)!;
      assert.equal(done.route.data.interactionToken, 'tok', 'the stored route comes back');
      assert.equal(done.user.displayName, 'Ann');
      assert.match(done.message.text, /Image #\d+: “a photo of <hugsy> at sea” · seed 42 · 4 steps · guidance 7\.5 · concepts <hugsy>/);
      genId = done.job.generationId!;
      assert.deepEqual(done.message.buttons!.map((b) => b.id), [`reroll:${genId}`, `vary:${genId}`, `info:${genId}`, `delete:${genId}`]);
      assert.deepEqual([done.message.images![0]!.width, done.message.images![0]!.height], [96, 64]);
      assert.equal((await app.services.db.job.findUniqueOrThrow({ where: { id: 2 } })).delivered, true);
      // autocomplete of concept names and of a mention inside a prompt
      assert.deepEqual(await app.bot.autocomplete({ command: 'concepts', subcommand: 'info', option: 'name', value: 'hu', user: ann, scope: guild }), [{ name: '<hugsy>', value: 'hugsy' }]);
      assert.deepEqual(await app.bot.autocomplete({ command: 'imagine', option: 'prompt', value: 'a photo of <hu', user: ann, scope: guild }), [{ name: 'a photo of <hugsy>', value: 'a photo of <hugsy>' }]);
    } finally { await app.stop(); }

    // a new process: the button ids still work, answered from the store
    const again = await boot(dir);
    try {
      const replies: OutgoingMessage[] = [];
      const press = (id: string, user = bob) => again.app.bot.press({ id, user, scope: guild, route: { platform: 'discord', data: {} }, reply: async (m) => { replies.push(m); } });
      await press(`info:${genId!}`);
      assert.match(replies.at(-1)!.text, /prompt: a photo of <hugsy> at sea\n.*seed 42 · 4 steps · guidance 7\.5 · sampler pndm · 96×64/);
      await press(`reroll:${genId!}`);
      await press(`vary:${genId!}`);
      await press('dance:1');
      assert.match(replies.at(-1)!.text, /no longer works/);
      await again.app.services.scheduler.onIdle();
      await waitFor(async () => ((await again.app.services.db.generation.count()) === 3 ? true : undefined), 10_000, 'two more images');
      const [reroll, vary] = await again.app.services.db.generation.findMany({ where: { parentId: genId! }, orderBy: { id: 'asc' } });
      assert.equal(reroll!.prompt, 'a photo of <hugsy> at sea');
      assert.equal(reroll!.variationSeed, null);
      assert.equal(vary!.seed, 42, 'a variation keeps the seed…');
      assert.equal(vary!.variationAmount, 0.25, '…and mixes in new noise');
      assert.equal(reroll!.userId !== vary!.userId, false);
    } finally { await again.app.stop(); dir.cleanup(); }
  });

  test('a final update the platform could not take is delivered again after a restart, once', async () => {
    const { app, dir } = await boot();
    let fail = true;
    const got: JobUpdate[] = [];
    app.bot.addSink({ platform: 'discord', deliver: async (u) => { if (u.final && fail) throw new Error('platform down'); got.push(u); } });
    await run(app, 'imagine', ann, { prompt: 'a cat' });
    await app.services.scheduler.onIdle();
    await waitFor(async () => ((await app.services.db.job.findUniqueOrThrow({ where: { id: 1 } })).state === 'succeeded' ? true : undefined), 5000, 'done');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await app.services.db.job.findUniqueOrThrow({ where: { id: 1 } })).delivered, false);
    await app.stop();
    fail = false;
    const dir2 = dir;
    const d = await startApp(testConfig(dir2.env), { executor: new FakeExecutor(1, 0) });
    try {
      const again: JobUpdate[] = [];
      d.bot.addSink({ platform: 'discord', deliver: async (u) => { again.push(u); } });
      await d.bot.redeliver();
      await waitFor(() => (again.length ? true : undefined), 5000, 'redelivery');
      assert.equal(again[0]!.event, 'succeeded');
      assert.equal(again[0]!.message.images!.length, 1);
      await waitFor(async () => ((await d.services.db.job.findUniqueOrThrow({ where: { id: 1 } })).delivered ? true : undefined), 5000, 'delivered');
      await d.bot.redeliver();
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(again.length, 1, 'delivered once, not on every restart');
    } finally { await d.stop(); dir.cleanup(); }
  });

  test('after a restart, a front end hears about the jobs that were interrupted, through their stored route', async () => {
    const ex = new FakeExecutor(1);
    const dir = await testDataDir({ LOCAL_CHAT: 'false' });
    const app = await startApp(testConfig(dir.env), { executor: ex });
    await run(app, 'imagine', ann, { prompt: 'interrupted' });
    await ex.whenRunning(1);
    await app.stop(0);
    const { openDatabase } = await import('../../src/store/prisma.ts');
    const db = await openDatabase(testConfig(dir.env).database);
    await db.job.update({ where: { id: 1 }, data: { state: 'running', attempts: 1 } }); // as a SIGKILL leaves it
    await db.$disconnect();
    const heard: JobUpdate[] = [];
    let stopped = false;
    const again = await startApp(testConfig(dir.env), {
      executor: new FakeExecutor(1, 0),
      frontEnds: [{ name: 'discord', start: async (bot) => { bot.addSink({ platform: 'discord', deliver: async (u) => { heard.push(u); } }); return { stop: async () => { stopped = true; } }; } }],
    });
    try {
      await waitFor(() => (heard.some((u) => u.final) ? true : undefined), 10_000, 'final update');
      assert.deepEqual(heard.map((u) => u.event).filter((e) => e !== 'progress' && e !== 'position'), ['requeued', 'started', 'succeeded']);
      assert.match(heard[0]!.message.text, /Job #1 was interrupted .* and is back in the queue/);
      assert.deepEqual(heard[0]!.route, { platform: 'discord', data: { channelId: '333', interactionToken: 'tok' } });
    } finally {
      await again.stop(); dir.cleanup();
    }
    assert.equal(stopped, true);
  });

  test('typed commands (local chat, Slack text) become options', () => {
    const cmds = [
      { name: 'imagine', description: '', options: [{ type: 'string' as const, name: 'prompt', description: '', required: true }, { type: 'integer' as const, name: 'seed', description: '' }, { type: 'string' as const, name: 'negative', description: '' }] },
      { name: 'teach', description: '', options: [{ type: 'string' as const, name: 'name', description: '', required: true }, { type: 'string' as const, name: 'category', description: '', required: true }, { type: 'attachments' as const, name: 'images', description: '', min: 1, max: 10 }, { type: 'integer' as const, name: 'steps', description: '' }] },
      { name: 'concepts', description: '', subcommands: [{ name: 'delete', description: '', options: [{ type: 'string' as const, name: 'name', description: '', required: true }] }, { name: 'list', description: '', options: [] }] },
      { name: 'cancel', description: '', options: [{ type: 'integer' as const, name: 'job', description: '' }] },
    ];
    assert.deepEqual(parseCommandText('/imagine a photo of <hugsy> seed:42 negative:"blurry, dark"', cmds), { command: 'imagine', options: { prompt: 'a photo of <hugsy>', seed: '42', negative: 'blurry, dark' } });
    assert.deepEqual(parseCommandText('/teach hugsy teddy steps:200', cmds), { command: 'teach', options: { name: 'hugsy', category: 'teddy', steps: '200' } });
    assert.deepEqual(parseCommandText('/concepts delete hugsy', cmds), { command: 'concepts', subcommand: 'delete', options: { name: 'hugsy' } });
    assert.deepEqual(parseCommandText('/cancel 12', cmds), { command: 'cancel', options: { job: '12' } });
    assert.throws(() => parseCommandText('/concepts', cmds), /needs one of: delete, list/);
    assert.throws(() => parseCommandText('/concepts list extra', cmds), /takes no text "extra"/);
  });
});
