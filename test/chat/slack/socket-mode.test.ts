// The Slack front end in Socket Mode (SLACK_APP_TOKEN set): the real Bolt app connects to the fake Slack through
// apps.connections.open and a websocket, acknowledges envelopes by id, and runs them through the core like HTTP
// requests. Jobs finish at once on a fake executor.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FakeExecutor, testDataDir, waitFor, type TestDir } from '../../src/helpers.ts';
import { FakeSlack } from './fake-slack.ts';
import { actionIds, postedTs, startSlackBot, type SlackBot } from './harness.ts';
import { blockActionsPayload, slashCommandBody, type Workspace } from './signed-requests.ts';

const CHANNEL = 'C0SOCKET01';
const ANA = 'U0ANA00001';

describe('Slack front end in Socket Mode against the fake Slack', () => {
  let fake: FakeSlack;
  let dir: TestDir;
  let bot: SlackBot;
  const workspace = (): Workspace => ({ teamId: fake.teamId, teamDomain: fake.teamDomain, appId: fake.appId });

  before(async () => {
    fake = await FakeSlack.start();
    fake.addUser({ id: ANA, name: 'ana' });
    dir = await testDataDir({ LOCAL_CHAT: 'false' });
    bot = await startSlackBot(fake, dir.env, { socketMode: true, executor: new FakeExecutor(1, 0) });
    await fake.waitForSocket();
  });

  after(async () => {
    await bot?.app.stop();
    await fake?.waitForSocketsClosed();
    await fake?.close();
    dir?.cleanup();
  });

  const slashCommand = (command: string, text: string, responseUrl: string) => Object.fromEntries(new URLSearchParams(slashCommandBody(workspace(), {
    command, text, userId: ANA, channelId: CHANNEL, triggerId: fake.newTriggerId(), responseUrl,
  })));

  it('connects with the app token, not through an HTTP port', () => {
    assert.equal(bot.slack.port, null);
    const open = fake.calls('apps.connections.open');
    assert.deepEqual(open.map((r) => r.authorization), [`Bearer ${fake.appToken}`]);
  });

  it('a slash command envelope is acked by its id and answered through the core', async () => {
    const responseUrl = fake.newResponseUrl();
    const ack = await fake.sendEnvelope('slash_commands', slashCommand('/queue', '', responseUrl));
    assert.ok(ack.envelope_id);
    const reply = await waitFor(() => fake.responsePosts(responseUrl)[0]?.body as { text: string } | undefined, 15_000, 'the /queue reply');
    assert.match(reply.text, /The queue is empty/);
  });

  it('/imagine over the socket: progress message, image in its thread, buttons; a button envelope reaches the core', async () => {
    const before = fake.lastSeq;
    await fake.sendEnvelope('slash_commands', slashCommand('/imagine', 'a cat over a socket steps:2', fake.newResponseUrl()));
    const post = await fake.waitFor('chat.postMessage', (r) => /job #\d+ is queued/.test(String(r.args.text)), { after: before });
    const done = await fake.waitFor('chat.update', (r) => r.args.ts === postedTs(post) && String(r.args.text).startsWith('🖼️'));
    const [reroll, , info] = actionIds(done.args.blocks);
    assert.match(reroll!, /^reroll:\d+$/);
    assert.equal(fake.uploads.at(-1)!.thread_ts, postedTs(post));

    const responseUrl = fake.newResponseUrl();
    const ack = await fake.sendEnvelope('interactive', blockActionsPayload(workspace(), {
      userId: ANA, triggerId: fake.newTriggerId(), responseUrl, actionId: info!, value: info!, channelId: CHANNEL, messageTs: postedTs(post),
    }));
    assert.ok(ack.envelope_id);
    const answer = await waitFor(() => fake.responsePosts(responseUrl)[0]?.body as { text: string } | undefined, 15_000, 'the info reply');
    assert.match(answer.text, /^Image #\d+\nprompt: a cat over a socket\n/);
  });
});
