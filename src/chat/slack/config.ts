// Slack adapter configuration from environment variables, validated at start with messages that name the
// variable and say how to fix it.
import { z } from 'zod';

export const DEFAULT_SLACK_API_URL = 'https://slack.com/api/';
/** Not 3000: that is the local web chat's default PORT, and both run in one process. */
export const DEFAULT_SLACK_PORT = 3001;
/** Bolt's default Request URL path for the HTTP receiver. */
export const SLACK_EVENTS_PATH = '/slack/events';

export interface SlackConfig {
  botToken: string;
  /** Required for the HTTP receiver; unused in Socket Mode. */
  signingSecret: string | undefined;
  port: number;
  /** Web API base with a trailing slash (Bolt's `clientOptions.slackApiUrl`). */
  apiUrl: string;
  /** App-level token; when set the app connects with Socket Mode instead of listening for HTTP requests. */
  appToken: string | undefined;
  socketMode: boolean;
}

export class SlackConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Slack is not configured correctly:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'SlackConfigError';
  }
}

const SLACK_VARIABLES = ['SLACK_BOT_TOKEN', 'SLACK_SIGNING_SECRET', 'SLACK_PORT', 'SLACK_API_URL', 'SLACK_APP_TOKEN'] as const;

/** Unset and empty variables read the same (an empty line in a .env file means "not set"). */
function blankAsUnset<T extends z.ZodType>(schema: T) {
  return z.preprocess((v) => (typeof v === 'string' && v.trim() === '' ? undefined : typeof v === 'string' ? v.trim() : v), schema);
}

const schema = z.object({
  SLACK_BOT_TOKEN: blankAsUnset(z.string({ error: 'is missing: set it to the Bot User OAuth Token (xoxb-…) from the app\'s "OAuth & Permissions" page' })
    .startsWith('xoxb-', { error: 'must be a bot token starting with "xoxb-" (the Bot User OAuth Token, not a user or app token)' })),
  SLACK_SIGNING_SECRET: blankAsUnset(z.string().optional()),
  SLACK_PORT: blankAsUnset(z.coerce.number({ error: 'must be a port number' })
    .int({ error: 'must be a whole port number' })
    .min(0, { error: 'must be between 0 and 65535' })
    .max(65535, { error: 'must be between 0 and 65535' })
    .optional()),
  SLACK_API_URL: blankAsUnset(z.url({ protocol: /^https?$/, error: 'must be an http(s) URL such as https://slack.com/api/' }).optional()),
  SLACK_APP_TOKEN: blankAsUnset(z.string()
    .startsWith('xapp-', { error: 'must be an app-level token starting with "xapp-" (Basic Information → App-Level Tokens, scope connections:write)' })
    .optional()),
});

/**
 * Reads the Slack settings. Returns null when no SLACK_* variable is set (Slack is simply not enabled);
 * throws SlackConfigError listing every problem when some are set but the set is unusable.
 */
export function slackConfigFromEnv(env: Record<string, string | undefined>): SlackConfig | null {
  if (!SLACK_VARIABLES.some((name) => (env[name] ?? '').trim() !== '')) return null;
  const parsed = schema.safeParse(env);
  const problems = parsed.success ? [] : parsed.error.issues.map((issue) => `${String(issue.path[0] ?? 'Slack')} ${issue.message}`);
  const isSet = (name: string) => (env[name] ?? '').trim() !== '';
  if (!isSet('SLACK_APP_TOKEN') && !isSet('SLACK_SIGNING_SECRET')) {
    problems.push('SLACK_SIGNING_SECRET is missing: set it to the Signing Secret from the app\'s "Basic Information" page '
      + '(or set SLACK_APP_TOKEN to use Socket Mode, which needs no public URL)');
  }
  if (!parsed.success || problems.length > 0) throw new SlackConfigError(problems);
  const v = parsed.data;
  const apiUrl = v.SLACK_API_URL ?? DEFAULT_SLACK_API_URL;
  return {
    botToken: v.SLACK_BOT_TOKEN,
    signingSecret: v.SLACK_SIGNING_SECRET,
    port: v.SLACK_PORT ?? DEFAULT_SLACK_PORT,
    apiUrl: apiUrl.endsWith('/') ? apiUrl : `${apiUrl}/`,
    appToken: v.SLACK_APP_TOKEN,
    socketMode: v.SLACK_APP_TOKEN !== undefined,
  };
}
