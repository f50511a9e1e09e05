// Starting the Slack front end with settings Slack refuses: each problem is one sentence that names the setting
// to fix, and nothing is left listening. The core is not needed for this, so a stand-in records the sink.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SlackStartError } from '../../../src/chat/slack/app.ts';
import { slackConfigFromEnv } from '../../../src/chat/slack/config.ts';
import { SlackFrontEnd } from '../../../src/chat/slack/front-end.ts';
import type { BotCore, UpdateSink } from '../../../src/chat/types.ts';
import { createLogger } from '../../../src/log.ts';
import { FakeSlack } from './fake-slack.ts';

function coreStandIn() {
  const sinks = new Set<UpdateSink>();
  const core = { commands: [], addSink: (s: UpdateSink) => { sinks.add(s); return () => { sinks.delete(s); }; } } as unknown as BotCore;
  return { core, sinks };
}

async function startWith(fake: FakeSlack, env: Record<string, string>, listenPort = 0) {
  const { core, sinks } = coreStandIn();
  const slack = new SlackFrontEnd(slackConfigFromEnv({ SLACK_API_URL: fake.apiUrl, ...env })!, { listen: { port: listenPort, host: '127.0.0.1' }, retries: 0 });
  const error = await slack.start(core, createLogger('silent')).then(async (running) => { await running.stop(); return null; }, (err: unknown) => err);
  return { error, sinks };
}

describe('starting the Slack front end', () => {
  it('a wrong bot token, a wrong app token and a busy port are worded start errors; no sink stays registered', async () => {
    const fake = await FakeSlack.start();
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    try {
      const cases: Array<[Record<string, string>, number, RegExp]> = [
        [{ SLACK_BOT_TOKEN: 'xoxb-not-the-token', SLACK_SIGNING_SECRET: 's' }, 0, /^Slack refused SLACK_BOT_TOKEN \(invalid_auth\): copy the Bot User OAuth Token/],
        [{ SLACK_BOT_TOKEN: fake.botToken, SLACK_APP_TOKEN: 'xapp-not-the-token' }, 0, /^Slack Socket Mode could not connect \(invalid_auth\): check SLACK_APP_TOKEN/],
        [{ SLACK_BOT_TOKEN: fake.botToken, SLACK_SIGNING_SECRET: 's' }, (busy.address() as AddressInfo).port, /^The Slack receiver could not listen on port \d+ \(.*EADDRINUSE.*\): set SLACK_PORT to a free port\.$/],
      ];
      for (const [env, port, expected] of cases) {
        const { error, sinks } = await startWith(fake, env, port);
        assert.ok(error instanceof SlackStartError, String(error));
        assert.match(error.message, expected);
        assert.equal(sinks.size, 0);
      }
      // with the right settings it starts, verifies the token once, and stops cleanly
      const before = fake.lastSeq;
      const ok = await startWith(fake, { SLACK_BOT_TOKEN: fake.botToken, SLACK_SIGNING_SECRET: 's' });
      assert.equal(ok.error, null);
      assert.deepEqual(fake.log.filter((r) => r.seq > before).map((r) => r.method), ['auth.test']);
    } finally {
      busy.close();
      await fake.close();
    }
  });

  it('an unreachable Web API is named with its URL', async () => {
    const fake = await FakeSlack.start();
    const apiUrl = fake.apiUrl;
    await fake.close();
    const { core } = coreStandIn();
    const slack = new SlackFrontEnd(slackConfigFromEnv({ SLACK_BOT_TOKEN: 'xoxb-x', SLACK_SIGNING_SECRET: 's', SLACK_API_URL: apiUrl })!, { retries: 0 });
    await assert.rejects(slack.start(core, createLogger('silent')), (err: Error) => {
      assert.ok(err instanceof SlackStartError);
      assert.match(err.message, new RegExp(`^Slack's Web API could not be reached at ${apiUrl.replace(/[.]/g, '\\.')} \\(.*\\)\\. Check the network, or SLACK_API_URL if it is set\\.$`));
      return true;
    });
  });
});
