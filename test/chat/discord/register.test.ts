// Command registration through the real @discordjs/rest client against the fake Discord, which validates the
// definitions with Discord's rules; and `npm run discord:register` as the operator runs it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { DiscordAPIError, REST } from 'discord.js';
import { applicationCommands } from '../../../src/chat/discord/application-commands.ts';
import type { DiscordConfig } from '../../../src/chat/discord/config.ts';
import { CORE_COMMANDS, registerCommands, RegisterCommandsError } from '../../../src/chat/discord/register.ts';
import { FakeDiscord } from './fake-discord.ts';

const root = new URL('../../../', import.meta.url).pathname;
let fake: FakeDiscord;
let config: DiscordConfig;

before(async () => {
  fake = await FakeDiscord.start();
  config = { token: fake.token, applicationId: fake.applicationId, guildId: null, apiUrl: fake.apiUrl };
});
after(async () => { await fake?.stop(); });

test('with DISCORD_GUILD_ID the commands are PUT to that server, and Discord\'s rules accept them', async () => {
  const since = fake.requests.length;
  const result = await registerCommands({ ...config, guildId: fake.defaultGuild.id });
  assert.equal(result.scope, 'guild');
  const put = fake.requests.slice(since).find((r) => r.method === 'PUT')!;
  assert.equal(put.path, `/api/v10/applications/${fake.applicationId}/guilds/${fake.defaultGuild.id}/commands`);
  assert.equal(put.auth, `Bot ${fake.token}`);
  assert.equal(put.status, 200);
  assert.deepEqual(put.body, JSON.parse(JSON.stringify(applicationCommands(CORE_COMMANDS, 'guild'))));
  const stored = fake.registeredCommands(fake.defaultGuild.id);
  assert.deepEqual(result.commands.map((c) => c.name), stored.map((c) => c.name));
  assert.deepEqual(result.commands.map((c) => c.id), stored.map((c) => c.id));

  const again = await registerCommands({ ...config, guildId: fake.defaultGuild.id });
  assert.deepEqual(again.commands.map((c) => c.id), result.commands.map((c) => c.id), 'PUT again keeps the same commands');
});

test('without it they are PUT globally, with contexts for servers and DMs', async () => {
  const result = await registerCommands(config);
  assert.equal(result.scope, 'global');
  assert.equal(result.commands.length, CORE_COMMANDS.length + 1, 'every core command and the message command');
  const stored = fake.registeredCommands();
  assert.ok(stored.every((c) => JSON.stringify(c.contexts) === '[0,1]'));
  assert.ok(fake.requests.some((r) => r.method === 'PUT' && r.route === `/applications/${fake.applicationId}/commands`));
});

test('the fake enforces Discord\'s command rules, so a broken definition would fail here', async () => {
  const rest = new REST({ api: fake.apiUrl, retries: 0 }).setToken(fake.token);
  const broken = JSON.parse(JSON.stringify(applicationCommands(CORE_COMMANDS, 'guild')));
  broken[0].options.reverse(); // optional steps first, required name last
  broken[1].options[0].choices = [{ name: 'x', value: 'x' }]; // autocomplete together with choices
  await assert.rejects(rest.put(`/applications/${fake.applicationId}/guilds/${fake.defaultGuild.id}/commands`, { body: broken }),
    (error: unknown) => {
      assert.ok(error instanceof DiscordAPIError);
      assert.equal(error.code, 50035);
      const raw = JSON.stringify(error.rawError);
      assert.match(raw, /APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID/);
      assert.match(raw, /APPLICATION_COMMAND_AUTOCOMPLETE_INVALID/);
      return true;
    });
});

test('refusals are explained to the operator', async () => {
  await assert.rejects(registerCommands({ ...config, token: 'wrong' }),
    (error: unknown) => error instanceof RegisterCommandsError && /rejected the bot token.*DISCORD_TOKEN/.test(error.message));
  await assert.rejects(registerCommands({ ...config, guildId: '999999999999999999' }),
    (error: unknown) => error instanceof RegisterCommandsError && /server 999999999999999999.*applications\.commands/.test(error.message));
  await assert.rejects(registerCommands({ ...config, apiUrl: 'http://127.0.0.1:1/api' }),
    (error: unknown) => error instanceof RegisterCommandsError && /Could not reach Discord/.test(error.message));
});

function npmRegister(env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('npm', ['run', '--silent', 'discord:register'], { cwd: root, env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('npm run discord:register registers from the environment, and explains bad settings', async () => {
  const ok = await npmRegister({
    DISCORD_TOKEN: fake.token, DISCORD_APP_ID: fake.applicationId, DISCORD_GUILD_ID: fake.defaultGuild.id, DISCORD_API_URL: fake.apiUrl,
  });
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, new RegExp(`Registered ${CORE_COMMANDS.length + 1} commands for server ${fake.defaultGuild.id}`));
  for (const c of CORE_COMMANDS) assert.match(ok.stdout, new RegExp(`  /${c.name}  \\(id \\d+\\)`));
  assert.match(ok.stdout, /  Teach concept from these images  \(id \d+\)/);

  const bad = await npmRegister({ DISCORD_TOKEN: 'x', DISCORD_APP_ID: 'not-a-number', DISCORD_GUILD_ID: '', DISCORD_API_URL: fake.apiUrl });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /DISCORD_APP_ID must be the numeric Application ID/);
});
