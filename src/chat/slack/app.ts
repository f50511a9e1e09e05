// Builds the Bolt app from the Slack configuration: the HTTP receiver (signature-checked, requests older than
// five minutes refused, Request URL path /slack/events) or Socket Mode when an app-level token is configured.
// The Web API base is configurable so the bot can run behind a proxy or against the test server.
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { App, LogLevel, webApi, type Logger } from '@slack/bolt';
import { SLACK_EVENTS_PATH, type SlackConfig } from './config.ts';

export interface BoltAppOptions {
  logger?: Logger;
  logLevel?: LogLevel;
  /** Web API retries; Bolt's default retries for up to ~30 minutes, tests use 0 to see failures at once. */
  retries?: number;
  /** the bot's ids from verifyBotToken: Bolt then skips its own auth.test (whose failure nothing could catch) */
  identity?: BotIdentity;
}

export interface BotIdentity {
  botId: string;
  botUserId: string;
  teamId: string;
}

/** A start-up problem worded for the person running the bot. */
export class SlackStartError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SlackStartError';
  }
}

/**
 * Checks SLACK_BOT_TOKEN with auth.test before anything starts, so a wrong token or an unreachable API is one
 * clear sentence at start instead of a failure on every request.
 */
export async function verifyBotToken(config: SlackConfig, opts: { retries?: number } = {}): Promise<BotIdentity> {
  const client = new webApi.WebClient(config.botToken, {
    slackApiUrl: config.apiUrl, logLevel: webApi.LogLevel.ERROR,
    retryConfig: { retries: opts.retries ?? 2 },
  });
  let res: webApi.AuthTestResponse;
  try {
    res = await client.auth.test();
  } catch (err) {
    const code = (err as { data?: { error?: string } }).data?.error;
    if (code) {
      throw new SlackStartError(`Slack refused SLACK_BOT_TOKEN (${code}): copy the Bot User OAuth Token (xoxb-…) from the app's "OAuth & Permissions" page, and install the app to the workspace if it is not.`, { cause: err });
    }
    throw new SlackStartError(`Slack's Web API could not be reached at ${config.apiUrl} (${(err as Error).message}). Check the network, or SLACK_API_URL if it is set.`, { cause: err });
  }
  if (!res.bot_id || !res.user_id || !res.team_id) {
    throw new SlackStartError('SLACK_BOT_TOKEN is not a bot token (auth.test names no bot): use the Bot User OAuth Token (xoxb-…).');
  }
  return { botId: res.bot_id, botUserId: res.user_id, teamId: res.team_id };
}

export function createBoltApp(config: SlackConfig, opts: BoltAppOptions = {}): App {
  const clientOptions = {
    slackApiUrl: config.apiUrl,
    ...(opts.retries !== undefined ? { retryConfig: { retries: opts.retries } } : {}),
  };
  const logging = {
    ...(opts.logger ? { logger: opts.logger } : {}),
    logLevel: opts.logLevel ?? LogLevel.INFO,
  };
  const identity = opts.identity ? { botId: opts.identity.botId, botUserId: opts.identity.botUserId } : {};
  if (config.socketMode) {
    return new App({ token: config.botToken, ...identity, appToken: config.appToken, socketMode: true, clientOptions, ...logging });
  }
  return new App({
    token: config.botToken,
    ...identity,
    signingSecret: config.signingSecret,
    endpoints: SLACK_EVENTS_PATH,
    port: config.port,
    clientOptions,
    ...logging,
  });
}

/**
 * Starts receiving: listens on `config.port` (or `listen`, e.g. `{ port: 0, host: '127.0.0.1' }` in tests) with
 * the HTTP receiver and returns the bound port; in Socket Mode connects and returns null.
 */
export async function startBoltApp(app: App, config: SlackConfig, listen?: { port: number; host?: string }): Promise<number | null> {
  if (config.socketMode) {
    await app.start();
    return null;
  }
  const server: Server = await app.start(listen ?? { port: config.port });
  return (server.address() as AddressInfo).port;
}
