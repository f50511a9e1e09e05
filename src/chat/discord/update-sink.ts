// The core's job updates → Discord. Progress edits the job's reply message at a pace Discord accepts
// (EditThrottle); the final update (the image with its buttons, the taught concept, a failure) goes by the
// route stored with the job: the reply while the interaction token lives, else a channel message that
// mentions only the requester, else a DM. What changes on the way (a refused token) is stored with the job
// through BotCore.updateRoute, so a restarted process takes the same path.
import type { Logger } from '../../log.ts';
import type { BotCore, JobUpdate, OutgoingMessage, UpdateSink } from '../types.ts';
import { systemClock, type Clock } from './clock.ts';
import {
  deliverResult, isTokenDeadError, progressTarget, routeFromDelivery, type FinalTarget, type InteractionRoute, type TokenTiming,
} from './delivery.ts';
import { DEFAULT_EDIT_INTERVAL_MS, EditThrottle } from './edit-throttle.ts';
import { renderMessage } from './render.ts';
import type { DiscordRoutes } from './rest-routes.ts';

/**
 * Holds back a job's updates until the command that created the job has sent its own reply (they edit the same
 * message, and an update must not be overwritten by the older reply). The reply may also move the job to
 * another message (a follow-up): that change travels with the opening.
 */
export class ReplyGate {
  #open = new Map<string, { done: Promise<Partial<InteractionRoute>>; closedAt: number | null }>();
  /** Closed gates are kept this long: an update read from the store just before the reply may still come. */
  static readonly KEEP_MS = 60_000;

  constructor(private readonly clock: Clock = systemClock) {}

  /** Opens the gate of an interaction; call the returned function once its reply went out (or failed). */
  open(interactionId: string): (patch?: Partial<InteractionRoute>) => void {
    const now = this.clock.now();
    for (const [id, gate] of this.#open) if (gate.closedAt !== null && now - gate.closedAt > ReplyGate.KEEP_MS) this.#open.delete(id);
    let release!: (patch: Partial<InteractionRoute>) => void;
    const gate = { done: new Promise<Partial<InteractionRoute>>((resolve) => { release = resolve; }), closedAt: null as number | null };
    this.#open.set(interactionId, gate);
    return (patch = {}) => {
      if (gate.closedAt !== null) return;
      gate.closedAt = this.clock.now();
      release(patch);
    };
  }

  /** Resolves with what the reply changed once it went out; undefined when this process opened no such gate. */
  wait(interactionId: string): Promise<Partial<InteractionRoute>> | undefined {
    return this.#open.get(interactionId)?.done;
  }
}

export class DiscordDeliveryError extends Error {
  override name = 'DiscordDeliveryError';
}

export interface DiscordSinkOptions {
  bot: Pick<BotCore, 'updateRoute'>;
  routes: DiscordRoutes;
  log: Logger;
  gate?: ReplyGate;
  clock?: Clock;
  /** spacing of progress edits of one message */
  editIntervalMs?: number;
  timing?: TokenTiming;
}

interface WatchedJob {
  route: InteractionRoute;
  throttle: EditThrottle<OutgoingMessage>;
}

export class DiscordUpdateSink implements UpdateSink {
  readonly platform = 'discord' as const;
  readonly progressIntervalMs: number;
  readonly #bot: Pick<BotCore, 'updateRoute'>;
  readonly #routes: DiscordRoutes;
  readonly #log: Logger;
  readonly #gate: ReplyGate | null;
  readonly #clock: Clock;
  readonly #timing: TokenTiming;
  readonly #jobs = new Map<number, WatchedJob>();

  constructor(options: DiscordSinkOptions) {
    this.#bot = options.bot;
    this.#routes = options.routes;
    this.#log = options.log;
    this.#gate = options.gate ?? null;
    this.#clock = options.clock ?? systemClock;
    this.#timing = options.timing ?? {};
    this.progressIntervalMs = options.editIntervalMs ?? DEFAULT_EDIT_INTERVAL_MS;
  }

  async deliver(update: JobUpdate): Promise<void> {
    const jobId = update.job.id;
    let job = this.#jobs.get(jobId);
    if (!job) {
      const stored = routeFromDelivery(update.route);
      if (!stored) {
        this.#log.warn({ jobId }, 'job update with a route this adapter cannot read; dropped');
        return;
      }
      const patch = await this.#gate?.wait(stored.interactionId);
      job = {
        route: { ...stored, ...patch },
        throttle: new EditThrottle<OutgoingMessage>({
          send: (message) => this.#progress(jobId, message),
          minIntervalMs: this.progressIntervalMs,
          clock: this.#clock,
          onError: (err) => this.#log.debug({ err, jobId }, 'progress edit failed; the next one will try again'),
        }),
      };
      this.#jobs.set(jobId, job);
    }
    // The command's reply already shows the queued state, with more in it (the image count, the demo note).
    if (update.event === 'queued') return;
    if (!update.final) {
      job.throttle.update(update.message);
      return;
    }
    job.throttle.cancel();
    await job.throttle.idle();
    this.#jobs.delete(jobId);
    await this.#final(jobId, job, update);
  }

  /** Stops all pending progress edits (the front end is stopping). */
  close(): void {
    for (const job of this.#jobs.values()) job.throttle.cancel();
    this.#jobs.clear();
  }

  async #tokenDead(jobId: number, job: WatchedJob): Promise<void> {
    if (job.route.tokenDead) return;
    job.route = { ...job.route, tokenDead: true };
    await this.#bot.updateRoute(jobId, { tokenDead: true });
  }

  async #progress(jobId: number, message: OutgoingMessage): Promise<void> {
    const job = this.#jobs.get(jobId);
    if (!job) return;
    const payload = renderMessage(message);
    let target = progressTarget(job.route, this.#clock.now(), this.#timing);
    if (target.via === 'interaction-reply') {
      try {
        await this.#routes.editInteractionMessage(job.route, job.route.replyMessageId ?? '@original', payload);
        return;
      } catch (err) {
        if (!isTokenDeadError(err)) throw err;
        await this.#tokenDead(jobId, job);
        target = progressTarget(job.route, this.#clock.now(), this.#timing);
      }
    }
    if (target.via === 'channel-edit') await this.#routes.editChannelMessage(target.channelId, target.messageId, payload);
  }

  async #final(jobId: number, job: WatchedJob, update: JobUpdate): Promise<void> {
    const route = job.route;
    const send = async (target: FinalTarget) => {
      switch (target.via) {
        case 'interaction-reply':
          await this.#routes.editInteractionMessage(route, route.replyMessageId ?? '@original', renderMessage(update.message));
          return;
        case 'channel-message':
          await this.#routes.postChannelMessage(target.channelId, renderMessage(update.message, { mention: target.userId }));
          return;
        case 'direct-message': {
          const channelId = await this.#routes.openDirectMessage(target.userId);
          await this.#routes.postChannelMessage(channelId, renderMessage(update.message));
        }
      }
    };
    const outcome = await deliverResult(route, this.#clock.now(), send, this.#timing);
    if (outcome.route.tokenDead) await this.#tokenDead(jobId, job);
    for (const attempt of outcome.attempts) {
      if (attempt.error) this.#log.info({ jobId, via: attempt.target.via, err: attempt.error }, 'a delivery path failed; trying the next');
    }
    if (!outcome.delivered) {
      throw new DiscordDeliveryError(`job ${jobId}: no way to reach user ${route.userId} (${outcome.attempts.map((a) => a.target.via).join(', ')} failed)`);
    }
    if (outcome.delivered.via !== 'interaction-reply') await this.#closeReply(jobId, job, update.message);
  }

  /** The result went out as a new message: the old reply stops showing progress and a Cancel button. */
  async #closeReply(jobId: number, job: WatchedJob, message: OutgoingMessage): Promise<void> {
    const target = progressTarget(job.route, this.#clock.now(), this.#timing);
    if (target.via !== 'channel-edit') return;
    try {
      await this.#routes.editChannelMessage(target.channelId, target.messageId, renderMessage({ text: message.text }));
    } catch (err) {
      this.#log.debug({ err, jobId }, 'could not close the old reply');
    }
  }
}
