import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_DISCORD_API_URL, DiscordConfigError, isDiscordEnabled, parseDiscordConfig } from '../../../src/chat/discord/config.ts';

const APP_ID = '1234567890123456789';

function problemsOf(env: Record<string, string | undefined>): string[] {
  try {
    parseDiscordConfig(env);
  } catch (error) {
    assert.ok(error instanceof DiscordConfigError);
    return error.problems;
  }
  assert.fail('expected a DiscordConfigError');
}

test('a minimal environment gives global registration against discord.com', () => {
  assert.deepEqual(parseDiscordConfig({ DISCORD_TOKEN: ' abc.def.ghi ', DISCORD_APP_ID: APP_ID }), {
    token: 'abc.def.ghi', applicationId: APP_ID, guildId: null, apiUrl: DEFAULT_DISCORD_API_URL,
  });
});

test('guild id and API URL are read; a trailing slash is dropped; blank values count as unset', () => {
  const config = parseDiscordConfig({
    DISCORD_TOKEN: 't', DISCORD_APP_ID: APP_ID, DISCORD_GUILD_ID: '987654321098765432', DISCORD_API_URL: 'http://127.0.0.1:4000/api/',
  });
  assert.equal(config.guildId, '987654321098765432');
  assert.equal(config.apiUrl, 'http://127.0.0.1:4000/api');
  const blank = parseDiscordConfig({ DISCORD_TOKEN: 't', DISCORD_APP_ID: APP_ID, DISCORD_GUILD_ID: '', DISCORD_API_URL: '  ' });
  assert.equal(blank.guildId, null);
  assert.equal(blank.apiUrl, DEFAULT_DISCORD_API_URL);
});

test('every problem is reported at once, each saying what to do', () => {
  const problems = problemsOf({ DISCORD_TOKEN: '', DISCORD_APP_ID: 'my-app', DISCORD_GUILD_ID: '12', DISCORD_API_URL: 'ftp://x' });
  assert.equal(problems.length, 4);
  assert.match(problems[0]!, /DISCORD_TOKEN is not set/);
  assert.match(problems[1]!, /DISCORD_APP_ID must be the numeric Application ID/);
  assert.match(problems[2]!, /DISCORD_GUILD_ID must be a numeric server id/);
  assert.match(problems[3]!, /DISCORD_API_URL must be an http\(s\) URL/);
});

test('common mistakes get specific messages', () => {
  assert.deepEqual(problemsOf({ DISCORD_TOKEN: 'Bot abc', DISCORD_APP_ID: APP_ID }), ['DISCORD_TOKEN starts with "Bot ": set the bare token, without the prefix.']);
  assert.match(problemsOf({ DISCORD_TOKEN: 'ab c', DISCORD_APP_ID: APP_ID })[0]!, /contains spaces/);
  assert.match(problemsOf({ DISCORD_TOKEN: 't', DISCORD_APP_ID: APP_ID, DISCORD_API_URL: 'https://discord.com/api/v10' })[0]!, /must not end with an API version/);
  assert.match(problemsOf({ DISCORD_TOKEN: 't', DISCORD_APP_ID: APP_ID, DISCORD_API_URL: 'not a url' })[0]!, /is not a URL/);
  assert.match(problemsOf({ DISCORD_TOKEN: 't' })[0]!, /DISCORD_APP_ID is not set/);
});

test('the error message lists the problems for the log', () => {
  assert.throws(() => parseDiscordConfig({}), (error: Error) => error.message.includes('DISCORD_TOKEN is not set') && error.message.includes('DISCORD_APP_ID is not set'));
});

test('isDiscordEnabled: a token or an application id asks for Discord; a half setup is then reported, not ignored', () => {
  assert.equal(isDiscordEnabled({}), false);
  assert.equal(isDiscordEnabled({ DISCORD_TOKEN: '  ', DISCORD_GUILD_ID: APP_ID }), false);
  assert.equal(isDiscordEnabled({ DISCORD_TOKEN: 'x' }), true);
  assert.equal(isDiscordEnabled({ DISCORD_APP_ID: APP_ID }), true);
  assert.deepEqual(problemsOf({ DISCORD_APP_ID: APP_ID }), ['DISCORD_TOKEN is not set: copy the bot token from the Developer Portal (Bot → Reset Token).']);
});
