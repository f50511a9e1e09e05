// End to end with the real engine: a signed /imagine reaches the real Bolt app, the engine generates on the tiny
// fixture model (wasm), its step callbacks become throttled chat.update progress edits, and the PNG is uploaded
// with files.uploadV2 into the progress message's thread, which then shows the result buttons. The listener
// stands in for the core's command + scheduler (Phase 2 replaces it with the real wiring).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { LogLevel, type App } from '@slack/bolt';
import { loadPipeline, type StableDiffusionPipeline } from '../../../gpu/index.ts';
import { FakeSlack } from './fake-slack.ts';
import { SlackRequestSender } from './signed-requests.ts';
import { slackConfigFromEnv } from '../../../src/chat/slack/config.ts';
import { createBoltApp, startBoltApp } from '../../../src/chat/slack/app.ts';
import { progressMessage, resultMessage, type SlackMessage } from '../../../src/chat/slack/blocks.ts';
import { ChatUpdateThrottle } from '../../../src/chat/slack/throttle.ts';

const fixtureModelDir = new URL('../../fixtures/sd-tiny-a/model', import.meta.url).pathname;
const SIGNING_SECRET = 'engine-e2e-signing-secret';
const CHANNEL = 'C0ENGINE01';
const USER = 'U0ANA00001';
const REQUEST = { steps: 3, seed: 20240607, scheduler: 'euler' as const };

describe('Slack /imagine with the real engine on the tiny fixture model', () => {
  let fake: FakeSlack;
  let app: App;
  let pipe: StableDiffusionPipeline;
  let sender: SlackRequestSender;
  let throttle: ChatUpdateThrottle<SlackMessage>;
  const failures: unknown[] = [];

  before(async () => {
    fake = await FakeSlack.start();
    pipe = await loadPipeline(fixtureModelDir, { backend: 'wasm' });
    const config = slackConfigFromEnv({ SLACK_BOT_TOKEN: fake.botToken, SLACK_SIGNING_SECRET: SIGNING_SECRET, SLACK_API_URL: fake.apiUrl })!;
    app = createBoltApp(config, { retries: 0, logLevel: LogLevel.ERROR });
    throttle = new ChatUpdateThrottle<SlackMessage>({
      minIntervalMs: 50,
      send: async (m, body) => { await app.client.chat.update({ channel: m.channel, ts: m.ts, text: body.text, blocks: body.blocks }); },
      onError: (e) => failures.push(e),
    });
    app.command('/imagine', async ({ ack, command, client }) => {
      await ack({ response_type: 'ephemeral', text: 'Queued, position 1' });
      const title = `Imagining for <@${command.user_id}>`;
      const posted = await client.chat.postMessage({ channel: command.channel_id, ...progressMessage({ title, status: 'Starting', fraction: 0, cancelJobId: 'job-1' }) });
      const ref = { workspace: command.team_id, channel: command.channel_id, ts: posted.ts! };
      const result = await pipe.generate({
        prompt: command.text, ...REQUEST,
        onStep: (step, total) => throttle.update(ref, progressMessage({ title, status: `Step ${step} of ${total}`, fraction: step / total, cancelJobId: 'job-1' })),
      });
      await client.filesUploadV2({
        channel_id: command.channel_id, thread_ts: posted.ts!, file: Buffer.from(result.png), filename: 'gen-1.png',
        initial_comment: `seed ${result.seed}`,
      });
      await throttle.finish(ref, resultMessage({ generationId: 'gen-1', prompt: command.text, details: `seed ${result.seed} · ${REQUEST.steps} steps`, requesterUserId: command.user_id }));
    });
    const port = await startBoltApp(app, config, { port: 0, host: '127.0.0.1' });
    sender = new SlackRequestSender(`http://127.0.0.1:${port}/slack/events`, SIGNING_SECRET, { teamId: fake.teamId, teamDomain: fake.teamDomain, appId: fake.appId });
  });

  after(async () => {
    await throttle?.idle();
    throttle?.close();
    await app?.stop();
    pipe?.dispose();
    await fake?.close();
  });

  it('acks at once, edits progress per step, uploads the engine\'s PNG in the thread and ends with the buttons', async () => {
    const prompt = 'a watercolor of a teddy bear';
    const res = await sender.command({ command: '/imagine', text: prompt, userId: USER, channelId: CHANNEL, triggerId: fake.newTriggerId(), responseUrl: fake.newResponseUrl() });
    assert.equal(res.status, 200);
    assert.ok(res.elapsedMs < 3000, `ack took ${res.elapsedMs} ms`);
    assert.deepEqual(JSON.parse(res.text), { response_type: 'ephemeral', text: 'Queued, position 1' });

    const final = await fake.waitFor('chat.update', (r) => JSON.stringify(r.args.blocks ?? '').includes('reroll:gen-1'), { timeoutMs: 120_000 });
    assert.deepEqual(failures, []);
    const post = fake.calls('chat.postMessage')[0]!;
    const ts = (post.response as { ts: string }).ts;
    const edits = fake.calls('chat.update').filter((r) => r.args.ts === ts);
    assert.equal(edits.at(-1), final);
    const steps = edits.slice(0, -1).map((e) => Number(/Step (\d+) of 3/.exec(String(e.args.text))?.[1]));
    assert.ok(steps.length >= 1, 'at least one progress edit during generation');
    assert.deepEqual(steps, [...steps].sort((a, b) => a - b), `steps in order: ${steps.join(', ')}`);
    assert.ok(steps.every((s) => s >= 1 && s <= 3));

    const uploaded = fake.uploads.at(-1)!;
    assert.equal(uploaded.channel_id, CHANNEL);
    assert.equal(uploaded.thread_ts, ts);
    assert.equal(uploaded.initial_comment, `seed ${REQUEST.seed}`);
    const meta = await sharp(uploaded.bytes).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['png', 128, 128]);
    assert.match(meta.comments?.find((c) => c.keyword === 'parameters')?.text ?? '', new RegExp(`^${prompt}\\nSteps: 3, Sampler: euler, .*Seed: ${REQUEST.seed}`));
    // The bytes in Slack are exactly what the engine produces for this request.
    const direct = await pipe.generate({ prompt, ...REQUEST });
    assert.deepEqual(uploaded.bytes, direct.png);

    const message = fake.message(CHANNEL, ts)!;
    assert.deepEqual((message.blocks as Array<{ elements?: Array<{ action_id: string }> }>)[1]!.elements!.map((e) => e.action_id),
      ['reroll:gen-1', 'variations:gen-1', 'info:gen-1', 'delete:gen-1']);
    assert.deepEqual(fake.threadReplies(CHANNEL, ts).map((m) => m.files?.[0]?.id), [uploaded.file.id]);
  });
});
