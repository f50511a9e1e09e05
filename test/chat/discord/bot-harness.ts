// The whole bot with its Discord front end against the fake Discord, for end-to-end tests: startApp on a real
// SQLite database (as src/main.ts starts it), the real discord.js client logged in to the fake, commands
// registered there with `registerCommands`. Restart = stop the app (and with it the front end) and start again on
// the same database and the same fake.
import assert from 'node:assert/strict';
import type { APIMessage } from 'discord.js';
import { startApp, type App } from '../../../src/app.ts';
import { discordFrontEnd } from '../../../src/chat/discord/front-end.ts';
import type { DiscordConfig } from '../../../src/chat/discord/config.ts';
import { registerCommands } from '../../../src/chat/discord/register.ts';
import type { JobExecutor } from '../../../src/jobs/executor.ts';
import { testConfig, testDataDir, waitFor, type TestDir } from '../../src/helpers.ts';
import { ShiftedClock } from './clocks.ts';
import { FakeDiscord, type FakeInteraction } from './fake-discord.ts';

export interface DiscordBot {
  fake: FakeDiscord;
  clock: ShiftedClock;
  dir: TestDir;
  config: DiscordConfig;
  app: App;
  /** stops the app and its front end, then starts both again on the same database */
  restart(executor?: JobExecutor): Promise<void>;
  stop(): Promise<void>;
}

export interface DiscordBotOptions {
  env?: Record<string, string>;
  /** a scheduler test double; default: the real GPU worker pool on the fixture model */
  executor?: () => JobExecutor;
  editIntervalMs?: number;
}

export async function startDiscordBot(options: DiscordBotOptions = {}): Promise<DiscordBot> {
  const clock = new ShiftedClock();
  const fake = await FakeDiscord.start({ clock, guilds: [{ name: 'Fake Server', channels: ['general', 'studio'] }] });
  const dir = await testDataDir({ LOCAL_CHAT: 'false', ...options.env });
  const config: DiscordConfig = { token: fake.token, applicationId: fake.applicationId, guildId: fake.defaultGuild.id, apiUrl: fake.apiUrl };
  await registerCommands(config);
  const boot = (executor?: JobExecutor) => startApp(testConfig(dir.env), {
    ...(executor ? { executor } : {}),
    frontEnds: [discordFrontEnd(config, { clock, editIntervalMs: options.editIntervalMs ?? 50, readyTimeoutMs: 15_000 })],
  });
  const bot: DiscordBot = {
    fake, clock, dir, config,
    app: await boot(options.executor?.()),
    async restart(executor) {
      await bot.app.stop();
      bot.app = await boot(executor ?? options.executor?.());
    },
    async stop() {
      await bot.app?.stop();
      await fake.stop();
      dir.cleanup();
    },
  };
  return bot;
}

/** The reply message of an interaction once `match` holds for it. */
export function replyWhen(sent: FakeInteraction, match: (m: APIMessage) => boolean, what: string, ms = 10_000): Promise<APIMessage> {
  return waitFor(() => { const m = sent.originalMessage; return m && match(m) ? m : undefined; }, ms, what);
}

/**
 * A state the reply message had at some point (as created or after an edit) that `match` holds for: quick jobs
 * move on before a test looks, so their states are found in the message's history.
 */
export function replyStateWhen(sent: FakeInteraction, match: (m: APIMessage) => boolean, what: string, ms = 10_000): Promise<APIMessage> {
  return waitFor(() => sent.replyHistory.find(match), ms, what);
}

/** The one follow-up the bot sent for an interaction (a private answer to a public command). */
export function followUpWhen(sent: FakeInteraction, what: string, ms = 10_000): Promise<APIMessage> {
  return waitFor(() => sent.followups[0], ms, what);
}

export function buttonIds(message: APIMessage): string[] {
  return (message.components ?? []).flatMap((row) => ((row as { components?: Array<{ custom_id?: string }> }).components ?? []).map((b) => b.custom_id ?? ''));
}

/** The job a public reply is about, from its Cancel button. */
export function jobIdOf(message: APIMessage): number {
  const cancel = buttonIds(message).find((id) => id.startsWith('cancel:'));
  assert.ok(cancel, `a Cancel button on: ${message.content}`);
  return Number(cancel.slice('cancel:'.length));
}

export async function download(url: string): Promise<Buffer> {
  const response = await fetch(url);
  assert.equal(response.status, 200, `GET ${url}`);
  return Buffer.from(await response.arrayBuffer());
}
