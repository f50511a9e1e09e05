// The Discord front end (src/app.ts FrontEnd): the real discord.js client on the gateway, every interaction
// turned into the core's CommandContext / ButtonPress / AutocompleteRequest, and the core's job updates back
// to Discord through DiscordUpdateSink. Commands are the core's (application-commands.ts derives their Discord
// form); this file only translates.
//
//   slash command  → defer within 3 s → download attachments → BotCore.dispatch → reply edits the deferred one
//   button click   → defer → BotCore.press (ids like reroll:42 carry only database ids: they outlive restarts)
//   autocomplete   → BotCore.autocomplete → at most 25 choices
//   message command "Teach concept from these images" → modal (name, category) → /teach with the message's images
import {
  Client, Events, GatewayIntentBits, GuildMember, MessageFlags, PermissionFlagsBits,
  type AutocompleteInteraction, type ButtonInteraction, type ChatInputCommandInteraction, type Interaction,
  type MessageContextMenuCommandInteraction, type ModalSubmitInteraction,
} from 'discord.js';
import type { FrontEnd } from '../../app.ts';
import { INTERNAL_ERROR_MESSAGE } from '../../errors.ts';
import { MAX_IMAGE_BYTES } from '../../input/images.ts';
import type { Logger } from '../../log.ts';
import { parseButtonId } from '../buttons.ts';
import type { Attachment, BotCore, ChatScope, ChatUser, CommandDescription, OptionValue, OutgoingMessage } from '../types.ts';
import { parseTeachModalId, TEACH_COMMAND, TEACH_FROM_MESSAGE, TEACH_MODAL_FIELDS, teachFromMessageModal } from './application-commands.ts';
import {
  AttachmentDownloadError, attachmentHostsFor, DEFAULT_DOWNLOAD_TIMEOUT_MS, downloadAttachments, messageAttachmentRefs, type AttachmentRef,
} from './attachments.ts';
import { systemClock, type Clock } from './clock.ts';
import { focusedOption, readCommandOptions, type CommandInput } from './command-options.ts';
import type { DiscordConfig } from './config.ts';
import { deliveryRoute, routeFromInteraction, type InteractionRoute, type TokenTiming } from './delivery.ts';
import { renderMessage } from './render.ts';
import { DiscordRoutes } from './rest-routes.ts';
import { DiscordUpdateSink, ReplyGate } from './update-sink.ts';

/**
 * Commands whose answer is normally public (it becomes the job's message, which later shows the result). The
 * others answer privately. The visibility is fixed when the reply is deferred; a reply that turns out
 * otherwise (a refused /imagine) replaces the deferred one with a follow-up of the right kind.
 */
const PUBLIC_COMMANDS: ReadonlySet<string> = new Set(['teach', 'imagine', 'reroll', 'vary']);

/**
 * Downloads stop here. Files up to this size reach the core's upload check, which words the refusal of a
 * file over its own limit (MAX_IMAGE_BYTES); larger ones are refused while downloading.
 */
export const DOWNLOAD_CAP_BYTES = 2 * MAX_IMAGE_BYTES;
/** How long the message command remembers the images it opened a modal for. */
const MODAL_TTL_MS = 15 * 60_000;
const IMAGE_NAME = /\.(png|jpe?g|webp|gif|avif|heic|heif|tiff?)$/i;

export interface DiscordFrontEndOptions {
  /** time for the token rules (tests pass a clock that can skip 15 minutes) */
  clock?: Clock;
  /** spacing of progress edits of one message (default 2.5 s) */
  editIntervalMs?: number;
  timing?: TokenTiming;
  downloadTimeoutMs?: number;
  /** how long start() waits for the gateway to be ready */
  readyTimeoutMs?: number;
}

export function discordFrontEnd(config: DiscordConfig, options: DiscordFrontEndOptions = {}): FrontEnd {
  return {
    name: 'discord',
    async start(bot, log) {
      const adapter = new DiscordAdapter(config, bot, log, options);
      await adapter.start();
      return { stop: () => adapter.stop() };
    },
  };
}

/** The Discord login failed; the message says what to check. */
export class DiscordStartError extends Error {
  override name = 'DiscordStartError';
}

type Deferrable = ChatInputCommandInteraction | ButtonInteraction | ModalSubmitInteraction;

/** One acknowledged interaction: its route, and the core's one reply to it. */
interface Session {
  route: InteractionRoute;
  reply(message: OutgoingMessage): Promise<void>;
  /** releases the job updates held for this interaction if no reply went out */
  finish(): void;
}

function chatUser(i: Interaction): ChatUser {
  const member = i.member;
  const displayName = member instanceof GuildMember ? member.displayName : member?.nick ?? i.user.displayName;
  const isAdmin = i.inGuild() && (i.memberPermissions?.has(PermissionFlagsBits.ManageGuild) ?? false);
  return { platform: 'discord', externalId: i.user.id, displayName, isAdmin };
}

function chatScope(i: Interaction): ChatScope {
  if (i.guildId) return { platform: 'discord', kind: 'community', externalId: i.guildId, ...(i.guild?.name ? { name: i.guild.name } : {}) };
  return { platform: 'discord', kind: 'dm', externalId: i.user.id };
}

function looksLikeImage(ref: AttachmentRef): boolean {
  return (ref.contentType?.startsWith('image/') ?? false) || IMAGE_NAME.test(ref.name);
}

class DiscordAdapter {
  readonly #client: Client;
  readonly #routes: DiscordRoutes;
  readonly #gate: ReplyGate;
  readonly #sink: DiscordUpdateSink;
  readonly #clock: Clock;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #modals = new Map<string, { refs: AttachmentRef[]; expiresAt: number }>();
  readonly #allowedHosts: string[];
  #removeSink: (() => void) | null = null;
  #stopping = false;

  constructor(
    private readonly config: DiscordConfig,
    private readonly bot: BotCore,
    private readonly log: Logger,
    private readonly options: DiscordFrontEndOptions,
  ) {
    this.#clock = options.clock ?? systemClock;
    this.#client = new Client({ intents: [GatewayIntentBits.Guilds], rest: { api: config.apiUrl } });
    this.#routes = new DiscordRoutes(this.#client.rest);
    this.#gate = new ReplyGate(this.#clock);
    this.#sink = new DiscordUpdateSink({
      bot, routes: this.#routes, log, gate: this.#gate, clock: this.#clock,
      ...(options.editIntervalMs === undefined ? {} : { editIntervalMs: options.editIntervalMs }),
      ...(options.timing ? { timing: options.timing } : {}),
    });
    this.#allowedHosts = attachmentHostsFor(config.apiUrl);
  }

  async start(): Promise<void> {
    const client = this.#client;
    client.on(Events.Error, (err) => this.log.error({ err }, 'Discord client error'));
    client.on(Events.InteractionCreate, (interaction) => {
      if (this.#stopping) return;
      const handled = this.#handle(interaction).catch((err) => this.log.error({ err, interaction: interaction.id }, 'interaction failed'));
      this.#inFlight.add(handled);
      void handled.finally(() => this.#inFlight.delete(handled));
    });
    const timeoutMs = this.options.readyTimeoutMs ?? 60_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ready = new Promise<void>((resolve, reject) => {
      client.once(Events.ClientReady, () => resolve());
      timer = setTimeout(() => reject(new DiscordStartError(`Discord did not get ready within ${timeoutMs / 1000} s; check the network and DISCORD_API_URL.`)), timeoutMs);
    });
    ready.catch(() => {}); // awaited below; may reject while login is still under way
    try {
      await client.login(this.config.token);
      await ready;
    } catch (err) {
      await client.destroy().catch(() => {});
      if (err instanceof DiscordStartError) throw err;
      const reason = err instanceof Error ? err.message : String(err);
      throw new DiscordStartError(`Could not log in to Discord at ${this.config.apiUrl}: ${reason} Check DISCORD_TOKEN (and DISCORD_API_URL if set).`, { cause: err });
    } finally {
      clearTimeout(timer);
    }
    this.#removeSink = this.bot.addSink(this.#sink);
    this.log.info({ user: client.user?.tag, application: client.application?.id, guilds: client.guilds.cache.size }, 'Discord connected');
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#removeSink?.();
    this.#sink.close();
    // let interactions under way answer (they were acknowledged already), within reason
    await Promise.race([Promise.allSettled([...this.#inFlight]), new Promise((r) => setTimeout(r, 10_000).unref())]);
    await this.#client.destroy();
  }

  async #handle(i: Interaction): Promise<void> {
    if (i.isChatInputCommand()) return this.#command(i);
    if (i.isAutocomplete()) return this.#autocomplete(i);
    if (i.isButton()) return this.#button(i);
    if (i.isMessageContextMenuCommand()) return this.#messageCommand(i);
    if (i.isModalSubmit()) return this.#modalSubmit(i);
  }

  /** Defers (the first thing, within Discord's 3 s) and opens the reply for the core. */
  async #begin(i: Deferrable, visibility: 'public' | 'private'): Promise<Session | null> {
    const ephemeral = visibility === 'private';
    const release = this.#gate.open(i.id);
    let replyMessageId: string | null;
    try {
      const response = await i.deferReply({ ...(ephemeral ? { flags: MessageFlags.Ephemeral } : {}), withResponse: true });
      replyMessageId = response.resource?.message?.id ?? null;
    } catch (err) {
      release();
      this.log.warn({ err, interaction: i.id }, 'could not acknowledge an interaction in time; Discord shows it as failed');
      return null;
    }
    const route: InteractionRoute = { ...routeFromInteraction(i, { ephemeral }), replyMessageId };
    let replied = false;
    return {
      route,
      finish: () => release(),
      reply: async (message) => {
        if (replied) {
          this.log.warn({ interaction: i.id }, 'a second reply to one interaction was dropped');
          return;
        }
        replied = true;
        let patch: Partial<InteractionRoute> = {};
        try {
          const wantsPrivate = message.private === true;
          if (wantsPrivate === ephemeral) {
            await this.#routes.editInteractionMessage(route, '@original', renderMessage(message));
          } else {
            // the deferred reply has the wrong visibility: a follow-up of the right kind takes its place
            await this.#routes.deleteInteractionMessage(route, '@original');
            const sent = await this.#routes.followUp(route, renderMessage(message, { ephemeral: wantsPrivate }));
            patch = { replyMessageId: sent.id, ephemeral: wantsPrivate };
            if (message.jobId !== undefined) await this.bot.updateRoute(message.jobId, patch);
          }
        } finally {
          release(patch);
        }
      },
    };
  }

  async #download(refs: readonly AttachmentRef[]): Promise<Attachment[]> {
    const files = await downloadAttachments(refs, {
      allowedHosts: this.#allowedHosts, maxBytes: DOWNLOAD_CAP_BYTES, timeoutMs: this.options.downloadTimeoutMs ?? DEFAULT_DOWNLOAD_TIMEOUT_MS,
    });
    return files.map((f) => ({ filename: f.name, ...(f.contentType ? { contentType: f.contentType } : {}), bytes: f.bytes }));
  }

  /** Downloads, then hands the command to the core; download failures are answered in words. */
  async #dispatch(session: Session, i: Deferrable, command: string, subcommand: string | undefined,
    values: Record<string, OptionValue>, attachments: Record<string, AttachmentRef[]>): Promise<void> {
    const options: Record<string, OptionValue> = { ...values };
    try {
      for (const [name, refs] of Object.entries(attachments)) options[name] = await this.#download(refs);
    } catch (err) {
      if (!(err instanceof AttachmentDownloadError)) this.log.error({ err }, 'downloading attachments failed');
      await session.reply({ text: err instanceof AttachmentDownloadError ? err.message : INTERNAL_ERROR_MESSAGE, private: true });
      return;
    }
    await this.bot.dispatch({
      command, ...(subcommand ? { subcommand } : {}), user: chatUser(i), scope: chatScope(i), options,
      route: deliveryRoute(session.route), reply: session.reply,
    });
  }

  async #command(i: ChatInputCommandInteraction): Promise<void> {
    const session = await this.#begin(i, PUBLIC_COMMANDS.has(i.commandName) ? 'public' : 'private');
    if (!session) return;
    try {
      const description = this.bot.commands.find((c) => c.name === i.commandName);
      const input: CommandInput = description ? readCommandOptions(description, i.options.data) : { values: {}, attachments: {} };
      await this.#dispatch(session, i, i.commandName, input.subcommand, input.values, input.attachments);
    } finally {
      session.finish();
    }
  }

  async #button(i: ButtonInteraction): Promise<void> {
    const parsed = parseButtonId(i.customId);
    const command = parsed && this.bot.commands.find((c) => c.button?.action === parsed.action);
    const session = await this.#begin(i, command && PUBLIC_COMMANDS.has(command.name) ? 'public' : 'private');
    if (!session) return;
    let deleted: number | undefined;
    try {
      await this.bot.press({
        id: i.customId, user: chatUser(i), scope: chatScope(i), route: deliveryRoute(session.route),
        reply: async (message) => {
          deleted = message.deletedGeneration;
          await session.reply(message);
        },
      });
    } finally {
      session.finish();
    }
    if (deleted !== undefined) await this.#takeDown(i, deleted);
  }

  /** After a Delete click: the message the button was on stops showing the image and its buttons. */
  async #takeDown(i: ButtonInteraction, generationId: number): Promise<void> {
    if (i.message.flags.has(MessageFlags.Ephemeral)) return;
    try {
      await this.#routes.editChannelMessage(i.message.channelId, i.message.id, renderMessage({ text: `🗑️ Image #${generationId} was deleted.` }));
    } catch (err) {
      this.log.warn({ err, generationId }, 'the deleted image\'s message could not be edited');
    }
  }

  async #autocomplete(i: AutocompleteInteraction): Promise<void> {
    const focused = focusedOption(i.options.data);
    let choices: { name: string; value: string }[] = [];
    if (focused) {
      try {
        choices = await this.bot.autocomplete({ command: i.commandName, ...focused, user: chatUser(i), scope: chatScope(i) });
      } catch (err) {
        this.log.warn({ err }, 'autocomplete failed');
      }
    }
    // Discord takes at most 25 choices, names and values of 1–100 characters
    await i.respond(choices.filter((c) => c.name.length >= 1 && c.name.length <= 100 && c.value.length >= 1 && c.value.length <= 100).slice(0, 25));
  }

  async #messageCommand(i: MessageContextMenuCommandInteraction): Promise<void> {
    if (i.commandName !== TEACH_FROM_MESSAGE) return;
    const teach = this.#teachDescription();
    const refs = messageAttachmentRefs(i.targetMessage).filter(looksLikeImage);
    if (refs.length === 0 || !teach) {
      await i.reply({
        content: 'That message carries no images. Post the photos of your concept in one message, then use Apps → Teach concept from these images on it.',
        flags: MessageFlags.Ephemeral, allowedMentions: { parse: [] },
      });
      return;
    }
    const now = this.#clock.now();
    for (const [key, pending] of this.#modals) if (pending.expiresAt < now) this.#modals.delete(key);
    this.#modals.set(`${i.user.id}:${i.targetId}`, { refs, expiresAt: now + MODAL_TTL_MS });
    await i.showModal(teachFromMessageModal(i.targetId, teach));
  }

  async #modalSubmit(i: ModalSubmitInteraction): Promise<void> {
    const messageId = parseTeachModalId(i.customId);
    if (!messageId) return;
    const session = await this.#begin(i, 'public');
    if (!session) return;
    try {
      const key = `${i.user.id}:${messageId}`;
      const pending = this.#modals.get(key);
      this.#modals.delete(key);
      if (!pending || pending.expiresAt < this.#clock.now()) {
        await session.reply({ text: 'This form has expired (or the bot restarted since it opened). Use Apps → Teach concept from these images on the message again.', private: true });
        return;
      }
      const values = {
        [TEACH_MODAL_FIELDS.name]: i.fields.getTextInputValue(TEACH_MODAL_FIELDS.name),
        [TEACH_MODAL_FIELDS.category]: i.fields.getTextInputValue(TEACH_MODAL_FIELDS.category),
      };
      const images = this.#teachDescription()?.options?.find((o) => o.type === 'attachments');
      await this.#dispatch(session, i, TEACH_COMMAND, undefined, values, images ? { [images.name]: pending.refs } : {});
    } finally {
      session.finish();
    }
  }

  #teachDescription(): CommandDescription | undefined {
    return this.bot.commands.find((c) => c.name === TEACH_COMMAND);
  }
}
