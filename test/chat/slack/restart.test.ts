// What the Slack route stored with a job is for: after a restart the bot still edits the job's own progress
// message and uploads into its thread; and a result Slack could not take is delivered again after a restart,
// without uploading the image a second time. Each bot is the whole app (startApp, SQLite) with the real Bolt app;
// jobs run on fake executors the tests control.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readSlackRoute } from '../../../src/chat/slack/route.ts';
import type { DeliveryRoute } from '../../../src/chat/types.ts';
import { FakeExecutor, testDataDir, waitFor, type TestDir } from '../../src/helpers.ts';
import { FakeSlack, type LoggedRequest } from './fake-slack.ts';
import { actionIds, postedTs, startSlackBot, type SlackBot } from './harness.ts';

const CHANNEL = 'C0RESTART1';
const ANA = 'U0ANA00001';

describe('Slack delivery across restarts', () => {
  let fake: FakeSlack;
  let dir: TestDir;
  let bot: SlackBot | null = null;

  before(async () => {
    fake = await FakeSlack.start();
    fake.addUser({ id: ANA, name: 'ana' });
    dir = await testDataDir({ LOCAL_CHAT: 'false' });
  });

  after(async () => {
    await bot?.app.stop();
    await fake?.close();
    dir?.cleanup();
  });

  async function imagine(b: SlackBot, prompt: string): Promise<{ post: LoggedRequest; jobId: number }> {
    const before = fake.lastSeq;
    const res = await b.sender().command({ command: '/imagine', text: prompt, userId: ANA, channelId: CHANNEL, triggerId: fake.newTriggerId(), responseUrl: fake.newResponseUrl() });
    assert.equal(res.status, 200);
    const post = await fake.waitFor('chat.postMessage', (r) => /job #\d+ is queued/.test(String(r.args.text)), { after: before });
    const jobId = Number(/job #(\d+)/.exec(String(post.args.text))![1]);
    await waitFor(async () => (await route(b, jobId)).messageTs ?? undefined, 15_000, 'the stored progress message');
    return { post, jobId };
  }

  async function route(b: SlackBot, jobId: number) {
    return readSlackRoute(JSON.parse((await b.app.services.db.job.findUniqueOrThrow({ where: { id: jobId } })).route) as DeliveryRoute);
  }

  it('a job interrupted by a restart ends in its original message, with its image in that message\'s thread', async () => {
    const first = new FakeExecutor(1);
    bot = await startSlackBot(fake, dir.env, { executor: first });
    const { post, jobId } = await imagine(bot, 'survives a restart steps:4');
    await first.whenRunning(jobId);
    await bot.app.stop(100);
    bot = null;

    const before = fake.lastSeq;
    bot = await startSlackBot(fake, dir.env, { executor: new FakeExecutor(1, 0) });
    const done = await fake.waitFor('chat.update', (r) => r.args.ts === postedTs(post) && String(r.args.text).startsWith('🖼️'), { after: before });
    assert.equal(done.args.channel, CHANNEL);
    assert.equal(fake.calls('chat.postMessage').filter((r) => r.seq > before).length, 0, 'no new message: the stored one is edited');
    const complete = fake.calls('files.completeUploadExternal').find((r) => r.seq > before)!;
    assert.deepEqual([complete.args.channel_id, complete.args.thread_ts], [CHANNEL, postedTs(post)]);
    await waitFor(async () => ((await bot!.app.services.db.job.findUniqueOrThrow({ where: { id: jobId } })).delivered ? true : undefined), 15_000, 'delivered');
  });

  it('a result Slack refused is delivered again after a restart, once, without a second upload', async () => {
    const executor = new FakeExecutor(1);
    await bot?.app.stop();
    bot = await startSlackBot(fake, dir.env, { executor });
    const { post, jobId } = await imagine(bot, 'slack hiccups steps:4');
    const ts = postedTs(post);
    const run = await executor.whenRunning(jobId);
    fake.failWhen('chat.update', (args) => String(args.text).startsWith('🖼️'), 'internal_error');
    const before = fake.lastSeq;
    run.resolve();
    await fake.waitFor('chat.update', (r) => r.args.ts === ts && (r.response as { ok: boolean }).ok === false, { after: before });
    assert.equal(fake.uploads.filter((u) => u.thread_ts === ts).length, 1, 'the image was uploaded');
    const fileId = fake.uploads.at(-1)!.file.id;
    assert.equal((await route(bot, jobId)).resultFileId, fileId);
    assert.deepEqual(actionIds(fake.message(CHANNEL, ts)!.blocks), [`cancel:${jobId}`], 'the message still shows the progress');
    const row = await bot.app.services.db.job.findUniqueOrThrow({ where: { id: jobId } });
    assert.equal([row.state, row.delivered].join(), 'succeeded,false');

    await bot.app.stop();
    const restarted = fake.lastSeq;
    bot = await startSlackBot(fake, dir.env, { executor: new FakeExecutor(1, 0) });
    const redelivered = await fake.waitFor('chat.update', (r) => r.args.ts === ts && String(r.args.text).startsWith('🖼️'), { after: restarted });
    const generation = await bot.app.services.db.generation.findFirstOrThrow({ where: { jobId } });
    assert.deepEqual(actionIds(redelivered.args.blocks), ['reroll', 'vary', 'info', 'delete'].map((a) => `${a}:${generation.id}`));
    const deleteButton = (redelivered.args.blocks as Array<{ elements?: Array<{ action_id: string; value: string }> }>).flatMap((b) => b.elements ?? []).at(-1)!;
    assert.equal(deleteButton.value, fileId, 'the delete button still knows the uploaded file');
    assert.equal(fake.calls('files.getUploadURLExternal').filter((r) => r.seq > restarted).length, 0, 'not uploaded twice');
    await waitFor(async () => ((await bot!.app.services.db.job.findUniqueOrThrow({ where: { id: jobId } })).delivered ? true : undefined), 15_000, 'delivered');
  });
});
