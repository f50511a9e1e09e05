// How the bot's answers and job updates reach Slack.
//
// A command's reply: private replies go to the response_url as an ephemeral message (or chat.postEphemeral when
// there is none, e.g. after a modal); a reply about a new job is posted with chat.postMessage (in the thread of
// the message whose button was clicked, when there is one) and becomes the job's progress message: its ts is
// stored in the job's route (BotCore.updateRoute). Job updates then edit that message through the
// ChatUpdateThrottle; the result image is uploaded with files.uploadV2 into the message's thread (mentioning the
// requester, which notifies them), and the message ends as the result with the core's buttons. When the core
// confirms that an image was deleted (a click on its delete button), the uploaded file is deleted and the result
// message says so.
//
// Where the bot may not post (a private channel or a conversation it is not in) it posts to the requester's DM
// with the app instead, and remembers that channel in the route.
import type { webApi } from '@slack/bolt';
import { buttonId } from '../buttons.ts';
import type { BotCore, JobUpdate, OutgoingMessage, UpdateSink } from '../types.ts';
import type { Logger } from '../../log.ts';
import { slackMessage, type SlackMessage } from './blocks.ts';
import { readSlackRoute, type SlackRoute } from './route.ts';
import { ChatUpdateThrottle, type ThrottleClock } from './throttle.ts';

type WebClient = webApi.WebClient;

/** Slack errors meaning "the bot cannot post in this conversation": the requester's DM is used instead. */
const CANNOT_POST_HERE = new Set(['channel_not_found', 'not_in_channel', 'is_archived', 'restricted_action', 'cant_post_in_channel', 'ekm_access_denied']);
/** Slack errors meaning "that message is gone (or not ours)": a new message is posted instead. */
const MESSAGE_GONE = new Set(['message_not_found', 'cant_update_message', 'channel_not_found', 'is_archived']);
/** How long a job update waits for the reply that creates its progress message. */
const REPLY_WAIT_MS = 30_000;
/** Replies are remembered this long (a job's later updates read the message from the stored route). */
const REPLY_RETENTION_MS = 10 * 60_000;

export function slackErrorCode(error: unknown): string | undefined {
  const data = (error as { data?: { error?: unknown } } | null)?.data;
  return typeof data?.error === 'string' ? data.error : undefined;
}

/** The message a job's updates edit. */
export interface PostedMessage {
  channel: string;
  ts: string;
  /** the thread it belongs to (its own ts when it starts one) */
  threadTs: string;
}

/** The message whose button was clicked, and the button's value. */
export interface ClickedMessage {
  channel: string;
  ts: string;
  value?: string;
}

/** Posts an ephemeral reply through a response_url (Bolt's `respond`). */
export type Responder = (message: SlackMessage & { response_type: 'ephemeral'; replace_original: false }) => Promise<unknown>;

export interface SlackDeliveryOptions {
  client: WebClient;
  core: Pick<BotCore, 'updateRoute'>;
  log: Logger;
  /**
   * least time between two edits of one progress message (default 1500 ms); when given, also the core's progress
   * rate for Slack (otherwise PROGRESS_INTERVAL_MS applies)
   */
  updateIntervalMs?: number;
  clock?: ThrottleClock;
}

export class SlackDelivery {
  readonly throttle: ChatUpdateThrottle<SlackMessage>;
  readonly sink: UpdateSink;
  private readonly client: WebClient;
  private readonly core: Pick<BotCore, 'updateRoute'>;
  private readonly log: Logger;
  /** per request (route.requestId): resolves with the job's progress message once its reply is posted */
  private readonly replies = new Map<string, { posted: Promise<PostedMessage | null>; at: number }>();

  constructor(opts: SlackDeliveryOptions) {
    this.client = opts.client;
    this.core = opts.core;
    this.log = opts.log;
    this.throttle = new ChatUpdateThrottle<SlackMessage>({
      minIntervalMs: opts.updateIntervalMs ?? 1500,
      ...(opts.clock ? { clock: opts.clock } : {}),
      send: async (ref, body) => { await this.client.chat.update({ channel: ref.channel, ts: ref.ts, text: body.text, blocks: body.blocks }); },
      onError: (err, ref) => this.log.warn({ err, channel: ref.channel, ts: ref.ts, slackError: slackErrorCode(err) }, 'a Slack progress edit failed'),
    });
    this.sink = {
      platform: 'slack', deliver: (u) => this.deliver(u),
      ...(opts.updateIntervalMs !== undefined ? { progressIntervalMs: opts.updateIntervalMs } : {}),
    };
  }

  /**
   * Starts a request (a command, a button click, a modal submission) before it is handed to the core: the
   * returned `reply` is the context's reply, `settle` must be called when the core is done with it (so that a
   * job update waiting for a progress message that was never posted stops waiting).
   */
  request(route: SlackRoute, respond?: Responder, source?: ClickedMessage): { reply(message: OutgoingMessage): Promise<void>; settle(): void } {
    this.pruneReplies();
    let resolve!: (message: PostedMessage | null) => void;
    let posted = false;
    this.replies.set(route.requestId, { posted: new Promise<PostedMessage | null>((r) => { resolve = r; }), at: Date.now() });
    return {
      reply: async (message) => {
        if (message.deletedGeneration !== undefined && source) await this.takeDown(source, message);
        if (message.private) {
          await this.replyPrivately(route, slackMessage(message), respond);
          return;
        }
        const at = await this.post(route, slackMessage(message));
        if (message.jobId !== undefined) {
          await this.core.updateRoute(message.jobId, { channelId: at.channel, messageTs: at.ts, threadTs: at.threadTs });
          posted = true;
          resolve(at);
        }
      },
      settle: () => {
        resolve(null);
        // nothing to wait for when no job message was posted (an answer, a refusal)
        if (!posted) this.replies.delete(route.requestId);
      },
    };
  }

  /** Sends what is still queued (bounded by `waitMs`), then drops the rest. */
  async close(waitMs = 5000): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.throttle.idle(), new Promise<void>((r) => { timer = setTimeout(r, waitMs); })]);
    clearTimeout(timer);
    this.throttle.close();
    this.replies.clear();
  }

  /** An ephemeral answer: through the response_url when there is one, else chat.postEphemeral, else the DM. */
  async replyPrivately(route: Pick<SlackRoute, 'channelId' | 'threadTs' | 'userId'>, body: SlackMessage, respond?: Responder): Promise<void> {
    if (respond) {
      try {
        await respond({ response_type: 'ephemeral', replace_original: false, ...body });
        return;
      } catch (err) {
        this.log.info({ err }, 'response_url refused the reply (expired or used up); using chat.postEphemeral');
      }
    }
    try {
      await this.client.chat.postEphemeral({
        channel: route.channelId, user: route.userId, text: body.text, blocks: body.blocks,
        ...(route.threadTs ? { thread_ts: route.threadTs } : {}),
      });
    } catch (err) {
      if (!CANNOT_POST_HERE.has(slackErrorCode(err) ?? '') && slackErrorCode(err) !== 'user_not_in_channel') throw err;
      await this.client.chat.postMessage({ channel: route.userId, text: body.text, blocks: body.blocks });
    }
  }

  /** Posts a message where the route says (its thread, if any); the requester's DM when the bot may not post there. */
  private async post(route: Pick<SlackRoute, 'channelId' | 'threadTs' | 'userId'>, body: SlackMessage): Promise<PostedMessage> {
    const send = async (channel: string, threadTs: string | null) => {
      const res = await this.client.chat.postMessage({ channel, text: body.text, blocks: body.blocks, ...(threadTs ? { thread_ts: threadTs } : {}) });
      return { channel: res.channel ?? channel, ts: res.ts!, threadTs: threadTs ?? res.ts! };
    };
    try {
      return await send(route.channelId, route.threadTs);
    } catch (err) {
      if (!CANNOT_POST_HERE.has(slackErrorCode(err) ?? '') || route.channelId === route.userId) throw err;
      this.log.info({ channel: route.channelId, slackError: slackErrorCode(err) }, 'cannot post in the channel; using the requester\'s DM');
      return send(route.userId, null);
    }
  }

  private pruneReplies(): void {
    const cutoff = Date.now() - REPLY_RETENTION_MS;
    for (const [id, r] of this.replies) if (r.at < cutoff) this.replies.delete(id);
  }

  /** The job's progress message: from the stored route, or from its reply still being posted in this process. */
  private async progressMessage(route: SlackRoute): Promise<PostedMessage | null> {
    if (route.messageTs) return { channel: route.channelId, ts: route.messageTs, threadTs: route.threadTs ?? route.messageTs };
    const pending = this.replies.get(route.requestId);
    if (!pending) return null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const posted = await Promise.race([pending.posted, new Promise<null>((r) => { timer = setTimeout(() => r(null), REPLY_WAIT_MS); })]);
    clearTimeout(timer);
    return posted;
  }

  private async deliver(u: JobUpdate): Promise<void> {
    const route = readSlackRoute(u.route);
    const mention = `<@${route.userId}> `;
    let message = await this.progressMessage(route);
    let fresh = false;
    if (!message) {
      // no progress message (its reply failed, or was not stored before a restart): start one, mentioning the requester
      message = await this.post(route, slackMessage(u.message, { prefix: mention }));
      await this.core.updateRoute(u.job.id, { channelId: message.channel, messageTs: message.ts, threadTs: message.threadTs });
      fresh = true;
      if (!u.final) return;
    }
    const ref = { workspace: route.teamId, channel: message.channel, ts: message.ts };
    if (!u.final) {
      this.throttle.update(ref, slackMessage(u.message));
      return;
    }
    const image = u.message.images?.[0];
    let fileId = route.resultFileId;
    if (image && !fileId) {
      // the mention in the upload's comment notifies the requester (an edited message does not)
      const res = await this.client.filesUploadV2({
        channel_id: message.channel, thread_ts: message.threadTs, file: Buffer.from(image.png), filename: image.filename,
        title: image.generationId === undefined ? image.filename : `Image #${image.generationId}`,
        initial_comment: mention.trim(),
      });
      fileId = res.files?.[0]?.files?.[0]?.id ?? null;
      if (fileId) await this.core.updateRoute(u.job.id, { resultFileId: fileId });
    } else if (!image && !fresh && u.event !== 'cancelled') {
      await this.client.chat.postMessage({ channel: message.channel, thread_ts: message.threadTs, ...slackMessage({ text: u.message.text }, { prefix: mention }) });
    }
    if (fresh && !image) return;
    // the delete button carries the uploaded file, so a click can take the image down (also after a restart)
    const values = image?.generationId !== undefined && fileId ? { [buttonId('delete', image.generationId)]: fileId } : {};
    const body = slackMessage(u.message, { buttonValues: values });
    try {
      await this.throttle.finish(ref, body);
    } catch (err) {
      if (!MESSAGE_GONE.has(slackErrorCode(err) ?? '')) throw err;
      // the progress message was deleted: the result goes in a new one (in its thread, unless it started the thread)
      const threadTs = message.threadTs === message.ts ? null : message.threadTs;
      const again = await this.post({ channelId: message.channel, threadTs, userId: route.userId }, body);
      await this.core.updateRoute(u.job.id, { channelId: again.channel, messageTs: again.ts, threadTs: again.threadTs });
    }
    this.replies.delete(route.requestId);
  }

  /**
   * After the core deleted an image: the uploaded file is deleted (its id is the clicked delete button's value)
   * and the result message that showed it says so, without buttons. Failures are logged: the image is gone
   * from the bot either way.
   */
  private async takeDown(source: ClickedMessage, confirmation: OutgoingMessage): Promise<void> {
    if (source.value && /^F[A-Z0-9]+$/.test(source.value)) {
      try {
        await this.client.files.delete({ file: source.value });
      } catch (err) {
        this.log.warn({ err, file: source.value, slackError: slackErrorCode(err) }, 'the deleted image\'s Slack file could not be deleted');
      }
    }
    try {
      await this.client.chat.update({ channel: source.channel, ts: source.ts, ...slackMessage({ text: confirmation.text }) });
    } catch (err) {
      this.log.warn({ err, channel: source.channel, ts: source.ts, slackError: slackErrorCode(err) }, 'the deleted image\'s message could not be edited');
    }
  }
}
