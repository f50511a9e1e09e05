// The Slack front end (a FrontEnd for startApp): Bolt's slash commands, the teach modal, the "Teach concept"
// message shortcut and button clicks become the core's CommandContext / ButtonPress, in the workspace's scope;
// job updates come back through SlackDelivery's UpdateSink. Every event is acknowledged first (Slack allows 3 s)
// and handed to the core afterwards.
//
//   /teach [name] [category] [steps:N] → the teach modal (name, category, up to 10 images) → its submission:
//       files downloaded with the bot token (a sign-in page or a non-image is reported, nothing is queued),
//       then the core's teach command (which checks the images by decoding them)
//   "Teach concept" on a message with images → the same modal without a file input; the message's files are used
//   /imagine, /concepts, /queue, /cancel (and any other core command the app registers) → the typed text parsed
//       with the core's parse-text (`/imagine a photo of <hugsy> seed:42`, `/cancel 12`; `/concepts` = list)
//   a button (`reroll:42`, `vary:42`, `info:42`, `cancel:17`, `delete:42`) → BotCore.press
import type { App, Logger as BoltLogger } from '@slack/bolt';
import { LogLevel } from '@slack/bolt';
import type { FrontEnd } from '../../app.ts';
import type { Logger } from '../../log.ts';
import { INTERNAL_ERROR_MESSAGE, UserError } from '../../errors.ts';
import { parseCommandText } from '../parse-text.ts';
import type { Attachment, BotCore, CommandContext } from '../types.ts';
import { SlackStartError, createBoltApp, startBoltApp, verifyBotToken } from './app.ts';
import {
  MAX_TEACH_IMAGES, TEACH_MODAL_CALLBACK_ID, TEACH_SHORTCUT_CALLBACK_ID, readTeachSubmission, slackMessage, teachModal,
  teachModalErrors, typedText, type SlackFileInfo,
} from './blocks.ts';
import { DEFAULT_SLACK_API_URL, type SlackConfig } from './config.ts';
import { SlackDelivery, slackErrorCode, type ClickedMessage, type Responder } from './delivery.ts';
import { SlackFileError, downloadSlackImages } from './files.ts';
import { newSlackRoute, slackScope, toDeliveryRoute } from './route.ts';
import { SlackUsers } from './users.ts';

/** A core button id: `<action>:<database id>` (src/chat/buttons.ts). */
const CORE_BUTTON = /^[a-z]+:[1-9][0-9]{0,15}$/;
/** Every slash command but /teach, which opens the modal. */
export const TYPED_COMMAND = /^\/(?!teach$)[a-z][a-z0-9_-]*$/;

export interface SlackFrontEndOptions {
  /** where the HTTP receiver listens (default: all interfaces on config.port); tests use `{ port: 0, host: '127.0.0.1' }` */
  listen?: { port: number; host?: string };
  /** Web API retries (Bolt's default retries for up to ~30 minutes; tests use 0) */
  retries?: number;
  /** least time between two edits of a progress message (default 1500 ms), and then also the core's progress rate for Slack */
  updateIntervalMs?: number;
}

/** Bolt's logger interface on top of the bot's pino logger. */
function boltLogger(log: Logger): BoltLogger {
  let level = LogLevel.INFO;
  const text = (parts: unknown[]) => parts.map((p) => (typeof p === 'string' ? p : p instanceof Error ? p.message : JSON.stringify(p))).join(' ');
  return {
    debug: (...m: unknown[]) => log.debug(text(m)),
    info: (...m: unknown[]) => log.info(text(m)),
    warn: (...m: unknown[]) => log.warn(text(m)),
    error: (...m: unknown[]) => log.error(text(m)),
    setLevel: (l: LogLevel) => { level = l; },
    getLevel: () => level,
    setName: () => undefined,
  };
}

export class SlackFrontEnd implements FrontEnd {
  readonly name = 'slack';
  /** the HTTP receiver's port once started; null in Socket Mode */
  port: number | null = null;

  constructor(private readonly config: SlackConfig, private readonly opts: SlackFrontEndOptions = {}) {}

  async start(bot: BotCore, log: Logger): Promise<{ stop(): Promise<void> }> {
    const retries = this.opts.retries !== undefined ? { retries: this.opts.retries } : {};
    const identity = await verifyBotToken(this.config, retries);
    const app = createBoltApp(this.config, { logger: boltLogger(log), logLevel: LogLevel.INFO, identity, ...retries });
    const delivery = new SlackDelivery({
      client: app.client, core: bot, log,
      ...(this.opts.updateIntervalMs !== undefined ? { updateIntervalMs: this.opts.updateIntervalMs } : {}),
    });
    const users = new SlackUsers(app.client, log);
    const removeSink = bot.addSink(delivery.sink);
    listen(app, { bot, delivery, users, log, config: this.config });
    app.error(async (err) => { log.error({ err }, 'a Slack event could not be handled'); });
    try {
      this.port = await startBoltApp(app, this.config, this.opts.listen);
    } catch (err) {
      removeSink();
      await delivery.close(0);
      await app.stop().catch(() => undefined);
      const why = slackErrorCode(err) ?? (err as Error).message;
      throw new SlackStartError(this.config.socketMode
        ? `Slack Socket Mode could not connect (${why}): check SLACK_APP_TOKEN (an app-level token with the connections:write scope) and that Socket Mode is enabled for the app.`
        : `The Slack receiver could not listen on port ${this.opts.listen?.port ?? this.config.port} (${why}): set SLACK_PORT to a free port.`, { cause: err });
    }
    log.info({ team: identity.teamId, ...(this.config.socketMode ? { mode: 'socket' } : { mode: 'http', port: this.port }) }, 'Slack front end listening');
    return {
      stop: async () => {
        removeSink();
        await delivery.close();
        await app.stop();
      },
    };
  }
}

interface Wiring {
  bot: BotCore;
  delivery: SlackDelivery;
  users: SlackUsers;
  log: Logger;
  config: SlackConfig;
}

interface Where {
  teamId: string;
  enterpriseId: string | null;
  teamName?: string;
  userId: string;
  /** the name Slack sent with the event, used when users.info cannot be read */
  userName: string;
  channelId: string;
  threadTs?: string | null;
}

function listen(app: App, w: Wiring): void {
  const { bot, delivery, users, log } = w;

  /** Runs one request through the core: builds user, scope and route, hands over, and settles the reply. */
  async function handle(where: Where, respond: Responder | undefined, run: (base: Omit<CommandContext, 'command' | 'options'>) => Promise<void>, clicked?: ClickedMessage): Promise<void> {
    const route = newSlackRoute(where);
    const { reply, settle } = delivery.request(route, respond, clicked);
    try {
      const user = await users.get(where.teamId, where.userId, where.userName);
      await run({ user, scope: slackScope(where.teamId, where.enterpriseId, where.teamName), route: toDeliveryRoute(route), reply });
    } catch (err) {
      if (!(err instanceof UserError)) log.error({ err, team: where.teamId }, 'a Slack request failed');
      await reply({ text: err instanceof UserError ? err.message : INTERNAL_ERROR_MESSAGE, private: true });
    } finally {
      settle();
    }
  }

  app.command('/teach', async ({ ack, command, client, respond, context }) => {
    await ack();
    // pre-fill what was typed (`/teach hugsy teddy steps:200`); the core checks it all on submission
    let typed: Record<string, string> = {};
    try { typed = parseCommandText(`teach ${typedText(command.text)}`, bot.commands).options; } catch { /* nothing typed, or unusual text */ }
    const steps = Number(typed.steps);
    try {
      await client.views.open({
        trigger_id: command.trigger_id,
        view: teachModal({
          origin: { channel: command.channel_id, ...(Number.isInteger(steps) ? { steps } : {}) },
          ...(typed.name ? { name: typed.name } : {}), ...(typed.category ? { category: typed.category } : {}),
        }),
      });
    } catch (err) {
      log.warn({ err, slackError: slackErrorCode(err), team: context.teamId }, 'the teach form could not be opened');
      await delivery.replyPrivately({ channelId: command.channel_id, threadTs: null, userId: command.user_id },
        slackMessage({ text: 'Slack did not let me open the teach form in time. Please run /teach again.' }), respond as Responder);
    }
  });

  app.shortcut(TEACH_SHORTCUT_CALLBACK_ID, async ({ ack, shortcut, client, respond }) => {
    await ack();
    if (shortcut.type !== 'message_action') return;
    const all = ((shortcut.message as { files?: SlackFileInfo[] }).files ?? [])
      .filter((f) => f.mimetype?.startsWith('image/') || f.file_access === 'check_file_info');
    const files = all.slice(0, MAX_TEACH_IMAGES);
    if (files.length === 0) {
      await delivery.replyPrivately({ channelId: shortcut.channel.id, threadTs: null, userId: shortcut.user.id },
        slackMessage({ text: 'That message has no images. Use "Teach concept" on a message with 1–10 photos of the concept, or run /teach.' }),
        respond as Responder);
      return;
    }
    await client.views.open({
      trigger_id: shortcut.trigger_id,
      view: teachModal({
        origin: { channel: shortcut.channel.id, messageTs: shortcut.message.thread_ts ?? shortcut.message.ts, fileIds: files.map((f) => f.id) },
        imagesFromMessage: files.length,
      }),
    });
  });

  app.view(TEACH_MODAL_CALLBACK_ID, async ({ ack, view, body, client, context }) => {
    const submission = readTeachSubmission(view);
    const origin = submission.origin;
    const files: SlackFileInfo[] = submission.files.length > 0 ? submission.files : (origin?.fileIds ?? []).map((id) => ({ id }));
    if (!origin) {
      await ack(teachModalErrors({ name: 'This form is from an older version of the bot. Close it and run /teach again.' }));
      return;
    }
    if (files.length === 0) {
      await ack(teachModalErrors({ images: 'Add at least one image of the concept (3 or more work best).' }));
      return;
    }
    await ack();
    const where: Where = {
      teamId: context.teamId ?? body.user.team_id ?? body.team?.id ?? '-', enterpriseId: context.enterpriseId ?? null,
      ...(body.team?.domain ? { teamName: body.team.domain } : {}),
      userId: body.user.id, userName: body.user.name, channelId: origin.channel, threadTs: origin.messageTs ?? null,
    };
    await handle(where, undefined, async (base) => {
      let images: Attachment[];
      try {
        const downloaded = await downloadSlackImages(files, {
          botToken: w.config.botToken,
          trustedOrigins: trustedOrigins(w.config),
          fileInfo: async (id) => (await client.files.info({ file: id })).file as SlackFileInfo,
        });
        images = downloaded.map((d) => ({ filename: d.name, contentType: d.contentType, bytes: d.bytes }));
      } catch (err) {
        if (err instanceof SlackFileError) throw new UserError(err.message);
        throw err;
      }
      await bot.dispatch({
        ...base, command: 'teach',
        options: { name: submission.name, category: submission.category, images, ...(origin.steps !== undefined ? { steps: origin.steps } : {}) },
      });
    });
  });

  app.command(TYPED_COMMAND, async ({ ack, command, respond, context }) => {
    await ack();
    const where: Where = {
      teamId: context.teamId ?? command.team_id, enterpriseId: context.enterpriseId ?? command.enterprise_id ?? null,
      teamName: command.team_domain, userId: command.user_id, userName: command.user_name, channelId: command.channel_id,
    };
    await handle(where, respond as Responder, async (base) => {
      const name = command.command.slice(1);
      const typed = typedText(command.text);
      const described = bot.commands.find((c) => c.name === name);
      // a bare `/concepts` lists them
      const text = described?.subcommands?.length && typed.trim() === '' ? `${name} ${described.subcommands[0]!.name}` : `${name} ${typed}`;
      const parsed = parseCommandText(text, bot.commands);
      await bot.dispatch({ ...base, ...parsed });
    });
  });

  app.action(CORE_BUTTON, async ({ ack, action, body, respond, context }) => {
    await ack();
    if (body.type !== 'block_actions' || !('action_id' in action)) return;
    const container = body.container as { channel_id?: string; message_ts?: string; thread_ts?: string; is_ephemeral?: boolean };
    const channelId = body.channel?.id ?? container.channel_id;
    if (!channelId) return;
    const threadTs = container.thread_ts ?? (body.message?.thread_ts as string | undefined) ?? (container.is_ephemeral ? null : container.message_ts ?? null);
    const where: Where = {
      teamId: context.teamId ?? body.user.team_id ?? body.team?.id ?? '-', enterpriseId: context.enterpriseId ?? null,
      ...(body.team?.domain ? { teamName: body.team.domain } : {}),
      userId: body.user.id, userName: body.user.name ?? body.user.username, channelId, threadTs,
    };
    const clicked = !container.is_ephemeral && container.message_ts
      ? { channel: channelId, ts: container.message_ts, ...('value' in action && typeof action.value === 'string' ? { value: action.value } : {}) }
      : undefined;
    await handle(where, respond as Responder, (base) => bot.press({ ...base, id: action.action_id }), clicked);
  });
}

/** The Web API's origin when it is not Slack's own (a proxy or a test server): file URLs there may get the token. */
function trustedOrigins(config: SlackConfig): string[] {
  return config.apiUrl === DEFAULT_SLACK_API_URL ? [] : [new URL(config.apiUrl).origin];
}
