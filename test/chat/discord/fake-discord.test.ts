// The real discord.js 14 client against the project's fake Discord: gateway login, every interaction kind the
// bot uses, files both ways, Discord's deadlines and rate limits. If these pass, adapter tests built on the fake
// exercise the same requests discord.js makes against the real API.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import {
  AttachmentBuilder, ChannelType, Client, DiscordAPIError, Events, FileUploadBuilder, GatewayIntentBits, InteractionContextType,
  LabelBuilder, MessageFlags, ModalBuilder, PermissionFlagsBits, Routes, type Interaction, type TextChannel,
} from 'discord.js';
import { commands } from '../../../commands/index.ts';
import { buttonId, parseButtonId } from '../../../src/chat/buttons.ts';
import { generationButtons } from '../../../src/chat/messages.ts';
import { TEACH_FROM_MESSAGE, teachFromMessageModal, TEACH_MODAL_FIELDS } from '../../../src/chat/discord/application-commands.ts';
import { attachmentHostsFor, downloadAttachments, messageAttachmentRefs } from '../../../src/chat/discord/attachments.ts';
import { buttonRows } from '../../../src/chat/discord/render.ts';
import { isTokenDeadError } from '../../../src/chat/discord/delivery.ts';
import { ShiftedClock } from './clocks.ts';
import { CALLBACK_TYPE, FakeDiscord, MESSAGE_FLAGS } from './fake-discord.ts';

const clock = new ShiftedClock();
let fake: FakeDiscord;
let client: Client;
let png: Buffer;

before(async () => {
  png = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 200, g: 30, b: 60 } } }).png().toBuffer();
  fake = await FakeDiscord.start({ clock, heartbeatIntervalMs: 200, guilds: [{ name: 'Fake Server', channels: ['general', 'art'] }] });
  client = new Client({ intents: [GatewayIntentBits.Guilds], rest: { api: fake.apiUrl } });
  const ready = new Promise((resolve) => client.once(Events.ClientReady, resolve));
  await client.login(fake.token);
  await ready;
}, { timeout: 15_000 });

after(async () => {
  await client?.destroy();
  await fake?.stop();
});

/** Runs `handle` on the next interaction the client receives and resolves with its result (or its error). */
function nextInteraction<T>(handle: (interaction: Interaction) => Promise<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    client.once(Events.InteractionCreate, (interaction) => { handle(interaction).then(resolve, reject); });
  });
}

async function download(url: string): Promise<Buffer> {
  const response = await fetch(url);
  assert.equal(response.status, 200, `GET ${url}`);
  return Buffer.from(await response.arrayBuffer());
}

describe('the real discord.js client against the fake Discord', { timeout: 30_000 }, () => {
  test('logs in: REST pointed at the fake, IDENTIFY with the token, READY with application, user and server, heartbeats ACKed', async () => {
    const gatewayBot = fake.requests.find((r) => r.route === '/gateway/bot');
    assert.ok(gatewayBot, 'discord.js asked the fake for the gateway');
    assert.equal(gatewayBot.path, '/api/v10/gateway/bot');
    assert.equal(gatewayBot.auth, `Bot ${fake.token}`);
    assert.equal(fake.identifies.length, 1);
    assert.equal(fake.identifies[0].token, fake.token);
    assert.equal(fake.identifies[0].intents, GatewayIntentBits.Guilds);
    assert.equal(client.user?.id, fake.botUser.id);
    assert.equal(client.application?.id, fake.applicationId);
    const guild = client.guilds.cache.get(fake.defaultGuild.id);
    assert.equal(guild?.name, 'Fake Server');
    assert.ok(client.channels.cache.get(fake.defaultChannelId)?.isTextBased());
    const deadline = Date.now() + 3_000;
    while (fake.heartbeatsAcked < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(fake.heartbeatsAcked >= 2, 'heartbeats were sent and acknowledged');
    assert.ok(client.ws.ping >= 0, 'the client measured a heartbeat round trip');
  });

  test('slash command: attachment from the CDN, deferReply (type 5) within 3 s, progress edit, PNG edit as multipart, followUp', async () => {
    const user = fake.createUser('alice');
    const image = fake.hostAttachment({ filename: 'hugsy.png', bytes: png, width: 8 });
    const handled = nextInteraction(async (interaction) => {
      assert.ok(interaction.isChatInputCommand());
      const attachment = interaction.options.getAttachment('image1', true);
      const bytes = await download(attachment.url);
      await interaction.deferReply();
      await interaction.editReply('Queued: position 1');
      const final = await interaction.editReply({
        content: 'Done', files: [new AttachmentBuilder(png, { name: 'result.png' })], components: buttonRows(generationButtons(42)),
      });
      const extra = await interaction.followUp({ content: 'Only you can see this', flags: MessageFlags.Ephemeral });
      return { name: interaction.options.getString('name'), bytes, attachmentSize: attachment.size, finalId: final.id, extraId: extra.id, userId: interaction.user.id };
    });
    const sent = fake.chatInput({
      name: 'teach', user,
      options: [{ name: 'name', type: 3, value: 'hugsy' }, { name: 'category', type: 3, value: 'teddy' }, { name: 'image1', type: 11, value: image.id }],
      attachments: [image],
    });
    const result = await handled;

    assert.equal(result.name, 'hugsy');
    assert.equal(result.userId, user.id);
    assert.deepEqual(result.bytes, png, 'the attachment URL served the hosted bytes');
    assert.equal(result.attachmentSize, png.byteLength);

    const callback = sent.callback!;
    assert.equal(callback.type, CALLBACK_TYPE.deferredChannelMessage);
    assert.ok(callback.delayMs < 3_000, `deferred after ${callback.delayMs} ms`);
    const callbackRequest = fake.requests.find((r) => r.route === `/interactions/${sent.id}/${sent.token}/callback`)!;
    assert.equal(callbackRequest.auth, null, 'interaction callbacks carry no Authorization header');
    assert.equal(callbackRequest.query.with_response, 'false');
    assert.deepEqual(callbackRequest.body, { type: 5, data: { flags: 0 } });

    const edits = fake.requests.filter((r) => r.method === 'PATCH' && r.path === `/api/v10/webhooks/${fake.applicationId}/${sent.token}/messages/@original`);
    assert.equal(edits.length, 2, 'two edits of @original (decoded from %40original)');
    assert.equal(edits[0]!.body.content, 'Queued: position 1');
    assert.ok(edits[0]!.contentType?.startsWith('application/json'));
    assert.ok(edits[1]!.contentType?.startsWith('multipart/form-data'));
    assert.equal(edits[1]!.files.length, 1);
    const file = edits[1]!.files[0]!;
    assert.equal(file.field, 'files[0]');
    assert.equal(file.filename, 'result.png');
    assert.equal(file.contentType, 'image/png');
    assert.deepEqual(file.bytes, png);
    assert.equal(edits[1]!.body.attachments[0].id, '0', 'payload_json references the uploaded file');

    const original = sent.originalMessage!;
    assert.equal(original.id, result.finalId, 'editReply returned the reply message');
    assert.equal(original.content, 'Done');
    assert.equal(original.flags! & MESSAGE_FLAGS.loading, 0, 'the loading state ended with the first edit');
    assert.equal(original.attachments.length, 1);
    assert.deepEqual(await download(original.attachments[0]!.url), png, 'the uploaded image is served back by the CDN');
    const buttons = (original.components![0] as { components: Array<{ custom_id: string }> }).components;
    assert.deepEqual(buttons.map((b) => parseButtonId(b.custom_id)), ['reroll', 'vary', 'info', 'delete'].map((action) => ({ action, id: 42 })));
    assert.equal(fake.messageHistory(original.id).length, 3, 'created deferred, then edited twice');

    const followup = sent.followups[0]!;
    assert.equal(followup.id, result.extraId);
    assert.equal(followup.flags! & MESSAGE_FLAGS.ephemeral, MESSAGE_FLAGS.ephemeral);
  });

  test('autocomplete: the focused option arrives and respond() answers with type 8 and the choices', async () => {
    const user = fake.createUser('bob');
    const handled = nextInteraction(async (interaction) => {
      assert.ok(interaction.isAutocomplete());
      const focused = interaction.options.getFocused(true);
      await interaction.respond([{ name: `${focused.value}gsy>`, value: `${focused.value}gsy>` }]);
      return focused;
    });
    const sent = fake.autocomplete({ name: 'imagine', user, options: [{ name: 'prompt', type: 3, value: 'a photo of <hu', focused: true }] });
    const focused = await handled;
    assert.equal(focused.name, 'prompt');
    assert.equal(focused.value, 'a photo of <hu');
    assert.equal(sent.callback?.type, CALLBACK_TYPE.autocompleteResult);
    assert.deepEqual(sent.callback?.data.choices, [{ name: 'a photo of <hugsy>', value: 'a photo of <hugsy>' }]);
  });

  test('button: a click on a bot message arrives with its custom id, deferUpdate (type 6), editReply edits that message', async () => {
    const channel = client.channels.cache.get(fake.defaultChannelId) as TextChannel;
    const posted = await channel.send({ content: 'Your image', components: buttonRows(generationButtons(7)) });
    const user = fake.createUser('carol');
    const handled = nextInteraction(async (interaction) => {
      assert.ok(interaction.isButton());
      await interaction.deferUpdate();
      await interaction.editReply({ content: 'Re-rolling…', components: [] });
      return { customId: interaction.customId, messageId: interaction.message.id };
    });
    const rerollId = buttonId('reroll', 7);
    assert.ok(JSON.stringify(fake.message(posted.id)!.components).includes(rerollId), 'the posted message carries the button');
    const sent = fake.button({ user, message: posted.id, customId: rerollId });
    const result = await handled;
    assert.deepEqual(parseButtonId(result.customId), { action: 'reroll', id: 7 });
    assert.equal(result.messageId, posted.id);
    assert.equal(sent.callback?.type, CALLBACK_TYPE.deferredUpdateMessage);
    const edited = fake.message(posted.id)!;
    assert.equal(edited.content, 'Re-rolling…');
    assert.deepEqual(edited.components, []);
    const post = fake.requests.find((r) => r.method === 'POST' && r.route === `/channels/${fake.defaultChannelId}/messages`)!;
    assert.equal(post.auth, `Bot ${fake.token}`);
  });

  test('message command: resolved.messages carries the images; showModal (type 9); the modal submit brings the fields back', async () => {
    const author = fake.createUser('dana');
    const images = [
      fake.hostAttachment({ filename: 'one.png', bytes: png }),
      fake.hostAttachment({ filename: 'two.png', bytes: Buffer.concat([png, Buffer.from([0])]) }),
    ];
    const message = fake.postUserMessage({ author, content: 'my teddy', attachments: images });
    const opened = nextInteraction(async (interaction) => {
      assert.ok(interaction.isMessageContextMenuCommand());
      assert.equal(interaction.commandName, TEACH_FROM_MESSAGE);
      const refs = messageAttachmentRefs(interaction.targetMessage);
      await interaction.showModal(teachFromMessageModal(interaction.targetId, commands.find((c) => c.description.name === 'teach')!.description));
      return refs;
    });
    const command = fake.messageCommand({ name: TEACH_FROM_MESSAGE, user: author, message });
    const refs = await opened;
    assert.deepEqual(refs.map((r) => r.name), ['one.png', 'two.png']);
    const downloaded = await downloadAttachments(refs, { allowedHosts: attachmentHostsFor(fake.apiUrl) });
    assert.deepEqual(downloaded.map((d) => d.bytes.byteLength), [png.byteLength, png.byteLength + 1]);
    assert.equal(command.callback?.type, CALLBACK_TYPE.modal);
    assert.equal(command.callback?.data.custom_id, `teach-msg:${message.id}`);

    const submitted = nextInteraction(async (interaction) => {
      assert.ok(interaction.isModalSubmit());
      const fields = {
        customId: interaction.customId,
        name: interaction.fields.getTextInputValue(TEACH_MODAL_FIELDS.name),
        category: interaction.fields.getTextInputValue(TEACH_MODAL_FIELDS.category),
      };
      await interaction.reply({ content: `Teaching <${fields.name}>…`, flags: MessageFlags.Ephemeral });
      return fields;
    });
    const submit = fake.modalSubmit({ user: author, opened: command, values: { name: 'hugsy', category: 'teddy bear' } });
    assert.deepEqual(await submitted, { customId: `teach-msg:${message.id}`, name: 'hugsy', category: 'teddy bear' });
    assert.equal(submit.callback?.type, CALLBACK_TYPE.channelMessage);
    assert.equal(submit.originalMessage?.flags! & MESSAGE_FLAGS.ephemeral, MESSAGE_FLAGS.ephemeral);
  });

  test('a modal with a file upload: the submitted files arrive as attachments served by the CDN', async () => {
    const user = fake.createUser('gwen');
    const opened = nextInteraction(async (interaction) => {
      assert.ok(interaction.isChatInputCommand());
      await interaction.showModal(new ModalBuilder().setCustomId('teach-upload').setTitle('Teach a concept').addLabelComponents(
        new LabelBuilder().setLabel('Images').setFileUploadComponent(new FileUploadBuilder().setCustomId('images').setMinValues(1).setMaxValues(10))));
    });
    const command = fake.chatInput({ name: 'teach', user });
    await opened;
    const files = [fake.hostAttachment({ filename: 'a.png', bytes: png }), fake.hostAttachment({ filename: 'b.png', bytes: png })];
    const submitted = nextInteraction(async (interaction) => {
      assert.ok(interaction.isModalSubmit());
      const uploaded = interaction.fields.getUploadedFiles('images', true);
      await interaction.deferReply();
      return [...uploaded.values()].map((a) => ({ name: a.name, url: a.url, ephemeral: a.ephemeral }));
    });
    fake.modalSubmit({ user, opened: command, values: { images: files } });
    const uploaded = await submitted;
    assert.deepEqual(uploaded.map((u) => [u.name, u.ephemeral]), [['a.png', true], ['b.png', true]]);
    assert.deepEqual(await download(uploaded[1]!.url), png);
  });

  test('in the bot\'s DMs: no guild, a user instead of a member, context BotDM, and replies work', async () => {
    const user = fake.createUser('hana');
    const handled = nextInteraction(async (interaction) => {
      assert.ok(interaction.isChatInputCommand());
      await interaction.deferReply();
      await interaction.editReply('Your personal concepts: none yet');
      return {
        guildId: interaction.guildId, member: interaction.member, userId: interaction.user.id, context: interaction.context,
        channelId: interaction.channelId,
      };
    });
    const sent = fake.chatInput({ name: 'concepts', user, dm: true });
    const seen = await handled;
    assert.equal(seen.guildId, null);
    assert.equal(seen.member, null);
    assert.equal(seen.userId, user.id);
    assert.equal(seen.context, InteractionContextType.BotDM);
    assert.equal(fake.channel(seen.channelId!)?.type, ChannelType.DM);
    assert.equal(sent.originalMessage?.content, 'Your personal concepts: none yet');
  });

  test('member permissions: an admin carries Administrator, an ordinary member does not', async () => {
    const permissionsOf = async (admin: boolean) => {
      const handled = nextInteraction(async (interaction) => {
        assert.ok(interaction.isChatInputCommand());
        await interaction.reply({ content: 'ok', flags: MessageFlags.Ephemeral });
        return interaction.memberPermissions?.has(PermissionFlagsBits.Administrator) ?? null;
      });
      fake.chatInput({ name: 'queue', user: fake.createUser(admin ? 'admin' : 'member'), admin });
      return handled;
    };
    assert.equal(await permissionsOf(true), true);
    assert.equal(await permissionsOf(false), false);
  });

  test('deadlines: a callback after 3 s is 404/10062, a second callback 400/40060, the token after 15 min 401/50027', async () => {
    const user = fake.createUser('erin');

    const late = nextInteraction(async (interaction) => {
      assert.ok(interaction.isChatInputCommand());
      clock.advance(3_001);
      await interaction.deferReply();
    });
    fake.chatInput({ name: 'queue', user });
    await assert.rejects(late, (error: unknown) => error instanceof DiscordAPIError && error.status === 404 && error.code === 10062);

    const twice = nextInteraction(async (interaction) => {
      await (interaction as { deferReply(): Promise<unknown> }).deferReply();
      await client.rest.post(Routes.interactionCallback(interaction.id, interaction.token), { body: { type: 5 }, auth: false });
    });
    fake.chatInput({ name: 'queue', user });
    await assert.rejects(twice, (error: unknown) => error instanceof DiscordAPIError && error.status === 400 && error.code === 40060);

    const expired = nextInteraction(async (interaction) => {
      assert.ok(interaction.isChatInputCommand());
      await interaction.deferReply();
      await interaction.editReply('still working');
      clock.advance(15 * 60_000);
      await interaction.editReply('done');
    });
    const sent = fake.chatInput({ name: 'imagine', user, options: [{ name: 'prompt', type: 3, value: 'a cat' }] });
    let surfaced: unknown;
    await assert.rejects(expired, (error: unknown) => { surfaced = error; return error instanceof DiscordAPIError && error.status === 401 && error.code === 50027; });
    assert.ok(isTokenDeadError(surfaced));
    assert.equal(sent.originalMessage?.content, 'still working', 'the expired edit changed nothing');

    // The 401 came from an unauthenticated webhook route, so discord.js kept the bot token: bot routes still work.
    const channel = client.channels.cache.get(fake.defaultChannelId) as TextChannel;
    const message = await channel.send('bot token still valid');
    assert.equal(fake.message(message.id)?.content, 'bot token still valid');
  });

  test('429 with Retry-After: discord.js waits and retries the edit', async () => {
    const user = fake.createUser('finn');
    fake.rateLimit({ method: 'PATCH', route: /\/messages\/@original$/, retryAfterMs: 300 });
    const handled = nextInteraction(async (interaction) => {
      assert.ok(interaction.isChatInputCommand());
      await interaction.deferReply();
      const started = Date.now();
      await interaction.editReply('after the limit');
      return Date.now() - started;
    });
    const sent = fake.chatInput({ name: 'concepts', user });
    const waited = await handled;
    const patches = fake.requests.filter((r) => r.method === 'PATCH' && r.route.includes(sent.token));
    assert.deepEqual(patches.map((r) => r.status), [429, 200]);
    assert.ok(waited >= 250, `waited ${waited} ms before retrying`);
    assert.equal(sent.originalMessage?.content, 'after the limit');
  });

  test('channel and DM messages with the bot token: allowed_mentions decides who is pinged; a deleted channel is 404/10003', async () => {
    const alice = fake.createUser('alice2');
    const mallory = fake.createUser('mallory');
    const created = await client.rest.post(Routes.channelMessages(fake.defaultChannelId), {
      body: { content: `<@${alice.id}> your image is ready (prompt: hi <@${mallory.id}> @everyone)`, allowed_mentions: { parse: [], users: [alice.id] } },
    }) as { id: string };
    const stored = fake.message(created.id)!;
    assert.deepEqual(stored.mentions.map((u) => u.id), [alice.id]);
    assert.equal(stored.mention_everyone, false);

    const dm = await (await client.users.fetch(alice.id)).createDM();
    await dm.send('Your concept is trained.');
    const open = fake.requests.find((r) => r.method === 'POST' && r.route === '/users/@me/channels')!;
    assert.deepEqual(open.body, { recipient_id: alice.id });
    assert.equal(fake.messagesIn(dm.id).at(-1)?.content, 'Your concept is trained.');

    const art = fake.defaultGuild.channelIds[1]!;
    fake.removeChannel(art);
    await assert.rejects(client.rest.post(Routes.channelMessages(art), { body: { content: 'x' } }),
      (error: unknown) => error instanceof DiscordAPIError && error.status === 404 && error.code === 10003);
    const deadline = Date.now() + 2_000;
    while (client.channels.cache.has(art) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(client.channels.cache.has(art), false, 'CHANNEL_DELETE reached the client');
  });

  test('a restarted bot (a new client, a new gateway session) gets clicks on buttons it posted before', async () => {
    const channel = client.channels.cache.get(fake.defaultChannelId) as TextChannel;
    const posted = await channel.send({ content: 'Before the restart', components: buttonRows(generationButtons(99)) });
    await client.destroy();
    const closedBy = Date.now() + 2_000;
    while (fake.gatewaySessions > 0 && Date.now() < closedBy) await new Promise((r) => setTimeout(r, 20));
    assert.equal(fake.gatewaySessions, 0, 'the old session closed');
    client = new Client({ intents: [GatewayIntentBits.Guilds], rest: { api: fake.apiUrl } });
    const ready = new Promise((resolve) => client.once(Events.ClientReady, resolve));
    await client.login(fake.token);
    await ready;
    assert.equal(fake.identifies.length, 2, 'the new process identified afresh');
    const handled = nextInteraction(async (interaction) => {
      assert.ok(interaction.isButton());
      await interaction.deferReply({ flags: MessageFlags.Ephemeral });
      await interaction.editReply('Seed 1234, 30 steps, guidance 7.5');
      return parseButtonId(interaction.customId);
    });
    const sent = fake.button({ user: fake.createUser('ivy'), message: posted.id, customId: buttonId('info', 99) });
    assert.deepEqual(await handled, { action: 'info', id: 99 });
    assert.equal(sent.callback?.type, CALLBACK_TYPE.deferredChannelMessage);
    assert.equal(sent.originalMessage?.content, 'Seed 1234, 30 steps, guidance 7.5');
    assert.notEqual(sent.originalMessage?.id, posted.id, 'a new ephemeral reply, the image message untouched');
  });

  test('bot routes refuse requests without the bot token', async () => {
    const response = await fetch(`${fake.apiUrl}/v10/gateway/bot`);
    assert.equal(response.status, 401);
    assert.equal(((await response.json()) as { code: number }).code, 0);
  });
});
