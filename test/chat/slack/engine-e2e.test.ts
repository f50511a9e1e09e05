// Slack end to end with the real engine: the whole bot (startApp with its GPU worker thread, TensorFlow.js on
// wasm, the tiny fixture model sd-tiny-a) behind the real Bolt app. /teach opens the modal, its submission's files
// are downloaded from the fake Slack and taught with Perfusion (progress as chat.update edits), then /imagine
// with the concept draws an image that arrives in the thread through files.uploadV2, byte for byte as stored.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { TEACH_INPUTS, TEACH_MODAL_CALLBACK_ID } from '../../../src/chat/slack/blocks.ts';
import { pngImage, testDataDir, type TestDir } from '../../src/helpers.ts';
import { FakeSlack } from './fake-slack.ts';
import { actionIds, postedTs, sectionText, startSlackBot, type SlackBot } from './harness.ts';

const CHANNEL = 'C0ENGINE01';
const ANA = 'U0ANA00001';

describe('Slack with the real engine on the tiny fixture model (wasm)', () => {
  let fake: FakeSlack;
  let dir: TestDir;
  let bot: SlackBot;

  before(async () => {
    fake = await FakeSlack.start();
    fake.addUser({ id: ANA, name: 'ana' });
    dir = await testDataDir({ LOCAL_CHAT: 'false', TEACH_BATCH_SIZE: '1', TEACH_GRADIENT_ACCUMULATION: '1', CHECKPOINT_EVERY: '5' });
    bot = await startSlackBot(fake, dir.env);
    await bot.app.bot.engineReady();
  });

  after(async () => {
    await bot?.app.stop();
    await fake?.close();
    dir?.cleanup();
  });

  it('/teach → modal with files → Perfusion on the engine → /imagine with the concept → the PNG in the thread', async () => {
    const slack = bot.sender();
    let before = fake.lastSeq;
    const teach = await slack.command({ command: '/teach', text: 'hugsy dog steps:10', userId: ANA, channelId: CHANNEL, triggerId: fake.newTriggerId(), responseUrl: fake.newResponseUrl() });
    assert.ok(teach.status === 200 && teach.elapsedMs < 3000);
    const open = await fake.waitFor('views.open', () => true, { after: before });
    const view = open.args.view as { private_metadata: string };

    const files = [];
    for (const [i, color] of ['#c03030', '#b02828', '#c83838'].entries()) {
      files.push(fake.addFile({ name: `hugsy-${i}.png`, bytes: await pngImage(160, 160, color), user: ANA }));
    }
    before = fake.lastSeq;
    const submitted = await slack.viewSubmission({
      userId: ANA, triggerId: fake.newTriggerId(), callbackId: TEACH_MODAL_CALLBACK_ID, privateMetadata: view.private_metadata,
      values: {
        [TEACH_INPUTS.name.block]: { [TEACH_INPUTS.name.action]: { type: 'plain_text_input', value: 'hugsy' } },
        [TEACH_INPUTS.category.block]: { [TEACH_INPUTS.category.action]: { type: 'plain_text_input', value: 'dog' } },
        [TEACH_INPUTS.images.block]: { [TEACH_INPUTS.images.action]: { type: 'file_input', files } },
      },
    });
    assert.ok(submitted.status === 200 && submitted.elapsedMs < 3000);
    const teachPost = await fake.waitFor('chat.postMessage', (r) => /will learn from 3 images in 10 steps/.test(String(r.args.text)), { after: before, timeoutMs: 30_000 });
    const teachTs = postedTs(teachPost);
    const ready = await fake.waitFor('chat.update', (r) => r.args.ts === teachTs && String(r.args.text).startsWith('✅'), { timeoutMs: 240_000 });
    assert.match(sectionText(ready.args.blocks), /^✅ &lt;hugsy&gt; \(a dog\) is ready after 10 training steps, final loss \d+\.\d{3}\./);
    const steps = fake.calls('chat.update').filter((r) => r.args.ts === teachTs).map((r) => /step (\d+)\/10/.exec(String(r.args.text))?.[1]).filter(Boolean).map(Number);
    assert.ok(steps.length > 0, 'training progress was shown');
    assert.deepEqual(steps, [...steps].sort((a, b) => a - b), `steps in order: ${steps.join(', ')}`);

    before = fake.lastSeq;
    const imagine = await slack.command({ command: '/imagine', text: 'a photo of <hugsy:0.7> on the beach seed:11 steps:3', userId: ANA, channelId: CHANNEL, triggerId: fake.newTriggerId(), responseUrl: fake.newResponseUrl() });
    assert.ok(imagine.status === 200 && imagine.elapsedMs < 3000);
    const post = await fake.waitFor('chat.postMessage', (r) => /job #\d+ is queued/.test(String(r.args.text)), { after: before });
    const ts = postedTs(post);
    const done = await fake.waitFor('chat.update', (r) => r.args.ts === ts && String(r.args.text).startsWith('🖼️'), { timeoutMs: 120_000 });
    const jobId = Number(/job #(\d+)/.exec(String(post.args.text))![1]);
    const generation = await bot.app.services.db.generation.findFirstOrThrow({ where: { jobId } });
    assert.deepEqual((JSON.parse(generation.concepts) as Array<{ name: string; strength: number | null }>).map((c) => [c.name, c.strength]), [['hugsy', 0.7]]);
    assert.deepEqual(actionIds(done.args.blocks), ['reroll', 'vary', 'info', 'delete'].map((a) => `${a}:${generation.id}`));

    const uploaded = fake.uploads.at(-1)!;
    assert.deepEqual([uploaded.channel_id, uploaded.thread_ts, uploaded.initial_comment], [CHANNEL, ts, `<@${ANA}>`]);
    assert.deepEqual(uploaded.bytes, new Uint8Array(generation.png), 'Slack got exactly the image the engine made');
    const meta = await sharp(uploaded.bytes).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['png', 128, 128]);
  });
});
