// Discord settings from the environment, validated once at start.
import { z } from 'zod';

export const DEFAULT_DISCORD_API_URL = 'https://discord.com/api';

export interface DiscordConfig {
  /** Bot token, without the "Bot " prefix. */
  token: string;
  /** The application's id (a snowflake). */
  applicationId: string;
  /** When set, commands are registered to this one server (instant updates) instead of globally. */
  guildId: string | null;
  /**
   * discord.js's `rest.api`: the REST base without the version, e.g. `https://discord.com/api`. A proxy or a
   * test server can stand in; the gateway URL then comes from that API's `GET /gateway/bot` as usual.
   */
  apiUrl: string;
}

/** A setting is missing or malformed; the message names every problem and how to fix it. */
export class DiscordConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`Discord settings are not usable:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'DiscordConfigError';
    this.problems = problems;
  }
}

const SNOWFLAKE = /^\d{15,21}$/;

/** Unset and blank values are the same thing in an .env file. */
const blankToUndefined = (value: unknown) => (typeof value === 'string' && value.trim() === '' ? undefined : value);

const schema = z.object({
  DISCORD_TOKEN: z.preprocess(blankToUndefined, z
    .string({ error: 'DISCORD_TOKEN is not set: copy the bot token from the Developer Portal (Bot → Reset Token).' })
    .trim()
    .refine((t) => !/^bot\s/i.test(t), { error: 'DISCORD_TOKEN starts with "Bot ": set the bare token, without the prefix.' })
    .refine((t) => /^bot\s/i.test(t) || !/\s/.test(t), { error: 'DISCORD_TOKEN contains spaces: paste the token exactly as the Developer Portal shows it.' })),
  DISCORD_APP_ID: z.preprocess(blankToUndefined, z
    .string({ error: 'DISCORD_APP_ID is not set: copy the Application ID from the Developer Portal (General Information).' })
    .trim()
    .regex(SNOWFLAKE, { error: 'DISCORD_APP_ID must be the numeric Application ID (15–21 digits).' })),
  DISCORD_GUILD_ID: z.preprocess(blankToUndefined, z
    .string()
    .trim()
    .regex(SNOWFLAKE, { error: 'DISCORD_GUILD_ID must be a numeric server id (15–21 digits), or be left unset for global commands.' })
    .optional()),
  DISCORD_API_URL: z.preprocess(blankToUndefined, z
    .string()
    .trim()
    .transform((value, ctx) => {
      let url: URL;
      try {
        url = new URL(value);
      } catch {
        ctx.addIssue({ code: 'custom', message: `DISCORD_API_URL "${value}" is not a URL; use e.g. ${DEFAULT_DISCORD_API_URL}.` });
        return z.NEVER;
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        ctx.addIssue({ code: 'custom', message: `DISCORD_API_URL must be an http(s) URL, not ${url.protocol}.` });
        return z.NEVER;
      }
      if (url.search || url.hash) {
        ctx.addIssue({ code: 'custom', message: 'DISCORD_API_URL must not carry a query or fragment.' });
        return z.NEVER;
      }
      const base = url.href.replace(/\/+$/, '');
      // discord.js appends /v10 itself; a versioned base would become /api/v10/v10.
      if (/\/v\d+$/.test(base)) {
        ctx.addIssue({ code: 'custom', message: `DISCORD_API_URL must not end with an API version (${base}); drop the /vNN part.` });
        return z.NEVER;
      }
      return base;
    })
    .optional()),
});

/** Reads the Discord settings from `env` (normally `process.env`); throws DiscordConfigError listing all problems. */
export function parseDiscordConfig(env: Record<string, string | undefined>): DiscordConfig {
  const parsed = schema.safeParse(env);
  if (!parsed.success) throw new DiscordConfigError(parsed.error.issues.map((issue) => issue.message));
  const { DISCORD_TOKEN, DISCORD_APP_ID, DISCORD_GUILD_ID, DISCORD_API_URL } = parsed.data;
  return {
    token: DISCORD_TOKEN,
    applicationId: DISCORD_APP_ID,
    guildId: DISCORD_GUILD_ID ?? null,
    apiUrl: DISCORD_API_URL ?? DEFAULT_DISCORD_API_URL,
  };
}

/**
 * True when the environment asks for the Discord front end at all: a token or an application id is set (with
 * only one of them, parseDiscordConfig then says which one is missing instead of Discord silently staying off).
 */
export function isDiscordEnabled(env: Record<string, string | undefined>): boolean {
  return (env.DISCORD_TOKEN ?? '').trim() !== '' || (env.DISCORD_APP_ID ?? '').trim() !== '';
}
