// DiscordUpdateSink with the real discord.js REST client against the fake Discord, fed job updates the way
// BotCore sends them: progress edits paced by the throttle; the result in the reply while the token lives;
// after it, progress through the channel and the result as a channel message that mentions only the
// requester; a DM when the channel is gone; a refused token stored with the job; and a rejection (so the core
// delivers again after a restart) when no path is left. The whole bot on top of this is in front-end.test.ts.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import sharp from 'sharp';
import { Client, Events, GatewayIntentBits, MessageFlags, type Interaction } from 'discord.js';
import { generationButtons } from '../../../src/chat/messages.ts';
import type { DeliveryRoute, JobEventType, JobUpdate, OutgoingMessage } from '../../../src/chat/types.ts';
import { deliveryRoute, routeFromInteraction, type InteractionRoute } from '../../../src/chat/discord/delivery.ts';
import { renderMessage } from '../../../src/chat/discord/render.ts';
import { DiscordRoutes } from '../../../src/chat/discord/rest-routes.ts';
import { DiscordDeliveryError, DiscordUpdateSink } from '../../../src/chat/discord/update-sink.ts';
import { ShiftedClock } from './clocks.ts';
import { FakeDiscord, MESSAGE_FLAGS } from './fake-discord.ts';

const MINUTE = 60_000;

test('a message renders as content, buttons and PNG attachments, pinging nobody unless told whom', async () => {
  const png = new Uint8Array(await sharp({ create: { width: 8, height: 8, channels: 3, background: '#112233' } }).png().toBuffer());
  const message: OutgoingMessage = {
    text: 'done: a photo of <hugsy> with @\u200beveryone', buttons: generationButtons(7),
    images: [{ filename: 'image-7.png', png, width: 8, height: 8, generationId: 7 }],
  };
  const plain = renderMessage(message);
  assert.equal(plain.body.content, message.text);
  assert.deepEqual(plain.body.allowed_mentions, { parse: [], replied_user: false });
  assert.deepEqual(plain.body.components[0]!.components.map((b) => [b.custom_id, b.label, b.style]),
    [['reroll:7', 'Re-roll', 1], ['vary:7', 'Variations', 2], ['info:7', 'Info', 2], ['delete:7', 'Delete', 4]]);
  assert.deepEqual(plain.body.attachments, [{ id: 0, filename: 'image-7.png', description: 'Image #7' }]);
  assert.deepEqual([plain.files[0]!.name, plain.files[0]!.contentType], ['image-7.png', 'image/png']);
  assert.deepEqual(new Uint8Array(plain.files[0]!.data as Buffer), png);
  assert.equal(plain.body.flags, undefined);

  const late = renderMessage(message, { mention: '42' });
  assert.equal(late.body.content, `<@42> ${message.text}`);
  assert.deepEqual(late.body.allowed_mentions, { parse: [], users: ['42'], replied_user: false });
  const text = renderMessage({ text: 'x'.repeat(2500), private: true }, { ephemeral: true });
  assert.equal(text.body.content.length, 2000);
  assert.deepEqual(text.body.attachments, [], 'an edit to text removes earlier images');
  assert.equal(text.body.flags, MessageFlags.Ephemeral);
  assert.deepEqual(renderMessage({ text: 'b', buttons: Array.from({ length: 7 }, (_, i) => ({ id: `info:${i + 1}`, label: 'I' })) }).body.components.map((r) => r.components.length), [5, 2]);
});

describe('DiscordUpdateSink against the fake Discord', { timeout: 30_000 }, () => {
  const clock = new ShiftedClock();
  let fake: FakeDiscord;
  let client: Client;
  let png: Uint8Array;
  const routeUpdates: Array<[number, DeliveryRoute['data']]> = [];
  let nextJob = 1;

  before(async () => {
    png = new Uint8Array(await sharp({ create: { width: 4, height: 4, channels: 3, background: { r: 0, g: 90, b: 200 } } }).png().toBuffer());
    fake = await FakeDiscord.start({ clock, guilds: [{ name: 'Fake Server', channels: ['general', 'studio'] }] });
    client = new Client({ intents: [GatewayIntentBits.Guilds], rest: { api: fake.apiUrl } });
    const ready = new Promise((resolve) => client.once(Events.ClientReady, resolve));
    await client.login(fake.token);
    await ready;
  }, { timeout: 15_000 });
  after(async () => {
    await client?.destroy();
    await fake?.stop();
  });

  function sink(editIntervalMs = 300): DiscordUpdateSink {
    return new DiscordUpdateSink({
      bot: { updateRoute: async (jobId, data) => { routeUpdates.push([jobId, data]); } },
      routes: new DiscordRoutes(client.rest), log: pino({ level: 'silent' }), clock, editIntervalMs,
    });
  }

  /** The bot's side of a request: defer with the reply's id, and keep only the stored route. */
  function deferAndRoute(ephemeral = false): Promise<InteractionRoute> {
    return new Promise((resolve, reject) => {
      client.once(Events.InteractionCreate, (interaction: Interaction) => {
        (async () => {
          assert.ok(interaction.isChatInputCommand());
          const response = await interaction.deferReply({ ...(ephemeral ? { flags: MessageFlags.Ephemeral } : {}), withResponse: true });
          return { ...routeFromInteraction(interaction, { ephemeral }), replyMessageId: response.resource?.message?.id ?? null };
        })().then(resolve, reject);
      });
    });
  }

  function update(jobId: number, route: InteractionRoute, event: JobEventType, message: OutgoingMessage): JobUpdate {
    const final = event === 'succeeded' || event === 'failed' || event === 'cancelled';
    return {
      event, route: deliveryRoute(route), final, message: { ...message, jobId },
      user: { platform: 'discord', externalId: route.userId, displayName: 'someone' },
      job: {
        id: jobId, kind: 'imagine', state: final ? event : 'running', position: null, etaMs: null, progress: null, error: null, attempts: 1,
        createdAt: new Date().toISOString(), startedAt: null, finishedAt: null, concept: null, generationId: final ? jobId : null,
      },
    };
  }

  const result = (id: number): OutgoingMessage => ({
    text: `🖼️ Image #${id}: “a cat”`, buttons: generationButtons(id), images: [{ filename: `image-${id}.png`, png, width: 4, height: 4, generationId: id }],
  });

  test('progress edits reach the reply at the paced rate; the result replaces it with the image and its buttons', async () => {
    const user = fake.createUser('paula');
    const routed = deferAndRoute();
    const sent = fake.chatInput({ name: 'imagine', user, options: [{ name: 'prompt', type: 3, value: 'a cat' }] });
    const r = await routed;
    assert.equal(r.replyMessageId, sent.originalMessage?.id, 'with_response gave the reply\'s id');
    const s = sink(300);
    const job = nextJob++;
    const since = fake.requests.length;
    await s.deliver(update(job, r, 'queued', { text: 'queued' }));
    assert.equal(fake.requests.length, since, 'the queued state is the command\'s own reply: no edit');
    const started = Date.now();
    for (let step = 1; step <= 30; step++) {
      await s.deliver(update(job, r, 'progress', { text: `step ${step}/30`, buttons: [{ id: `cancel:${job}`, label: 'Cancel', style: 'danger' }] }));
      await new Promise((resolve) => setTimeout(resolve, 30));
    }
    await new Promise((resolve) => setTimeout(resolve, 400));
    const elapsed = Date.now() - started;
    const patches = fake.requests.slice(since).filter((q) => q.method === 'PATCH');
    const gaps = patches.slice(1).map((q, i) => q.at - patches[i]!.at);
    assert.ok(patches.length >= 2 && patches.length <= elapsed / 300 + 1, `${patches.length} edits for 30 updates in ${elapsed} ms`);
    assert.ok(gaps.every((g) => g >= 299), `edits arrived ${gaps.join(', ')} ms apart`);
    assert.ok(patches.every((q) => q.route === `/webhooks/${fake.applicationId}/${r.token}/messages/${r.replyMessageId}` && q.auth === null), 'edited by token');
    assert.equal(sent.originalMessage?.content, 'step 30/30', 'the last state was delivered');
    assert.equal(JSON.stringify(sent.originalMessage?.components).includes(`cancel:${job}`), true);

    await s.deliver(update(job, r, 'succeeded', result(job)));
    const done = sent.originalMessage!;
    assert.equal(done.content, `🖼️ Image #${job}: “a cat”`);
    assert.deepEqual([done.attachments.length, done.attachments[0]?.filename, done.attachments[0]?.content_type], [1, `image-${job}.png`, 'image/png']);
    assert.deepEqual((done.components![0] as { components: Array<{ custom_id: string }> }).components.map((b) => b.custom_id),
      [`reroll:${job}`, `vary:${job}`, `info:${job}`, `delete:${job}`]);
    const count = fake.requests.length;
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.equal(fake.requests.length, count, 'no progress edit after the result');
  });

  test('a job that outlives the token: progress through the channel, the result as a channel message mentioning only the requester', async () => {
    const user = fake.createUser('quinn');
    const bystander = fake.createUser('rita');
    const routed = deferAndRoute();
    const sent = fake.chatInput({ name: 'teach', user });
    const r = await routed;
    const s = sink(50);
    const job = nextJob++;
    await s.deliver(update(job, r, 'progress', { text: 'Training: step 10/400' }));
    await fake.waitForRequest((q) => q.method === 'PATCH' && q.body?.content === 'Training: step 10/400');

    clock.advance(14 * MINUTE + 30_000);
    const since = fake.requests.length;
    await s.deliver(update(job, r, 'progress', { text: 'Training: step 390/400' }));
    const edit = await fake.waitForRequest((q) => q.method === 'PATCH' && q.body?.content === 'Training: step 390/400', { since });
    assert.equal(edit.route, `/channels/${r.channelId}/messages/${r.replyMessageId}`, 'edited through the channel, not the token');
    assert.equal(edit.auth, `Bot ${fake.token}`);
    assert.equal(sent.originalMessage?.content, 'Training: step 390/400', 'the same reply message shows the progress');

    clock.advance(2 * MINUTE);
    await s.deliver(update(job, r, 'succeeded', { ...result(job), text: `<hugsy> is ready — asked together with <@${bystander.id}>` }));
    const posted = fake.messagesIn(r.channelId!).filter((m) => m.id !== r.replyMessageId).at(-1)!;
    assert.ok(posted.content.startsWith(`<@${user.id}> `));
    assert.deepEqual(posted.mentions.map((m) => m.id), [user.id], 'only the requester is pinged');
    assert.equal(posted.attachments[0]?.content_type, 'image/png');
    assert.equal(fake.requests.slice(since).filter((q) => q.route.startsWith('/webhooks/')).length, 0, 'no calls on the dead token');
    const reply = fake.message(r.replyMessageId!)!;
    assert.equal(reply.content, `<hugsy> is ready — asked together with <@${bystander.id}>`, 'the old reply no longer shows progress…');
    assert.deepEqual(reply.components, [], '…nor a Cancel button');
    assert.deepEqual(reply.mentions, [], 'and pings nobody');
  });

  test('when the channel is gone the result goes to the requester\'s DMs', async () => {
    const user = fake.createUser('sam');
    const studio = fake.defaultGuild.channelIds[1]!;
    const routed = deferAndRoute();
    fake.chatInput({ name: 'teach', user, channelId: studio });
    const r = await routed;
    clock.advance(16 * MINUTE);
    fake.removeChannel(studio);
    await sink().deliver(update(nextJob++, r, 'succeeded', { text: 'Your concept <sam-dog> is ready.' }));
    const dm = fake.requests.find((q) => q.method === 'POST' && q.route === '/users/@me/channels' && q.body.recipient_id === user.id)!;
    const delivered = fake.messagesIn((dm.response as { id: string }).id).at(-1)!;
    assert.equal(delivered.content, 'Your concept <sam-dog> is ready.');
    assert.deepEqual(delivered.mentions, []);
  });

  test('a token Discord refuses early (401/50027) is stored as dead with the job, and the result still arrives', async () => {
    const user = fake.createUser('tess');
    const routed = deferAndRoute();
    fake.chatInput({ name: 'imagine', user, options: [{ name: 'prompt', type: 3, value: 'x' }] });
    const r = await routed;
    clock.advance(15 * MINUTE);
    // our rules believe the token has 5 more minutes; Discord disagrees
    const s = new DiscordUpdateSink({
      bot: { updateRoute: async (jobId, data) => { routeUpdates.push([jobId, data]); } },
      routes: new DiscordRoutes(client.rest), log: pino({ level: 'silent' }), clock, timing: { tokenTtlMs: 21 * MINUTE },
    });
    const job = nextJob++;
    await s.deliver(update(job, r, 'succeeded', result(job)));
    assert.deepEqual(routeUpdates.filter(([id]) => id === job), [[job, { tokenDead: true }]]);
    const posted = fake.messagesIn(r.channelId!).at(-1)!;
    assert.ok(posted.content.startsWith(`<@${user.id}> 🖼️ Image #${job}`));
  });

  test('with no path left the delivery fails, so the core delivers it again after a restart; a foreign route is dropped', async () => {
    const user = fake.createUser('uma');
    fake.blockDirectMessages(user.id);
    const routed = deferAndRoute(true);
    const sent = fake.chatInput({ name: 'imagine', user, options: [{ name: 'prompt', type: 3, value: 'x' }] });
    const r = await routed;
    assert.equal(sent.originalMessage!.flags! & MESSAGE_FLAGS.ephemeral, MESSAGE_FLAGS.ephemeral);
    clock.advance(16 * MINUTE);
    await assert.rejects(sink().deliver(update(nextJob++, r, 'failed', { text: 'Job failed' })), DiscordDeliveryError);

    const since = fake.requests.length;
    const foreign = { ...update(nextJob++, r, 'succeeded', result(1)), route: { platform: 'discord' as const, data: { channelId: '1' } } };
    await sink().deliver(foreign);
    assert.equal(fake.requests.length, since, 'nothing was sent for a route this adapter did not write');
  });
});
