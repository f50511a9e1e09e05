// Builds the Bolt app from the Slack configuration: the HTTP receiver (signature-checked, requests older than
// five minutes refused, Request URL path /slack/events) or Socket Mode when an app-level token is configured.
// The Web API base is configurable so the bot can run behind a proxy or against the test server.
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { App, LogLevel, type Logger } from '@slack/bolt';
import { SLACK_EVENTS_PATH, type SlackConfig } from './config.ts';

export interface BoltAppOptions {
  logger?: Logger;
  logLevel?: LogLevel;
  /** Web API retries; Bolt's default retries for up to ~30 minutes, tests use 0 to see failures at once. */
  retries?: number;
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
  if (config.socketMode) {
    return new App({ token: config.botToken, appToken: config.appToken, socketMode: true, clientOptions, ...logging });
  }
  return new App({
    token: config.botToken,
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
