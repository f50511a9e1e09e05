// Discord end to end with the real engine: the whole bot (startApp with its GPU worker thread, TensorFlow.js on
// wasm, the tiny fixture model sd-tiny-a) behind the real discord.js client on the fake Discord. /teach with three
// photos served by the fake's CDN is taught with Perfusion (progress as edits of the reply), then /imagine with
// the concept draws an image that arrives in the reply as a PNG attachment, byte for byte as stored, with its
// buttons; Info answers from the store.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { pngImage } from '../../src/helpers.ts';
import { buttonIds, download, replyWhen, startDiscordBot, type DiscordBot } from './bot-harness.ts';
import { CALLBACK_TYPE, MESSAGE_FLAGS } from './fake-discord.ts';

describe('Discord with the real engine on the tiny fixture model (wasm)', { timeout: 300_000 }, () => {
  let bot: DiscordBot;

  before(async () => {
    bot = await startDiscordBot({ env: { TEACH_BATCH_SIZE: '1', TEACH_GRADIENT_ACCUMULATION: '1', CHECKPOINT_EVERY: '5' }, editIntervalMs: 200 });
    await bot.app.bot.engineReady();
  });
  after(async () => { await bot?.stop(); });

  test('/teach with attachments → Perfusion on the engine → /imagine with the concept → the PNG in the reply with its buttons', async () => {
    const { fake } = bot;
    const ana = fake.createUser('ana');
    const photos = await Promise.all(['#c03030', '#b02828', '#c83838'].map(async (colour, i) =>
      fake.hostAttachment({ filename: `hugsy-${i + 1}.png`, bytes: await pngImage(160, 160, colour), width: 160 })));
    const teach = fake.chatInput({
      name: 'teach', user: ana, attachments: photos,
      options: [
        { name: 'name', type: 3, value: 'hugsy' }, { name: 'category', type: 3, value: 'dog' }, { name: 'steps', type: 4, value: 10 },
        ...photos.map((p, i) => ({ name: `images${i + 1}`, type: 11, value: p.id })),
      ],
    });
    assert.equal((await teach.waitForCallback()).type, CALLBACK_TYPE.deferredChannelMessage);
    const taught = await replyWhen(teach, (m) => m.content.startsWith('✅') || m.content.startsWith('❌'), 'the concept to be taught', 180_000);
    assert.match(taught.content, /^✅ <hugsy> \(a dog\) is ready after 10 training steps, final loss \d\.\d{3}\./);
    const states = teach.replyHistory.map((m) => m.content);
    assert.ok(states.some((c) => /📚 <hugsy> \(a dog\) will learn from 3 images in 10 steps/.test(c)), 'the command\'s reply');
    assert.ok(states.some((c) => /⚙️ Teaching <hugsy> — step \d+\/10/.test(c)), `progress edits: ${states.join(' | ')}`);

    const imagine = fake.chatInput({
      name: 'imagine', user: ana,
      options: [{ name: 'prompt', type: 3, value: 'a photo of <hugsy> on the beach' }, { name: 'steps', type: 4, value: 3 }, { name: 'seed', type: 4, value: 11 }],
    });
    const done = await replyWhen(imagine, (m) => m.attachments.length === 1 || m.content.startsWith('❌'), 'the image', 120_000);
    const generation = await bot.app.services.db.generation.findFirstOrThrow({ orderBy: { id: 'desc' } });
    assert.match(done.content, new RegExp(`^🖼️ Image #${generation.id}: “a photo of <hugsy> on the beach” · seed 11 · 3 steps · guidance 7\\.5 · concepts <hugsy>`));
    assert.deepEqual(buttonIds(done), ['reroll', 'vary', 'info', 'delete'].map((a) => `${a}:${generation.id}`));
    const png = await download(done.attachments[0]!.url);
    assert.deepEqual(new Uint8Array(png), new Uint8Array(generation.png), 'the PNG the engine made, byte for byte');
    const meta = await sharp(png).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['png', 128, 128]);
    assert.deepEqual(JSON.parse(generation.concepts).map((c: { name: string }) => c.name), ['hugsy']);

    const info = fake.button({ user: fake.createUser('ben'), message: done.id, customId: `info:${generation.id}` });
    const shown = await replyWhen(info, (m) => m.content !== '', 'the info');
    assert.match(shown.content, /sampler pndm · 128×128/);
    assert.equal(shown.flags! & MESSAGE_FLAGS.ephemeral, MESSAGE_FLAGS.ephemeral);
  });
});
