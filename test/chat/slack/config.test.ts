// Slack settings from the environment: disabled when absent, defaults, Socket Mode, and errors that name
// every wrong variable.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_SLACK_API_URL, SlackConfigError, slackConfigFromEnv } from '../../../src/chat/slack/config.ts';

function problemsOf(env: Record<string, string>): string[] {
  try {
    slackConfigFromEnv(env);
  } catch (error) {
    assert.ok(error instanceof SlackConfigError);
    return error.problems;
  }
  assert.fail('expected a SlackConfigError');
}

describe('slackConfigFromEnv', () => {
  it('is null (Slack disabled) when no SLACK_* variable is set, blank ones included', () => {
    assert.equal(slackConfigFromEnv({}), null);
    assert.equal(slackConfigFromEnv({ SLACK_BOT_TOKEN: '  ', DISCORD_TOKEN: 'x' }), null);
  });

  it('HTTP receiver: bot token + signing secret, default port and API URL', () => {
    assert.deepEqual(slackConfigFromEnv({ SLACK_BOT_TOKEN: 'xoxb-1-2', SLACK_SIGNING_SECRET: 'secret' }), {
      botToken: 'xoxb-1-2', signingSecret: 'secret', port: 3001, apiUrl: DEFAULT_SLACK_API_URL, appToken: undefined, socketMode: false,
    });
  });

  it('Socket Mode when SLACK_APP_TOKEN is set (no signing secret needed); API URL gets its trailing slash', () => {
    const config = slackConfigFromEnv({ SLACK_BOT_TOKEN: 'xoxb-1', SLACK_APP_TOKEN: 'xapp-1', SLACK_API_URL: 'http://127.0.0.1:8080/api', SLACK_PORT: '' })!;
    assert.equal(config.socketMode, true);
    assert.equal(config.appToken, 'xapp-1');
    assert.equal(config.apiUrl, 'http://127.0.0.1:8080/api/');
    assert.equal(config.port, 3001);
  });

  it('lists every problem, each naming its variable and the fix', () => {
    const problems = problemsOf({ SLACK_BOT_TOKEN: 'xoxp-user', SLACK_PORT: '70000', SLACK_API_URL: 'ftp://x', SLACK_APP_TOKEN: 'xoxb-wrong' });
    assert.equal(problems.length, 4);
    assert.match(problems[0]!, /^SLACK_BOT_TOKEN must be a bot token starting with "xoxb-"/);
    assert.match(problems[1]!, /^SLACK_PORT must be between 0 and 65535/);
    assert.match(problems[2]!, /^SLACK_API_URL must be an http\(s\) URL/);
    assert.match(problems[3]!, /^SLACK_APP_TOKEN must be an app-level token starting with "xapp-"/);
  });

  it('a missing bot token or signing secret is reported with where to find it', () => {
    const problems = problemsOf({ SLACK_PORT: '3000' });
    assert.deepEqual(problems.map((p) => p.split(' ')[0]), ['SLACK_BOT_TOKEN', 'SLACK_SIGNING_SECRET']);
    assert.match(problems[0]!, /OAuth & Permissions/);
    assert.match(problems[1]!, /Basic Information.*SLACK_APP_TOKEN/);
    assert.match(problemsOf({ SLACK_BOT_TOKEN: 'xoxb-1', SLACK_SIGNING_SECRET: 's', SLACK_PORT: 'http' })[0]!, /^SLACK_PORT must be a port number/);
    assert.match(new SlackConfigError(['a', 'b']).message, /^Slack is not configured correctly:\n {2}- a\n {2}- b$/);
  });
});
