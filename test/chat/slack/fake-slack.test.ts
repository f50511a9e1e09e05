// The real @slack/bolt 5 app (built by createBoltApp from the real config) driven through correctly signed
// requests, talking to the project's fake Slack Web API. The listeners registered here stand in for the adapter's
// Phase-2 wiring (no core yet): they use the adapter's Block Kit builders, file downloader and update throttle,
// so the test proves those parts work with Bolt and with Slack's wire formats end to end.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LogLevel, type App, type BlockAction, type ButtonAction } from '@slack/bolt';
import { FakeSlack, type LoggedRequest } from './fake-slack.ts';
import { SlackRequestSender, blockActionsPayload, eventCallbackBody, signRequest, slashCommandBody, sendSigned, FORM, type Workspace } from './signed-requests.ts';
import { pngImage, jpegImage } from './test-images.ts';
import { slackConfigFromEnv, type SlackConfig } from '../../../src/chat/slack/config.ts';
import { createBoltApp, startBoltApp } from '../../../src/chat/slack/app.ts';
import {
  BUTTON_ACTION_PATTERN, TEACH_INPUTS, TEACH_MODAL_CALLBACK_ID, TEACH_SHORTCUT_CALLBACK_ID, decodeTeachOrigin,
  errorMessage, parseButtonActionId, progressMessage, readTeachSubmission, resultMessage, teachModal, teachModalErrors,
  type SlackFileInfo,
} from '../../../src/chat/slack/blocks.ts';
import { SlackFileError, downloadSlackImages, type DownloadedImage } from '../../../src/chat/slack/files.ts';
import { ChatUpdateThrottle, type MessageRef } from '../../../src/chat/slack/throttle.ts';

const SIGNING_SECRET = 'test-signing-secret-0123456789abcdef';
const CHANNEL = 'C0GENERAL1';
const ANA = 'U0ANA00001';
const BOB = 'U0BOB00001';
const ADMIN = 'U0ADM00001';
const UPDATE_INTERVAL_MS = 100;
const IMAGINE_STEPS = 20;
const PROGRESS_BURST = 5;

interface Seen {
  mentions: Array<{ user: string; fileIds: string[] }>;
  downloads: DownloadedImage[][];
  downloadErrors: SlackFileError[];
  clicks: Array<{ action: string; id: string; user: string }>;
  viewsOpenErrors: string[];
}

/** Listeners standing in for the Phase-2 adapter: commands, modal, shortcut and buttons. */
function installFlows(app: App, config: SlackConfig, seen: Seen): ChatUpdateThrottle<{ text: string; blocks: unknown[] }> {
  const throttle = new ChatUpdateThrottle<{ text: string; blocks: unknown[] }>({
    minIntervalMs: UPDATE_INTERVAL_MS,
    send: async (m: MessageRef, body) => { await app.client.chat.update({ channel: m.channel, ts: m.ts, text: body.text, blocks: body.blocks as never }); },
  });
  const requesterOf = new Map<string, string>();

  app.command('/teach', async ({ ack, command, client }) => {
    await ack();
    const [name, category] = command.text.trim().split(/\s+/);
    try {
      await client.views.open({
        trigger_id: command.trigger_id,
        view: teachModal({ origin: { channel: command.channel_id }, ...(name ? { name } : {}), ...(category ? { category } : {}) }),
      });
    } catch (error) {
      seen.viewsOpenErrors.push((error as { data?: { error?: string } }).data?.error ?? String(error));
    }
  });

  app.shortcut(TEACH_SHORTCUT_CALLBACK_ID, async ({ ack, shortcut, client }) => {
    await ack();
    if (shortcut.type !== 'message_action') return;
    const files = ((shortcut.message as { files?: SlackFileInfo[] }).files ?? []).filter((f) => f.mimetype?.startsWith('image/'));
    await client.views.open({
      trigger_id: shortcut.trigger_id,
      view: teachModal({
        origin: { channel: shortcut.channel.id, messageTs: shortcut.message.ts, fileIds: files.map((f) => f.id) },
        imagesFromMessage: files.length,
      }),
    });
  });

  app.view(TEACH_MODAL_CALLBACK_ID, async ({ ack, view, body, client }) => {
    const submission = readTeachSubmission(view);
    const origin = submission.origin;
    const fileRefs: SlackFileInfo[] = submission.files.length > 0 ? submission.files : (origin?.fileIds ?? []).map((id) => ({ id }));
    if (!origin || fileRefs.length === 0) {
      await ack(teachModalErrors({ images: 'Add at least one image.' }));
      return;
    }
    await ack();
    let images: DownloadedImage[];
    try {
      images = await downloadSlackImages(fileRefs, {
        botToken: config.botToken,
        trustedOrigins: [new URL(config.apiUrl).origin],
        fileInfo: async (id) => (await client.files.info({ file: id })).file as SlackFileInfo,
      });
    } catch (error) {
      if (!(error instanceof SlackFileError)) throw error;
      seen.downloadErrors.push(error);
      await client.chat.postEphemeral({ channel: origin.channel, user: body.user.id, ...errorMessage(`Could not teach <${submission.name}>`, error.message) });
      return;
    }
    seen.downloads.push(images);
    const title = `Teaching <${submission.name}> (${submission.category})`;
    const posted = await client.chat.postMessage({ channel: origin.channel, ...progressMessage({ title, status: 'Queued, position 1', cancelJobId: 'job-teach-1' }) });
    const ref = { workspace: body.team!.id, channel: origin.channel, ts: posted.ts! };
    await throttle.finish(ref, progressMessage({ title, status: `Done: use it as <${submission.name}> in /imagine` }));
  });

  app.command('/imagine', async ({ ack, command, client, respond }) => {
    await ack();
    await respond({ response_type: 'ephemeral', text: 'Queued, position 1' });
    const generationId = 'gen-1';
    requesterOf.set(generationId, command.user_id);
    const title = `Imagining for ${command.user_name}`;
    const posted = await client.chat.postMessage({ channel: command.channel_id, ...progressMessage({ title, status: 'Starting', fraction: 0, cancelJobId: 'job-img-1' }) });
    const ref = { workspace: command.team_id, channel: command.channel_id, ts: posted.ts! };
    // Progress arrives in bursts (as sampler steps do), faster than the throttle lets edits through.
    for (let step = 1; step <= IMAGINE_STEPS; step++) {
      throttle.update(ref, progressMessage({ title, status: `Step ${step} of ${IMAGINE_STEPS}`, fraction: step / IMAGINE_STEPS, cancelJobId: 'job-img-1' }));
      if (step % PROGRESS_BURST === 0) await new Promise((r) => setTimeout(r, UPDATE_INTERVAL_MS / 2));
    }
    await client.files.uploadV2({
      channel_id: command.channel_id, thread_ts: posted.ts!, filename: 'perfusion-gen-1.png',
      file: Buffer.from(await pngImage(24, 24, [10, 200, 90])), initial_comment: command.text, title: 'gen-1',
    });
    await throttle.finish(ref, resultMessage({ generationId, prompt: command.text, details: 'seed 42 · 20 steps', requesterUserId: command.user_id }));
  });

  app.event('app_mention', async ({ event }) => {
    const files = (event as { files?: SlackFileInfo[] }).files ?? [];
    seen.mentions.push({ user: event.user ?? '', fileIds: files.map((f) => f.id) });
  });

  app.action<BlockAction<ButtonAction>>(BUTTON_ACTION_PATTERN, async ({ ack, action, body, client, respond }) => {
    await ack();
    const parsed = parseButtonActionId(action.action_id)!;
    seen.clicks.push({ ...parsed, user: body.user.id });
    if (parsed.action === 'delete') {
      const { user } = await client.users.info({ user: body.user.id });
      if (requesterOf.get(parsed.id) !== body.user.id && !user?.is_admin) {
        await respond({ response_type: 'ephemeral', replace_original: false, text: 'Only the person who asked for this image or an admin can delete it.' });
        return;
      }
      await client.chat.delete({ channel: body.container.channel_id as string, ts: body.container.message_ts as string });
      return;
    }
    await respond({ response_type: 'ephemeral', replace_original: false, text: `${parsed.action} queued for ${parsed.id}` });
  });
  return throttle;
}

function viewOf(r: LoggedRequest): { private_metadata: string; blocks: Array<Record<string, any>> } {
  return r.args.view as { private_metadata: string; blocks: Array<Record<string, any>> };
}

describe('real Bolt 5 app against the fake Slack API (HTTP receiver)', () => {
  let fake: FakeSlack;
  let app: App;
  let config: SlackConfig;
  let sender: SlackRequestSender;
  let workspace: Workspace;
  let throttle: ChatUpdateThrottle<{ text: string; blocks: unknown[] }>;
  let skewMs = 0;
  const seen: Seen = { mentions: [], downloads: [], downloadErrors: [], clicks: [], viewsOpenErrors: [] };

  before(async () => {
    fake = await FakeSlack.start({ now: () => Date.now() + skewMs });
    fake.addUser({ id: ANA, name: 'ana' });
    fake.addUser({ id: BOB, name: 'bob' });
    fake.addUser({ id: ADMIN, name: 'admin', is_admin: true });
    config = slackConfigFromEnv({ SLACK_BOT_TOKEN: fake.botToken, SLACK_SIGNING_SECRET: SIGNING_SECRET, SLACK_API_URL: fake.apiUrl, SLACK_PORT: '0' })!;
    app = createBoltApp(config, { retries: 0, logLevel: LogLevel.ERROR });
    throttle = installFlows(app, config, seen);
    const port = await startBoltApp(app, config, { port: 0, host: '127.0.0.1' });
    workspace = { teamId: fake.teamId, teamDomain: fake.teamDomain, appId: fake.appId };
    sender = new SlackRequestSender(`http://127.0.0.1:${port}/slack/events`, SIGNING_SECRET, workspace);
  });

  after(async () => {
    await throttle.idle();
    throttle.close();
    await app.stop();
    await fake.close();
  });

  it('starts by verifying the token with auth.test', async () => {
    const call = await fake.waitFor('auth.test');
    assert.equal(call.authorization, `Bearer ${fake.botToken}`);
  });

  it('teach: /teach is acknowledged within 3 s and opens the modal with a file input for up to 10 images', async () => {
    const before = fake.lastSeq;
    const res = await sender.command({ command: '/teach', text: 'hugsy teddy', userId: ANA, channelId: CHANNEL, triggerId: fake.newTriggerId(), responseUrl: fake.newResponseUrl() });
    assert.equal(res.status, 200);
    assert.ok(res.elapsedMs < 3000, `ack took ${res.elapsedMs} ms`);
    const open = await fake.waitFor('views.open', () => true, { after: before });
    assert.deepEqual((open.response as { ok: boolean }).ok, true);
    const view = viewOf(open);
    const fileInput = view.blocks.find((b) => b.block_id === TEACH_INPUTS.images.block)!.element;
    assert.equal(fileInput.type, 'file_input');
    assert.equal(fileInput.max_files, 10);
    assert.deepEqual(fileInput.filetypes, ['png', 'jpg', 'jpeg', 'webp']);
    assert.equal(view.blocks.find((b) => b.block_id === TEACH_INPUTS.name.block)!.element.initial_value, 'hugsy');
    assert.equal(view.blocks.find((b) => b.block_id === TEACH_INPUTS.category.block)!.element.initial_value, 'teddy');
    assert.deepEqual(decodeTeachOrigin(view.private_metadata), { channel: CHANNEL });
  });

  it('teach: the modal submission with files → files downloaded with the bot token → progress message → done', async () => {
    const png = await pngImage(20, 20);
    const jpeg = await jpegImage(18, 18);
    const f1 = fake.addFile({ name: 'hugsy-1.png', bytes: png, user: ANA });
    const f2 = fake.addFile({ name: 'hugsy-2.jpg', bytes: jpeg, user: ANA });
    const before = fake.lastSeq;
    const res = await sender.viewSubmission({
      userId: ANA, triggerId: fake.newTriggerId(), callbackId: TEACH_MODAL_CALLBACK_ID,
      privateMetadata: JSON.stringify({ channel: CHANNEL }),
      values: {
        [TEACH_INPUTS.name.block]: { [TEACH_INPUTS.name.action]: { type: 'plain_text_input', value: 'hugsy' } },
        [TEACH_INPUTS.category.block]: { [TEACH_INPUTS.category.action]: { type: 'plain_text_input', value: 'teddy' } },
        [TEACH_INPUTS.images.block]: { [TEACH_INPUTS.images.action]: { type: 'file_input', files: [f1, f2] } },
      },
    });
    assert.equal(res.status, 200);
    assert.equal(res.text, '', 'an empty ack closes the modal');
    assert.ok(res.elapsedMs < 3000);

    const done = await fake.waitFor('chat.update', (r) => String(r.args.text).includes('Done'), { after: before });
    const downloads = fake.requests('file').filter((r) => r.seq > before);
    assert.equal(downloads.length, 2);
    for (const d of downloads) {
      assert.equal(d.authorization, `Bearer ${fake.botToken}`);
      assert.match(d.path, /\/download\//, 'url_private_download is preferred');
    }
    const images = seen.downloads.at(-1)!;
    assert.deepEqual(images.map((i) => [i.name, i.contentType]), [['hugsy-1.png', 'image/png'], ['hugsy-2.jpg', 'image/jpeg']]);
    assert.deepEqual(images[0]!.bytes, png);
    assert.deepEqual(images[1]!.bytes, jpeg);

    const post = fake.calls('chat.postMessage').find((r) => r.seq > before)!;
    assert.equal(post.args.channel, CHANNEL);
    assert.match(String(post.args.text), /Teaching <hugsy> \(teddy\): Queued, position 1/);
    const message = fake.message(CHANNEL, (post.response as { ts: string }).ts)!;
    assert.equal(done.args.ts, message.ts);
    assert.match(String(message.text), /Done: use it as <hugsy>/);
    assert.equal(JSON.stringify(message.blocks).includes('cancel:'), false, 'the finished message has no cancel button');
  });

  it('imagine: ack, response_url reply, throttled chat.update progress, image uploaded with files.uploadV2 in the thread, buttons', async () => {
    const before = fake.lastSeq;
    const responseUrl = fake.newResponseUrl();
    const res = await sender.command({ command: '/imagine', text: 'a photo of <hugsy> on the beach', userId: ANA, channelId: CHANNEL, triggerId: fake.newTriggerId(), responseUrl });
    assert.equal(res.status, 200);
    assert.ok(res.elapsedMs < 3000);

    const final = await fake.waitFor('chat.update', (r) => JSON.stringify(r.args.blocks ?? '').includes('reroll:gen-1'), { after: before, timeoutMs: 10_000 });
    assert.deepEqual(fake.responsePosts(responseUrl).map((p) => [p.status, (p.body as { text: string }).text]), [[200, 'Queued, position 1']]);

    // progress: one message edited in place, never faster than the throttle allows, last state delivered
    const post = fake.calls('chat.postMessage').find((r) => r.seq > before)!;
    const ts = (post.response as { ts: string }).ts;
    const updates = fake.calls('chat.update').filter((r) => r.seq > before && r.args.ts === ts);
    // Each burst yields at most one immediate edit and one paced edit of its newest state, plus the final edit;
    // the exact pacing is checked with a manual clock in throttle.test.ts.
    assert.ok(updates.length >= 2 && updates.length <= 2 * (IMAGINE_STEPS / PROGRESS_BURST) + 1, `${updates.length} edits for ${IMAGINE_STEPS} progress events`);
    assert.ok(updates.slice(0, -1).every((u) => /: Step \d+ of 20 \(\d+%\)$/.test(String(u.args.text))));
    assert.equal(updates.at(-1), final, 'the result is the last edit');

    // files.uploadV2: three calls, bytes in a multipart part named "body", completed into the thread
    const getUrl = fake.calls('files.getUploadURLExternal').find((r) => r.seq > before)!;
    assert.equal(getUrl.args.filename, 'perfusion-gen-1.png');
    const upload = fake.requests('upload').find((r) => r.seq > getUrl.seq)!;
    assert.equal(upload.args.partName, 'body');
    assert.equal(Number(getUrl.args.length), upload.bytes!.length);
    const complete = fake.calls('files.completeUploadExternal').find((r) => r.seq > upload.seq)!;
    assert.equal(complete.args.channel_id, CHANNEL);
    assert.equal(complete.args.thread_ts, ts);
    assert.equal(complete.args.initial_comment, 'a photo of <hugsy> on the beach');
    assert.deepEqual(complete.args.files, [{ id: (getUrl.response as { file_id: string }).file_id, title: 'gen-1' }]);
    const uploaded = fake.uploads.at(-1)!;
    assert.deepEqual(uploaded.bytes.subarray(0, 8), new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    assert.deepEqual(fake.threadReplies(CHANNEL, ts).map((m) => m.files?.[0]?.id), [uploaded.file.id]);

    // the result message: the prompt escaped (no raw <…> that Slack would parse), the requester, four buttons
    const message = fake.message(CHANNEL, ts)!;
    const blocks = message.blocks as Array<Record<string, any>>;
    assert.match(blocks[0]!.text.text, new RegExp(`^<@${ANA}> \\*a photo of &lt;hugsy&gt; on the beach\\*`));
    assert.deepEqual(blocks[1]!.elements.map((e: { action_id: string }) => e.action_id), ['reroll:gen-1', 'variations:gen-1', 'info:gen-1', 'delete:gen-1']);
  });

  it('buttons: a click is acknowledged, parsed from its action_id and answered; delete is only for the requester or an admin', async () => {
    const [message] = [...fake.messages.values()].filter((m) => JSON.stringify(m.blocks ?? '').includes('reroll:gen-1'));
    assert.ok(message, 'the imagine test left a result message');
    const click = (user: string, actionId: string) => {
      const responseUrl = fake.newResponseUrl();
      return sender.blockAction({ userId: user, triggerId: fake.newTriggerId(), responseUrl, actionId, value: 'gen-1', channelId: CHANNEL, messageTs: message.ts })
        .then((res) => ({ res, responseUrl }));
    };

    const reroll = await click(ANA, 'reroll:gen-1');
    assert.equal(reroll.res.status, 200);
    assert.ok(reroll.res.elapsedMs < 3000);
    await fake.waitFor('POST', (r) => r.path.endsWith(new URL(reroll.responseUrl).pathname.split('/').pop()!), { kind: 'response_url' });
    assert.deepEqual(fake.responsePosts(reroll.responseUrl).map((p) => (p.body as { text: string }).text), ['reroll queued for gen-1']);

    const bobDelete = await click(BOB, 'delete:gen-1');
    assert.equal(bobDelete.res.status, 200);
    await fake.waitFor('POST', (r) => r.path.endsWith(new URL(bobDelete.responseUrl).pathname.split('/').pop()!), { kind: 'response_url' });
    assert.match((fake.responsePosts(bobDelete.responseUrl)[0]!.body as { text: string }).text, /Only the person who asked/);
    assert.ok(fake.message(CHANNEL, message.ts), 'the image message is still there');

    const before = fake.lastSeq;
    await click(ADMIN, 'delete:gen-1');
    await fake.waitFor('chat.delete', () => true, { after: before });
    assert.equal(fake.message(CHANNEL, message.ts), undefined);
    assert.deepEqual(seen.clicks.map((c) => `${c.user}:${c.action}:${c.id}`), [`${ANA}:reroll:gen-1`, `${BOB}:delete:gen-1`, `${ADMIN}:delete:gen-1`]);
  });

  it('message shortcut "Teach concept" on a message with images opens the modal without a file input; submission fetches the files by id', async () => {
    const files = [
      fake.addFile({ name: 'a.png', bytes: await pngImage(12, 12, [1, 2, 3]), user: ANA, channel: CHANNEL }),
      fake.addFile({ name: 'b.png', bytes: await pngImage(12, 12, [4, 5, 6]), user: ANA, channel: CHANNEL }),
      fake.addFile({ name: 'notes.txt', bytes: new TextEncoder().encode('not an image'), user: ANA, channel: CHANNEL }),
    ];
    const userMessage = fake.postUserMessage({ channel: CHANNEL, user: ANA, text: 'my mug', files });
    const before = fake.lastSeq;
    const res = await sender.messageShortcut({
      userId: ANA, callbackId: TEACH_SHORTCUT_CALLBACK_ID, triggerId: fake.newTriggerId(), responseUrl: fake.newResponseUrl(),
      channelId: CHANNEL, message: { ts: userMessage.ts, user: ANA, text: 'my mug', files },
    });
    assert.equal(res.status, 200);
    assert.ok(res.elapsedMs < 3000);
    const open = await fake.waitFor('views.open', () => true, { after: before });
    const view = viewOf(open);
    assert.equal(view.blocks.some((b) => b.element?.type === 'file_input'), false);
    assert.match(JSON.stringify(view.blocks), /the 2 images in the selected message/);
    const origin = decodeTeachOrigin(view.private_metadata)!;
    assert.deepEqual(origin, { channel: CHANNEL, messageTs: userMessage.ts, fileIds: [files[0]!.id, files[1]!.id] });

    const submitted = fake.lastSeq;
    await sender.viewSubmission({
      userId: ANA, triggerId: fake.newTriggerId(), callbackId: TEACH_MODAL_CALLBACK_ID, privateMetadata: view.private_metadata,
      values: {
        [TEACH_INPUTS.name.block]: { [TEACH_INPUTS.name.action]: { type: 'plain_text_input', value: 'mug' } },
        [TEACH_INPUTS.category.block]: { [TEACH_INPUTS.category.action]: { type: 'plain_text_input', value: 'mug' } },
      },
    });
    await fake.waitFor('chat.update', (r) => String(r.args.text).includes('Done: use it as <mug>'), { after: submitted });
    assert.deepEqual(fake.calls('files.info').filter((r) => r.seq > submitted).map((r) => r.args.file), [files[0]!.id, files[1]!.id]);
    assert.deepEqual(seen.downloads.at(-1)!.map((i) => i.name), ['a.png', 'b.png']);
  });

  it('a submission without images keeps the modal open with an error under the file input', async () => {
    const res = await sender.viewSubmission({
      userId: ANA, triggerId: fake.newTriggerId(), callbackId: TEACH_MODAL_CALLBACK_ID, privateMetadata: JSON.stringify({ channel: CHANNEL }),
      values: { [TEACH_INPUTS.name.block]: { [TEACH_INPUTS.name.action]: { type: 'plain_text_input', value: 'x' } } },
    });
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.text), { response_action: 'errors', errors: { [TEACH_INPUTS.images.block]: 'Add at least one image.' } });
  });

  it('a login page instead of an image (token without files:read) is reported to the user, not used for training', async () => {
    const f = fake.addFile({ name: 'secret.png', bytes: await pngImage(), user: ANA });
    const downloadsBefore = seen.downloads.length;
    fake.setScopes(['commands', 'chat:write', 'files:write', 'users:read']);
    try {
      const before = fake.lastSeq;
      await sender.viewSubmission({
        userId: ANA, triggerId: fake.newTriggerId(), callbackId: TEACH_MODAL_CALLBACK_ID, privateMetadata: JSON.stringify({ channel: CHANNEL }),
        values: {
          [TEACH_INPUTS.name.block]: { [TEACH_INPUTS.name.action]: { type: 'plain_text_input', value: 'secret' } },
          [TEACH_INPUTS.category.block]: { [TEACH_INPUTS.category.action]: { type: 'plain_text_input', value: 'thing' } },
          [TEACH_INPUTS.images.block]: { [TEACH_INPUTS.images.action]: { type: 'file_input', files: [f] } },
        },
      });
      const ephemeral = await fake.waitFor('chat.postEphemeral', () => true, { after: before });
      const served = fake.requests('file').filter((r) => r.seq > before);
      assert.deepEqual(served.map((r) => [r.status, r.response]), [[200, 'login page']]);
      assert.equal(ephemeral.args.user, ANA);
      assert.equal(ephemeral.args.channel, CHANNEL);
      assert.match(String(ephemeral.args.text), /sign-in page instead of "secret\.png".*files:read/);
      assert.equal(seen.downloadErrors.at(-1)!.code, 'login_page');
      assert.equal(seen.downloads.length, downloadsBefore, 'nothing was accepted as a training image');
      assert.equal(fake.calls('chat.postMessage').some((r) => r.seq > before), false, 'no job was started');
    } finally {
      fake.setScopes(['commands', 'chat:write', 'files:read', 'files:write', 'users:read']);
    }
  });

  it('the file URL itself serves Slack\'s HTML login page with status 200 when the token is missing', async () => {
    const f = fake.addFile({ name: 'x.png', bytes: await pngImage() });
    const anonymous = await fetch(f.url_private);
    assert.equal(anonymous.status, 200);
    assert.match(anonymous.headers.get('content-type')!, /^text\/html/);
    assert.match(await anonymous.text(), /Sign in to your workspace/);
    const authorized = await fetch(f.url_private, { headers: { authorization: `Bearer ${fake.botToken}` } });
    assert.equal(authorized.headers.get('content-type'), 'image/png');
    assert.equal((await authorized.arrayBuffer()).byteLength, f.size);
  });

  it('refuses a bad signature with 401 and runs no listener', async () => {
    const before = fake.lastSeq;
    const res = await sendSigned(sender.url, signRequest(SIGNING_SECRET,
      slashCommandBody(workspace, { command: '/teach', text: 'evil', userId: BOB, channelId: CHANNEL, triggerId: fake.newTriggerId(), responseUrl: fake.newResponseUrl() }),
      FORM, { secretOverride: 'not-the-signing-secret' }));
    assert.equal(res.status, 401);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(fake.calls('views.open').some((r) => r.seq > before), false);
  });

  it('refuses a correctly signed request whose timestamp is more than 5 minutes old', async () => {
    const before = fake.lastSeq;
    const stale = Math.floor(Date.now() / 1000) - 5 * 60 - 10;
    const res = await sender.command({ command: '/teach', text: 'late', userId: ANA, channelId: CHANNEL, triggerId: fake.newTriggerId(), responseUrl: fake.newResponseUrl() }, { timestamp: stale });
    assert.equal(res.status, 401);
    const fresh = Math.floor(Date.now() / 1000) - 4 * 60;
    const ok = await sender.command({ command: '/teach', text: 'ok', userId: ANA, channelId: CHANNEL, triggerId: fake.newTriggerId(), responseUrl: fake.newResponseUrl() }, { timestamp: fresh });
    assert.equal(ok.status, 200, 'four minutes old is still accepted');
    await fake.waitFor('views.open', () => true, { after: before });
  });

  it('an Events API delivery (app_mention with shared images) reaches the event listener', async () => {
    const f = fake.addFile({ name: 'm.png', bytes: await pngImage(), user: ANA, channel: CHANNEL });
    const res = await sender.event({
      type: 'app_mention', user: ANA, text: `<@${fake.botUserId}> teach mug mug`, ts: '1712345678.000200', channel: CHANNEL,
      event_ts: '1712345678.000200', files: [f], upload: true,
    });
    assert.equal(res.status, 200);
    for (let i = 0; i < 50 && seen.mentions.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(seen.mentions, [{ user: ANA, fileIds: [f.id] }]);
  });

  it('answers the url_verification challenge', async () => {
    const res = await sender.urlVerification('challenge-token-123');
    assert.equal(res.status, 200);
    assert.deepEqual(JSON.parse(res.text), { challenge: 'challenge-token-123' });
  });

  it('views.open with a trigger_id older than 3 s fails with expired_trigger_id', async () => {
    const trigger = fake.newTriggerId();
    skewMs = 3500;
    try {
      const before = fake.lastSeq;
      const res = await sender.command({ command: '/teach', text: '', userId: ANA, channelId: CHANNEL, triggerId: trigger, responseUrl: fake.newResponseUrl() });
      assert.equal(res.status, 200);
      const open = await fake.waitFor('views.open', () => true, { after: before });
      assert.deepEqual(open.response, { ok: false, error: 'expired_trigger_id' });
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(seen.viewsOpenErrors.at(-1), 'expired_trigger_id');
    } finally {
      skewMs = 0;
    }
  });

  it('an unknown Web API method answers unknown_method', async () => {
    await assert.rejects(app.client.apiCall('nonexistent.method', {}), (error: { data?: { error?: string } }) => error.data?.error === 'unknown_method');
  });
});

describe('real Bolt 5 app against the fake Slack API (Socket Mode)', () => {
  let fake: FakeSlack;
  let app: App;
  const workspace = (): Workspace => ({ teamId: fake.teamId, teamDomain: fake.teamDomain, appId: fake.appId });
  const received: string[] = [];

  before(async () => {
    fake = await FakeSlack.start();
    const config = slackConfigFromEnv({ SLACK_BOT_TOKEN: fake.botToken, SLACK_APP_TOKEN: fake.appToken, SLACK_API_URL: fake.apiUrl })!;
    assert.equal(config.socketMode, true);
    app = createBoltApp(config, { retries: 0, logLevel: LogLevel.ERROR });
    app.command('/teach', async ({ ack, command, client }) => {
      await ack();
      received.push(`command:${command.text}`);
      await client.views.open({ trigger_id: command.trigger_id, view: teachModal({ origin: { channel: command.channel_id } }) });
    });
    app.action<BlockAction<ButtonAction>>(BUTTON_ACTION_PATTERN, async ({ ack, action }) => {
      await ack();
      received.push(`action:${action.action_id}`);
    });
    app.event('app_mention', async ({ event }) => {
      received.push(`event:${event.text}`);
    });
    assert.equal(await startBoltApp(app, config), null);
    await fake.waitForSocket();
  });

  after(async () => {
    await app.stop();
    await fake.waitForSocketsClosed();
    await fake.close();
  });

  it('connects with the app token through apps.connections.open', () => {
    const open = fake.calls('apps.connections.open');
    assert.equal(open.length, 1);
    assert.equal(open[0]!.authorization, `Bearer ${fake.appToken}`);
    assert.match((open[0]!.response as { url: string }).url, /^ws:\/\/127\.0\.0\.1:\d+\/socket\?ticket=/);
  });

  it('a slash command envelope is acked by envelope_id and the listener opens the modal', async () => {
    const fields = Object.fromEntries(new URLSearchParams(slashCommandBody(workspace(), {
      command: '/teach', text: 'over socket', userId: ANA, channelId: CHANNEL, triggerId: fake.newTriggerId(), responseUrl: fake.newResponseUrl(),
    })));
    const before = fake.lastSeq;
    const ack = await fake.sendEnvelope('slash_commands', fields);
    assert.ok(ack.envelope_id);
    const open = await fake.waitFor('views.open', () => true, { after: before });
    assert.equal((open.response as { ok: boolean }).ok, true);
    assert.deepEqual(decodeTeachOrigin(viewOf(open).private_metadata), { channel: CHANNEL });
    assert.deepEqual(received, ['command:over socket']);
  });

  it('an interactive envelope (button click) is acked and routed by action_id', async () => {
    const ack = await fake.sendEnvelope('interactive', blockActionsPayload(workspace(), {
      userId: ANA, triggerId: fake.newTriggerId(), responseUrl: fake.newResponseUrl(), actionId: 'variations:gen-9', channelId: CHANNEL, messageTs: '1.000001',
    }));
    assert.ok(ack.envelope_id);
    assert.deepEqual(received.at(-1), 'action:variations:gen-9');
  });

  it('an events_api envelope is acked and reaches the event listener', async () => {
    const body = JSON.parse(eventCallbackBody(workspace(), { type: 'app_mention', user: ANA, text: 'hello bot', ts: '1.000002', channel: CHANNEL, event_ts: '1.000002' }));
    const ack = await fake.sendEnvelope('events_api', body);
    assert.ok(ack.envelope_id);
    for (let i = 0; i < 50 && received.at(-1) !== 'event:hello bot'; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(received.at(-1), 'event:hello bot');
  });
});
