// What the Slack adapter stores with a job (DeliveryRoute.data) so that its updates reach the right place, also
// after a restart: the workspace, the channel and thread, the progress message once posted, the requester, and
// the uploaded result (so a result delivered again is not uploaded twice). Also the workspace → scope rule.
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { ChatScope, DeliveryRoute } from '../types.ts';

export const slackRouteSchema = z.object({
  teamId: z.string().min(1),
  enterpriseId: z.string().nullable(),
  /** where the progress message is (or will be) posted; a DM channel when the bot could not post in the original one */
  channelId: z.string().min(1),
  /** the thread the job's messages go in; null until the progress message starts one */
  threadTs: z.string().nullable(),
  /** the progress message: edited as the job goes, it ends as the result with its buttons */
  messageTs: z.string().nullable(),
  userId: z.string().min(1),
  /** ties a job to the request that created it while its reply is still being posted (see SlackDelivery) */
  requestId: z.string().min(1),
  /** the uploaded result image, once uploaded */
  resultFileId: z.string().nullable(),
});
export type SlackRoute = z.infer<typeof slackRouteSchema>;

/** A new route for a request from `userId` in `channelId` (in the thread `threadTs`, when given). */
export function newSlackRoute(fields: { teamId: string; enterpriseId: string | null; channelId: string; userId: string; threadTs?: string | null }): SlackRoute {
  return {
    teamId: fields.teamId, enterpriseId: fields.enterpriseId, channelId: fields.channelId, threadTs: fields.threadTs ?? null,
    messageTs: null, userId: fields.userId, requestId: randomUUID(), resultFileId: null,
  };
}

export function toDeliveryRoute(route: SlackRoute): DeliveryRoute {
  return { platform: 'slack', data: { ...route } };
}

/** Reads a stored route back; throws when it is not a Slack route this version understands. */
export function readSlackRoute(route: DeliveryRoute): SlackRoute {
  if (route.platform !== 'slack') throw new Error(`not a Slack route (${route.platform})`);
  return slackRouteSchema.parse(route.data);
}

/**
 * A Slack workspace is one community scope: concepts taught in it are shared by its members and invisible to
 * other workspaces. Enterprise Grid workspaces are told apart by their organisation too.
 */
export function slackScope(teamId: string, enterpriseId: string | null | undefined, name?: string): ChatScope {
  return { platform: 'slack', kind: 'community', externalId: `${enterpriseId ?? '-'}/${teamId}`, ...(name ? { name } : {}) };
}
