// Who clicked or typed: the person's display name and whether they are a workspace admin or owner (who may
// delete others' concepts and images), from users.info, remembered for a few minutes per workspace and user.
import type { webApi } from '@slack/bolt';
import type { Logger } from '../../log.ts';
import type { ChatUser } from '../types.ts';

const TTL_MS = 5 * 60_000;
const MAX_ENTRIES = 5000;

export class SlackUsers {
  private readonly known = new Map<string, { user: ChatUser; at: number }>();

  constructor(private readonly client: webApi.WebClient, private readonly log: Logger, private readonly ttlMs = TTL_MS) {}

  /**
   * The person as the core sees them. When users.info cannot be read (no users:read scope, Slack down) they
   * are not an admin and are called by the name the event carried.
   */
  async get(teamId: string, userId: string, fallbackName: string): Promise<ChatUser> {
    const key = `${teamId}/${userId}`;
    const hit = this.known.get(key);
    if (hit && Date.now() - hit.at < this.ttlMs) return hit.user;
    let user: ChatUser;
    try {
      const res = await this.client.users.info({ user: userId });
      const u = res.user;
      user = {
        platform: 'slack', externalId: userId,
        displayName: u?.profile?.display_name || u?.real_name || u?.name || fallbackName || userId,
        isAdmin: Boolean(u?.is_admin || u?.is_owner || u?.is_primary_owner),
      };
    } catch (err) {
      this.log.warn({ err, user: userId }, 'users.info failed; treating the user as a non-admin');
      return { platform: 'slack', externalId: userId, displayName: fallbackName || userId, isAdmin: false };
    }
    if (this.known.size >= MAX_ENTRIES) this.known.clear();
    this.known.set(key, { user, at: Date.now() });
    return user;
  }
}
