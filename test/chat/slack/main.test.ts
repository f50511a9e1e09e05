// `npm start` (src/main.ts as a real process) with SLACK_* settings: the Slack front end starts beside the core,
// answers a signed slash command through the core, and stops cleanly on SIGTERM; unusable Slack settings stop the
// start with a message naming them.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { ROOT, testDataDir, waitFor, type TestDir } from '../../src/helpers.ts';
import { FakeSlack } from './fake-slack.ts';
import { SIGNING_SECRET } from './harness.ts';
import { SlackRequestSender } from './signed-requests.ts';

function startMain(env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => { out += d; });
  child.stderr!.on('data', (d) => { err += d; });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, out: () => out, err: () => err };
}

describe('npm start with Slack settings', () => {
  let fake: FakeSlack;
  let dir: TestDir;
  before(async () => {
    fake = await FakeSlack.start();
    fake.addUser({ id: 'U0ANA00001', name: 'ana' });
    dir = await testDataDir({ LOCAL_CHAT: 'false', LOG_LEVEL: 'info' });
  });
  after(async () => {
    await fake.close();
    dir.cleanup();
  });

  it('refuses to start with unusable Slack settings, naming what to fix', async () => {
    const bot = startMain({ ...dir.env, SLACK_BOT_TOKEN: 'xoxp-a-user-token' });
    assert.equal(await bot.exited, 1);
    assert.match(bot.err(), /Slack is not configured correctly:\n {2}- SLACK_BOT_TOKEN must be a bot token starting with "xoxb-"/);
    assert.match(bot.err(), /- SLACK_SIGNING_SECRET is missing/);
    assert.match(bot.err(), /See the README's Slack section\./);
  });

  it('starts the Slack front end, answers a signed /queue through the core, and stops cleanly on SIGTERM', async () => {
    const bot = startMain({ ...dir.env, SLACK_BOT_TOKEN: fake.botToken, SLACK_SIGNING_SECRET: SIGNING_SECRET, SLACK_API_URL: fake.apiUrl, SLACK_PORT: '0' });
    try {
      const port = await waitFor(() => {
        const line = bot.out().split('\n').find((l) => l.includes('"Slack front end listening"'));
        return line ? (JSON.parse(line) as { port: number }).port : undefined;
      }, 60_000, `the Slack receiver to listen:\n${bot.out()}${bot.err()}`);
      const sender = new SlackRequestSender(`http://127.0.0.1:${port}/slack/events`, SIGNING_SECRET, { teamId: fake.teamId, teamDomain: fake.teamDomain, appId: fake.appId });
      const responseUrl = fake.newResponseUrl();
      const res = await sender.command({ command: '/queue', text: '', userId: 'U0ANA00001', channelId: 'C0MAIN0001', triggerId: fake.newTriggerId(), responseUrl });
      assert.equal(res.status, 200);
      const reply = await waitFor(() => fake.responsePosts(responseUrl)[0]?.body as { text: string } | undefined, 10_000, 'the /queue reply');
      assert.match(reply.text, /The queue is empty/);
      bot.child.kill('SIGTERM');
      assert.equal(await bot.exited, 0, bot.err());
      assert.match(bot.out(), /stopped cleanly/);
    } finally {
      if (bot.child.exitCode === null) { bot.child.kill('SIGKILL'); await bot.exited; }
    }
  });
});
