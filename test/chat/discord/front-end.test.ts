// The bot in Discord, end to end: the real discord.js client against the fake Discord (REST, gateway, CDN),
// the Discord front end started by startApp on a real SQLite database, the core's commands. The GPU is a
// scheduler test double here (FakeExecutor: the test says when a job makes progress and when it is done);
// engine-e2e.test.ts runs the real engine.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { randomBytes } from 'node:crypto';
import sharp from 'sharp';
import type { APIAttachment, APIUser } from 'discord.js';
import { FakeExecutor, pngImage, waitFor } from '../../src/helpers.ts';
import { buttonIds, download, followUpWhen, jobIdOf, replyStateWhen, replyWhen, startDiscordBot, type DiscordBot } from './bot-harness.ts';
import { CALLBACK_TYPE, MESSAGE_FLAGS, type FakeInteraction } from './fake-discord.ts';

const MINUTE = 60_000;

describe('the Discord front end on the core, against the fake Discord', { timeout: 120_000 }, () => {
  let bot: DiscordBot;
  let executor: FakeExecutor;
  let ann: APIUser;
  let bob: APIUser;
  let mod: APIUser;
  let hugsyImage: number;

  before(async () => {
    bot = await startDiscordBot({ executor: () => (executor = new FakeExecutor(1)), env: { MAX_QUEUED_PER_USER: '10', SHUTDOWN_GRACE_MS: '200' } });
    ann = bot.fake.createUser('ann');
    bob = bot.fake.createUser('bob');
    mod = bot.fake.createUser('mod');
  });
  after(async () => { await bot?.stop(); });

  const db = () => bot.app.services.db;

  async function photos(count: number, channelId?: string): Promise<APIAttachment[]> {
    const colours = ['#c03030', '#b02828', '#c83838', '#a02020'];
    return Promise.all(Array.from({ length: count }, async (_, i) => bot.fake.hostAttachment({
      filename: `hugsy-${i + 1}.png`, bytes: await pngImage(160, 160, colours[i % colours.length]), width: 160, ...(channelId ? { channelId } : {}),
    })));
  }

  function teach(user: APIUser, name: string, images: APIAttachment[], extra: { dm?: boolean; channelId?: string } = {}): FakeInteraction {
    return bot.fake.chatInput({
      name: 'teach', user, ...extra,
      options: [
        { name: 'name', type: 3, value: name }, { name: 'category', type: 3, value: 'teddy' }, { name: 'steps', type: 4, value: 20 },
        ...images.map((a, i) => ({ name: `images${i + 1}`, type: 11, value: a.id })),
      ],
      attachments: images,
    });
  }

  function imagine(user: APIUser, prompt: string, extra: { dm?: boolean; channelId?: string } = {}): FakeInteraction {
    return bot.fake.chatInput({
      name: 'imagine', user, ...extra,
      options: [{ name: 'prompt', type: 3, value: prompt }, { name: 'seed', type: 4, value: 42 }, { name: 'width', type: 4, value: 96 }, { name: 'height', type: 4, value: 64 }],
    });
  }

  /**
   * Reports a training step of a running job. The core sends at most one progress update per job per the
   * front end's interval and drops the others, so steps are spaced a little wider than that (50 ms here).
   */
  async function progress(running: Awaited<ReturnType<FakeExecutor['whenRunning']>>, step: number, total: number, loss?: number): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, 120));
    running.hooks.onProgress({ step, total, ...(loss === undefined ? {} : { loss }) });
  }

  /** The control of a job once the (one-slot) executor runs it. */
  function whenRunning(jobId: number): ReturnType<FakeExecutor['whenRunning']> {
    return Promise.race([
      executor.whenRunning(jobId),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`job ${jobId} did not start`)), 10_000).unref()),
    ]);
  }

  /** Lets a running job finish. */
  async function finish(jobId: number): Promise<void> {
    (await whenRunning(jobId)).resolve();
  }

  /** Imagines as `user` and resolves with the finished reply and its generation id. */
  async function imageBy(user: APIUser, prompt: string) {
    const sent = imagine(user, prompt);
    const queued = await replyWhen(sent, (m) => buttonIds(m).some((id) => id.startsWith('cancel:')), 'the imagine reply');
    await finish(jobIdOf(queued));
    const done = await replyWhen(sent, (m) => m.attachments.length === 1, 'the image');
    return { sent, done, generationId: Number(buttonIds(done)[0]!.split(':')[1]) };
  }

  test('/teach with attachments from the CDN: deferred at once, images checked and stored, progress edits, done', async () => {
    const images = await photos(3);
    const since = bot.fake.requests.length;
    const sent = teach(ann, 'hugsy', images);
    const callback = await sent.waitForCallback();
    assert.equal(callback.type, CALLBACK_TYPE.deferredChannelMessage);
    assert.ok(callback.delayMs < 3_000);
    assert.equal((callback.data.flags ?? 0) & MESSAGE_FLAGS.ephemeral, 0, 'a public reply: it becomes the job\'s message');

    const queued = await replyStateWhen(sent, (m) => m.content.includes('📚'), 'the teach reply');
    assert.match(queued.content, /📚 <hugsy> \(a teddy\) will learn from 3 images in 20 steps\./);
    const jobId = jobIdOf(queued);
    const cdn = bot.fake.requests.slice(since).filter((r) => r.path.startsWith('/attachments/'));
    assert.deepEqual(cdn.map((r) => r.status), [200, 200, 200], 'each attachment was downloaded once, at once');
    const stored = await db().conceptImage.findMany({ orderBy: { position: 'asc' } });
    assert.deepEqual(stored.map((s) => [s.filename, s.width, s.height]), [['hugsy-1.png', 160, 160], ['hugsy-2.png', 160, 160], ['hugsy-3.png', 160, 160]]);

    const running = await whenRunning(jobId);
    await progress(running, 5, 20, 0.25);
    const progressed = await replyWhen(sent, (m) => m.content.includes('step 5/20'), 'a progress edit');
    assert.match(progressed.content, /⚙️ Teaching <hugsy> — step 5\/20 \(25%\) · loss 0\.250/);
    assert.deepEqual(buttonIds(progressed), [`cancel:${jobId}`]);
    await progress(running, 15, 20);
    await replyWhen(sent, (m) => m.content.includes('step 15/20'), 'the next progress edit');
    running.resolve();
    const done = await replyWhen(sent, (m) => m.content.startsWith('✅'), 'the taught concept');
    assert.match(done.content, /✅ <hugsy> \(a teddy\) is ready after 20 training steps, final loss 0\.500\. Use it in a prompt/);
    assert.deepEqual(done.components, [], 'no Cancel button once done');
    const edits = bot.fake.requests.slice(since).filter((r) => r.method === 'PATCH' && r.route.startsWith(`/webhooks/${bot.fake.applicationId}/${sent.token}/`));
    assert.ok(edits.length >= 4, 'reply, two progress edits, result — all by the interaction token');
    assert.equal((await db().concept.findFirstOrThrow({ where: { name: 'hugsy' } })).status, 'ready');
    const job = await waitFor(async () => {
      const row = await db().job.findUniqueOrThrow({ where: { id: jobId } });
      return row.delivered ? row : undefined;
    }, 5_000, 'the job marked delivered');
    const route = JSON.parse(job.route) as { platform: string; data: Record<string, unknown> };
    assert.equal(route.platform, 'discord');
    assert.deepEqual([route.data.token, route.data.userId, route.data.guildId, route.data.replyMessageId],
      [sent.token, ann.id, bot.fake.defaultGuild.id, sent.originalMessage!.id], 'the route to reach the user is stored with the job');
  });

  test('/imagine with the concept: the reply becomes the image as a PNG attachment with re-roll, variations, info, delete', async () => {
    const { done, generationId } = await imageBy(ann, 'a photo of <hugsy> at sea');
    hugsyImage = generationId;
    assert.match(done.content, new RegExp(`🖼️ Image #${generationId}: “a photo of <hugsy> at sea” · seed 42 · 30 steps · guidance 7\\.5 · concepts <hugsy>`));
    assert.deepEqual(buttonIds(done), ['reroll', 'vary', 'info', 'delete'].map((a) => `${a}:${generationId}`));
    const file = done.attachments[0]!;
    assert.deepEqual([file.filename, file.content_type], [`image-${generationId}.png`, 'image/png']);
    const meta = await sharp(await download(file.url)).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['png', 96, 64]);
    assert.deepEqual(done.mentions, [], 'nobody pinged');
  });

  test('autocomplete completes <hu… in a prompt and concept names, from this server only', async () => {
    const prompt = bot.fake.autocomplete({ name: 'imagine', user: bob, options: [{ name: 'prompt', type: 3, value: 'a photo of <hu', focused: true }] });
    await prompt.waitForCallback();
    assert.equal(prompt.callback!.type, CALLBACK_TYPE.autocompleteResult);
    assert.deepEqual(prompt.callback!.data.choices, [{ name: 'a photo of <hugsy>', value: 'a photo of <hugsy>' }]);
    const name = bot.fake.autocomplete({ name: 'concepts', user: bob, options: [{ name: 'info', type: 1, options: [{ name: 'name', type: 3, value: 'hu', focused: true }] }] });
    await name.waitForCallback();
    assert.deepEqual(name.callback!.data.choices, [{ name: '<hugsy>', value: 'hugsy' }]);
    const inDm = bot.fake.autocomplete({ name: 'imagine', user: ann, dm: true, options: [{ name: 'prompt', type: 3, value: 'a photo of <hu', focused: true }] });
    await inDm.waitForCallback();
    assert.deepEqual(inDm.callback!.data.choices, [], 'the server\'s concepts are not offered in a DM');
  });

  test('bad attachments are answered privately with the core\'s words: a text file named .png, an oversized file, a broken image', async () => {
    const good = (await photos(1))[0]!;
    const png = await pngImage(160, 160);
    const cases: Array<[APIAttachment, RegExp]> = [
      [bot.fake.hostAttachment({ filename: 'notes.png', bytes: new TextEncoder().encode('these are my notes, not a picture') }),
        /^"notes\.png" is not an image I can read\. Send a PNG, JPEG or WebP photo\.$/],
      [bot.fake.hostAttachment({ filename: 'huge.png', bytes: randomBytes(10.5 * 1024 * 1024) }),
        /^"huge\.png" is 10\.5 MB; each image may be at most 10\.0 MB\. Send a smaller or more compressed copy\.$/],
      [bot.fake.hostAttachment({ filename: 'cut.png', bytes: png.subarray(0, Math.floor(png.length * 0.6)) }),
        /^"cut\.png" is damaged or incomplete and cannot be decoded\. Send the original file again\.$/],
    ];
    for (const [bad, words] of cases) {
      const sent = teach(bob, 'broken', [good, bad]);
      const answer = await followUpWhen(sent, `the refusal of ${bad.filename}`);
      assert.match(answer.content, words);
      assert.equal(answer.flags! & MESSAGE_FLAGS.ephemeral, MESSAGE_FLAGS.ephemeral, 'only the sender sees it');
      await waitFor(() => (sent.originalMessage === undefined ? true : undefined), 5_000, 'the public "thinking…" reply to go');
    }
    assert.equal(await db().concept.count({ where: { name: 'broken' } }), 0, 'nothing was taught from them');
  });

  test('delete: refused for someone else, allowed for the requester and for an admin; the image leaves the channel', async () => {
    const refused = bot.fake.button({ user: bob, message: (await imageMessage(hugsyImage)).id, customId: `delete:${hugsyImage}` });
    const refusal = await replyWhen(refused, (m) => m.content !== '', 'the refusal');
    assert.equal(refusal.content, `Image #${hugsyImage} was asked for by ann; only they or an admin can delete it.`);
    assert.equal(refusal.flags! & MESSAGE_FLAGS.ephemeral, MESSAGE_FLAGS.ephemeral);
    assert.ok(await db().generation.findUnique({ where: { id: hugsyImage } }), 'still stored');
    assert.equal((await imageMessage(hugsyImage)).attachments.length, 1, 'still shown');

    const byAnn = await imageBy(ann, 'a second boat');
    const byAdmin = bot.fake.button({ user: mod, admin: true, message: byAnn.done.id, customId: `delete:${byAnn.generationId}` });
    assert.equal((await replyWhen(byAdmin, (m) => m.content !== '', 'the admin\'s confirmation')).content, `🗑️ Image #${byAnn.generationId} is deleted.`);
    await waitFor(() => (bot.fake.message(byAnn.done.id)!.attachments.length === 0 ? true : undefined), 5_000, 'the image to leave the channel');
    const gone = bot.fake.message(byAnn.done.id)!;
    assert.equal(gone.content, `🗑️ Image #${byAnn.generationId} was deleted.`);
    assert.deepEqual(gone.components, []);
    assert.equal(await db().generation.findUnique({ where: { id: byAnn.generationId } }), null);

    const third = await imageBy(bob, 'a third boat');
    const byRequester = bot.fake.button({ user: bob, message: third.done.id, customId: `delete:${third.generationId}` });
    assert.equal((await replyWhen(byRequester, (m) => m.content !== '', 'the requester\'s confirmation')).content, `🗑️ Image #${third.generationId} is deleted.`);
    assert.equal(await db().generation.findUnique({ where: { id: third.generationId } }), null);
  });

  test('the Cancel button on a job\'s message: someone else is refused, the requester stops it and the message says so', async () => {
    const sent = imagine(ann, 'a very long drawing');
    const queued = await replyWhen(sent, (m) => buttonIds(m).some((id) => id.startsWith('cancel:')), 'the imagine reply');
    const jobId = jobIdOf(queued);
    await whenRunning(jobId);
    const refused = bot.fake.button({ user: bob, message: queued.id, customId: `cancel:${jobId}` });
    assert.equal((await replyWhen(refused, (m) => m.content !== '', 'the refusal')).content, `Job #${jobId} is someone else's; only they or an admin can cancel it.`);
    const cancel = bot.fake.button({ user: ann, message: queued.id, customId: `cancel:${jobId}` });
    const answer = await replyWhen(cancel, (m) => m.content !== '', 'the answer');
    assert.equal(answer.content, `🛑 Stopping job #${jobId}…`);
    assert.equal(answer.flags! & MESSAGE_FLAGS.ephemeral, MESSAGE_FLAGS.ephemeral);
    const stopped = await replyWhen(sent, (m) => m.content.startsWith('🛑'), 'the job message to say it was cancelled');
    assert.equal(stopped.content, `🛑 Job #${jobId} was cancelled.`);
    assert.deepEqual(stopped.components, [], 'no buttons left');
  });

  test('a waiting job\'s reply shows its place in line; /cancel stops the asker\'s latest job; the Variations button draws a variation', async () => {
    const first = imagine(ann, 'a lighthouse at dusk');
    const firstId = jobIdOf(await replyWhen(first, (m) => buttonIds(m).some((id) => id.startsWith('cancel:')), 'the first reply'));
    await whenRunning(firstId);
    const second = imagine(bob, 'a windmill at dawn');
    const waiting = await replyWhen(second, (m) => m.content.startsWith('⏳'), 'the waiting reply');
    const secondId = jobIdOf(waiting);
    assert.match(waiting.content, new RegExp(`^⏳ Drawing — job #${secondId} is queued, next in line`));

    // the slash command, no job named: the asker's latest active job
    const cancel = bot.fake.chatInput({ name: 'cancel', user: bob, options: [] });
    const answer = await replyWhen(cancel, (m) => m.content !== '', 'the /cancel answer');
    assert.equal(answer.content, `🛑 Job #${secondId} is cancelled.`);
    assert.equal(answer.flags! & MESSAGE_FLAGS.ephemeral, MESSAGE_FLAGS.ephemeral);
    const stopped = await replyWhen(second, (m) => m.content.startsWith('🛑'), 'the waiting reply to say it was cancelled');
    assert.equal(stopped.content, `🛑 Job #${secondId} was cancelled.`);
    assert.equal((await db().job.findUniqueOrThrow({ where: { id: secondId } })).state, 'cancelled');

    await finish(firstId);
    const done = await replyWhen(first, (m) => m.attachments.length === 1, 'the first image');
    const generationId = Number(buttonIds(done)[0]!.split(':')[1]);
    const vary = bot.fake.button({ user: ann, message: done.id, customId: `vary:${generationId}` });
    const queued = await replyWhen(vary, (m) => buttonIds(m).some((id) => id.startsWith('cancel:')), 'the variation job');
    await finish(jobIdOf(queued));
    const varied = await replyWhen(vary, (m) => m.attachments.length === 1, 'the variation');
    assert.match(varied.content, new RegExp(`“a lighthouse at dusk” · seed 42 .*variation of #${generationId} \\(0\\.25\\)`));
    const row = await db().generation.findFirstOrThrow({ where: { parentId: generationId } });
    assert.equal(row.variationAmount, 0.25);
  });

  /** The channel message that shows a generation (its reply). */
  async function imageMessage(generationId: number) {
    const message = bot.fake.messagesIn(bot.fake.defaultChannelId).find((m) => buttonIds(m).includes(`info:${generationId}`));
    assert.ok(message, `a message showing image #${generationId}`);
    return message;
  }

  test('in DMs a person has their own scope: concepts taught there stay there, and the server\'s are not visible', async () => {
    const dmTeach = teach(bob, 'pocket', await photos(1), { dm: true });
    const queued = await replyStateWhen(dmTeach, (m) => m.content.includes('📚'), 'the DM teach reply');
    assert.match(queued.content, /Tip: 3–10 images/);
    await finish(jobIdOf(queued));
    await replyWhen(dmTeach, (m) => m.content.startsWith('✅'), 'the DM concept');
    const list = async (where: { dm?: boolean }) => {
      const sent = bot.fake.chatInput({ name: 'concepts', user: bob, ...where, options: [{ name: 'list', type: 1, options: [] }] });
      const reply = await replyWhen(sent, (m) => m.content !== '', '/concepts list');
      assert.equal(reply.flags! & MESSAGE_FLAGS.ephemeral, MESSAGE_FLAGS.ephemeral);
      return reply.content;
    };
    const inDm = await list({ dm: true });
    assert.match(inDm, /<pocket> — a teddy, by bob/);
    assert.doesNotMatch(inDm, /hugsy/);
    const inServer = await list({});
    assert.match(inServer, /<hugsy>/);
    assert.doesNotMatch(inServer, /pocket/);
    const scope = await db().scope.findFirstOrThrow({ where: { concepts: { some: { name: 'pocket' } } } });
    assert.deepEqual([scope.platform, scope.kind, scope.externalId], ['discord', 'dm', bob.id]);
    const wrong = imagine(bob, 'a photo of <pocket>');
    const refusal = await followUpWhen(wrong, 'the refusal in the server');
    assert.match(refusal.content, /<pocket>/, 'the DM concept is unknown in the server');
  });

  test('the message command: a modal asks name and category, then /teach runs with the message\'s images', async () => {
    const images = await photos(2);
    const message = bot.fake.postUserMessage({ author: ann, content: 'my mug', attachments: images });
    const opened = bot.fake.messageCommand({ name: 'Teach concept from these images', user: ann, message });
    const modal = await opened.waitForCallback();
    assert.equal(modal.type, CALLBACK_TYPE.modal);
    const submit = bot.fake.modalSubmit({ user: ann, opened, values: { name: 'mugsy', category: 'mug' } });
    const queued = await replyStateWhen(submit, (m) => m.content.includes('📚'), 'the teach reply');
    assert.match(queued.content, /📚 <mugsy> \(a mug\) will learn from 2 images/);
    await finish(jobIdOf(queued));
    await replyWhen(submit, (m) => m.content.startsWith('✅ <mugsy>'), 'the concept');
    assert.equal(await db().conceptImage.count({ where: { concept: { name: 'mugsy' } } }), 2);

    const noImages = bot.fake.postUserMessage({ author: ann, content: 'just words' });
    const refused = bot.fake.messageCommand({ name: 'Teach concept from these images', user: ann, message: noImages });
    const answer = await refused.waitForCallback();
    assert.equal(answer.type, CALLBACK_TYPE.channelMessage);
    assert.match(answer.data.content, /That message carries no images/);
  });

  test('a job that outlives the 15-minute token: progress through the channel, the result as a channel message mentioning only the requester; a DM when the channel is gone', async () => {
    const sent = teach(ann, 'slowpoke', await photos(1));
    const queued = await replyStateWhen(sent, (m) => m.content.includes('📚'), 'the teach reply');
    const jobId = jobIdOf(queued);
    const running = await whenRunning(jobId);
    await progress(running, 3, 20);
    await replyWhen(sent, (m) => m.content.includes('step 3/20'), 'progress by token');

    bot.clock.advance(15 * MINUTE);
    const since = bot.fake.requests.length;
    await progress(running, 18, 20);
    await replyWhen(sent, (m) => m.content.includes('step 18/20'), 'progress after the token died');
    const edit = bot.fake.requests.slice(since).find((r) => r.method === 'PATCH' && r.body?.content?.includes('step 18/20'))!;
    assert.equal(edit.route, `/channels/${bot.fake.defaultChannelId}/messages/${queued.id}`, 'through the channel with the bot token');
    running.resolve();
    const posted = await waitFor(() => bot.fake.messagesIn(bot.fake.defaultChannelId).find((m) => m.id !== queued.id && m.content.includes('<slowpoke> (a teddy) is ready')), 10_000, 'the late result');
    assert.ok(posted.content.startsWith(`<@${ann.id}> ✅`));
    assert.deepEqual(posted.mentions.map((u) => u.id), [ann.id], 'only the requester is pinged');
    assert.equal(bot.fake.requests.slice(since).filter((r) => r.route.startsWith('/webhooks/')).length, 0, 'the dead token was never called');
    await waitFor(async () => ((await db().job.findUniqueOrThrow({ where: { id: jobId } })).delivered ? true : undefined), 5_000, 'the job marked delivered');

    // a server channel that disappears while the job runs: the result goes to the DMs
    const studio = bot.fake.defaultGuild.channelIds[1]!;
    const lost = imagine(ann, 'a photo of <hugsy> in the studio', { channelId: studio });
    const lostJob = jobIdOf(await replyWhen(lost, (m) => buttonIds(m).some((id) => id.startsWith('cancel:')), 'the imagine reply'));
    await whenRunning(lostJob);
    bot.clock.advance(15 * MINUTE);
    bot.fake.removeChannel(studio);
    await finish(lostJob);
    const dm = await waitFor(() => bot.fake.requests.find((r) => r.method === 'POST' && r.route === '/users/@me/channels' && r.body.recipient_id === ann.id && r.status === 200), 10_000, 'a DM channel');
    const delivered = await waitFor(() => bot.fake.messagesIn((dm.response as { id: string }).id).find((m) => m.attachments.length === 1), 10_000, 'the image in the DMs');
    assert.match(delivered.content, /Image #\d+: “a photo of <hugsy> in the studio”/);
    assert.equal(buttonIds(delivered).length, 4, 'with its buttons');
  });

  test('after a restart: a job the restart interrupted reports through its stored route and finishes in its message; buttons keep working', async () => {
    const message = await imageMessage(hugsyImage);
    const interrupted = imagine(ann, 'drawn across a restart');
    const jobId = jobIdOf(await replyWhen(interrupted, (m) => buttonIds(m).some((id) => id.startsWith('cancel:')), 'the imagine reply'));
    await whenRunning(jobId);
    await bot.restart();
    assert.equal(bot.fake.identifies.length, 2, 'the new process logged in again');
    const since = bot.fake.requests.findLastIndex((r) => r.route === '/gateway/bot'); // the new process's login
    await finish(jobId);
    const finished = await replyWhen(interrupted, (m) => m.attachments.length === 1, 'the image in the same reply');
    assert.match(finished.content, /“drawn across a restart”/);
    const edits = bot.fake.requests.slice(since).filter((r) => r.method === 'PATCH' && r.route.startsWith(`/webhooks/${bot.fake.applicationId}/${interrupted.token}/`));
    assert.ok(edits.some((r) => r.body.content.startsWith('⚙️ Drawing')), 'the new process reported progress in the same reply, from the stored route');

    const info = bot.fake.button({ user: bob, message: message.id, customId: `info:${hugsyImage}` });
    const shown = await replyWhen(info, (m) => m.content !== '', 'the info');
    assert.match(shown.content, new RegExp(`^Image #${hugsyImage}\\nprompt: a photo of <hugsy> at sea\\n.*seed 42 · 30 steps · guidance 7\\.5 · sampler pndm · 96×64`));
    assert.equal(shown.flags! & MESSAGE_FLAGS.ephemeral, MESSAGE_FLAGS.ephemeral);

    const reroll = bot.fake.button({ user: bob, message: message.id, customId: `reroll:${hugsyImage}` });
    const queued = await replyWhen(reroll, (m) => buttonIds(m).some((id) => id.startsWith('cancel:')), 'the re-roll job');
    assert.equal(queued.flags! & MESSAGE_FLAGS.ephemeral, 0, 'a public job message');
    await finish(jobIdOf(queued));
    const done = await replyWhen(reroll, (m) => m.attachments.length === 1, 'the re-rolled image');
    assert.match(done.content, new RegExp(`re-roll of #${hugsyImage}`));
  });
});
