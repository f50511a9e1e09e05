// A project-owned fake Discord for end-to-end tests of the real discord.js client, all on 127.0.0.1:
//   - REST under /api/v10 (node:http): gateway discovery, users, application commands, interaction callbacks,
//     interaction webhooks (@original, follow-ups), channel messages, DM channels; JSON and multipart bodies;
//   - the gateway over `ws` at /gateway: HELLO → IDENTIFY → READY (+ GUILD_CREATE), heartbeat ACKs, RESUME;
//   - a CDN at /attachments/… serving hosted attachments and every file the bot uploads, behind signed,
//     expiring URLs like Discord's;
//   - Discord's deadlines, driven by an injectable clock: the initial callback within 3 s (else 404/10062),
//     one callback per interaction (else 400/40060), the interaction token for 15 minutes (else 401/50027);
//   - 429 injection with Retry-After and X-RateLimit-* headers.
// Every REST and CDN request is logged (method, decoded path, query, auth, parsed body, files, status) for
// tests to assert on. Snowflakes and timestamps come from the clock, so discord.js's `createdTimestamp` of an
// interaction agrees with the fake's notion of time.
import { createHmac, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { APIApplicationCommand, APIAttachment, APIInteraction, APIMessage, APIUser } from 'discord.js';

/** JSON as it travels; the fake builds and inspects payloads structurally. */
type Json = any;

export interface FakeClock { now(): number }

export interface FakeDiscordOptions {
  /** The bot token the fake accepts (REST `Authorization: Bot <token>` and gateway IDENTIFY). */
  token?: string;
  applicationId?: string;
  botName?: string;
  clock?: FakeClock;
  /** Window for the initial interaction callback (Discord: 3 s). */
  callbackWindowMs?: number;
  /** Lifetime of an interaction token for webhook calls (Discord: 15 min). */
  tokenTtlMs?: number;
  /** Lifetime of signed CDN URLs (Discord: about 24 h). */
  cdnUrlTtlMs?: number;
  heartbeatIntervalMs?: number;
  /** Servers the bot is in; default: one server "Fake Server" with a text channel "general". */
  guilds?: Array<{ name: string; channels?: string[] }>;
  /** `attachment_size_limit` sent with every interaction. */
  attachmentSizeLimit?: number;
}

export interface FakeGuild { id: string; name: string; ownerId: string; joinedAt: string; channelIds: string[] }

export type ChannelState = 'ok' | 'gone' | 'forbidden';
export interface FakeChannel {
  id: string;
  type: 0 | 1;
  guildId: string | null;
  name: string | null;
  /** DM channels: the user on the other side. */
  recipientId: string | null;
  state: ChannelState;
}

export interface LoggedFile { field: string; filename: string; contentType: string; size: number; bytes: Buffer }

export interface LoggedRequest {
  /** Position in the log (0-based). */
  seq: number;
  /** Fake-clock time when the request arrived. */
  at: number;
  method: string;
  /** Percent-decoded path, e.g. /api/v10/webhooks/1/tok/messages/@original. */
  path: string;
  /** The path without the /api/v10 prefix (CDN paths unchanged). */
  route: string;
  query: Record<string, string>;
  auth: string | null;
  contentType: string | null;
  /** Parsed JSON body, or the parsed `payload_json` part of a multipart body. */
  body: Json;
  /** Files of a multipart body (`files[n]` parts). */
  files: LoggedFile[];
  status: number;
  response: Json;
}

export interface HostedAttachmentOptions {
  filename: string;
  bytes: Uint8Array;
  contentType?: string;
  channelId?: string;
  width?: number;
  height?: number;
  /** Size to report in the attachment object; default: the real size. */
  declaredSize?: number;
  /** CDN behaviour for download tests. */
  cdn?: {
    /** Wait this long (real time) before sending the response headers. */
    delayMs?: number;
    /** Send the headers and half the bytes, then hang until the client gives up. */
    stallBody?: boolean;
    /** Send without Content-Length (chunked). */
    omitContentLength?: boolean;
    /** Answer with this status instead of the bytes. */
    status?: number;
  };
}

export interface RateLimitRule {
  method?: string;
  /** Matched against the decoded route (path without /api/v10). */
  route: string | RegExp;
  retryAfterMs: number;
  /** How many matching requests get a 429 (default 1). */
  count?: number;
  global?: boolean;
}

/** Who triggers an interaction, and where. */
export interface Actor {
  user: APIUser;
  /** The member has the Administrator permission. */
  admin?: boolean;
  /** Guild and channel; default: the first server's first channel. `dm: true` for the bot's DMs. */
  guildId?: string;
  channelId?: string;
  dm?: boolean;
  locale?: string;
}

export interface InteractionCallback { at: number; type: number; data: Json; delayMs: number }

interface InteractionRecord {
  payload: Json;
  id: string;
  token: string;
  createdAt: number;
  callback: InteractionCallback | null;
  originalMessageId: string | null;
  followupIds: string[];
}

interface MessageRecord {
  data: Json;
  history: Json[];
  ephemeral: boolean;
  deleted: boolean;
  interactionId: string | null;
}

interface CdnFile { bytes: Buffer; contentType: string; expiresAt: number; options: HostedAttachmentOptions['cdn'] }

const API_PREFIX = '/api/v10';
const DISCORD_EPOCH = 1_420_070_400_000n;
const MAX_BODY_BYTES = 30 * 1024 * 1024;
const MAX_UPLOAD_BYTES = 25 * 1024 * 1024;

export const MESSAGE_FLAGS = { suppressEmbeds: 1 << 2, ephemeral: 1 << 6, loading: 1 << 7, componentsV2: 1 << 15 } as const;
export const INTERACTION_TYPE = { ping: 1, applicationCommand: 2, messageComponent: 3, autocomplete: 4, modalSubmit: 5 } as const;
export const CALLBACK_TYPE = {
  channelMessage: 4, deferredChannelMessage: 5, deferredUpdateMessage: 6, updateMessage: 7,
  autocompleteResult: 8, modal: 9,
} as const;

const PERMISSION = {
  addReactions: 1n << 6n, administrator: 1n << 3n, viewChannel: 1n << 10n, sendMessages: 1n << 11n,
  embedLinks: 1n << 14n, attachFiles: 1n << 15n, readMessageHistory: 1n << 16n, useExternalEmojis: 1n << 18n,
  useApplicationCommands: 1n << 31n,
};
const MEMBER_PERMISSIONS = PERMISSION.viewChannel | PERMISSION.sendMessages | PERMISSION.embedLinks |
  PERMISSION.attachFiles | PERMISSION.readMessageHistory | PERMISSION.addReactions | PERMISSION.useApplicationCommands;
const BOT_PERMISSIONS = PERMISSION.viewChannel | PERMISSION.sendMessages | PERMISSION.embedLinks |
  PERMISSION.attachFiles | PERMISSION.readMessageHistory | PERMISSION.useExternalEmojis;

class ApiError extends Error {
  constructor(readonly status: number, readonly code: number, message: string, readonly errors?: Json) { super(message); }
}

type Handler = (ctx: RequestContext, ...params: string[]) => Reply | Promise<Reply>;
interface Reply { status: number; body?: Json; headers?: Record<string, string> }
interface RequestContext { log: LoggedRequest; body: Json; files: LoggedFile[]; query: Record<string, string>; auth: string | null }

export class FakeDiscord extends EventEmitter {
  readonly token: string;
  readonly applicationId: string;
  readonly botUser: APIUser;
  readonly clock: FakeClock;
  readonly callbackWindowMs: number;
  readonly tokenTtlMs: number;
  readonly cdnUrlTtlMs: number;
  readonly heartbeatIntervalMs: number;
  readonly attachmentSizeLimit: number;
  readonly requests: LoggedRequest[] = [];
  /** IDENTIFY payloads received over the gateway. */
  readonly identifies: Json[] = [];
  heartbeatsAcked = 0;
  readonly guilds: FakeGuild[] = [];

  #server: Server;
  #wss: WebSocketServer;
  #origin = '';
  #sequence = 0n;
  #cdnSecret = randomBytes(16);
  #users = new Map<string, APIUser>();
  #channels = new Map<string, FakeChannel>();
  #messages = new Map<string, MessageRecord>();
  #interactions = new Map<string, InteractionRecord>();
  #interactionsByToken = new Map<string, InteractionRecord>();
  #cdn = new Map<string, CdnFile>();
  #globalCommands: Json[] = [];
  #guildCommands = new Map<string, Json[]>();
  #rateLimits: Array<RateLimitRule & { remaining: number }> = [];
  #sessions = new Set<GatewaySession>();
  #knownSessionIds = new Set<string>();
  #timers = new Set<ReturnType<typeof setTimeout>>();
  #blockedDmUsers = new Set<string>();

  private constructor(options: FakeDiscordOptions) {
    super();
    this.clock = options.clock ?? { now: () => Date.now() };
    this.token = options.token ?? 'fake-bot-token.' + randomBytes(12).toString('base64url');
    this.applicationId = options.applicationId ?? this.snowflake();
    this.callbackWindowMs = options.callbackWindowMs ?? 3_000;
    this.tokenTtlMs = options.tokenTtlMs ?? 15 * 60_000;
    this.cdnUrlTtlMs = options.cdnUrlTtlMs ?? 24 * 3_600_000;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? 41_250;
    this.attachmentSizeLimit = options.attachmentSizeLimit ?? 10 * 1024 * 1024;
    this.botUser = { id: this.applicationId, username: options.botName ?? 'Perfusion', discriminator: '0', global_name: null, avatar: null, bot: true, public_flags: 0 } as Json;
    this.#users.set(this.botUser.id, this.botUser);
    const owner = this.createUser('server-owner');
    for (const spec of options.guilds ?? [{ name: 'Fake Server', channels: ['general'] }]) {
      const guild: FakeGuild = { id: this.snowflake(), name: spec.name, ownerId: owner.id, joinedAt: this.isoNow(), channelIds: [] };
      for (const name of spec.channels ?? ['general']) {
        const channel: FakeChannel = { id: this.snowflake(), type: 0, guildId: guild.id, name, recipientId: null, state: 'ok' };
        this.#channels.set(channel.id, channel);
        guild.channelIds.push(channel.id);
      }
      this.guilds.push(guild);
    }
    this.#server = createServer((req, res) => { void this.#handleHttp(req, res); });
    this.#wss = new WebSocketServer({ noServer: true });
    this.#server.on('upgrade', (req, socket, head) => this.#handleUpgrade(req, socket, head));
  }

  static async start(options: FakeDiscordOptions = {}): Promise<FakeDiscord> {
    const fake = new FakeDiscord(options);
    await new Promise<void>((resolve, reject) => {
      fake.#server.once('error', reject);
      fake.#server.listen(0, '127.0.0.1', () => resolve());
    });
    fake.#origin = `http://127.0.0.1:${(fake.#server.address() as AddressInfo).port}`;
    return fake;
  }

  async stop(): Promise<void> {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    for (const session of this.#sessions) session.socket.terminate();
    this.#sessions.clear();
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** discord.js's `rest.api` for this fake. */
  get apiUrl(): string { return `${this.#origin}/api`; }
  get origin(): string { return this.#origin; }
  get gatewayUrl(): string { return `${this.#origin.replace('http', 'ws')}/gateway`; }
  get defaultGuild(): FakeGuild { return this.guilds[0]!; }
  get defaultChannelId(): string { return this.defaultGuild.channelIds[0]!; }

  // ---- ids, users, channels -------------------------------------------------------------------------

  /** A snowflake whose timestamp is the clock's now. */
  snowflake(): string {
    const ms = BigInt(Math.floor(this.clock.now()));
    return (((ms - DISCORD_EPOCH) << 22n) | (1n << 17n) | (this.#sequence++ & 0xfffn)).toString();
  }

  createUser(username: string): APIUser {
    const user = { id: this.snowflake(), username, discriminator: '0', global_name: username, avatar: null, public_flags: 0 } as Json as APIUser;
    this.#users.set(user.id, user);
    return user;
  }

  channel(id: string): FakeChannel | undefined { return this.#channels.get(id); }

  /** Makes a channel unknown to Discord (404/10003), as after it was deleted; connected clients get CHANNEL_DELETE. */
  removeChannel(id: string): void {
    const channel = this.#mustChannel(id);
    channel.state = 'gone';
    if (channel.guildId && this.#readySessions().length > 0) {
      this.dispatch('CHANNEL_DELETE', this.#channelJson(channel));
    }
  }

  /** The bot lost access to a channel (403/50001 on every channel route). */
  forbidChannel(id: string): void { this.#mustChannel(id).state = 'forbidden'; }

  /** The user does not accept DMs from the bot (403/50007 when the bot posts in their DM channel). */
  blockDirectMessages(userId: string): void { this.#blockedDmUsers.add(userId); }

  // ---- messages and attachments ------------------------------------------------------------------

  message(id: string): APIMessage | undefined {
    const record = this.#messages.get(id);
    return record && !record.deleted ? record.data : undefined;
  }

  /** Every state of a message: as created, then after each edit. */
  messageHistory(id: string): APIMessage[] { return this.#messages.get(id)?.history ?? []; }

  messagesIn(channelId: string): APIMessage[] {
    return [...this.#messages.values()].filter((m) => !m.deleted && m.data.channel_id === channelId).map((m) => m.data);
  }

  /** Serves `bytes` from the fake CDN and returns the attachment object Discord would send. */
  hostAttachment(options: HostedAttachmentOptions): APIAttachment {
    const id = this.snowflake();
    const channelId = options.channelId ?? this.defaultChannelId;
    const contentType = options.contentType ?? guessContentType(options.filename);
    const url = this.#cdnUrl(channelId, id, options.filename, Buffer.from(options.bytes), contentType, options.cdn);
    const attachment: Json = {
      id, filename: options.filename, size: options.declaredSize ?? options.bytes.byteLength, url, proxy_url: url,
      content_type: contentType, ephemeral: false,
    };
    if (options.width !== undefined) { attachment.width = options.width; attachment.height = options.height ?? options.width; }
    return attachment;
  }

  /** A message a user posted (e.g. with images, for the "Teach concept from these images" message command). */
  postUserMessage(spec: { author: APIUser; channelId?: string; content?: string; attachments?: APIAttachment[] }): APIMessage {
    const channel = this.#mustChannel(spec.channelId ?? this.defaultChannelId);
    const record = this.#createMessage(channel, spec.author, { content: spec.content ?? '' }, [], { type: 0 });
    record.data.attachments = spec.attachments ?? [];
    record.history[0] = structuredClone(record.data);
    return record.data;
  }

  // ---- application commands ---------------------------------------------------------------------------

  registeredCommands(guildId?: string): APIApplicationCommand[] {
    return guildId ? this.#guildCommands.get(guildId) ?? [] : this.#globalCommands;
  }

  // ---- 429 injection ----------------------------------------------------------------------------------

  /** The next `count` requests matching the rule get 429 with Retry-After. */
  rateLimit(rule: RateLimitRule): void { this.#rateLimits.push({ ...rule, remaining: rule.count ?? 1 }); }

  // ---- request log ------------------------------------------------------------------------------------

  /** Resolves with the first logged request (from position `since`) that matches. */
  waitForRequest(match: (r: LoggedRequest) => boolean, options: { since?: number; timeoutMs?: number } = {}): Promise<LoggedRequest> {
    const found = this.requests.slice(options.since ?? 0).find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const onRequest = (r: LoggedRequest) => { if (match(r)) { cleanup(); resolve(r); } };
      const timer = setTimeout(() => { cleanup(); reject(new Error('fake Discord: no matching request arrived in time')); }, options.timeoutMs ?? 5_000);
      const cleanup = () => { clearTimeout(timer); this.off('request', onRequest); };
      this.on('request', onRequest);
    });
  }

  // ---- gateway ----------------------------------------------------------------------------------------

  /** Sends a dispatch (op 0) to every identified gateway session; throws when none is connected. */
  dispatch(event: string, data: Json): number {
    const sessions = this.#readySessions();
    if (sessions.length === 0) throw new Error(`fake Discord: no gateway session to dispatch ${event} to; log a client in first`);
    for (const session of sessions) session.send({ op: 0, t: event, s: ++session.seq, d: data });
    this.emit('dispatch', event, data);
    return sessions.length;
  }

  get gatewaySessions(): number { return this.#readySessions().length; }

  // ---- interactions -----------------------------------------------------------------------------------

  /** Registers a hand-built interaction payload (for the lifecycle rules) and dispatches it. */
  sendInteraction(payload: Json): FakeInteraction {
    const record: InteractionRecord = {
      payload, id: payload.id, token: payload.token, createdAt: this.clock.now(),
      callback: null, originalMessageId: null, followupIds: [],
    };
    this.#interactions.set(record.id, record);
    this.#interactionsByToken.set(record.token, record);
    this.dispatch('INTERACTION_CREATE', payload);
    return new FakeInteraction(this, record);
  }

  /** A slash command. Attachment options carry the attachment id as value; pass the attachments for `resolved`. */
  chatInput(spec: Actor & { name: string; options?: Json[]; attachments?: APIAttachment[] }): FakeInteraction {
    const data: Json = { id: this.#commandId(spec.name, 1, spec), name: spec.name, type: 1, options: spec.options ?? [] };
    if (spec.attachments?.length) data.resolved = { attachments: Object.fromEntries(spec.attachments.map((a) => [a.id, a])) };
    return this.sendInteraction(this.#interactionPayload(INTERACTION_TYPE.applicationCommand, spec, data));
  }

  /** An autocomplete request; mark the option being typed with `focused: true`. */
  autocomplete(spec: Actor & { name: string; options: Json[] }): FakeInteraction {
    const data: Json = { id: this.#commandId(spec.name, 1, spec), name: spec.name, type: 1, options: spec.options };
    return this.sendInteraction(this.#interactionPayload(INTERACTION_TYPE.autocomplete, spec, data));
  }

  /** A click on a button of a message the fake holds (the message's channel is where it happens). */
  button(spec: Omit<Actor, 'guildId' | 'channelId' | 'dm'> & { message: APIMessage | string; customId: string }): FakeInteraction {
    const message = typeof spec.message === 'string' ? this.message(spec.message) : this.message(spec.message.id);
    if (!message) throw new Error('fake Discord: button on a message the fake does not hold');
    const channel = this.#mustChannel(message.channel_id);
    const where: Actor = { ...spec, channelId: channel.id, ...(channel.guildId ? { guildId: channel.guildId } : { dm: true }) };
    const payload = this.#interactionPayload(INTERACTION_TYPE.messageComponent, where, { custom_id: spec.customId, component_type: 2 });
    payload.message = structuredClone(message);
    return this.sendInteraction(payload);
  }

  /** A message context-menu command on `message`; its attachments arrive in `resolved.messages`. */
  messageCommand(spec: Omit<Actor, 'guildId' | 'channelId' | 'dm'> & { name: string; message: APIMessage }): FakeInteraction {
    const channel = this.#mustChannel(spec.message.channel_id);
    const where: Actor = { ...spec, channelId: channel.id, ...(channel.guildId ? { guildId: channel.guildId } : { dm: true }) };
    const data: Json = {
      id: this.#commandId(spec.name, 3, where), name: spec.name, type: 3, target_id: spec.message.id,
      resolved: { messages: { [spec.message.id]: structuredClone(spec.message) } },
    };
    return this.sendInteraction(this.#interactionPayload(INTERACTION_TYPE.applicationCommand, where, data));
  }

  /**
   * Submits the modal that `opened` showed (callback type 9), mirroring its layout (labels or action rows):
   * `values` maps text-input custom ids to text, file-upload custom ids to hosted attachments.
   */
  modalSubmit(spec: Omit<Actor, 'guildId' | 'channelId' | 'dm'> & { opened: FakeInteraction; values: Record<string, string | APIAttachment[]> }): FakeInteraction {
    const callback = spec.opened.callback;
    if (callback?.type !== CALLBACK_TYPE.modal) throw new Error('fake Discord: that interaction did not open a modal');
    const modal = callback.data;
    const attachments: Record<string, APIAttachment> = {};
    let nextId = 1;
    const submitted = (component: Json): Json => {
      const value = spec.values[component.custom_id];
      if (component.type === 4) return { type: 4, id: component.id ?? nextId++, custom_id: component.custom_id, value: typeof value === 'string' ? value : '' };
      if (component.type === 19) {
        const files = Array.isArray(value) ? value : [];
        for (const f of files) attachments[f.id] = { ...f, ephemeral: true };
        return { type: 19, id: component.id ?? nextId++, custom_id: component.custom_id, values: files.map((f) => f.id) };
      }
      return { type: component.type, id: component.id ?? nextId++ };
    };
    const components = (modal.components as Json[]).map((c) => c.type === 18
      ? { type: 18, id: c.id ?? nextId++, component: submitted(c.component) }
      : c.type === 1 ? { type: 1, id: c.id ?? nextId++, components: (c.components as Json[]).map(submitted) } : submitted(c));
    const opened = spec.opened.payload;
    const where: Actor = { ...spec, channelId: opened.channel_id, ...(opened.guild_id ? { guildId: opened.guild_id } : { dm: true }) };
    const data: Json = { custom_id: modal.custom_id, components };
    if (Object.keys(attachments).length > 0) data.resolved = { attachments };
    const payload = this.#interactionPayload(INTERACTION_TYPE.modalSubmit, where, data);
    if (opened.message) payload.message = opened.message;
    return this.sendInteraction(payload);
  }

  // ---- internals: payload builders ----------------------------------------------------------------------

  #commandId(name: string, type: number, where: Actor): string {
    const guildId = where.dm ? null : where.guildId ?? this.defaultGuild.id;
    const pools = [...(guildId ? this.#guildCommands.get(guildId) ?? [] : []), ...this.#globalCommands];
    return pools.find((c) => c.name === name && (c.type ?? 1) === type)?.id ?? this.snowflake();
  }

  #interactionPayload(type: number, actor: Actor, data: Json): Json {
    const id = this.snowflake();
    const base: Json = {
      id, application_id: this.applicationId, type, data,
      token: `aW50ZXJhY3Rpb246${Buffer.from(`${id}:${randomBytes(48).toString('hex')}`).toString('base64url')}`,
      version: 1, locale: actor.locale ?? 'en-US', entitlements: [], entitlement_sku_ids: [],
      app_permissions: BOT_PERMISSIONS.toString(), attachment_size_limit: this.attachmentSizeLimit,
    };
    if (actor.dm) {
      const dm = this.#dmChannelFor(actor.user);
      return {
        ...base, channel_id: dm.id, channel: this.#channelJson(dm), user: actor.user, context: 1,
        authorizing_integration_owners: { '0': '0' },
      };
    }
    const guild = actor.guildId ? this.guilds.find((g) => g.id === actor.guildId) : this.defaultGuild;
    if (!guild) throw new Error(`fake Discord: the bot is in no server ${actor.guildId}`);
    const channel = this.#mustChannel(actor.channelId ?? guild.channelIds[0]!);
    const permissions = (actor.admin ? MEMBER_PERMISSIONS | PERMISSION.administrator : MEMBER_PERMISSIONS).toString();
    return {
      ...base, guild_id: guild.id, guild: { id: guild.id, locale: 'en-US', features: [] }, guild_locale: 'en-US',
      channel_id: channel.id, channel: { ...this.#channelJson(channel), permissions },
      member: {
        user: actor.user, roles: [], permissions, joined_at: guild.joinedAt, nick: null, avatar: null, banner: null,
        premium_since: null, deaf: false, mute: false, pending: false, flags: 0, communication_disabled_until: null,
        unusual_dm_activity_until: null,
      },
      context: 0, authorizing_integration_owners: { '0': guild.id },
    };
  }

  #channelJson(channel: FakeChannel): Json {
    if (channel.type === 1) {
      return { id: channel.id, type: 1, flags: 0, last_message_id: null, recipients: [this.#users.get(channel.recipientId!)] };
    }
    const guild = this.guilds.find((g) => g.id === channel.guildId)!;
    return {
      id: channel.id, type: 0, guild_id: channel.guildId, name: channel.name, position: guild.channelIds.indexOf(channel.id),
      permission_overwrites: [], nsfw: false, parent_id: null, topic: null, last_message_id: null, rate_limit_per_user: 0, flags: 0,
    };
  }

  #dmChannelFor(user: APIUser): FakeChannel {
    for (const channel of this.#channels.values()) if (channel.type === 1 && channel.recipientId === user.id) return channel;
    this.#users.set(user.id, user);
    const channel: FakeChannel = { id: this.snowflake(), type: 1, guildId: null, name: null, recipientId: user.id, state: 'ok' };
    this.#channels.set(channel.id, channel);
    return channel;
  }

  #guildCreatePayload(guild: FakeGuild): Json {
    const everyone = {
      id: guild.id, name: '@everyone', color: 0, colors: { primary_color: 0, secondary_color: null, tertiary_color: null },
      hoist: false, icon: null, unicode_emoji: null, position: 0, permissions: MEMBER_PERMISSIONS.toString(), managed: false,
      mentionable: false, flags: 0,
    };
    const botMember = {
      user: this.botUser, roles: [], joined_at: guild.joinedAt, nick: null, avatar: null, banner: null, premium_since: null,
      deaf: false, mute: false, pending: false, flags: 0, communication_disabled_until: null,
    };
    return {
      id: guild.id, name: guild.name, icon: null, splash: null, discovery_splash: null, banner: null, description: null,
      owner_id: guild.ownerId, afk_channel_id: null, afk_timeout: 300, verification_level: 0, default_message_notifications: 0,
      explicit_content_filter: 0, mfa_level: 0, nsfw_level: 0, premium_tier: 0, premium_subscription_count: 0,
      premium_progress_bar_enabled: false, preferred_locale: 'en-US', system_channel_id: null, system_channel_flags: 0,
      rules_channel_id: null, public_updates_channel_id: null, safety_alerts_channel_id: null, vanity_url_code: null,
      application_id: null, max_members: 500_000, max_video_channel_users: 25, features: [], roles: [everyone], emojis: [],
      stickers: [], joined_at: guild.joinedAt, large: false, unavailable: false, member_count: 2, members: [botMember],
      channels: guild.channelIds.map((id) => this.#channelJson(this.#channels.get(id)!)).map(({ guild_id: _, ...c }) => c),
      threads: [], presences: [], voice_states: [], stage_instances: [], guild_scheduled_events: [], soundboard_sounds: [],
    };
  }

  #mustChannel(id: string): FakeChannel {
    const channel = this.#channels.get(id);
    if (!channel) throw new Error(`fake Discord: unknown channel ${id}`);
    return channel;
  }

  isoNow(): string { return new Date(this.clock.now()).toISOString(); }

  // ---- internals: CDN -----------------------------------------------------------------------------------

  #cdnUrl(channelId: string, attachmentId: string, filename: string, bytes: Buffer, contentType: string, cdn: HostedAttachmentOptions['cdn']): string {
    const path = `/attachments/${channelId}/${attachmentId}/${encodeURIComponent(filename)}`;
    const issued = Math.floor(this.clock.now() / 1000);
    const expiresAt = this.clock.now() + this.cdnUrlTtlMs;
    const ex = Math.floor(expiresAt / 1000).toString(16);
    const is = issued.toString(16);
    const hm = this.#cdnSignature(decodeURIComponent(path), ex, is);
    this.#cdn.set(decodeURIComponent(path), { bytes, contentType, expiresAt, options: cdn });
    return `${this.#origin}${path}?ex=${ex}&is=${is}&hm=${hm}&`;
  }

  #cdnSignature(path: string, ex: string, is: string): string {
    return createHmac('sha256', this.#cdnSecret).update(`${path}|${ex}|${is}`).digest('hex');
  }

  #serveCdn(path: string, query: Record<string, string>, res: ServerResponse, log: LoggedRequest): void {
    const file = this.#cdn.get(path);
    const valid = file && query.hm === this.#cdnSignature(path, query.ex ?? '', query.is ?? '') && this.clock.now() <= file.expiresAt;
    const finish = (status: number) => { log.status = status; this.#logged(log); };
    if (!file || !valid) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('This content is no longer available.');
      finish(404);
      return;
    }
    const options = file.options ?? {};
    const send = () => {
      if (options.status) { res.writeHead(options.status, { 'content-type': 'text/plain' }).end('error'); finish(options.status); return; }
      const headers: Record<string, string> = { 'content-type': file.contentType };
      if (!options.omitContentLength) headers['content-length'] = String(file.bytes.byteLength);
      res.writeHead(200, headers);
      if (options.stallBody) {
        res.write(file.bytes.subarray(0, Math.max(1, file.bytes.byteLength >> 1)));
      } else if (options.omitContentLength) {
        for (let i = 0; i < file.bytes.byteLength; i += 64 * 1024) res.write(file.bytes.subarray(i, i + 64 * 1024));
        res.end();
      } else {
        res.end(file.bytes);
      }
      finish(200);
    };
    if (options.delayMs) {
      const timer = setTimeout(() => { this.#timers.delete(timer); if (!res.destroyed) send(); }, options.delayMs);
      this.#timers.add(timer);
    } else {
      send();
    }
  }

  // ---- internals: HTTP ------------------------------------------------------------------------------------

  async #handleHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.#origin);
    const path = decodeURIComponent(url.pathname);
    const query = Object.fromEntries(url.searchParams);
    const log: LoggedRequest = {
      seq: -1, at: this.clock.now(), method: req.method ?? 'GET', path,
      route: path.startsWith(API_PREFIX) ? path.slice(API_PREFIX.length) : path, query,
      auth: req.headers.authorization ?? null, contentType: req.headers['content-type'] ?? null,
      body: null, files: [], status: 0, response: null,
    };
    if (path.startsWith('/attachments/')) {
      req.resume();
      if (log.method !== 'GET') { this.#respond(res, log, { status: 405 }); return; }
      this.#serveCdn(path, query, res, log);
      return;
    }
    let reply: Reply;
    try {
      const raw = await readBody(req);
      await this.#parseBody(raw, log);
      reply = await this.#route(log);
    } catch (error) {
      if (error instanceof ApiError) {
        const body: Json = { message: error.message, code: error.code };
        if (error.errors) body.errors = error.errors;
        reply = { status: error.status, body };
      } else {
        reply = { status: 500, body: { message: `fake Discord bug: ${(error as Error).stack}`, code: 0 } };
      }
    }
    this.#respond(res, log, reply);
  }

  async #parseBody(raw: Buffer, log: LoggedRequest): Promise<void> {
    if (raw.byteLength === 0) return;
    const type = log.contentType ?? '';
    if (type.startsWith('application/json')) {
      try { log.body = JSON.parse(raw.toString('utf8')); } catch { throw new ApiError(400, 50109, 'The request body contains invalid JSON.'); }
    } else if (type.startsWith('multipart/form-data')) {
      const body = raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength) as ArrayBuffer;
      const form = await new Response(body, { headers: { 'content-type': type } }).formData();
      const entries: Array<[string, FormDataEntryValue]> = [];
      form.forEach((value, field) => entries.push([field, value]));
      for (const [field, value] of entries) {
        if (typeof value === 'string') {
          if (field === 'payload_json') log.body = JSON.parse(value);
        } else {
          const bytes = Buffer.from(await value.arrayBuffer());
          log.files.push({ field, filename: value.name, contentType: value.type, size: bytes.byteLength, bytes });
        }
      }
    } else {
      log.body = raw.toString('utf8');
    }
  }

  #respond(res: ServerResponse, log: LoggedRequest, reply: Reply): void {
    log.status = reply.status;
    log.response = reply.body ?? null;
    const headers: Record<string, string> = { ...reply.headers };
    if (reply.body === undefined) {
      res.writeHead(reply.status, headers).end();
    } else {
      headers['content-type'] = 'application/json';
      res.writeHead(reply.status, headers).end(JSON.stringify(reply.body));
    }
    this.#logged(log);
  }

  #logged(log: LoggedRequest): void {
    log.seq = this.requests.length;
    this.requests.push(log);
    this.emit('request', log);
  }

  #route(log: LoggedRequest): Promise<Reply> | Reply {
    if (!log.path.startsWith(API_PREFIX + '/')) throw new ApiError(404, 0, '404: Not Found');
    const limited = this.#rateLimitFor(log);
    if (limited) return limited;
    const ctx: RequestContext = { log, body: log.body, files: log.files, query: log.query, auth: log.auth };
    for (const [method, pattern, handler] of this.#routes) {
      if (method !== log.method) continue;
      const match = pattern.exec(log.route);
      if (match) return handler(ctx, ...match.slice(1));
    }
    throw new ApiError(404, 0, '404: Not Found');
  }

  #rateLimitFor(log: LoggedRequest): Reply | null {
    const rule = this.#rateLimits.find((r) => r.remaining > 0 && (!r.method || r.method === log.method) &&
      (typeof r.route === 'string' ? r.route === log.route : r.route.test(log.route)));
    if (!rule) return null;
    rule.remaining--;
    const seconds = rule.retryAfterMs / 1000;
    const headers: Record<string, string> = {
      'retry-after': String(seconds), 'x-ratelimit-limit': '5', 'x-ratelimit-remaining': '0',
      'x-ratelimit-reset-after': String(seconds), 'x-ratelimit-reset': String((this.clock.now() + rule.retryAfterMs) / 1000),
      'x-ratelimit-bucket': 'fake-bucket', 'x-ratelimit-scope': rule.global ? 'global' : 'user',
    };
    if (rule.global) headers['x-ratelimit-global'] = 'true';
    return { status: 429, headers, body: { message: 'You are being rate limited.', retry_after: seconds, global: !!rule.global, code: 0 } };
  }

  #requireBot(ctx: RequestContext): void {
    if (ctx.auth !== `Bot ${this.token}`) throw new ApiError(401, 0, '401: Unauthorized');
  }

  #routes: Array<[string, RegExp, Handler]> = [
    ['GET', /^\/gateway$/, () => ({ status: 200, body: { url: this.gatewayUrl } })],
    ['GET', /^\/gateway\/bot$/, (ctx) => {
      this.#requireBot(ctx);
      return { status: 200, body: { url: this.gatewayUrl, shards: 1, session_start_limit: { total: 1000, remaining: 999, reset_after: 14_400_000, max_concurrency: 1 } } };
    }],
    ['GET', /^\/users\/@me$/, (ctx) => { this.#requireBot(ctx); return { status: 200, body: this.botUser }; }],
    ['GET', /^\/users\/(\d+)$/, (ctx, id) => {
      this.#requireBot(ctx);
      const user = this.#users.get(id!);
      if (!user) throw new ApiError(404, 10013, 'Unknown User');
      return { status: 200, body: user };
    }],
    ['GET', /^\/applications\/@me$/, (ctx) => {
      this.#requireBot(ctx);
      return { status: 200, body: { id: this.applicationId, name: this.botUser.username, icon: null, description: '', summary: '', bot_public: true, bot_require_code_grant: false, verify_key: '0'.repeat(64), flags: 0, team: null, bot: this.botUser, owner: this.#users.get(this.defaultGuild.ownerId) } };
    }],
    ['GET', /^\/applications\/(\d+)\/commands$/, (ctx, app) => { this.#commandAccess(ctx, app!); return { status: 200, body: this.#globalCommands }; }],
    ['PUT', /^\/applications\/(\d+)\/commands$/, (ctx, app) => {
      this.#commandAccess(ctx, app!);
      this.#globalCommands = this.#storeCommands(ctx.body, this.#globalCommands, null);
      return { status: 200, body: this.#globalCommands };
    }],
    ['GET', /^\/applications\/(\d+)\/guilds\/(\d+)\/commands$/, (ctx, app, guild) => {
      this.#commandAccess(ctx, app!, guild);
      return { status: 200, body: this.#guildCommands.get(guild!) ?? [] };
    }],
    ['PUT', /^\/applications\/(\d+)\/guilds\/(\d+)\/commands$/, (ctx, app, guild) => {
      this.#commandAccess(ctx, app!, guild);
      const stored = this.#storeCommands(ctx.body, this.#guildCommands.get(guild!) ?? [], guild!);
      this.#guildCommands.set(guild!, stored);
      return { status: 200, body: stored };
    }],
    ['POST', /^\/interactions\/(\d+)\/([^/]+)\/callback$/, (ctx, id, token) => this.#interactionCallback(ctx, id!, token!)],
    ['POST', /^\/webhooks\/(\d+)\/([^/]+)$/, (ctx, app, token) => {
      const record = this.#webhookInteraction(app!, token!);
      const message = this.#createInteractionMessage(record, ctx.body ?? {}, ctx.files, false);
      record.followupIds.push(message.data.id);
      return { status: 200, body: message.data };
    }],
    ['GET', /^\/webhooks\/(\d+)\/([^/]+)\/messages\/([^/]+)$/, (_ctx, app, token, id) => {
      const record = this.#webhookInteraction(app!, token!);
      return { status: 200, body: this.#webhookMessage(record, id!).data };
    }],
    ['PATCH', /^\/webhooks\/(\d+)\/([^/]+)\/messages\/([^/]+)$/, (ctx, app, token, id) => {
      const record = this.#webhookInteraction(app!, token!);
      const message = this.#webhookMessage(record, id!);
      this.#editMessage(message, ctx.body ?? {}, ctx.files);
      return { status: 200, body: message.data };
    }],
    ['DELETE', /^\/webhooks\/(\d+)\/([^/]+)\/messages\/([^/]+)$/, (_ctx, app, token, id) => {
      const record = this.#webhookInteraction(app!, token!);
      this.#webhookMessage(record, id!).deleted = true;
      return { status: 204 };
    }],
    ['GET', /^\/channels\/(\d+)$/, (ctx, id) => {
      this.#requireBot(ctx);
      return { status: 200, body: this.#channelJson(this.#accessibleChannel(id!)) };
    }],
    ['POST', /^\/channels\/(\d+)\/messages$/, (ctx, id) => {
      this.#requireBot(ctx);
      const channel = this.#accessibleChannel(id!);
      if (channel.type === 1 && this.#blockedDmUsers.has(channel.recipientId!)) {
        throw new ApiError(403, 50007, 'Cannot send messages to this user');
      }
      const body = ctx.body ?? {};
      this.#validateMessage(body, ctx.files, true);
      const record = this.#createMessage(channel, this.botUser, body, ctx.files, { type: 0 });
      return { status: 200, body: record.data };
    }],
    ['GET', /^\/channels\/(\d+)\/messages\/(\d+)$/, (ctx, channelId, id) => {
      this.#requireBot(ctx);
      return { status: 200, body: this.#channelMessage(channelId!, id!).data };
    }],
    ['PATCH', /^\/channels\/(\d+)\/messages\/(\d+)$/, (ctx, channelId, id) => {
      this.#requireBot(ctx);
      const message = this.#channelMessage(channelId!, id!);
      if (message.data.author.id !== this.botUser.id) throw new ApiError(403, 50005, 'Cannot edit a message authored by another user');
      this.#editMessage(message, ctx.body ?? {}, ctx.files);
      return { status: 200, body: message.data };
    }],
    ['DELETE', /^\/channels\/(\d+)\/messages\/(\d+)$/, (ctx, channelId, id) => {
      this.#requireBot(ctx);
      this.#channelMessage(channelId!, id!).deleted = true;
      return { status: 204 };
    }],
    ['POST', /^\/users\/@me\/channels$/, (ctx) => {
      this.#requireBot(ctx);
      const user = this.#users.get(ctx.body?.recipient_id);
      if (!user) throw new ApiError(400, 50035, 'Invalid Form Body', { recipient_id: fieldError('NUMBER_TYPE_COERCE', 'Unknown user') });
      return { status: 200, body: this.#channelJson(this.#dmChannelFor(user)) };
    }],
  ];

  // ---- internals: interaction lifecycle -----------------------------------------------------------------

  #interactionCallback(ctx: RequestContext, id: string, token: string): Reply {
    const record = this.#interactions.get(id);
    const now = this.clock.now();
    if (!record || record.token !== token || now - record.createdAt > this.callbackWindowMs) {
      throw new ApiError(404, 10062, 'Unknown interaction');
    }
    if (record.callback) throw new ApiError(400, 40060, 'Interaction has already been acknowledged.');
    const type = ctx.body?.type;
    const data = ctx.body?.data ?? {};
    const interactionType = record.payload.type;
    const allowed: Record<number, number[]> = {
      [INTERACTION_TYPE.applicationCommand]: [4, 5, 9],
      [INTERACTION_TYPE.messageComponent]: [4, 5, 6, 7, 9],
      [INTERACTION_TYPE.autocomplete]: [8],
      [INTERACTION_TYPE.modalSubmit]: record.payload.message ? [4, 5, 6, 7] : [4, 5],
    };
    if (!allowed[interactionType]?.includes(type)) {
      throw new ApiError(400, 50035, 'Invalid Form Body', { type: fieldError('INTERACTION_RESPONSE_TYPE_INVALID', `Callback type ${type} is not valid for interaction type ${interactionType}.`) });
    }
    if (type === CALLBACK_TYPE.autocompleteResult) validateChoices(data);
    if (type === CALLBACK_TYPE.modal) validateModal(data);
    if (type === CALLBACK_TYPE.channelMessage || type === CALLBACK_TYPE.updateMessage) this.#validateMessage(data, ctx.files, type === 4);

    record.callback = { at: now, type, data, delayMs: now - record.createdAt };
    let message: MessageRecord | null = null;
    if (type === CALLBACK_TYPE.channelMessage) {
      message = this.#createInteractionMessage(record, data, ctx.files, true);
    } else if (type === CALLBACK_TYPE.deferredChannelMessage) {
      const flags = ((data.flags ?? 0) & MESSAGE_FLAGS.ephemeral) | MESSAGE_FLAGS.loading;
      message = this.#createInteractionMessage(record, { content: '', flags }, [], true);
    } else if (type === CALLBACK_TYPE.deferredUpdateMessage || type === CALLBACK_TYPE.updateMessage) {
      message = this.#messages.get(record.payload.message?.id) ?? null;
      if (message) record.originalMessageId = message.data.id;
      if (message && type === CALLBACK_TYPE.updateMessage) this.#editMessage(message, data, ctx.files);
    }
    this.emit('callback', record.id, record.callback);
    if (ctx.query.with_response !== 'true') return { status: 204 };
    const body: Json = { interaction: { id: record.id, type: interactionType } };
    if (message) {
      body.interaction.response_message_id = message.data.id;
      body.interaction.response_message_loading = type === CALLBACK_TYPE.deferredChannelMessage;
      body.interaction.response_message_ephemeral = message.ephemeral;
      body.resource = { type, message: message.data };
    } else {
      body.resource = { type };
    }
    return { status: 200, body };
  }

  #webhookInteraction(applicationId: string, token: string): InteractionRecord {
    if (applicationId !== this.applicationId) throw new ApiError(404, 10015, 'Unknown Webhook');
    const record = this.#interactionsByToken.get(token);
    if (!record || this.clock.now() - record.createdAt >= this.tokenTtlMs) throw new ApiError(401, 50027, 'Invalid Webhook Token');
    if (!record.callback || record.callback.type === CALLBACK_TYPE.autocompleteResult) throw new ApiError(404, 10015, 'Unknown Webhook');
    return record;
  }

  #webhookMessage(record: InteractionRecord, id: string): MessageRecord {
    const messageId = id === '@original' ? record.originalMessageId : id;
    const message = messageId ? this.#messages.get(messageId) : undefined;
    const ours = message && (message.data.id === record.originalMessageId || record.followupIds.includes(message.data.id));
    if (!message || message.deleted || !ours) throw new ApiError(404, 10008, 'Unknown Message');
    return message;
  }

  #createInteractionMessage(record: InteractionRecord, body: Json, files: LoggedFile[], original: boolean): MessageRecord {
    this.#validateMessage(body, files, !(original && (body.flags ?? 0) & MESSAGE_FLAGS.loading));
    const channel = this.#channels.get(record.payload.channel_id)!;
    const commandType = record.payload.data?.type;
    const type = !original ? 0 : commandType === 1 ? 20 : commandType === 3 || commandType === 2 ? 23 : 0;
    const message = this.#createMessage(channel, this.botUser, body, files, { type, interaction: record });
    if (original) record.originalMessageId = message.data.id;
    return message;
  }

  // ---- internals: messages ------------------------------------------------------------------------------

  #createMessage(channel: FakeChannel, author: APIUser, body: Json, files: LoggedFile[], meta: { type: number; interaction?: InteractionRecord }): MessageRecord {
    const flags = body.flags ?? 0;
    const data: Json = {
      id: this.snowflake(), type: meta.type, channel_id: channel.id, author, content: '', timestamp: this.isoNow(),
      edited_timestamp: null, tts: false, mention_everyone: false, mentions: [], mention_roles: [], attachments: [],
      embeds: [], components: [], pinned: false, flags: 0,
    };
    if (channel.guildId) data.guild_id = channel.guildId;
    if (meta.interaction) {
      const payload = meta.interaction.payload;
      data.webhook_id = this.applicationId;
      data.application_id = this.applicationId;
      data.interaction_metadata = {
        id: payload.id, type: payload.type, user: payload.member?.user ?? payload.user,
        authorizing_integration_owners: payload.authorizing_integration_owners,
        ...(payload.data?.name ? { name: payload.data.name } : {}),
      };
    }
    const record: MessageRecord = { data, history: [], ephemeral: (flags & MESSAGE_FLAGS.ephemeral) !== 0, deleted: false, interactionId: meta.interaction?.id ?? null };
    this.#applyMessageBody(record, body, files, true);
    this.#messages.set(data.id, record);
    return record;
  }

  #editMessage(record: MessageRecord, body: Json, files: LoggedFile[]): void {
    this.#validateMessage(body, files, false);
    record.data.edited_timestamp = this.isoNow();
    record.data.flags &= ~MESSAGE_FLAGS.loading;
    this.#applyMessageBody(record, body, files, false);
  }

  #applyMessageBody(record: MessageRecord, body: Json, files: LoggedFile[], creating: boolean): void {
    const data = record.data;
    const settable = MESSAGE_FLAGS.componentsV2 | MESSAGE_FLAGS.suppressEmbeds;
    if (creating) data.flags = (body.flags ?? 0) & (MESSAGE_FLAGS.ephemeral | MESSAGE_FLAGS.loading | settable);
    else if (body.flags !== undefined) data.flags = (data.flags & MESSAGE_FLAGS.ephemeral) | (body.flags & settable);
    if (body.content !== undefined) data.content = body.content ?? '';
    if (body.embeds !== undefined) data.embeds = body.embeds ?? [];
    if (body.components !== undefined) data.components = body.components ?? [];
    // Attachments: with an `attachments` list, it names exactly what remains (kept ids + new uploads by index);
    // without one, new files are added to what is there.
    const uploads = new Map(files.map((f) => [f.field.replace(/^files\[(\d+)\]$/, '$1'), f]));
    const uploaded = (entry: Json): Json => {
      const file = uploads.get(String(entry.id))!;
      return this.#storeUpload(data.channel_id, file, entry);
    };
    if (Array.isArray(body.attachments)) {
      const kept = new Map((data.attachments as Json[]).map((a) => [a.id, a]));
      data.attachments = body.attachments.map((entry: Json) => uploads.has(String(entry.id)) ? uploaded(entry) : kept.get(String(entry.id))).filter(Boolean);
    } else if (files.length > 0) {
      data.attachments = [...data.attachments, ...files.map((f, i) => this.#storeUpload(data.channel_id, f, { id: i }))];
    }
    if (body.content !== undefined || body.allowed_mentions !== undefined) this.#resolveMentions(data, body.allowed_mentions);
    record.history.push(structuredClone(data));
  }

  #storeUpload(channelId: string, file: LoggedFile, entry: Json): Json {
    const id = this.snowflake();
    const filename = entry.filename ?? file.filename;
    const contentType = file.contentType || guessContentType(filename);
    const url = this.#cdnUrl(channelId, id, filename, file.bytes, contentType, undefined);
    const attachment: Json = { id, filename, size: file.size, url, proxy_url: url, content_type: contentType };
    if (entry.description) attachment.description = entry.description;
    return attachment;
  }

  /** Who is actually pinged: mentions in the content, filtered by allowed_mentions like Discord does. */
  #resolveMentions(data: Json, allowed: Json): void {
    const content: string = data.content ?? '';
    const ids = [...new Set([...content.matchAll(/<@!?(\d+)>/g)].map((m) => m[1]!))];
    const parse: string[] | null = allowed ? allowed.parse ?? [] : null;
    const allowedUsers = new Set<string>(allowed?.users ?? []);
    data.mentions = ids
      .filter((id) => parse === null || parse.includes('users') || allowedUsers.has(id))
      .map((id) => this.#users.get(id) ?? { id, username: 'unknown-user', discriminator: '0', global_name: null, avatar: null });
    data.mention_everyone = /@(everyone|here)\b/.test(content) && (parse === null || parse.includes('everyone'));
  }

  #validateMessage(body: Json, files: LoggedFile[], creating: boolean): void {
    const errors: Json = {};
    if (typeof body.content === 'string' && body.content.length > 2000) {
      errors.content = fieldError('BASE_TYPE_MAX_LENGTH', 'Must be 2000 or fewer in length.');
    }
    if (Array.isArray(body.embeds) && body.embeds.length > 10) errors.embeds = fieldError('BASE_TYPE_MAX_LENGTH', 'Must be 10 or fewer in length.');
    const v2 = ((body.flags ?? 0) & MESSAGE_FLAGS.componentsV2) !== 0;
    if (v2 && (body.content || body.embeds?.length)) errors.content = fieldError('MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2', 'The content and embeds fields cannot be used with components v2.');
    if (Array.isArray(body.components) && !v2) {
      const componentErrors = validateActionRows(body.components);
      if (componentErrors) errors.components = componentErrors;
    }
    if (files.length > 10) errors.files = fieldError('BASE_TYPE_MAX_LENGTH', 'Must be 10 or fewer in length.');
    if (files.reduce((n, f) => n + f.size, 0) > MAX_UPLOAD_BYTES) throw new ApiError(413, 40005, 'Request entity too large');
    if (Array.isArray(body.attachments)) {
      const uploads = new Set(files.map((f) => f.field));
      body.attachments.forEach((entry: Json, i: number) => {
        if (/^\d{1,2}$/.test(String(entry.id)) && !uploads.has(`files[${entry.id}]`)) {
          errors.attachments = { ...errors.attachments, [i]: { id: fieldError('ATTACHMENT_NOT_FOUND', `No file was sent for attachment ${entry.id}.`) } };
        }
      });
    }
    const al = body.allowed_mentions;
    if (al && Array.isArray(al.parse) && al.parse.includes('users') && al.users?.length) {
      errors.allowed_mentions = fieldError('MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE', 'parse:["users"] and users: [ids] are mutually exclusive.');
    }
    if (Object.keys(errors).length > 0) throw new ApiError(400, 50035, 'Invalid Form Body', errors);
    const empty = !body.content && !body.embeds?.length && !body.components?.length && files.length === 0 && !body.sticker_ids?.length && !body.poll;
    if (creating && empty) throw new ApiError(400, 50006, 'Cannot send an empty message');
  }

  #accessibleChannel(id: string): FakeChannel {
    const channel = this.#channels.get(id);
    if (!channel || channel.state === 'gone') throw new ApiError(404, 10003, 'Unknown Channel');
    if (channel.state === 'forbidden') throw new ApiError(403, 50001, 'Missing Access');
    return channel;
  }

  #channelMessage(channelId: string, id: string): MessageRecord {
    this.#accessibleChannel(channelId);
    const message = this.#messages.get(id);
    // Ephemeral messages exist only for their recipient: the bot cannot reach them through the channel.
    if (!message || message.deleted || message.ephemeral || message.data.channel_id !== channelId) throw new ApiError(404, 10008, 'Unknown Message');
    return message;
  }

  // ---- internals: application commands ----------------------------------------------------------------

  #commandAccess(ctx: RequestContext, applicationId: string, guildId?: string): void {
    this.#requireBot(ctx);
    if (applicationId !== this.applicationId) throw new ApiError(403, 50001, 'Missing Access');
    if (guildId !== undefined && !this.guilds.some((g) => g.id === guildId)) throw new ApiError(403, 50001, 'Missing Access');
  }

  #storeCommands(body: Json, previous: Json[], guildId: string | null): Json[] {
    if (!Array.isArray(body)) throw new ApiError(400, 50035, 'Invalid Form Body', { _errors: [{ code: 'ARRAY_TYPE_CONVERT', message: 'Must be an array.' }] });
    const errors = validateCommands(body);
    if (errors) throw new ApiError(400, 50035, 'Invalid Form Body', errors);
    return body.map((command: Json) => {
      const type = command.type ?? 1;
      const existing = previous.find((c) => c.name === command.name && c.type === type);
      const stored: Json = {
        id: existing?.id ?? this.snowflake(), application_id: this.applicationId, version: this.snowflake(),
        default_member_permissions: null, type, nsfw: false, description: '', ...command,
      };
      if (guildId) stored.guild_id = guildId;
      else { stored.contexts ??= null; stored.integration_types ??= [0]; }
      return stored;
    });
  }

  // ---- internals: gateway ---------------------------------------------------------------------------------

  #readySessions(): GatewaySession[] { return [...this.#sessions].filter((s) => s.identified && s.socket.readyState === 1); }

  #handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', this.#origin);
    if (url.pathname !== '/gateway') { socket.destroy(); return; }
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      const session = new GatewaySession(ws);
      this.#sessions.add(session);
      ws.on('close', () => this.#sessions.delete(session));
      if (url.searchParams.get('encoding') !== 'json' || url.searchParams.get('v') !== '10') {
        ws.close(4012, 'Invalid API version or encoding'); return;
      }
      if (url.searchParams.has('compress')) { ws.close(4000, 'The fake Discord speaks no transport compression'); return; }
      session.send({ op: 10, s: null, t: null, d: { heartbeat_interval: this.heartbeatIntervalMs, _trace: ['fake-discord'] } });
      ws.on('message', (raw) => this.#onGatewayMessage(session, raw.toString()));
    });
  }

  #onGatewayMessage(session: GatewaySession, text: string): void {
    let payload: Json;
    try { payload = JSON.parse(text); } catch { session.socket.close(4002, 'Decode error'); return; }
    switch (payload.op) {
      case 1:
        this.heartbeatsAcked++;
        session.send({ op: 11, s: null, t: null, d: null });
        return;
      case 2: {
        if (session.identified) { session.socket.close(4005, 'Already authenticated'); return; }
        if (payload.d?.token !== this.token) { session.socket.close(4004, 'Authentication failed'); return; }
        this.identifies.push(payload.d);
        session.identified = true;
        session.sessionId = randomBytes(16).toString('hex');
        this.#knownSessionIds.add(session.sessionId);
        session.send({
          op: 0, t: 'READY', s: ++session.seq, d: {
            v: 10, user: this.botUser, user_settings: {}, session_type: 'normal', session_id: session.sessionId,
            resume_gateway_url: this.gatewayUrl, shard: payload.d.shard ?? [0, 1],
            guilds: this.guilds.map((g) => ({ id: g.id, unavailable: true })),
            application: { id: this.applicationId, flags: 0 }, private_channels: [], relationships: [], presences: [],
            guild_join_requests: [], geo_ordered_rtc_regions: [], auth: {}, _trace: ['fake-discord'],
          },
        });
        for (const guild of this.guilds) session.send({ op: 0, t: 'GUILD_CREATE', s: ++session.seq, d: this.#guildCreatePayload(guild) });
        this.emit('identify', payload.d);
        return;
      }
      case 6: {
        if (payload.d?.token !== this.token) { session.socket.close(4004, 'Authentication failed'); return; }
        if (!this.#knownSessionIds.has(payload.d?.session_id)) { session.send({ op: 9, s: null, t: null, d: false }); return; }
        session.identified = true;
        session.sessionId = payload.d.session_id;
        session.seq = payload.d.seq ?? 0;
        session.send({ op: 0, t: 'RESUMED', s: ++session.seq, d: {} });
        return;
      }
      default:
        return; // presence updates, member requests, voice: not modelled
    }
  }
}

class GatewaySession {
  identified = false;
  sessionId = '';
  seq = 0;
  constructor(readonly socket: WebSocket) {}
  send(payload: Json): void { if (this.socket.readyState === 1) this.socket.send(JSON.stringify(payload)); }
}

/** A dispatched interaction, for assertions on how the bot answered it. */
export class FakeInteraction {
  constructor(private readonly fake: FakeDiscord, private readonly record: InteractionRecord) {}
  get id(): string { return this.record.id; }
  get token(): string { return this.record.token; }
  get payload(): APIInteraction & Json { return this.record.payload; }
  /** The accepted initial response, once there is one. */
  get callback(): InteractionCallback | null { return this.record.callback; }
  /** The reply message (deferred, sent, or the component's message after a deferred update). */
  get originalMessage(): APIMessage | undefined {
    return this.record.originalMessageId ? this.fake.message(this.record.originalMessageId) : undefined;
  }
  /** Every state the reply message had (also after it was deleted): as created, then after each edit. */
  get replyHistory(): APIMessage[] {
    return this.record.originalMessageId ? this.fake.messageHistory(this.record.originalMessageId) : [];
  }
  get followups(): APIMessage[] { return this.record.followupIds.map((id) => this.fake.message(id)).filter((m): m is APIMessage => !!m); }

  async waitForCallback(timeoutMs = 5_000): Promise<InteractionCallback> {
    await this.fake.waitForRequest((r) => r.route.startsWith(`/interactions/${this.id}/`) && r.status < 300, { timeoutMs });
    return this.record.callback!;
  }

  /** Resolves with the request log entry of the next webhook call for this interaction that matches. */
  waitForWebhook(match: (r: LoggedRequest) => boolean = () => true, options: { since?: number; timeoutMs?: number } = {}): Promise<LoggedRequest> {
    const prefix = `/webhooks/${this.fake.applicationId}/${this.token}`;
    return this.fake.waitForRequest((r) => r.route.startsWith(prefix) && match(r), options);
  }
}

// ---- validation helpers (Discord's rules, as far as this bot exercises them) ------------------------------

function fieldError(code: string, message: string): Json { return { _errors: [{ code, message }] }; }

const CHAT_INPUT_NAME = /^[-_'\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$/u;
const OPTION_TYPES_WITH_CHOICES = new Set([3, 4, 10]);

function validateCommands(commands: Json[]): Json | null {
  const errors: Json = {};
  const add = (path: Array<string | number>, code: string, message: string) => {
    let node = errors;
    for (const key of path) node = node[key] ??= {};
    (node._errors ??= []).push({ code, message });
  };
  const seen = new Set<string>();
  const counts: Record<number, number> = {};
  commands.forEach((command, i) => {
    const type = command.type ?? 1;
    counts[type] = (counts[type] ?? 0) + 1;
    const key = `${type}:${command.name}`;
    if (seen.has(key)) add([i, 'name'], 'APPLICATION_COMMANDS_DUPLICATE_NAME', `Application command names must be unique (${command.name}).`);
    seen.add(key);
    if (![1, 2, 3].includes(type)) { add([i, 'type'], 'BASE_TYPE_CHOICES', 'Value must be one of {1, 2, 3}.'); return; }
    if (typeof command.name !== 'string' || command.name.length < 1 || command.name.length > 32) add([i, 'name'], 'BASE_TYPE_BAD_LENGTH', 'Must be between 1 and 32 in length.');
    else if (type === 1 && (!CHAT_INPUT_NAME.test(command.name) || command.name !== command.name.toLowerCase())) add([i, 'name'], 'APPLICATION_COMMAND_INVALID_NAME', 'Command name is invalid.');
    if (type === 1) {
      if (typeof command.description !== 'string' || command.description.length < 1 || command.description.length > 100) add([i, 'description'], 'BASE_TYPE_BAD_LENGTH', 'Must be between 1 and 100 in length.');
    } else {
      if (command.description) add([i, 'description'], 'APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION', 'Context menu commands cannot have description.');
      if (command.options?.length) add([i, 'options'], 'APPLICATION_COMMAND_CONTEXT_MENU_OPTIONS', 'Context menu commands cannot have options.');
    }
    for (const context of command.contexts ?? []) if (![0, 1, 2].includes(context)) add([i, 'contexts'], 'BASE_TYPE_CHOICES', 'Value must be one of {0, 1, 2}.');
    for (const it of command.integration_types ?? []) if (![0, 1].includes(it)) add([i, 'integration_types'], 'BASE_TYPE_CHOICES', 'Value must be one of {0, 1}.');
    const options: Json[] = command.options ?? [];
    if (options.length > 25) add([i, 'options'], 'BASE_TYPE_MAX_LENGTH', 'Must be 25 or fewer in length.');
    let total = (command.name?.length ?? 0) + (command.description?.length ?? 0);
    let optionalSeen = false;
    const names = new Set<string>();
    options.forEach((option, j) => {
      const at = [i, 'options', j];
      total += (option.name?.length ?? 0) + (option.description?.length ?? 0);
      if (typeof option.type !== 'number' || option.type < 1 || option.type > 11) add([...at, 'type'], 'BASE_TYPE_CHOICES', 'Value must be one of 1–11.');
      if (typeof option.name !== 'string' || !CHAT_INPUT_NAME.test(option.name) || option.name !== option.name.toLowerCase()) add([...at, 'name'], 'APPLICATION_COMMAND_INVALID_NAME', 'Option name is invalid.');
      if (names.has(option.name)) add([...at, 'name'], 'APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS', 'Option names must be unique.');
      names.add(option.name);
      if (typeof option.description !== 'string' || option.description.length < 1 || option.description.length > 100) add([...at, 'description'], 'BASE_TYPE_BAD_LENGTH', 'Must be between 1 and 100 in length.');
      if (option.type !== 1 && option.type !== 2) {
        if (option.required) {
          if (optionalSeen) add([...at, 'required'], 'APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID', 'Required options must be placed before non-required options.');
        } else {
          optionalSeen = true;
        }
      }
      const choices: Json[] = option.choices ?? [];
      if (choices.length > 0 && !OPTION_TYPES_WITH_CHOICES.has(option.type)) add([...at, 'choices'], 'APPLICATION_COMMAND_OPTION_CHOICES_INVALID', 'Choices are only allowed on string, integer and number options.');
      if (choices.length > 25) add([...at, 'choices'], 'BASE_TYPE_MAX_LENGTH', 'Must be 25 or fewer in length.');
      for (const choice of choices) total += String(choice.name).length + String(choice.value).length;
      if (option.autocomplete && (choices.length > 0 || !OPTION_TYPES_WITH_CHOICES.has(option.type))) add([...at, 'autocomplete'], 'APPLICATION_COMMAND_AUTOCOMPLETE_INVALID', 'Autocomplete cannot be set with choices, and only on string, integer and number options.');
      if ((option.min_length !== undefined || option.max_length !== undefined) && option.type !== 3) add([...at, 'max_length'], 'APPLICATION_COMMAND_OPTION_LENGTH_INVALID', 'Lengths are only allowed on string options.');
      if (option.max_length !== undefined && (option.max_length < 1 || option.max_length > 6000)) add([...at, 'max_length'], 'NUMBER_TYPE_MAX', 'Must be between 1 and 6000.');
      if ((option.min_value !== undefined || option.max_value !== undefined) && option.type !== 4 && option.type !== 10) add([...at, 'min_value'], 'APPLICATION_COMMAND_OPTION_VALUE_INVALID', 'Values are only allowed on integer and number options.');
    });
    if (total > 8000) add([i], 'APPLICATION_COMMAND_TOO_LARGE', 'Command exceeds maximum size (8000).');
  });
  if ((counts[1] ?? 0) > 100) add([], 'APPLICATION_COMMANDS_TOO_MANY', 'Maximum number of chat input commands reached (100).');
  if ((counts[2] ?? 0) > 15 || (counts[3] ?? 0) > 15) add([], 'APPLICATION_COMMANDS_TOO_MANY', 'Maximum number of context menu commands reached (15).');
  return Object.keys(errors).length > 0 ? errors : null;
}

function validateActionRows(rows: Json[]): Json | null {
  const errors: Json = {};
  if (rows.length > 5) return fieldError('BASE_TYPE_MAX_LENGTH', 'Must be 5 or fewer in length.');
  const customIds = new Set<string>();
  rows.forEach((row, i) => {
    if (row.type !== 1) { errors[i] = { type: fieldError('UNION_TYPE_CHOICES', 'Top-level components must be action rows.') }; return; }
    const children: Json[] = row.components ?? [];
    if (children.length < 1 || children.length > 5) { errors[i] = { components: fieldError('BASE_TYPE_BAD_LENGTH', 'Must be between 1 and 5 in length.') }; return; }
    children.forEach((child, j) => {
      if (child.type !== 2) return;
      const problem = child.style === 5
        ? (!child.url ? 'A link button needs a url.' : null)
        : typeof child.custom_id !== 'string' || child.custom_id.length < 1 || child.custom_id.length > 100
          ? 'custom_id must be 1–100 characters.'
          : customIds.has(child.custom_id) ? 'custom_id must be unique within the message.' : null;
      if (child.custom_id) customIds.add(child.custom_id);
      if (child.label && child.label.length > 80) errors[i] = { components: { [j]: { label: fieldError('BASE_TYPE_MAX_LENGTH', 'Must be 80 or fewer in length.') } } };
      if (problem) errors[i] = { components: { [j]: { custom_id: fieldError('COMPONENT_CUSTOM_ID_INVALID', problem) } } };
    });
  });
  return Object.keys(errors).length > 0 ? errors : null;
}

function validateChoices(data: Json): void {
  const choices = data.choices;
  const bad = !Array.isArray(choices) || choices.length > 25 ||
    choices.some((c: Json) => typeof c.name !== 'string' || c.name.length < 1 || c.name.length > 100 || c.value === undefined ||
      (typeof c.value === 'string' && c.value.length > 100));
  if (bad) throw new ApiError(400, 50035, 'Invalid Form Body', { data: { choices: fieldError('BASE_TYPE_BAD_LENGTH', 'At most 25 choices; names and string values 1–100 characters.') } });
}

function validateModal(data: Json): void {
  const components: Json[] = data.components ?? [];
  const bad = typeof data.custom_id !== 'string' || data.custom_id.length < 1 || data.custom_id.length > 100 ||
    typeof data.title !== 'string' || data.title.length < 1 || data.title.length > 45 || components.length < 1 || components.length > 5;
  if (bad) throw new ApiError(400, 50035, 'Invalid Form Body', { data: fieldError('MODAL_INVALID', 'A modal needs a custom_id (1–100), a title (1–45) and 1–5 components.') });
}

function guessContentType(filename: string): string {
  const ext = filename.toLowerCase().split('.').pop();
  return ({ png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', webp: 'image/webp', gif: 'image/gif', txt: 'text/plain' } as Record<string, string>)[ext ?? ''] ?? 'application/octet-stream';
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).byteLength;
    if (size > MAX_BODY_BYTES) throw new ApiError(413, 40005, 'Request entity too large');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
