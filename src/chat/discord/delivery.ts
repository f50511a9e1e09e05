// Where a job's messages go over its life. An interaction token works for 15 minutes; training can take longer.
// While the token lives, the bot edits its reply. After that it edits the reply through the channel (progress)
// and posts the result as a new channel message that mentions the user; when the channel is gone or closed to
// the bot, or the request was ephemeral, the result goes to the user's DMs. The routing is stored with the job
// (InteractionRoute, as the job's DeliveryRoute data), so any process can pick the right path after a restart.
import { DiscordAPIError } from 'discord.js';
import { z } from 'zod';
import type { DeliveryRoute } from '../types.ts';

export const INTERACTION_TOKEN_TTL_MS = 15 * 60_000;
/** Stop using the token a minute early: an edit started at 14:59 may land after 15:00. */
export const TOKEN_SAFETY_MARGIN_MS = 60_000;

export interface InteractionRoute {
  applicationId: string;
  interactionId: string;
  token: string;
  /** When Discord created the interaction (epoch ms, from its snowflake); the token dies 15 minutes later. */
  createdAt: number;
  guildId: string | null;
  channelId: string | null;
  userId: string;
  /** The reply is visible to the requester only: the result must not land in the public channel. */
  ephemeral: boolean;
  /** The reply message, once known: lets the bot edit it through the channel after the token died. */
  replyMessageId: string | null;
  /** Discord already refused the token (401/50027): never call it again, whatever the clock says. */
  tokenDead: boolean;
}

export const interactionRouteSchema = z.object({
  applicationId: z.string().regex(/^\d+$/),
  interactionId: z.string().regex(/^\d+$/),
  token: z.string().min(1),
  createdAt: z.number().int().nonnegative(),
  guildId: z.string().regex(/^\d+$/).nullable(),
  channelId: z.string().regex(/^\d+$/).nullable(),
  userId: z.string().regex(/^\d+$/),
  ephemeral: z.boolean(),
  replyMessageId: z.string().regex(/^\d+$/).nullable(),
  tokenDead: z.boolean(),
});

/** The fields of a discord.js interaction the route needs. */
export interface RoutableInteraction {
  applicationId: string;
  id: string;
  token: string;
  createdTimestamp: number;
  guildId: string | null;
  channelId: string | null;
  user: { id: string };
}

export function routeFromInteraction(interaction: RoutableInteraction, options: { ephemeral: boolean }): InteractionRoute {
  return {
    applicationId: interaction.applicationId,
    interactionId: interaction.id,
    token: interaction.token,
    createdAt: interaction.createdTimestamp,
    guildId: interaction.guildId,
    channelId: interaction.channelId,
    userId: interaction.user.id,
    ephemeral: options.ephemeral,
    replyMessageId: null,
    tokenDead: false,
  };
}

/** The route as the core stores it with a job (DeliveryRoute.data holds the InteractionRoute's fields). */
export function deliveryRoute(route: InteractionRoute): DeliveryRoute {
  return { platform: 'discord', data: { ...route } };
}

/** A stored route read back; null when it is not a Discord route or not one this adapter wrote. */
export function routeFromDelivery(route: DeliveryRoute): InteractionRoute | null {
  if (route.platform !== 'discord') return null;
  const parsed = interactionRouteSchema.safeParse(route.data);
  return parsed.success ? parsed.data : null;
}

export interface TokenTiming {
  tokenTtlMs?: number;
  safetyMarginMs?: number;
}

/** Until when (epoch ms) the bot may call the interaction token. */
export function tokenUsableUntil(route: InteractionRoute, timing: TokenTiming = {}): number {
  return route.createdAt + (timing.tokenTtlMs ?? INTERACTION_TOKEN_TTL_MS) - (timing.safetyMarginMs ?? TOKEN_SAFETY_MARGIN_MS);
}

export function isTokenUsable(route: InteractionRoute, now: number, timing: TokenTiming = {}): boolean {
  return !route.tokenDead && now < tokenUsableUntil(route, timing);
}

export type ProgressTarget =
  | { via: 'interaction-reply' }
  | { via: 'channel-edit'; channelId: string; messageId: string }
  | { via: 'none' };

/** Where the next progress edit goes at `now`. */
export function progressTarget(route: InteractionRoute, now: number, timing: TokenTiming = {}): ProgressTarget {
  if (isTokenUsable(route, now, timing)) return { via: 'interaction-reply' };
  // A bot can edit its own non-ephemeral reply through the channel (bot token, no expiry).
  if (!route.ephemeral && route.channelId && route.replyMessageId) {
    return { via: 'channel-edit', channelId: route.channelId, messageId: route.replyMessageId };
  }
  return { via: 'none' };
}

export type FinalTarget =
  | { via: 'interaction-reply' }
  | { via: 'channel-message'; channelId: string; userId: string }
  | { via: 'direct-message'; userId: string };

/**
 * The ways to deliver a job's result at `now`, best first; the caller tries them in order and moves on when
 * one fails. The channel is skipped for ephemeral requests (the result would go public) and in DMs, where
 * the direct message is the same conversation.
 */
export function finalTargets(route: InteractionRoute, now: number, timing: TokenTiming = {}): FinalTarget[] {
  const targets: FinalTarget[] = [];
  if (isTokenUsable(route, now, timing)) targets.push({ via: 'interaction-reply' });
  if (!route.ephemeral && route.guildId && route.channelId) {
    targets.push({ via: 'channel-message', channelId: route.channelId, userId: route.userId });
  }
  targets.push({ via: 'direct-message', userId: route.userId });
  return targets;
}

/** Discord's error codes that close one delivery path for good. */
export const DISCORD_ERROR = {
  unknownChannel: 10003,
  unknownMessage: 10008,
  unknownUser: 10013,
  unknownWebhook: 10015,
  unknownInteraction: 10062,
  missingAccess: 50001,
  cannotSendToUser: 50007,
  missingPermissions: 50013,
  invalidWebhookToken: 50027,
} as const;

/** True when Discord refused the interaction token itself (expired or unknown): stop using it. */
export function isTokenDeadError(error: unknown): boolean {
  return error instanceof DiscordAPIError && (
    error.code === DISCORD_ERROR.invalidWebhookToken ||
    error.code === DISCORD_ERROR.unknownWebhook ||
    error.code === DISCORD_ERROR.unknownInteraction);
}

export interface DeliveryOutcome {
  /** The target that took the result, or null when every path failed. */
  delivered: FinalTarget | null;
  /** Every target tried, in order, with its error when it failed. */
  attempts: Array<{ target: FinalTarget; error?: unknown }>;
  /** The route as it stands after the attempts (tokenDead set when Discord refused the token). */
  route: InteractionRoute;
}

/** Tries the final targets in order with `send` until one succeeds. */
export async function deliverResult(
  route: InteractionRoute,
  now: number,
  send: (target: FinalTarget) => Promise<void>,
  timing: TokenTiming = {},
): Promise<DeliveryOutcome> {
  const attempts: DeliveryOutcome['attempts'] = [];
  let current = route;
  for (const target of finalTargets(route, now, timing)) {
    try {
      await send(target);
      attempts.push({ target });
      return { delivered: target, attempts, route: current };
    } catch (error) {
      attempts.push({ target, error });
      if (target.via === 'interaction-reply' && isTokenDeadError(error)) current = { ...current, tokenDead: true };
    }
  }
  return { delivered: null, attempts, route: current };
}
