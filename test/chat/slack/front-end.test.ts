// The Slack front end end to end: the real Bolt 5 app (HTTP receiver, signatures checked) inside the whole bot
// (startApp: real SQLite store, scheduler and BotCore), driven by correctly signed requests and talking to the
// project's fake Slack Web API. Jobs run on a fake executor the tests finish by hand (the real engine runs in
// engine-e2e.test.ts), so every step — queued, progress, result — is observed in order.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { App } from '../../../src/app.ts';
import { TEACH_INPUTS, TEACH_MODAL_CALLBACK_ID, TEACH_SHORTCUT_CALLBACK_ID, decodeTeachOrigin } from '../../../src/chat/slack/blocks.ts';
import { readSlackRoute } from '../../../src/chat/slack/route.ts';
import type { DeliveryRoute } from '../../../src/chat/types.ts';
import { FakeExecutor, testDataDir, waitFor, type TestDir } from '../../src/helpers.ts';
import { FakeSlack, type FakeSlackFile, type LoggedRequest } from './fake-slack.ts';
import { FORM, sendSigned, signRequest, slashCommandBody, type SlackRequestSender } from './signed-requests.ts';
import { actionIds, postedTs, sectionText, startSlackBot, type SlackBot } from './harness.ts';
import { jpegImage, pngImage } from './test-images.ts';

const CHANNEL = 'C0GENERAL1';
const PRIVATE_CHANNEL = 'C0PRIVATE1';
const ANA = 'U0ANA00001';
const BOB = 'U0BOB00001';
const ADMIN = 'U0ADM00001';
const OTHER_TEAM = { teamId: 'T0OTHER001', teamDomain: 'other-team', enterpriseId: 'E0GRID0001' };

type Sent = Awaited<ReturnType<SlackRequestSender['command']>>;

describe('Slack front end: the real Bolt app on the bot\'s core, against the fake Slack', () => {
  let fake: FakeSlack;
  let dir: TestDir;
  let bot: SlackBot;
  let app: App;
  let slack: SlackRequestSender;
  const executor = new FakeExecutor(1);
  /** the result message of the imagine test, for the button tests */
  let result: { ts: string; generationId: number; jobId: number };
  /** Bob's re-roll of it */
  let rerolled: { ts: string; generationId: number };

  before(async () => {
    fake = await FakeSlack.start();
    fake.addUser({ id: ANA, name: 'ana' });
    fake.addUser({ id: BOB, name: 'bob' });
    fake.addUser({ id: ADMIN, name: 'admin', is_admin: true });
    fake.addChannel({ id: CHANNEL });
    fake.addChannel({ id: PRIVATE_CHANNEL, is_private: true, is_member: false });
    dir = await testDataDir({ LOCAL_CHAT: 'false', MAX_QUEUED_PER_USER: '20' });
    bot = await startSlackBot(fake, dir.env, { executor });
    app = bot.app;
    slack = bot.sender();
  });

  after(async () => {
    await app?.stop();
    await fake?.close();
    dir?.cleanup();
  });

  /** Sends a slash command; returns the HTTP answer and its response_url. */
  async function command(name: string, text: string, user = ANA, opts: { sender?: SlackRequestSender; channel?: string } = {}): Promise<{ res: Sent; responseUrl: string }> {
    const responseUrl = fake.newResponseUrl();
    const res = await (opts.sender ?? slack).command({ command: name, text, userId: user, channelId: opts.channel ?? CHANNEL, triggerId: fake.newTriggerId(), responseUrl });
    assert.equal(res.status, 200, res.text);
    assert.ok(res.elapsedMs < 3000, `acknowledged in ${res.elapsedMs} ms`);
    return { res, responseUrl };
  }

  /** The first ephemeral reply posted to a response_url. */
  async function ephemeral(responseUrl: string): Promise<{ text: string; blocks: unknown; response_type: string }> {
    return waitFor(() => fake.responsePosts(responseUrl)[0]?.body as { text: string; blocks: unknown; response_type: string } | undefined, 15_000, `a reply at ${responseUrl}`);
  }

  function teachValues(name: string, category: string, files?: FakeSlackFile[]) {
    return {
      [TEACH_INPUTS.name.block]: { [TEACH_INPUTS.name.action]: { type: 'plain_text_input', value: name } },
      [TEACH_INPUTS.category.block]: { [TEACH_INPUTS.category.action]: { type: 'plain_text_input', value: category } },
      ...(files ? { [TEACH_INPUTS.images.block]: { [TEACH_INPUTS.images.action]: { type: 'file_input', files } } } : {}),
    };
  }

  async function trainingImages(user: string, n = 3): Promise<FakeSlackFile[]> {
    const files: FakeSlackFile[] = [];
    for (let i = 0; i < n; i++) {
      const bytes = i % 2 ? await jpegImage(176, 160, [40, 90 + i * 20, 200]) : await pngImage(160, 160, [200, 90 + i * 20, 40]);
      files.push(fake.addFile({ name: `hugsy-${i + 1}.${i % 2 ? 'jpg' : 'png'}`, bytes, user }));
    }
    return files;
  }

  /** Submits the teach modal (as Slack sends it) and waits for the job's progress message. */
  async function submitTeach(sender: SlackRequestSender, user: string, name: string, category: string, files: FakeSlackFile[], steps?: number) {
    const before = fake.lastSeq;
    const res = await sender.viewSubmission({
      userId: user, triggerId: fake.newTriggerId(), callbackId: TEACH_MODAL_CALLBACK_ID,
      privateMetadata: JSON.stringify({ channel: CHANNEL, ...(steps ? { steps } : {}) }), values: teachValues(name, category, files),
    });
    assert.equal(res.status, 200);
    assert.equal(res.text, '', 'an empty ack closes the modal');
    assert.ok(res.elapsedMs < 3000);
    const post = await fake.waitFor('chat.postMessage', (r) => /job #\d+ is queued/.test(String(r.args.text)), { after: before });
    return { post, jobId: jobIdOf(post), before };
  }

  function jobIdOf(post: LoggedRequest): number {
    return Number(/job #(\d+)/.exec(String(post.args.text))![1]);
  }

  /** The job's stored route, once its progress message is stored in it. */
  async function storedRoute(jobId: number) {
    return waitFor(async () => {
      const row = await app.services.db.job.findUniqueOrThrow({ where: { id: jobId } });
      const route = readSlackRoute(JSON.parse(row.route) as DeliveryRoute);
      return route.messageTs ? route : undefined;
    }, 15_000, `job ${jobId}'s stored route`);
  }

  /** Job `id` once it runs on the fake executor, after one progress report; `resolve()` makes it succeed. */
  async function finish(id: number, progress?: { step: number; total: number; loss?: number }) {
    const run = await executor.whenRunning(id);
    if (progress) {
      // the core passes at most one progress report per job per interval (50 ms here) and drops the rest, so the
      // report is repeated until its edit shows (only one job runs at a time)
      const since = fake.lastSeq;
      const shown = (r: LoggedRequest) => r.seq > since && r.method === 'chat.update' && String(r.args.text).includes(`step ${progress.step}/${progress.total}`);
      await waitFor(async () => {
        run.hooks.onProgress(progress);
        await new Promise((r) => setTimeout(r, 100));
        return fake.log.some(shown) ? true : undefined;
      }, 15_000, `the step ${progress.step} edit`);
    }
    return run;
  }

  it('/teach opens the modal within Slack\'s 3 s, pre-filled with what was typed', async () => {
    const before = fake.lastSeq;
    await command('/teach', 'hugsy teddy steps:12');
    const open = await fake.waitFor('views.open', () => true, { after: before });
    assert.equal((open.response as { ok: boolean }).ok, true);
    const view = open.args.view as { callback_id: string; private_metadata: string; blocks: Array<Record<string, any>> };
    assert.equal(view.callback_id, TEACH_MODAL_CALLBACK_ID);
    assert.equal(view.blocks.find((b) => b.block_id === TEACH_INPUTS.name.block)!.element.initial_value, 'hugsy');
    assert.equal(view.blocks.find((b) => b.block_id === TEACH_INPUTS.category.block)!.element.initial_value, 'teddy');
    const fileInput = view.blocks.find((b) => b.block_id === TEACH_INPUTS.images.block)!.element;
    assert.deepEqual([fileInput.type, fileInput.max_files], ['file_input', 10]);
    assert.deepEqual(decodeTeachOrigin(view.private_metadata), { channel: CHANNEL, steps: 12 });
  });

  it('/teach when Slack will not open the form (the trigger expired) tells the user to run it again', async () => {
    fake.failNext('views.open', 'expired_trigger_id');
    const { responseUrl } = await command('/teach', 'late');
    assert.match((await ephemeral(responseUrl)).text, /^Slack did not let me open the teach form in time\. Please run \/teach again\.$/);
  });

  it('teach: modal submission with files → downloaded with the bot token → queued → progress via chat.update → done', async () => {
    const files = await trainingImages(ANA);
    const { post, jobId, before } = await submitTeach(slack, ANA, 'Hugsy', 'teddy', files, 12);
    const downloads = fake.requests('file').filter((r) => r.seq > before);
    assert.deepEqual(downloads.map((d) => [d.authorization, d.status, d.response]), files.map(() => [`Bearer ${fake.botToken}`, 200, 'file']));
    assert.equal(post.args.channel, CHANNEL);
    assert.match(String(post.args.text), /📚 &lt;hugsy&gt; \(a teddy\) will learn from 3 images in 12 steps\./);
    const ts = postedTs(post);
    assert.deepEqual(actionIds(fake.message(CHANNEL, ts)!.blocks), [`cancel:${jobId}`]);
    const route = await storedRoute(jobId);
    assert.deepEqual([route.teamId, route.enterpriseId, route.channelId, route.messageTs, route.threadTs, route.userId, route.resultFileId],
      [fake.teamId, null, CHANNEL, ts, ts, ANA, null], 'the progress message is stored with the job');

    const run = await finish(jobId, { step: 5, total: 10, loss: 0.25 });
    const progress = await fake.waitFor('chat.update', (r) => r.args.ts === ts && String(r.args.text).includes('step 5/10 (50%)'));
    assert.match(String(progress.args.text), /⚙️ Teaching &lt;hugsy&gt; — step 5\/10 \(50%\) · loss 0\.250/);
    assert.deepEqual(actionIds(progress.args.blocks), [`cancel:${jobId}`], 'a running job can be cancelled');
    run.resolve();

    const done = await fake.waitFor('chat.update', (r) => r.args.ts === ts && String(r.args.text).startsWith('✅'));
    assert.match(sectionText(done.args.blocks), /^✅ &lt;hugsy&gt; \(a teddy\) is ready after 12 training steps, final loss 0\.500\. Use it in a prompt: \/imagine a photo of &lt;hugsy&gt; on the beach$/);
    assert.deepEqual(actionIds(done.args.blocks), []);
    const notice = await fake.waitFor('chat.postMessage', (r) => r.args.thread_ts === ts);
    assert.match(String(notice.args.text), new RegExp(`^<@${ANA}> ✅ &lt;hugsy&gt;`), 'the requester is mentioned in the thread');

    const edits = fake.calls('chat.update').filter((r) => r.args.ts === ts).map((r) => String(r.args.text));
    assert.equal(edits.at(-1), String(done.args.text), 'nothing overwrites the final state');
    const concept = await app.services.db.concept.findFirstOrThrow({ where: { name: 'hugsy' }, include: { scope: true, _count: { select: { images: true } } } });
    assert.deepEqual([concept.status, concept._count.images, concept.scope.platform, concept.scope.externalId], ['ready', 3, 'slack', `-/${fake.teamId}`]);
  });

  it('imagine with the concept: queued → progress → the image uploaded with files.uploadV2 in the thread → the result with its buttons', async () => {
    const before = fake.lastSeq;
    await command('/imagine', 'a photo of <hugsy> on the beach seed:42 steps:20');
    const post = await fake.waitFor('chat.postMessage', (r) => /job #\d+ is queued/.test(String(r.args.text)), { after: before });
    const jobId = jobIdOf(post);
    const ts = postedTs(post);
    assert.match(String(post.args.text), /Seed 42 · 20 steps · 128×128\./);
    const run = await finish(jobId, { step: 10, total: 20 });
    await fake.waitFor('chat.update', (r) => r.args.ts === ts && String(r.args.text).includes('step 10/20'));
    run.resolve();

    const final = await fake.waitFor('chat.update', (r) => r.args.ts === ts && String(r.args.text).startsWith('🖼️'));
    const generation = await app.services.db.generation.findFirstOrThrow({ where: { jobId } });
    assert.deepEqual((JSON.parse(generation.concepts) as Array<{ name: string; strength: number | null }>).map((c) => [c.name, c.strength]), [['hugsy', null]]);
    assert.match(sectionText(final.args.blocks), new RegExp(`^🖼️ Image #${generation.id}: “a photo of &lt;hugsy&gt; on the beach” · seed 42 · 20 steps`));
    assert.deepEqual(actionIds(final.args.blocks), [`reroll:${generation.id}`, `vary:${generation.id}`, `info:${generation.id}`, `delete:${generation.id}`]);

    // files.uploadV2: the three calls, the bytes the engine made, shared into the progress message's thread
    const getUrl = fake.calls('files.getUploadURLExternal').find((r) => r.seq > before)!;
    assert.equal(getUrl.args.filename, `image-${generation.id}.png`);
    const complete = fake.calls('files.completeUploadExternal').find((r) => r.seq > getUrl.seq)!;
    assert.deepEqual([complete.args.channel_id, complete.args.thread_ts, complete.args.initial_comment], [CHANNEL, ts, `<@${ANA}>`]);
    const uploaded = fake.uploads.at(-1)!;
    assert.deepEqual(uploaded.bytes, new Uint8Array(generation.png));
    assert.deepEqual(fake.threadReplies(CHANNEL, ts).map((m) => m.files?.[0]?.id), [uploaded.file.id]);
    assert.ok(complete.seq < final.seq, 'the image is in the thread before the buttons appear');
    assert.equal((await storedRoute(jobId)).resultFileId, uploaded.file.id);
    result = { ts, generationId: generation.id, jobId };
  });

  it('buttons: info answers privately; re-roll and variations queue new images in the result\'s thread', async () => {
    const g = result.generationId;
    const click = async (user: string, actionId: string) => {
      const responseUrl = fake.newResponseUrl();
      const before = fake.lastSeq;
      const res = await slack.blockAction({ userId: user, triggerId: fake.newTriggerId(), responseUrl, actionId, value: actionId, channelId: CHANNEL, messageTs: result.ts });
      assert.equal(res.status, 200);
      assert.ok(res.elapsedMs < 3000);
      return { responseUrl, before };
    };

    const info = await click(BOB, `info:${g}`);
    const answer = await ephemeral(info.responseUrl);
    assert.equal(answer.response_type, 'ephemeral');
    assert.match(answer.text, new RegExp(`^Image #${g}\\nprompt: a photo of &lt;hugsy&gt; on the beach\\n.*seed 42 · 20 steps · guidance 7\\.5`));
    assert.deepEqual(actionIds(answer.blocks), [`reroll:${g}`, `vary:${g}`]);

    for (const [action, check] of [
      ['reroll', (row: { parentId: number | null; variationAmount: number | null; seed: number }) => row.variationAmount === null],
      ['vary', (row: { parentId: number | null; variationAmount: number | null; seed: number }) => row.variationAmount === 0.25 && row.seed === 42],
    ] as const) {
      const { before } = await click(BOB, `${action}:${g}`);
      const post = await fake.waitFor('chat.postMessage', (r) => /job #\d+ is queued/.test(String(r.args.text)), { after: before });
      assert.equal(post.args.thread_ts, result.ts, `the ${action} job's message is in the result's thread`);
      const jobId = jobIdOf(post);
      (await finish(jobId)).resolve();
      const done = await fake.waitFor('chat.update', (r) => r.args.ts === postedTs(post) && String(r.args.text).startsWith('🖼️'));
      const row = await app.services.db.generation.findFirstOrThrow({ where: { jobId } });
      assert.equal(row.parentId, g);
      assert.ok(check(row), `${action}: ${JSON.stringify({ seed: row.seed, variationAmount: row.variationAmount })}`);
      const complete = fake.calls('files.completeUploadExternal').find((r) => r.seq > before)!;
      assert.equal(complete.args.thread_ts, result.ts, 'its image goes in the same thread');
      assert.ok(sectionText(done.args.blocks).includes(action === 'reroll' ? `re-roll of #${g}` : `variation of #${g} (0.25)`));
      if (action === 'reroll') rerolled = { ts: postedTs(post), generationId: row.id };
    }
  });

  it('the delete button: refused for someone else, allowed for the requester and for an admin; the image is taken down', async () => {
    /** Clicks a result message's delete button as Slack sends it (with the button's value). */
    const clickDelete = async (user: string, ts: string, generationId: number) => {
      const button = (fake.message(CHANNEL, ts)!.blocks as Array<{ elements?: Array<{ action_id: string; value: string }> }>)
        .flatMap((b) => b.elements ?? []).find((e) => e.action_id === `delete:${generationId}`)!;
      const responseUrl = fake.newResponseUrl();
      const before = fake.lastSeq;
      await slack.blockAction({ userId: user, triggerId: fake.newTriggerId(), responseUrl, actionId: button.action_id, value: button.value, channelId: CHANNEL, messageTs: ts });
      return { answer: (await ephemeral(responseUrl)).text, before, value: button.value };
    };
    const fileOf = async (jobId: number) => (await storedRoute(jobId)).resultFileId!;
    const annsFile = await fileOf(result.jobId);

    const refused = await clickDelete(BOB, result.ts, result.generationId);
    assert.match(refused.answer, new RegExp(`^Image #${result.generationId} was asked for by ana; only they or an admin can delete it\.$`));
    assert.equal(refused.value, annsFile, 'the delete button carries the uploaded file');
    assert.equal(fake.calls('files.delete').length, 0);
    assert.deepEqual(actionIds(fake.message(CHANNEL, result.ts)!.blocks).at(-1), `delete:${result.generationId}`, 'the result is untouched');
    assert.ok(await app.services.db.generation.findUnique({ where: { id: result.generationId } }));

    const allowed = await clickDelete(ANA, result.ts, result.generationId);
    assert.match(allowed.answer, new RegExp(`^🗑️ Image #${result.generationId} is deleted\.$`));
    const removed = await fake.waitFor('files.delete', () => true, { after: allowed.before });
    assert.deepEqual([removed.args.file, (removed.response as { ok: boolean }).ok], [annsFile, true]);
    const edited = await fake.waitFor('chat.update', (r) => r.args.ts === result.ts, { after: allowed.before });
    assert.equal(sectionText(edited.args.blocks), `🗑️ Image #${result.generationId} is deleted.`);
    assert.deepEqual(actionIds(fake.message(CHANNEL, result.ts)!.blocks), []);
    assert.deepEqual(fake.threadReplies(CHANNEL, result.ts).flatMap((m) => m.files ?? []).map((f) => f.id).includes(annsFile), false);
    assert.equal(await app.services.db.generation.findUnique({ where: { id: result.generationId } }), null);

    const byAdmin = await clickDelete(ADMIN, rerolled.ts, rerolled.generationId);
    assert.match(byAdmin.answer, /is deleted/, 'a workspace admin may delete anyone\'s image');
    await fake.waitFor('files.delete', (r) => r.seq > byAdmin.before);
    assert.equal(await app.services.db.generation.findUnique({ where: { id: rerolled.generationId } }), null);
  });

  it('the cancel button: someone else\'s job is refused, the requester\'s is cancelled and its message says so', async () => {
    // a job that waits behind a running one
    const blockerBefore = fake.lastSeq;
    await command('/imagine', 'a long one', BOB);
    const blocker = jobIdOf(await fake.waitFor('chat.postMessage', (r) => /job #\d+ is queued/.test(String(r.args.text)), { after: blockerBefore }));
    const blockerRun = await executor.whenRunning(blocker);
    const before = fake.lastSeq;
    await command('/imagine', 'waits in line');
    const post = await fake.waitFor('chat.postMessage', (r) => /job #\d+ is queued/.test(String(r.args.text)), { after: before });
    const jobId = jobIdOf(post);
    assert.deepEqual(actionIds(post.args.blocks), [`cancel:${jobId}`]);

    const press = async (user: string) => {
      const responseUrl = fake.newResponseUrl();
      await slack.blockAction({ userId: user, triggerId: fake.newTriggerId(), responseUrl, actionId: `cancel:${jobId}`, channelId: CHANNEL, messageTs: postedTs(post) });
      return (await ephemeral(responseUrl)).text;
    };
    assert.match(await press(BOB), new RegExp(`Job #${jobId} is someone else's; only they or an admin can cancel it\\.`));
    assert.match(await press(ANA), new RegExp(`🛑 Job #${jobId} is cancelled\\.`));
    const edit = await fake.waitFor('chat.update', (r) => r.args.ts === postedTs(post) && String(r.args.text).startsWith('🛑'));
    assert.deepEqual(actionIds(edit.args.blocks), []);
    blockerRun.resolve();
    await fake.waitFor('files.completeUploadExternal', (r) => r.seq > before);
  });

  it('typed commands: /concepts (list), /queue, /cancel 12, and worded refusals — all private, through the response_url', async () => {
    const before = fake.lastSeq;
    assert.match((await ephemeral((await command('/concepts', '')).responseUrl)).text, /^Concepts here \(1\):\n&lt;hugsy&gt; — a teddy, by ana$/);
    assert.match((await ephemeral((await command('/concepts', 'info hugsy')).responseUrl)).text, /^&lt;hugsy&gt; — a teddy, taught by ana/);
    assert.match((await ephemeral((await command('/queue', '')).responseUrl)).text, /The queue is empty/);
    assert.match((await ephemeral((await command('/cancel', '999')).responseUrl)).text, /^There is no job #999 here\.$/);
    assert.match((await ephemeral((await command('/cancel', '')).responseUrl)).text, /You have no waiting or running jobs to cancel/);
    assert.match((await ephemeral((await command('/imagine', '')).responseUrl)).text, /\/imagine needs prompt/);
    assert.match((await ephemeral((await command('/imagine', 'a photo of <hugsi>')).responseUrl)).text, /^I don't know &lt;hugsi&gt; here\. Did you mean &lt;hugsy&gt;\?/);
    assert.match((await ephemeral((await command('/concepts', 'rename hugsy')).responseUrl)).text, /\/concepts needs one of: list, info, delete/);
    assert.match((await ephemeral((await command('/imagine', 'x steps:500')).responseUrl)).text, /steps must be at most 150/);
    assert.equal(fake.calls('chat.postMessage').filter((r) => r.seq > before).length, 0, 'nothing was posted in the channel');
  });

  it('two workspaces: the other workspace sees none of the first one\'s concepts and can use the same name', async () => {
    const other = bot.sender(OTHER_TEAM);
    const before = fake.lastSeq;
    assert.match((await ephemeral((await command('/concepts', 'list', BOB, { sender: other })).responseUrl)).text, /No concepts have been taught here yet/);
    assert.match((await ephemeral((await command('/imagine', 'a photo of <hugsy>', BOB, { sender: other })).responseUrl)).text, /^I don't know &lt;hugsy&gt;: no concepts have been taught here yet/);
    assert.equal(fake.calls('chat.postMessage').filter((r) => r.seq > before).length, 0, 'no job was started');

    const { jobId } = await submitTeach(other, BOB, 'hugsy', 'mug', await trainingImages(BOB, 1));
    (await finish(jobId)).resolve();
    await fake.waitFor('chat.update', (r) => String(r.args.text).startsWith('✅ &lt;hugsy&gt; (a mug)'));
    const concepts = await app.services.db.concept.findMany({ where: { name: 'hugsy' }, include: { scope: true }, orderBy: { id: 'asc' } });
    assert.deepEqual(concepts.map((c) => [c.category, c.scope.externalId]), [['teddy', `-/${fake.teamId}`], ['mug', `${OTHER_TEAM.enterpriseId}/${OTHER_TEAM.teamId}`]]);
    assert.match((await ephemeral((await command('/concepts', '', BOB, { sender: other })).responseUrl)).text, /^Concepts here \(1\):\n&lt;hugsy&gt; — a mug, by bob$/);
    const info = await ephemeral((await command('/info', String(result.generationId), BOB, { sender: other })).responseUrl);
    assert.match(info.text, new RegExp(`There is no image #${result.generationId} here`), 'images are not shared across workspaces either');
  });

  it('a login page instead of an image (no files:read) is reported to the user, and nothing is queued', async () => {
    const f = fake.addFile({ name: 'secret.png', bytes: await pngImage(160, 160), user: ANA });
    const jobs = await app.services.db.job.count();
    fake.setScopes(['commands', 'chat:write', 'files:write', 'users:read']);
    try {
      const before = fake.lastSeq;
      await slack.viewSubmission({
        userId: ANA, triggerId: fake.newTriggerId(), callbackId: TEACH_MODAL_CALLBACK_ID,
        privateMetadata: JSON.stringify({ channel: CHANNEL }), values: teachValues('secret', 'teddy', [f]),
      });
      const told = await fake.waitFor('chat.postEphemeral', () => true, { after: before });
      assert.deepEqual(fake.requests('file').filter((r) => r.seq > before).map((r) => [r.status, r.response]), [[200, 'login page']]);
      assert.deepEqual([told.args.channel, told.args.user], [CHANNEL, ANA]);
      assert.match(String(told.args.text), /Slack sent a sign-in page instead of "secret\.png".*files:read/);
      assert.equal(await app.services.db.job.count(), jobs);
      assert.equal(fake.calls('chat.postMessage').some((r) => r.seq > before), false);
    } finally {
      fake.setScopes(['commands', 'chat:write', 'files:read', 'files:write', 'users:read']);
    }
  });

  it('the core\'s upload checks apply to downloaded files: a tiny image and a text file are refused in words', async () => {
    const jobs = await app.services.db.job.count();
    const cases: Array<[FakeSlackFile, RegExp]> = [
      [fake.addFile({ name: 'tiny.png', bytes: await pngImage(32, 32), user: ANA }), /"tiny\.png" is only 32×32 pixels; images must be at least 128×128/],
      [fake.addFile({ name: 'notes.png', bytes: new TextEncoder().encode('just text'), mimetype: 'image/png', user: ANA }), /"notes\.png" is not a PNG, JPEG, WebP or GIF image/],
    ];
    for (const [file, expected] of cases) {
      const before = fake.lastSeq;
      await slack.viewSubmission({
        userId: ANA, triggerId: fake.newTriggerId(), callbackId: TEACH_MODAL_CALLBACK_ID,
        privateMetadata: JSON.stringify({ channel: CHANNEL }), values: teachValues('tiny', 'teddy', [file]),
      });
      const told = await fake.waitFor('chat.postEphemeral', () => true, { after: before });
      assert.match(String(told.args.text), expected);
    }
    assert.equal(await app.services.db.job.count(), jobs);
  });

  it('a submission without images keeps the modal open with the error under the file input', async () => {
    const res = await slack.viewSubmission({
      userId: ANA, triggerId: fake.newTriggerId(), callbackId: TEACH_MODAL_CALLBACK_ID,
      privateMetadata: JSON.stringify({ channel: CHANNEL }), values: teachValues('x', 'teddy'),
    });
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.text), { response_action: 'errors', errors: { [TEACH_INPUTS.images.block]: 'Add at least one image of the concept (3 or more work best).' } });
  });

  it('"Teach concept" on a message with images: a modal without a file input, then the message\'s files (by files.info) are taught in its thread', async () => {
    const files = [
      fake.addFile({ name: 'mug-a.png', bytes: await pngImage(160, 160, [1, 2, 3]), user: ANA, channel: CHANNEL }),
      fake.addFile({ name: 'mug-b.png', bytes: await pngImage(160, 160, [4, 5, 6]), user: ANA, channel: CHANNEL }),
      fake.addFile({ name: 'notes.txt', bytes: new TextEncoder().encode('not an image'), user: ANA, channel: CHANNEL }),
    ];
    const message = fake.postUserMessage({ channel: CHANNEL, user: ANA, text: 'my mug', files });
    const before = fake.lastSeq;
    const res = await slack.messageShortcut({
      userId: ANA, callbackId: TEACH_SHORTCUT_CALLBACK_ID, triggerId: fake.newTriggerId(), responseUrl: fake.newResponseUrl(),
      channelId: CHANNEL, message: { ts: message.ts, user: ANA, text: 'my mug', files },
    });
    assert.ok(res.status === 200 && res.elapsedMs < 3000);
    const open = await fake.waitFor('views.open', () => true, { after: before });
    const view = open.args.view as { private_metadata: string; blocks: Array<Record<string, any>> };
    assert.equal(view.blocks.some((b) => b.element?.type === 'file_input'), false);
    assert.match(JSON.stringify(view.blocks), /the 2 images in the selected message/);

    const submitted = fake.lastSeq;
    await slack.viewSubmission({
      userId: ANA, triggerId: fake.newTriggerId(), callbackId: TEACH_MODAL_CALLBACK_ID, privateMetadata: view.private_metadata,
      values: teachValues('mug', 'mug'),
    });
    const post = await fake.waitFor('chat.postMessage', (r) => /job #\d+ is queued/.test(String(r.args.text)), { after: submitted });
    assert.deepEqual(fake.calls('files.info').filter((r) => r.seq > submitted).map((r) => r.args.file), [files[0]!.id, files[1]!.id]);
    assert.equal(post.args.thread_ts, message.ts, 'progress goes in the thread of the message with the images');
    assert.match(String(post.args.text), /&lt;mug&gt; \(a mug\) will learn from 2 images/);
    (await finish(jobIdOf(post))).resolve();
    await fake.waitFor('chat.update', (r) => r.args.ts === postedTs(post) && String(r.args.text).startsWith('✅'));
  });

  it('the shortcut on a message without images answers privately and opens nothing', async () => {
    const message = fake.postUserMessage({ channel: CHANNEL, user: ANA, text: 'no pictures here' });
    const responseUrl = fake.newResponseUrl();
    const before = fake.lastSeq;
    await slack.messageShortcut({
      userId: ANA, callbackId: TEACH_SHORTCUT_CALLBACK_ID, triggerId: fake.newTriggerId(), responseUrl,
      channelId: CHANNEL, message: { ts: message.ts, user: ANA, text: message.text! },
    });
    assert.match((await ephemeral(responseUrl)).text, /That message has no images/);
    assert.equal(fake.calls('views.open').some((r) => r.seq > before), false);
  });

  it('where the bot may not post, the job\'s messages go to the requester\'s DM and the route remembers it', async () => {
    const before = fake.lastSeq;
    await command('/imagine', 'a quiet room', ANA, { channel: PRIVATE_CHANNEL });
    const refused = await fake.waitFor('chat.postMessage', (r) => r.args.channel === PRIVATE_CHANNEL, { after: before });
    assert.deepEqual(refused.response, { ok: false, error: 'not_in_channel' });
    const post = await fake.waitFor('chat.postMessage', (r) => r.args.channel === ANA && /job #\d+ is queued/.test(String(r.args.text)), { after: before });
    const jobId = jobIdOf(post);
    assert.deepEqual([(await storedRoute(jobId)).channelId, (await storedRoute(jobId)).messageTs], [ANA, postedTs(post)]);
    (await finish(jobId)).resolve();
    const complete = await fake.waitFor('files.completeUploadExternal', (r) => r.seq > before);
    assert.deepEqual([complete.args.channel_id, complete.args.thread_ts], [ANA, postedTs(post)]);
    await fake.waitFor('chat.update', (r) => r.args.channel === ANA && r.args.ts === postedTs(post) && String(r.args.text).startsWith('🖼️'));
  });

  it('refuses a bad signature and a stale timestamp with 401; nothing reaches the core', async () => {
    const before = fake.lastSeq;
    const jobs = await app.services.db.job.count();
    const body = slashCommandBody({ teamId: fake.teamId, teamDomain: fake.teamDomain, appId: fake.appId }, {
      command: '/imagine', text: 'forged', userId: BOB, channelId: CHANNEL, triggerId: fake.newTriggerId(), responseUrl: fake.newResponseUrl(),
    });
    const forged = await sendSigned(bot.url, signRequest('SIGNING_SECRET', body, FORM, { secretOverride: 'not-the-signing-secret' }));
    assert.equal(forged.status, 401);
    const stale = await slack.command({ command: '/imagine', text: 'late', userId: ANA, channelId: CHANNEL, triggerId: fake.newTriggerId(), responseUrl: fake.newResponseUrl() },
      { timestamp: Math.floor(Date.now() / 1000) - 5 * 60 - 10 });
    assert.equal(stale.status, 401);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(fake.log.filter((r) => r.seq > before).map((r) => r.method), [], 'no Slack call was made for them');
    assert.equal(await app.services.db.job.count(), jobs);
  });
});
