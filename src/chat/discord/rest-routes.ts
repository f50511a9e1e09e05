// The few REST calls the adapter makes after an interaction was acknowledged, through discord.js's REST client
// (rate limits and retries included). Interaction webhooks use the interaction token and no Authorization
// header; channel and DM routes use the bot token. Only stored route fields are needed, so they work the
// same after a restart.
import { Routes, type APIChannel, type APIMessage, type REST } from 'discord.js';
import type { DiscordPayload } from './render.ts';

/** What the interaction webhook routes need from a stored InteractionRoute. */
export interface InteractionToken { applicationId: string; token: string }

export class DiscordRoutes {
  constructor(private readonly rest: REST) {}

  #options(payload: DiscordPayload, auth: boolean) {
    return { body: payload.body, ...(payload.files.length ? { files: payload.files } : {}), auth };
  }

  /** Edits the reply (`@original`) or a follow-up of an interaction. */
  async editInteractionMessage(route: InteractionToken, messageId: string, payload: DiscordPayload): Promise<APIMessage> {
    return await this.rest.patch(Routes.webhookMessage(route.applicationId, route.token, messageId), this.#options(payload, false)) as APIMessage;
  }

  async deleteInteractionMessage(route: InteractionToken, messageId: string): Promise<void> {
    await this.rest.delete(Routes.webhookMessage(route.applicationId, route.token, messageId), { auth: false });
  }

  /** A follow-up message of an interaction (ephemeral when the payload's flags say so). */
  async followUp(route: InteractionToken, payload: DiscordPayload): Promise<APIMessage> {
    return await this.rest.post(Routes.webhook(route.applicationId, route.token), this.#options(payload, false)) as APIMessage;
  }

  async editChannelMessage(channelId: string, messageId: string, payload: DiscordPayload): Promise<APIMessage> {
    return await this.rest.patch(Routes.channelMessage(channelId, messageId), this.#options(payload, true)) as APIMessage;
  }

  async postChannelMessage(channelId: string, payload: DiscordPayload): Promise<APIMessage> {
    return await this.rest.post(Routes.channelMessages(channelId), this.#options(payload, true)) as APIMessage;
  }

  /** The DM channel with a user (Discord returns the existing one when there is one). */
  async openDirectMessage(userId: string): Promise<string> {
    const channel = await this.rest.post(Routes.userChannels(), { body: { recipient_id: userId } }) as APIChannel;
    return channel.id;
  }
}
