// The fake's own rules, exercised with Slack's real WebClient (from @slack/bolt) where a client call exists:
// tokens and scopes, trigger_id and response_url limits, upload steps, and the request log tests rely on.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { webApi } from '@slack/bolt';
import { FakeSlack } from './fake-slack.ts';
import { pngImage } from './test-images.ts';

describe('fake Slack: Web API rules', () => {
  let fake: FakeSlack;
  let client: webApi.WebClient;
  let skewMs = 0;

  before(async () => {
    fake = await FakeSlack.start({ now: () => Date.now() + skewMs });
    client = new webApi.WebClient(fake.botToken, { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 }, logLevel: webApi.LogLevel.ERROR });
  });
  after(() => fake.close());

  const slackError = (code: string, extra: Record<string, unknown> = {}) => (error: { data?: Record<string, unknown> }) => {
    assert.equal(error.data?.error, code);
    for (const [k, v] of Object.entries(extra)) assert.equal(error.data?.[k], v);
    return true;
  };

  it('checks tokens like Slack: missing, wrong, and the wrong kind of token', async () => {
    const call = (token: string | undefined, method: string) => fetch(`${fake.apiUrl}${method}`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: 'channel=C1&text=hi',
    }).then(async (r) => [r.status, ((await r.json()) as { error?: string; ok: boolean }).error ?? 'ok']);
    assert.deepEqual(await call(undefined, 'chat.postMessage'), [200, 'not_authed']);
    assert.deepEqual(await call('xoxb-wrong', 'chat.postMessage'), [200, 'invalid_auth']);
    assert.deepEqual(await call(fake.appToken, 'chat.postMessage'), [200, 'not_allowed_token_type']);
    assert.deepEqual(await call(fake.botToken, 'apps.connections.open'), [200, 'not_allowed_token_type']);
    assert.deepEqual(await call(fake.botToken, 'no.such.method'), [200, 'unknown_method']);
    // The token may also come in the body, as older clients send it.
    const inBody = await fetch(`${fake.apiUrl}auth.test`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${fake.botToken}` });
    assert.equal(((await inBody.json()) as { user_id: string }).user_id, fake.botUserId);
  });

  it('accepts JSON bodies as well as forms, and decodes JSON-valued form fields in the log', async () => {
    const res = await fetch(`${fake.apiUrl}chat.postMessage`, {
      method: 'POST', headers: { 'content-type': 'application/json; charset=utf-8', authorization: `Bearer ${fake.botToken}` },
      body: JSON.stringify({ channel: 'C1', text: 'json', blocks: [{ type: 'divider' }] }),
    });
    assert.equal(((await res.json()) as { ok: boolean }).ok, true);
    await client.chat.postMessage({ channel: 'C1', text: 'form', blocks: [{ type: 'divider' }] });
    const [viaJson, viaForm] = fake.calls('chat.postMessage').slice(-2);
    assert.deepEqual(viaJson!.args.blocks, [{ type: 'divider' }]);
    assert.deepEqual(viaForm!.args.blocks, [{ type: 'divider' }]);
  });

  it('missing scopes answer missing_scope with the needed scope; injected failures answer once', async () => {
    fake.setScopes(['chat:write']);
    try {
      await assert.rejects(client.files.info({ file: 'F1' }), slackError('missing_scope', { needed: 'files:read', provided: 'chat:write' }));
    } finally {
      fake.setScopes(['commands', 'chat:write', 'files:read', 'files:write', 'channels:read', 'users:read']);
    }
    fake.failNext('chat.postMessage', 'ratelimited');
    await assert.rejects(client.chat.postMessage({ channel: 'C1', text: 'x' }), slackError('ratelimited'));
    assert.equal((await client.chat.postMessage({ channel: 'C1', text: 'x' })).ok, true);
  });

  it('chat.update edits only the bot\'s own existing messages and keeps every version', async () => {
    const posted = await client.chat.postMessage({ channel: 'C2', text: 'v1' });
    await client.chat.update({ channel: 'C2', ts: posted.ts!, text: 'v2' });
    assert.deepEqual(fake.message('C2', posted.ts!)!.history.map((h) => h.text), ['v1', 'v2']);
    await assert.rejects(client.chat.update({ channel: 'C2', ts: '1.999999', text: 'x' }), slackError('message_not_found'));
    const userMessage = fake.postUserMessage({ channel: 'C2', user: 'U1', text: 'mine' });
    await assert.rejects(client.chat.update({ channel: 'C2', ts: userMessage.ts, text: 'x' }), slackError('cant_update_message'));
    fake.addChannel({ id: 'C3', is_member: false });
    await assert.rejects(client.chat.postMessage({ channel: 'C3', text: 'x' }), slackError('not_in_channel'));
  });

  it('trigger_ids: unknown, used twice, or older than 3 s are refused; views.update checks the hash; views.push stacks', async () => {
    const view = { type: 'modal' as const, title: { type: 'plain_text' as const, text: 'T' }, blocks: [] };
    await assert.rejects(client.views.open({ trigger_id: 'made.up.trigger', view }), slackError('invalid_trigger_id'));
    const trigger = fake.newTriggerId();
    const opened = await client.views.open({ trigger_id: trigger, view });
    await assert.rejects(client.views.open({ trigger_id: trigger, view }), slackError('exchanged_trigger_id'));
    const old = fake.newTriggerId();
    skewMs = 3001;
    try {
      await assert.rejects(client.views.open({ trigger_id: old, view }), slackError('expired_trigger_id'));
    } finally {
      skewMs = 0;
    }
    const id = opened.view!.id!;
    await assert.rejects(client.views.update({ view_id: id, hash: 'stale', view }), slackError('hash_conflict'));
    const updated = await client.views.update({ view_id: id, hash: opened.view!.hash!, view: { ...view, blocks: [{ type: 'divider' }] } });
    assert.notEqual(updated.view!.hash, opened.view!.hash);
    const pushed = await client.views.push({ trigger_id: fake.newTriggerId(), view });
    assert.equal(pushed.view!.root_view_id, id);
    assert.equal(pushed.view!.previous_view_id, id);
  });

  it('uploads: bytes must arrive before completing, and their length must match; a channel-less upload stays private', async () => {
    const png = await pngImage();
    const step1 = await client.files.getUploadURLExternal({ filename: 'a.png', length: png.length });
    await assert.rejects(client.files.completeUploadExternal({ files: [{ id: step1.file_id! }] }), slackError('file_upload_not_found'));
    await fetch(step1.upload_url!, { method: 'POST', body: Buffer.from(png.subarray(0, 10)) });
    await assert.rejects(client.files.completeUploadExternal({ files: [{ id: step1.file_id! }] }), slackError('file_size_mismatch'));

    const messagesBefore = fake.messages.size;
    const done = await client.filesUploadV2({ file: Buffer.from(png), filename: 'private.png' });
    assert.equal(done.ok, true);
    const uploaded = fake.uploads.at(-1)!;
    assert.deepEqual(uploaded.bytes, png);
    assert.equal(uploaded.channel_id, undefined);
    assert.equal(fake.messages.size, messagesBefore, 'no message without channel_id');
    const info = await client.files.info({ file: uploaded.file.id });
    assert.equal(info.file!.name, 'private.png');
    const served = await fetch(info.file!.url_private_download!, { headers: { authorization: `Bearer ${fake.botToken}` } });
    assert.deepEqual(new Uint8Array(await served.arrayBuffer()), png);
    await assert.rejects(client.files.info({ file: 'F000000000' }), slackError('file_not_found'));
  });

  it('a private file URL answers Slack\'s HTML sign-in page with status 200 without the bot token', async () => {
    const f = fake.addFile({ name: 'x.png', bytes: await pngImage() });
    const anonymous = await fetch(f.url_private);
    assert.equal(anonymous.status, 200);
    assert.match(anonymous.headers.get('content-type')!, /^text\/html/);
    assert.match(await anonymous.text(), /Sign in to your workspace/);
    const authorized = await fetch(f.url_private, { headers: { authorization: `Bearer ${fake.botToken}` } });
    assert.equal(authorized.headers.get('content-type'), 'image/png');
    assert.equal((await authorized.arrayBuffer()).byteLength, f.size);
  });

  it('files.delete: only the bot\'s own files; the sharing message stays, without the file', async () => {
    const theirs = fake.addFile({ name: 'theirs.png', bytes: await pngImage(), user: 'U0SOMEONE' });
    await assert.rejects(client.files.delete({ file: theirs.id }), slackError('cant_delete_file'));
    const done = await client.filesUploadV2({ file: Buffer.from(await pngImage()), filename: 'mine.png', channel_id: 'C0FILES', initial_comment: 'here' });
    const id = (done.files as Array<{ files?: Array<{ id: string }> }>)[0]!.files![0]!.id;
    const shared = fake.uploads.at(-1)!.message!;
    assert.equal((await client.files.delete({ file: id })).ok, true);
    await assert.rejects(client.files.info({ file: id }), slackError('file_not_found'));
    await assert.rejects(client.files.delete({ file: id }), slackError('file_not_found'));
    assert.deepEqual([fake.message('C0FILES', shared.ts)!.text, fake.message('C0FILES', shared.ts)!.files], ['here', []]);
  });

  it('response_url: five posts within 30 minutes, then used_url; an old one answers expired_url', async () => {
    const post = (url: string, n: number) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ text: `post ${n}` }) })
      .then(async (r) => `${r.status} ${await r.text()}`);
    const url = fake.newResponseUrl();
    const answers: string[] = [];
    for (let n = 1; n <= 6; n++) answers.push(await post(url, n));
    assert.deepEqual(answers, ['200 ok', '200 ok', '200 ok', '200 ok', '200 ok', '404 used_url']);
    assert.deepEqual(fake.responsePosts(url).map((p) => (p.body as { text: string }).text), ['post 1', 'post 2', 'post 3', 'post 4', 'post 5', 'post 6']);

    const old = fake.newResponseUrl();
    assert.equal(await post(old, 1), '200 ok');
    skewMs = 30 * 60 * 1000 + 1;
    try {
      assert.equal(await post(old, 2), '404 expired_url');
    } finally {
      skewMs = 0;
    }
    assert.equal(await post(`${fake.baseUrl}/commands/T0/none/x`, 1), '404 no_such_url');
  });

  it('conversations.info and users.info know registered channels and users only', async () => {
    fake.addUser({ id: 'U0ADMIN', is_admin: true });
    assert.equal((await client.users.info({ user: 'U0ADMIN' })).user!.is_admin, true);
    await assert.rejects(client.users.info({ user: 'U0NOBODY' }), slackError('user_not_found'));
    fake.addChannel({ id: 'C0KNOWN', name: 'art' });
    assert.equal((await client.conversations.info({ channel: 'C0KNOWN' })).channel!.name, 'art');
    await assert.rejects(client.conversations.info({ channel: 'C0UNKNOWN' }), slackError('channel_not_found'));
  });

  it('waitFor resolves on a later request and times out naming what it saw', async () => {
    const after = fake.lastSeq;
    const waiting = fake.waitFor('chat.postEphemeral', (r) => r.args.user === 'U9', { after });
    await client.chat.postEphemeral({ channel: 'C1', user: 'U9', text: 'only you' });
    assert.equal((await waiting).args.text, 'only you');
    await assert.rejects(fake.waitFor('chat.delete', () => true, { after: fake.lastSeq, timeoutMs: 50 }), /no api chat\.delete matching within 50 ms; seen: .*api:chat\.postEphemeral/);
  });
});

describe('fake Slack: Block Kit limits', () => {
  let fake: FakeSlack;
  let client: webApi.WebClient;
  before(async () => {
    fake = await FakeSlack.start();
    client = new webApi.WebClient(fake.botToken, { slackApiUrl: fake.apiUrl, retryConfig: { retries: 0 }, logLevel: webApi.LogLevel.ERROR });
  });
  after(() => fake.close());

  const title = { type: 'plain_text' as const, text: 'Teach a concept' };
  const refused = (code: string, detail: RegExp) => (error: { data?: { error?: string; response_metadata?: { messages?: string[] } } }) => {
    assert.equal(error.data?.error, code);
    assert.match(error.data?.response_metadata?.messages?.[0] ?? '', detail);
    return true;
  };

  it('refuses modals Slack would refuse: long title, big private_metadata, file_input outside an input block or over 10 files', async () => {
    const open = (view: Record<string, unknown>) => client.views.open({ trigger_id: fake.newTriggerId(), view: { type: 'modal', title, blocks: [], ...view } as never });
    await assert.rejects(open({ title: { type: 'plain_text', text: 'x'.repeat(25) } }), refused('invalid_arguments', /title/));
    await assert.rejects(open({ private_metadata: 'x'.repeat(3001) }), refused('invalid_arguments', /private_metadata/));
    await assert.rejects(open({ blocks: [{ type: 'section', text: { type: 'mrkdwn', text: 'x' }, accessory: {} }, { type: 'actions', elements: [{ type: 'file_input', action_id: 'f' }] }] }), refused('invalid_arguments', /inside an input block/));
    await assert.rejects(open({ submit: title, blocks: [{ type: 'input', label: title, element: { type: 'file_input', action_id: 'f', max_files: 11 } }] }), refused('invalid_arguments', /max_files/));
    assert.equal((await open({ submit: title, blocks: [{ type: 'input', label: title, element: { type: 'file_input', action_id: 'f', max_files: 10 } }] })).ok, true);
  });

  it('refuses messages with too many blocks or duplicate action_ids', async () => {
    const divider = { type: 'divider' as const };
    await assert.rejects(client.chat.postMessage({ channel: 'C1', text: 't', blocks: Array.from({ length: 51 }, () => divider) }), refused('invalid_blocks', /at most 50 blocks/));
    const button = { type: 'button' as const, text: { type: 'plain_text' as const, text: 'b' }, action_id: 'reroll:1' };
    await assert.rejects(client.chat.postMessage({ channel: 'C1', text: 't', blocks: [{ type: 'actions', elements: [button, button] }] }), refused('invalid_blocks', /duplicate action_id/));
  });
});
