// `npm start` (src/main.ts as a real process) with DISCORD_* settings: the Discord front end logs in to the fake
// Discord beside the core, answers /queue through the core, and stops cleanly on SIGTERM; unusable settings or a
// token Discord refuses stop the start with a message saying what to fix.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { registerCommands } from '../../../src/chat/discord/register.ts';
import { ROOT, testDataDir, waitFor, type TestDir } from '../../src/helpers.ts';
import { FakeDiscord } from './fake-discord.ts';

function startMain(env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => { out += d; });
  child.stderr!.on('data', (d) => { err += d; });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, out: () => out, err: () => err };
}

describe('npm start with Discord settings', { timeout: 120_000 }, () => {
  let fake: FakeDiscord;
  let dir: TestDir;
  let env: Record<string, string>;
  before(async () => {
    fake = await FakeDiscord.start();
    dir = await testDataDir({ LOCAL_CHAT: 'false', LOG_LEVEL: 'info' });
    env = { ...dir.env, DISCORD_TOKEN: fake.token, DISCORD_APP_ID: fake.applicationId, DISCORD_GUILD_ID: fake.defaultGuild.id, DISCORD_API_URL: fake.apiUrl };
    await registerCommands({ token: fake.token, applicationId: fake.applicationId, guildId: fake.defaultGuild.id, apiUrl: fake.apiUrl });
  });
  after(async () => {
    await fake?.stop();
    dir?.cleanup();
  });

  test('unusable settings stop the start, naming what to fix', async () => {
    const bot = startMain({ ...dir.env, DISCORD_APP_ID: 'my-bot' });
    assert.equal(await bot.exited, 1);
    assert.match(bot.err(), /Discord settings are not usable:\n {2}- DISCORD_TOKEN is not set/);
    assert.match(bot.err(), /- DISCORD_APP_ID must be the numeric Application ID/);
    assert.match(bot.err(), /See the README's Discord section\./);
  });

  test('a token Discord refuses stops the start with a sentence about DISCORD_TOKEN', async () => {
    const bot = startMain({ ...env, DISCORD_TOKEN: 'not-the-token' });
    assert.equal(await bot.exited, 1);
    assert.match(bot.err(), /perfusion-bot could not start: Could not log in to Discord at .*Check DISCORD_TOKEN/);
  });

  test('logs in beside the core, answers /queue through it, and stops cleanly on SIGTERM', async () => {
    const bot = startMain(env);
    try {
      await waitFor(() => (bot.out().includes('"Discord connected"') ? true : undefined), 60_000, `Discord to connect:\n${bot.out()}${bot.err()}`);
      assert.equal(fake.identifies.length, 1);
      const sent = fake.chatInput({ name: 'queue', user: fake.createUser('ann') });
      const reply = await waitFor(() => (sent.originalMessage?.content ? sent.originalMessage : undefined), 10_000, 'the /queue reply');
      assert.match(reply.content, /The queue is empty/);
      bot.child.kill('SIGTERM');
      assert.equal(await bot.exited, 0, bot.err());
      assert.match(bot.out(), /stopped cleanly/);
      await waitFor(() => (fake.gatewaySessions === 0 ? true : undefined), 5_000, 'the gateway session to close');
    } finally {
      if (bot.child.exitCode === null) { bot.child.kill('SIGKILL'); await bot.exited; }
    }
  });
});
