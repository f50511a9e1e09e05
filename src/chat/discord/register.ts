// Registers the bot's application commands with Discord: `npm run discord:register`.
// To one server when DISCORD_GUILD_ID is set (updates show at once), otherwise globally (servers and DMs).
// PUT replaces the whole list, so running it again is harmless.
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { DiscordAPIError, REST, Routes } from 'discord.js';
import { commands as coreCommands } from '../../../commands/index.ts';
import type { CommandDescription } from '../types.ts';
import { applicationCommands, type CommandScope } from './application-commands.ts';
import { DiscordConfigError, parseDiscordConfig, type DiscordConfig } from './config.ts';

export interface RegisteredCommand { id: string; name: string; type: number }
export interface RegisterResult {
  scope: CommandScope;
  guildId: string | null;
  commands: RegisteredCommand[];
}

/** The core's commands, as the bot registers them. */
export const CORE_COMMANDS: readonly CommandDescription[] = coreCommands.map((c) => c.description);

/** PUTs the command list; rejects with RegisterCommandsError (worded for the operator) when Discord refuses. */
export async function registerCommands(config: DiscordConfig, rest?: REST, descriptions: readonly CommandDescription[] = CORE_COMMANDS): Promise<RegisterResult> {
  const client = rest ?? new REST({ api: config.apiUrl, retries: 1, timeout: 15_000 }).setToken(config.token);
  const scope: CommandScope = config.guildId ? 'guild' : 'global';
  const route = config.guildId
    ? Routes.applicationGuildCommands(config.applicationId, config.guildId)
    : Routes.applicationCommands(config.applicationId);
  let registered: unknown;
  try {
    registered = await client.put(route, { body: applicationCommands(descriptions, scope) });
  } catch (error) {
    throw new RegisterCommandsError(describeRegisterFailure(error, config), { cause: error });
  }
  const commands = (registered as RegisteredCommand[]).map(({ id, name, type }) => ({ id, name, type }));
  return { scope, guildId: config.guildId, commands };
}

export class RegisterCommandsError extends Error {
  override name = 'RegisterCommandsError';
}

function describeRegisterFailure(error: unknown, config: DiscordConfig): string {
  if (error instanceof DiscordAPIError) {
    if (error.status === 401) return 'Discord rejected the bot token (401 Unauthorized): check DISCORD_TOKEN.';
    if (error.status === 403 || error.status === 404) {
      return config.guildId
        ? `Discord refused commands for server ${config.guildId} (${error.status}: ${error.message}). ` +
          'Check DISCORD_GUILD_ID, and that the bot was invited there with the applications.commands scope.'
        : `Discord refused the global commands (${error.status}: ${error.message}): check DISCORD_APP_ID.`;
    }
    if (error.code === 50035) {
      return `Discord rejected the command definitions (${error.message}). Details: ${JSON.stringify(error.rawError)}`;
    }
    return `Discord answered ${error.status} (${error.code}): ${error.message}`;
  }
  const reason = error instanceof Error ? error.message : String(error);
  return `Could not reach Discord at ${config.apiUrl}: ${reason}. Check the network or DISCORD_API_URL.`;
}

async function main(): Promise<number> {
  if (existsSync('.env')) process.loadEnvFile('.env');
  let config: DiscordConfig;
  try {
    config = parseDiscordConfig(process.env);
  } catch (error) {
    if (error instanceof DiscordConfigError) { console.error(error.message); return 2; }
    throw error;
  }
  try {
    const result = await registerCommands(config);
    const where = result.guildId ? `server ${result.guildId}` : 'all servers and DMs (global; may take a moment to show)';
    console.log(`Registered ${result.commands.length} commands for ${where}:`);
    for (const c of result.commands) console.log(`  ${c.type === 1 ? '/' : ''}${c.name}  (id ${c.id})`);
    return 0;
  } catch (error) {
    if (error instanceof RegisterCommandsError) { console.error(error.message); return 1; }
    throw error;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main();
}
