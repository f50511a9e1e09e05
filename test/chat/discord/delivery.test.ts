// Routing a job's messages across the 15-minute token: the pure rules, then the whole path with the real
// discord.js REST client against the fake Discord (progress by token, then through the channel; the result as a
// channel message that mentions only the requester; a DM when the channel is gone).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { Client, DiscordAPIError, Events, GatewayIntentBits, Routes, type Interaction } from 'discord.js';
import {
  deliverResult, finalTargets, INTERACTION_TOKEN_TTL_MS, isTokenDeadError, isTokenUsable, lateResultMessage, parseRoute,
  progressTarget, routeFromInteraction, serializeRoute, TOKEN_SAFETY_MARGIN_MS, tokenUsableUntil,
  type FinalTarget, type InteractionRoute,
} from '../../../src/chat/discord/delivery.ts';
import { EditThrottle } from '../../../src/chat/discord/edit-throttle.ts';
import { ShiftedClock } from './clocks.ts';
import { FakeDiscord } from './fake-discord.ts';

const T0 = 1_700_000_000_000;
const MINUTE = 60_000;

function route(overrides: Partial<InteractionRoute> = {}): InteractionRoute {
  return {
    applicationId: '100000000000000001', interactionId: '100000000000000002', token: 'tok', createdAt: T0,
    guildId: '100000000000000003', channelId: '100000000000000004', userId: '100000000000000005',
    ephemeral: false, replyMessageId: '100000000000000006', tokenDead: false, ...overrides,
  };
}

function apiError(code: number, status: number): DiscordAPIError {
  return new DiscordAPIError({ code, message: `error ${code}` }, code, status, 'PATCH', 'http://fake', { body: undefined, files: undefined });
}

describe('delivery rules (pure)', () => {
  test('the token is used until a minute before its 15 minutes are up, and never after Discord refused it', () => {
    assert.equal(INTERACTION_TOKEN_TTL_MS, 15 * MINUTE);
    assert.equal(tokenUsableUntil(route()), T0 + 14 * MINUTE);
    assert.equal(isTokenUsable(route(), T0 + 14 * MINUTE - 1), true);
    assert.equal(isTokenUsable(route(), T0 + 14 * MINUTE), false);
    assert.equal(isTokenUsable(route({ tokenDead: true }), T0 + 1), false);
    assert.equal(tokenUsableUntil(route(), { tokenTtlMs: 1_000, safetyMarginMs: 0 }), T0 + 1_000);
    assert.equal(TOKEN_SAFETY_MARGIN_MS, MINUTE);
  });

  test('progress: the reply by token, then the same message through the channel, else nothing', () => {
    const late = T0 + 20 * MINUTE;
    assert.deepEqual(progressTarget(route(), T0 + MINUTE), { via: 'interaction-reply' });
    assert.deepEqual(progressTarget(route(), late), { via: 'channel-edit', channelId: route().channelId, messageId: route().replyMessageId });
    assert.deepEqual(progressTarget(route({ ephemeral: true }), late), { via: 'none' }, 'ephemeral replies are out of the channel\'s reach');
    assert.deepEqual(progressTarget(route({ replyMessageId: null }), late), { via: 'none' });
  });

  test('result: reply → channel message → DM; no channel for ephemeral requests or DMs', () => {
    const { channelId, userId } = route();
    const early = T0 + MINUTE;
    const late = T0 + 20 * MINUTE;
    const channel: FinalTarget = { via: 'channel-message', channelId: channelId!, userId };
    const dm: FinalTarget = { via: 'direct-message', userId };
    assert.deepEqual(finalTargets(route(), early), [{ via: 'interaction-reply' }, channel, dm]);
    assert.deepEqual(finalTargets(route(), late), [channel, dm]);
    assert.deepEqual(finalTargets(route({ ephemeral: true }), early), [{ via: 'interaction-reply' }, dm]);
    assert.deepEqual(finalTargets(route({ ephemeral: true }), late), [dm]);
    assert.deepEqual(finalTargets(route({ guildId: null }), late), [dm]);
  });

  test('a late result mentions the requester in the channel and pings nobody else; in DMs nobody', () => {
    const channel = lateResultMessage({ via: 'channel-message', channelId: '1', userId: '42' }, 'done: a photo of <hugsy> with @everyone');
    assert.equal(channel.content, '<@42> done: a photo of <hugsy> with @everyone');
    assert.deepEqual(channel.allowedMentions, { parse: [], users: ['42'], repliedUser: false });
    const dm = lateResultMessage({ via: 'direct-message', userId: '42' }, 'done');
    assert.equal(dm.content, 'done');
    assert.deepEqual(dm.allowedMentions, { parse: [], repliedUser: false });
  });

  test('the route survives a round trip through storage; anything else is refused', () => {
    const stored = serializeRoute(route({ tokenDead: true }));
    assert.deepEqual(parseRoute(stored), route({ tokenDead: true }));
    assert.throws(() => parseRoute('{"token":"x"}'));
    assert.throws(() => parseRoute(serializeRoute(route({ userId: 'someone' }))));
  });

  test('deliverResult moves on when a path fails and marks a refused token dead', async () => {
    const tried: string[] = [];
    const outcome = await deliverResult(route(), T0 + MINUTE, async (target) => {
      tried.push(target.via);
      if (target.via === 'interaction-reply') throw apiError(50027, 401);
    });
    assert.deepEqual(tried, ['interaction-reply', 'channel-message']);
    assert.equal(outcome.delivered?.via, 'channel-message');
    assert.equal(outcome.route.tokenDead, true);
    assert.ok(isTokenDeadError(outcome.attempts[0]!.error));
    assert.equal(isTokenDeadError(apiError(10003, 404)), false);

    const nowhere = await deliverResult(route({ ephemeral: true }), T0 + 20 * MINUTE, async () => { throw apiError(50007, 403); });
    assert.equal(nowhere.delivered, null);
    assert.deepEqual(nowhere.attempts.map((a) => a.target.via), ['direct-message']);
  });
});

describe('delivery with the real discord.js client against the fake Discord', { timeout: 30_000 }, () => {
  const clock = new ShiftedClock();
  let fake: FakeDiscord;
  let client: Client;
  let png: Buffer;

  before(async () => {
    png = await sharp({ create: { width: 4, height: 4, channels: 3, background: { r: 0, g: 90, b: 200 } } }).png().toBuffer();
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

  /** The bot's side of a request: defer with the reply's id, and keep only the stored route. */
  function deferAndRoute(): Promise<InteractionRoute> {
    return new Promise((resolve, reject) => {
      client.once(Events.InteractionCreate, (interaction: Interaction) => {
        (async () => {
          assert.ok(interaction.isChatInputCommand());
          const response = await interaction.deferReply({ withResponse: true });
          const stored = routeFromInteraction(interaction, { ephemeral: false });
          return { ...stored, replyMessageId: response.resource?.message?.id ?? null };
        })().then(resolve, reject);
      });
    });
  }

  /** Sends progress along progressTarget using only the route and the REST client (as after a restart). */
  async function sendProgress(r: InteractionRoute, content: string): Promise<void> {
    const target = progressTarget(r, clock.now());
    if (target.via === 'interaction-reply') {
      await client.rest.patch(Routes.webhookMessage(r.applicationId, r.token, '@original'), { body: { content }, auth: false });
    } else if (target.via === 'channel-edit') {
      await client.rest.patch(Routes.channelMessage(target.channelId, target.messageId), { body: { content } });
    }
  }

  async function sendResult(r: InteractionRoute, target: FinalTarget, content: string): Promise<void> {
    const files = [{ name: 'result.png', data: png, contentType: 'image/png' }];
    if (target.via === 'interaction-reply') {
      await client.rest.patch(Routes.webhookMessage(r.applicationId, r.token, '@original'), {
        body: { content, attachments: [{ id: 0, filename: 'result.png' }], allowed_mentions: { parse: [] } }, files, auth: false,
      });
      return;
    }
    const message = lateResultMessage(target, content);
    const channelId = target.via === 'channel-message'
      ? target.channelId
      : ((await client.rest.post(Routes.userChannels(), { body: { recipient_id: target.userId } })) as { id: string }).id;
    await client.rest.post(Routes.channelMessages(channelId), {
      body: {
        content: message.content, attachments: [{ id: 0, filename: 'result.png' }],
        allowed_mentions: { parse: message.allowedMentions.parse, users: message.allowedMentions.users, replied_user: false },
      }, files,
    });
  }

  test('progress edits through the throttle reach the reply at the paced rate, the last state included', async () => {
    const user = fake.createUser('paula');
    const routed = deferAndRoute();
    const sent = fake.chatInput({ name: 'imagine', user, options: [{ name: 'prompt', type: 3, value: 'a cat' }] });
    const r = await routed;
    assert.equal(r.replyMessageId, sent.originalMessage?.id, 'with_response gave the reply\'s id');
    const since = fake.requests.length;
    const throttle = new EditThrottle<string>({ send: (s) => sendProgress(r, s), minIntervalMs: 300 });
    const started = Date.now();
    for (let step = 1; step <= 30; step++) {
      throttle.update(`step ${step}/30`);
      await new Promise((resolve) => setTimeout(resolve, 30));
    }
    await throttle.finish('step 30/30 — decoding');
    const elapsed = Date.now() - started;
    const patches = fake.requests.slice(since).filter((q) => q.method === 'PATCH');
    const gaps = patches.slice(1).map((q, i) => q.at - patches[i]!.at);
    assert.ok(patches.length >= 2 && patches.length <= elapsed / 300 + 1, `${patches.length} edits for 30 updates in ${elapsed} ms`);
    // Each edit starts 300 ms after the previous one finished, so it also arrives at least that far apart
    // (a millisecond of slack for timer versus wall-clock rounding).
    assert.ok(gaps.every((g) => g >= 299), `edits arrived ${gaps.join(', ')} ms apart`);
    assert.equal(sent.originalMessage?.content, 'step 30/30 — decoding');
  });

  test('a job that outlives the token: progress moves to the channel, the result is a channel message mentioning only the requester', async () => {
    const user = fake.createUser('quinn');
    const bystander = fake.createUser('rita');
    const routed = deferAndRoute();
    const sent = fake.chatInput({ name: 'teach', user });
    let r = await routed;
    await sendProgress(r, 'Training: step 10/400');
    assert.equal(sent.originalMessage?.content, 'Training: step 10/400');

    clock.advance(14 * MINUTE + 30_000);
    const since = fake.requests.length;
    await sendProgress(r, 'Training: step 390/400');
    const edit = fake.requests.slice(since).find((q) => q.method === 'PATCH')!;
    assert.equal(edit.route, `/channels/${r.channelId}/messages/${r.replyMessageId}`, 'edited through the channel, not the token');
    assert.equal(edit.auth, `Bot ${fake.token}`);
    assert.equal(sent.originalMessage?.content, 'Training: step 390/400', 'the same reply message shows the progress');

    clock.advance(2 * MINUTE);
    const outcome = await deliverResult(r, clock.now(), (target) => sendResult(r, target, `<${'hugsy'}> is ready — asked together with <@${bystander.id}>`));
    r = outcome.route;
    assert.equal(outcome.delivered?.via, 'channel-message');
    assert.equal(outcome.attempts.length, 1, 'the dead token was not even tried');
    const result = fake.messagesIn(r.channelId!).at(-1)!;
    assert.ok(result.content.startsWith(`<@${user.id}> `));
    assert.deepEqual(result.mentions.map((m) => m.id), [user.id], 'only the requester is pinged');
    assert.equal(result.attachments[0]?.filename, 'result.png');
    assert.equal(result.attachments[0]?.content_type, 'image/png');
    assert.equal(fake.requests.slice(since).filter((q) => q.route.startsWith('/webhooks/')).length, 0, 'no calls on the dead token');
  });

  test('when the channel is gone the result goes to the requester\'s DMs', async () => {
    const user = fake.createUser('sam');
    const studio = fake.defaultGuild.channelIds[1]!;
    const routed = deferAndRoute();
    fake.chatInput({ name: 'teach', user, channelId: studio });
    const r = await routed;
    clock.advance(16 * MINUTE);
    fake.removeChannel(studio);
    const outcome = await deliverResult(r, clock.now(), (target) => sendResult(r, target, 'Your concept <sam-dog> is ready.'));
    assert.deepEqual(outcome.attempts.map((a) => a.target.via), ['channel-message', 'direct-message']);
    assert.ok(outcome.attempts[0]!.error instanceof DiscordAPIError && outcome.attempts[0]!.error.code === 10003);
    assert.equal(outcome.delivered?.via, 'direct-message');
    const dm = fake.requests.find((q) => q.method === 'POST' && q.route === '/users/@me/channels' && q.body.recipient_id === user.id)!;
    const dmChannelId = (dm.response as { id: string }).id;
    const delivered = fake.messagesIn(dmChannelId).at(-1)!;
    assert.equal(delivered.content, 'Your concept <sam-dog> is ready.');
    assert.equal(delivered.attachments.length, 1);
  });

  test('a token Discord refuses early (401/50027) is marked dead and the result still arrives', async () => {
    const user = fake.createUser('tess');
    const routed = deferAndRoute();
    fake.chatInput({ name: 'imagine', user, options: [{ name: 'prompt', type: 3, value: 'x' }] });
    const r = await routed;
    clock.advance(15 * MINUTE);
    // Our clock believes the token has 5 more minutes; Discord disagrees.
    const outcome = await deliverResult(r, clock.now(), (target) => sendResult(r, target, 'done'), { tokenTtlMs: 21 * MINUTE });
    assert.deepEqual(outcome.attempts.map((a) => a.target.via), ['interaction-reply', 'channel-message']);
    assert.ok(isTokenDeadError(outcome.attempts[0]!.error));
    assert.equal(outcome.route.tokenDead, true);
    assert.deepEqual(progressTarget(outcome.route, clock.now(), { tokenTtlMs: 21 * MINUTE }).via, 'channel-edit');
  });
});
