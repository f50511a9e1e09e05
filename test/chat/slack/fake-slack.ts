// A project-owned fake of the parts of Slack the bot talks to, for driving the real @slack/bolt app offline:
// the Web API under /api/<method>, private file URLs, the files.uploadV2 upload target, response_url hooks and
// (optionally) Socket Mode. Everything is in memory, listens on 127.0.0.1 with port 0, and logs every request so
// tests can assert on what the app did. Behaviour follows Slack's documented answers (HTTP 200 with `ok`, an HTML
// login page for file URLs without the bot token, trigger_ids valid 3 s, response_urls 5 uses in 30 minutes).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EventEmitter } from 'node:events';
import { WebSocketServer, type WebSocket } from 'ws';

export interface FakeSlackOptions {
  botToken?: string;
  appToken?: string;
  teamId?: string;
  teamDomain?: string;
  enterpriseId?: string;
  botUserId?: string;
  botId?: string;
  appId?: string;
  /** Bot scopes granted to the token; methods and file downloads needing another scope fail like Slack. */
  scopes?: readonly string[];
  /** Clock in milliseconds (trigger and response_url expiry, message timestamps). Default Date.now. */
  now?: () => number;
  triggerTtlMs?: number;
  responseUrlTtlMs?: number;
  responseUrlMaxUses?: number;
}

export type LoggedKind = 'api' | 'file' | 'upload' | 'response_url' | 'socket';

export interface LoggedRequest {
  seq: number;
  /** Fake clock time of the request (ms). */
  at: number;
  kind: LoggedKind;
  /** API method (`chat.update`), or the HTTP method for other kinds. */
  method: string;
  path: string;
  /** The Authorization header as sent, if any. */
  authorization?: string;
  /** Parsed arguments: JSON-valued Slack fields (blocks, view, files, …) are decoded. */
  args: Record<string, unknown>;
  /** Raw bytes of an upload, or the bytes served for a file download. */
  bytes?: Uint8Array;
  /** What the fake answered (JSON body, or a short description for non-JSON answers). */
  response: unknown;
  status: number;
}

/** A file object in Slack's shape (the subset of fields the bot reads, plus the usual metadata). */
export interface FakeSlackFile {
  id: string;
  created: number;
  timestamp: number;
  name: string;
  title: string;
  mimetype: string;
  filetype: string;
  pretty_type: string;
  user: string;
  user_team: string;
  size: number;
  mode: 'hosted';
  is_external: false;
  is_public: boolean;
  url_private: string;
  url_private_download: string;
  permalink: string;
  channels: string[];
}

export interface FakeMessage {
  channel: string;
  ts: string;
  thread_ts?: string;
  user?: string;
  bot_id?: string;
  text?: string;
  blocks?: unknown;
  files?: FakeSlackFile[];
  /** Every version of the message: the post first, then each chat.update. */
  history: Array<{ text?: string; blocks?: unknown; at: number }>;
}

export interface CompletedUpload {
  file: FakeSlackFile;
  bytes: Uint8Array;
  channel_id?: string;
  thread_ts?: string;
  initial_comment?: string;
  /** The message that shared the file, when the upload was completed into a channel. */
  message?: FakeMessage;
}

export interface FakeUser {
  id: string;
  team_id: string;
  name: string;
  real_name: string;
  is_admin: boolean;
  is_owner: boolean;
  is_bot: boolean;
  deleted: boolean;
}

export interface FakeChannel {
  id: string;
  name: string;
  is_channel: boolean;
  is_im: boolean;
  is_private: boolean;
  is_member: boolean;
}

export interface ResponseUrlPost {
  at: number;
  status: number;
  body: unknown;
}

export interface SocketEnvelope {
  envelope_id: string;
  type: 'slash_commands' | 'interactive' | 'events_api';
  payload: unknown;
  accepts_response_payload: boolean;
  retry_attempt?: number;
  retry_reason?: string;
}

export interface SocketAck {
  envelope_id: string;
  payload?: unknown;
}

/** Scope each Web API method needs (bot token). Methods not listed need none beyond a valid token. */
const REQUIRED_SCOPE: Record<string, string> = {
  'chat.postMessage': 'chat:write',
  'chat.update': 'chat:write',
  'chat.postEphemeral': 'chat:write',
  'chat.delete': 'chat:write',
  'files.info': 'files:read',
  'files.delete': 'files:write',
  'files.getUploadURLExternal': 'files:write',
  'files.completeUploadExternal': 'files:write',
  'conversations.info': 'channels:read',
  'users.info': 'users:read',
};

export const ALL_BOT_SCOPES: readonly string[] = [
  'commands', 'chat:write', 'files:read', 'files:write', 'channels:read', 'groups:read', 'im:read', 'users:read',
];

/** Fields Slack's Web API accepts as JSON-encoded strings inside a form body. */
const JSON_FIELDS = new Set(['blocks', 'attachments', 'view', 'files', 'metadata', 'unfurls', 'user_auth_blocks']);

const LOGIN_PAGE = '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Slack</title></head>'
  + '<body><form action="/signin" method="post"><h1>Sign in to your workspace</h1>'
  + '<input type="email" name="email"><input type="password" name="password"><button>Sign in</button>'
  + '</form></body></html>';

type ApiResult = { ok: true; [k: string]: unknown } | { ok: false; error: string; [k: string]: unknown };
type ApiHandler = (args: Record<string, unknown>, token: string) => ApiResult;

interface Trigger { issuedAt: number; used: boolean }
interface ResponseHook { issuedAt: number; posts: ResponseUrlPost[] }
interface PendingUpload { fileId: string; filename: string; length: number; bytes?: Uint8Array; completed: boolean }
interface StoredFile { file: FakeSlackFile; bytes: Uint8Array; respondAfterMs?: number; chunked?: boolean }
interface StoredView { id: string; hash: string; view: Record<string, unknown>; root_view_id: string; previous_view_id: string | null }

export class FakeSlack {
  readonly botToken: string;
  readonly appToken: string;
  readonly teamId: string;
  readonly teamDomain: string;
  readonly enterpriseId: string | undefined;
  readonly botUserId: string;
  readonly botId: string;
  readonly appId: string;
  /** Every request in arrival order. */
  readonly log: LoggedRequest[] = [];
  /** Messages by `channel/ts`. */
  readonly messages = new Map<string, FakeMessage>();
  /** Files completed through files.uploadV2, in completion order. */
  readonly uploads: CompletedUpload[] = [];
  readonly views = new Map<string, StoredView>();

  private scopes: Set<string>;
  private readonly now: () => number;
  private readonly triggerTtlMs: number;
  private readonly responseUrlTtlMs: number;
  private readonly responseUrlMaxUses: number;
  private readonly server: Server;
  private readonly wss: WebSocketServer;
  private readonly events = new EventEmitter();
  private readonly handlers: Record<string, ApiHandler>;
  private readonly files = new Map<string, StoredFile>();
  private readonly pendingUploads = new Map<string, PendingUpload>();
  private readonly triggers = new Map<string, Trigger>();
  private readonly responseHooks = new Map<string, ResponseHook>();
  private readonly users = new Map<string, FakeUser>();
  private readonly channels = new Map<string, FakeChannel>();
  private readonly injectedFailures = new Map<string, Array<{ error: string; extra: Record<string, unknown>; when?: (args: Record<string, unknown>) => boolean }>>();
  private readonly sockets = new Set<WebSocket>();
  private readonly pendingAcks = new Map<string, (ack: SocketAck) => void>();
  private counter = 0;
  private counterSeq = 0;
  private port = 0;

  private constructor(opts: FakeSlackOptions) {
    this.botToken = opts.botToken ?? 'xoxb-fake-bot-token';
    this.appToken = opts.appToken ?? 'xapp-fake-app-token';
    this.teamId = opts.teamId ?? 'T0FAKE0001';
    this.teamDomain = opts.teamDomain ?? 'fake-team';
    this.enterpriseId = opts.enterpriseId;
    this.botUserId = opts.botUserId ?? 'U0FAKEBOT1';
    this.botId = opts.botId ?? 'B0FAKEBOT1';
    this.appId = opts.appId ?? 'A0FAKEAPP1';
    this.scopes = new Set(opts.scopes ?? ALL_BOT_SCOPES);
    this.now = opts.now ?? Date.now;
    this.triggerTtlMs = opts.triggerTtlMs ?? 3000;
    this.responseUrlTtlMs = opts.responseUrlTtlMs ?? 30 * 60 * 1000;
    this.responseUrlMaxUses = opts.responseUrlMaxUses ?? 5;
    this.events.setMaxListeners(0);
    this.handlers = this.buildHandlers();
    this.addUser({ id: this.botUserId, name: 'perfusion', is_bot: true });
    this.server = createServer((req, res) => {
      this.route(req, res).catch((error: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`fake slack error: ${error instanceof Error ? error.message : String(error)}`);
      });
    });
    // Keep idle connections longer than clients do, so a client never reuses a socket the fake is just closing
    // (ECONNRESET) — likely when a test blocks the event loop for seconds, e.g. while the engine generates.
    this.server.keepAliveTimeout = 60_000;
    this.wss = new WebSocketServer({ noServer: true });
    this.server.on('upgrade', (req, socket, head) => {
      const url = new URL(req.url ?? '/', 'http://fake');
      if (url.pathname !== '/socket') { socket.destroy(); return; }
      this.wss.handleUpgrade(req, socket, head, (ws) => this.onSocket(ws));
    });
  }

  /** Starts a fake on 127.0.0.1 with a free port. */
  static async start(opts: FakeSlackOptions = {}): Promise<FakeSlack> {
    const fake = new FakeSlack(opts);
    await new Promise<void>((resolve, reject) => {
      fake.server.once('error', reject);
      fake.server.listen(0, '127.0.0.1', () => resolve());
    });
    fake.port = (fake.server.address() as AddressInfo).port;
    return fake;
  }

  get baseUrl(): string { return `http://127.0.0.1:${this.port}`; }
  /** The Web API base for `clientOptions.slackApiUrl` (with the trailing slash Bolt expects). */
  get apiUrl(): string { return `${this.baseUrl}/api/`; }

  async close(): Promise<void> {
    for (const ws of this.sockets) ws.terminate();
    this.wss.close();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---- test setup -------------------------------------------------------------------------------------------

  setScopes(scopes: readonly string[]): void { this.scopes = new Set(scopes); }

  addUser(spec: Partial<FakeUser> & { id: string }): FakeUser {
    const user: FakeUser = {
      team_id: this.teamId, name: spec.id.toLowerCase(), real_name: spec.name ?? spec.id,
      is_admin: false, is_owner: false, is_bot: false, deleted: false, ...spec,
    };
    this.users.set(user.id, user);
    return user;
  }

  addChannel(spec: Partial<FakeChannel> & { id: string }): FakeChannel {
    const channel: FakeChannel = {
      name: spec.id.toLowerCase(), is_channel: !spec.id.startsWith('D'), is_im: spec.id.startsWith('D'),
      is_private: spec.id.startsWith('G'), is_member: true, ...spec,
    };
    this.channels.set(channel.id, channel);
    return channel;
  }

  /**
   * Registers a file a user shared; its private URLs serve `bytes` only to the bot token. `respondAfterMs`
   * delays the answer (timeout tests); `chunked` sends it without content-length (streamed size checks).
   */
  addFile(spec: {
    name: string; bytes: Uint8Array; mimetype?: string; user?: string; channel?: string; title?: string;
    respondAfterMs?: number; chunked?: boolean;
  }): FakeSlackFile {
    const id = `F${this.nextId(9)}`;
    const mimetype = spec.mimetype ?? mimetypeFor(spec.name);
    const file = this.fileObject(id, spec.name, spec.title ?? spec.name, mimetype, spec.bytes.length,
      spec.user ?? 'U0FAKEUSR1', spec.channel ? [spec.channel] : []);
    this.files.set(id, {
      file, bytes: spec.bytes,
      ...(spec.respondAfterMs ? { respondAfterMs: spec.respondAfterMs } : {}),
      ...(spec.chunked ? { chunked: true } : {}),
    });
    return structuredClone(file);
  }

  /** A fresh trigger_id, valid for `triggerTtlMs` from now (fake clock) and usable once. */
  newTriggerId(): string {
    const id = `${this.nextId(6)}.${this.nextId(6)}.${randomHex(16)}`;
    this.triggers.set(id, { issuedAt: this.now(), used: false });
    return id;
  }

  /** A fresh response_url on this fake: `responseUrlMaxUses` posts within `responseUrlTtlMs`. */
  newResponseUrl(): string {
    const id = `${this.teamId}/${this.nextId(10)}/${randomHex(12)}`;
    this.responseHooks.set(id, { issuedAt: this.now(), posts: [] });
    return `${this.baseUrl}/commands/${id}`;
  }

  /** Posts recorded at a response_url (accepted and refused). */
  responsePosts(responseUrl: string): ResponseUrlPost[] {
    const hook = this.responseHooks.get(this.hookIdOf(responseUrl));
    return hook ? hook.posts.slice() : [];
  }

  /** Makes the next call of `method` answer `{ ok: false, error, ...extra }`. */
  failNext(method: string, error: string, extra: Record<string, unknown> = {}): void {
    const list = this.injectedFailures.get(method) ?? [];
    list.push({ error, extra });
    this.injectedFailures.set(method, list);
  }

  /** Makes the next call of `method` whose arguments satisfy `when` answer `{ ok: false, error }`. */
  failWhen(method: string, when: (args: Record<string, unknown>) => boolean, error: string): void {
    const list = this.injectedFailures.get(method) ?? [];
    list.push({ error, extra: {}, when });
    this.injectedFailures.set(method, list);
  }

  /** Posts a message as a user (e.g. a message with images for the message shortcut). */
  postUserMessage(spec: { channel: string; user: string; text?: string; files?: FakeSlackFile[]; thread_ts?: string }): FakeMessage {
    const message: FakeMessage = {
      channel: spec.channel, ts: this.nextTs(), user: spec.user, text: spec.text ?? '',
      history: [{ text: spec.text ?? '', at: this.now() }],
      ...(spec.files ? { files: spec.files } : {}),
      ...(spec.thread_ts ? { thread_ts: spec.thread_ts } : {}),
    };
    this.messages.set(`${message.channel}/${message.ts}`, message);
    return message;
  }

  // ---- assertions ---------------------------------------------------------------------------------------------

  /** Logged Web API calls of one method. */
  calls(method: string): LoggedRequest[] {
    return this.log.filter((r) => r.kind === 'api' && r.method === method);
  }

  /** Logged requests of one kind (file downloads, uploads, response_url posts, socket acks). */
  requests(kind: LoggedKind): LoggedRequest[] {
    return this.log.filter((r) => r.kind === kind);
  }

  message(channel: string, ts: string): FakeMessage | undefined {
    return this.messages.get(`${channel}/${ts}`);
  }

  /** Messages in a thread (the parent excluded), oldest first. */
  threadReplies(channel: string, threadTs: string): FakeMessage[] {
    return [...this.messages.values()].filter((m) => m.channel === channel && m.thread_ts === threadTs && m.ts !== threadTs);
  }

  /**
   * Resolves with the first logged request (already logged or arriving within `timeoutMs`, default 15 s: tests
   * share two CI cores) of `kind`/`method`
   * that satisfies `predicate`; rejects with the list of what did arrive when it times out.
   */
  waitFor(method: string, predicate: (r: LoggedRequest) => boolean = () => true,
    opts: { kind?: LoggedKind; timeoutMs?: number; after?: number } = {}): Promise<LoggedRequest> {
    const kind = opts.kind ?? 'api';
    const after = opts.after ?? 0;
    const matches = (r: LoggedRequest) => r.kind === kind && r.method === method && r.seq > after && predicate(r);
    const found = this.log.find(matches);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const onRequest = (r: LoggedRequest) => {
        if (!matches(r)) return;
        clearTimeout(timer);
        this.events.off('request', onRequest);
        resolve(r);
      };
      const timer = setTimeout(() => {
        this.events.off('request', onRequest);
        const seen = this.log.map((r) => `${r.kind}:${r.method}`).join(', ');
        reject(new Error(`fake slack: no ${kind} ${method} matching within ${opts.timeoutMs ?? 15_000} ms; seen: ${seen}`));
      }, opts.timeoutMs ?? 15_000);
      this.events.on('request', onRequest);
    });
  }

  /** Sequence number of the latest logged request (for `waitFor(..., { after })`). */
  get lastSeq(): number { return this.counterSeq; }

  // ---- Socket Mode ------------------------------------------------------------------------------------------

  /** Resolves once a Socket Mode client is connected and has been sent `hello`. */
  waitForSocket(timeoutMs = 5000): Promise<void> {
    if ([...this.sockets].some((ws) => ws.readyState === ws.OPEN)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('fake slack: no Socket Mode connection')), timeoutMs);
      this.events.once('socket', () => { clearTimeout(timer); resolve(); });
    });
  }

  /**
   * Resolves once every Socket Mode connection has closed (after `app.stop()`, before `close()`, so the client
   * finishes its close handshake instead of waiting out its timeout).
   */
  waitForSocketsClosed(timeoutMs = 5000): Promise<void> {
    if (this.sockets.size === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.events.off('socket-closed', onClosed);
        reject(new Error('fake slack: a Socket Mode connection stayed open'));
      }, timeoutMs);
      const onClosed = () => {
        if (this.sockets.size > 0) return;
        clearTimeout(timer);
        this.events.off('socket-closed', onClosed);
        resolve();
      };
      this.events.on('socket-closed', onClosed);
    });
  }

  /** Sends an envelope over the open Socket Mode connection and resolves with the app's ack. */
  sendEnvelope(type: SocketEnvelope['type'], payload: unknown, timeoutMs = 5000): Promise<SocketAck> {
    const ws = [...this.sockets].find((s) => s.readyState === s.OPEN);
    if (!ws) return Promise.reject(new Error('fake slack: no open Socket Mode connection'));
    const envelope: SocketEnvelope = {
      envelope_id: `${randomHex(8)}-${randomHex(4)}-${randomHex(4)}-${randomHex(12)}`, type, payload,
      accepts_response_payload: type !== 'events_api',
      ...(type === 'events_api' ? { retry_attempt: 0, retry_reason: '' } : {}),
    };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pendingAcks.delete(envelope.envelope_id);
        reject(new Error(`fake slack: envelope ${envelope.envelope_id} (${type}) was not acknowledged`));
      }, timeoutMs);
      this.pendingAcks.set(envelope.envelope_id, (ack) => { clearTimeout(timer); resolve(ack); });
      ws.send(JSON.stringify(envelope));
    });
  }

  private onSocket(ws: WebSocket): void {
    this.sockets.add(ws);
    ws.on('close', () => {
      this.sockets.delete(ws);
      this.events.emit('socket-closed');
    });
    ws.on('message', (data) => {
      let ack: SocketAck;
      try { ack = JSON.parse(String(data)) as SocketAck; } catch { return; }
      this.record({ kind: 'socket', method: 'ack', path: '/socket', args: { ...ack }, response: null, status: 0 });
      this.pendingAcks.get(ack.envelope_id)?.(ack);
      this.pendingAcks.delete(ack.envelope_id);
    });
    ws.send(JSON.stringify({
      type: 'hello', num_connections: this.sockets.size,
      debug_info: { host: 'fake-slack', approximate_connection_time: 18060 },
      connection_info: { app_id: this.appId },
    }));
    this.events.emit('socket');
  }

  // ---- HTTP routing -----------------------------------------------------------------------------------------

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.baseUrl);
    const path = decodeURIComponent(url.pathname);
    const body = await readBody(req);
    if (req.method === 'POST' && path.startsWith('/api/')) {
      return this.handleApi(path.slice('/api/'.length), req, body, res);
    }
    if (req.method === 'GET' && path.startsWith('/files-pri/')) return this.handleFileGet(path, req, res);
    if (req.method === 'POST' && path.startsWith('/upload/v1/')) return this.handleUpload(path, req, body, res);
    if (req.method === 'POST' && path.startsWith('/commands/')) return this.handleResponseUrl(path, req, body, res);
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
  }

  private handleApi(method: string, req: IncomingMessage, body: Buffer, res: ServerResponse): void {
    const args = parseApiArgs(req.headers['content-type'], body);
    const authorization = req.headers.authorization;
    const token = bearerToken(authorization) ?? (typeof args.token === 'string' ? args.token : undefined);
    delete args.token;
    const result = this.callApi(method, args, token);
    const headers: Record<string, string> = { 'content-type': 'application/json; charset=utf-8' };
    if (token === this.botToken) headers['x-oauth-scopes'] = [...this.scopes].join(',');
    const needed = REQUIRED_SCOPE[method];
    if (needed) headers['x-accepted-oauth-scopes'] = needed;
    res.writeHead(200, headers);
    res.end(JSON.stringify(result));
    this.record({ kind: 'api', method, path: `/api/${method}`, authorization, args, response: result, status: 200 });
  }

  private callApi(method: string, args: Record<string, unknown>, token: string | undefined): ApiResult {
    const handler = this.handlers[method];
    if (!handler) return { ok: false, error: 'unknown_method' };
    if (!token) return { ok: false, error: 'not_authed' };
    if (method === 'apps.connections.open') {
      if (token !== this.appToken) return { ok: false, error: token === this.botToken ? 'not_allowed_token_type' : 'invalid_auth' };
    } else if (token !== this.botToken) {
      return { ok: false, error: token === this.appToken ? 'not_allowed_token_type' : 'invalid_auth' };
    }
    const failures = this.injectedFailures.get(method) ?? [];
    const index = failures.findIndex((f) => !f.when || f.when(args));
    const injected = index < 0 ? undefined : failures.splice(index, 1)[0];
    if (injected) return { ok: false, error: injected.error, ...injected.extra };
    const needed = REQUIRED_SCOPE[method];
    if (needed && !this.scopes.has(needed)) {
      return { ok: false, error: 'missing_scope', needed, provided: [...this.scopes].join(',') };
    }
    return handler(args, token);
  }

  private async handleFileGet(path: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    // /files-pri/<team>-<fileId>/<name>  or  /files-pri/<team>-<fileId>/download/<name>
    const match = /^\/files-pri\/[^/]+-(F[0-9A-Z]+)\/(?:download\/)?[^/]+$/.exec(path);
    const stored = match ? this.files.get(match[1]!) : undefined;
    const authorization = req.headers.authorization;
    const authorized = bearerToken(authorization) === this.botToken && this.scopes.has('files:read');
    if (!stored) {
      res.writeHead(404, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<html><body>File not found</body></html>');
      this.record({ kind: 'file', method: 'GET', path, authorization, args: { authorized }, response: 'not found', status: 404 });
      return;
    }
    if (stored.respondAfterMs) {
      await new Promise((resolve) => setTimeout(resolve, stored.respondAfterMs).unref());
      if (res.destroyed) return;
    }
    if (!authorized) {
      // Slack answers a private file URL without a valid token with its sign-in page, status 200.
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(LOGIN_PAGE);
      this.record({ kind: 'file', method: 'GET', path, authorization, args: { authorized, fileId: stored.file.id }, response: 'login page', status: 200 });
      return;
    }
    res.writeHead(200, {
      'content-type': stored.file.mimetype,
      ...(stored.chunked ? {} : { 'content-length': String(stored.bytes.length) }),
      'content-disposition': `attachment; filename="${stored.file.name}"`,
    });
    if (stored.chunked) {
      for (let offset = 0; offset < stored.bytes.length; offset += 1024) res.write(stored.bytes.subarray(offset, offset + 1024));
      res.end();
    } else {
      res.end(stored.bytes);
    }
    this.record({ kind: 'file', method: 'GET', path, authorization, args: { authorized, fileId: stored.file.id }, bytes: stored.bytes, response: 'file', status: 200 });
  }

  private async handleUpload(path: string, req: IncomingMessage, body: Buffer, res: ServerResponse): Promise<void> {
    const uploadId = path.slice('/upload/v1/'.length);
    const pending = this.pendingUploads.get(uploadId);
    const authorization = req.headers.authorization;
    if (!pending || pending.completed) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('upload url not found');
      this.record({ kind: 'upload', method: 'POST', path, authorization, args: { uploadId }, response: 'not found', status: 404 });
      return;
    }
    const contentType = req.headers['content-type'] ?? '';
    let bytes: Uint8Array = new Uint8Array(body);
    let partName: string | undefined;
    if (contentType.startsWith('multipart/form-data')) {
      const form = await new Response(new Uint8Array(body), { headers: { 'content-type': contentType } }).formData();
      let filePart: { name: string; value: Blob } | undefined;
      form.forEach((value, name) => { if (!filePart && typeof value !== 'string') filePart = { name, value }; });
      if (filePart) { partName = filePart.name; bytes = new Uint8Array(await filePart.value.arrayBuffer()); }
    }
    pending.bytes = bytes;
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`OK - ${bytes.length}`);
    this.record({ kind: 'upload', method: 'POST', path, authorization, args: { uploadId, fileId: pending.fileId, partName, contentType }, bytes, response: `OK - ${bytes.length}`, status: 200 });
  }

  private handleResponseUrl(path: string, req: IncomingMessage, body: Buffer, res: ServerResponse): void {
    const hookId = path.slice('/commands/'.length);
    const hook = this.responseHooks.get(hookId);
    let parsed: unknown;
    try { parsed = JSON.parse(body.toString('utf8')); } catch { parsed = body.toString('utf8'); }
    let status = 200;
    let answer = 'ok';
    if (!hook) { status = 404; answer = 'no_such_url'; }
    else if (this.now() - hook.issuedAt > this.responseUrlTtlMs) { status = 404; answer = 'expired_url'; }
    else if (hook.posts.filter((p) => p.status === 200).length >= this.responseUrlMaxUses) { status = 404; answer = 'used_url'; }
    hook?.posts.push({ at: this.now(), status, body: parsed });
    res.writeHead(status, { 'content-type': 'text/plain' });
    res.end(answer);
    this.record({ kind: 'response_url', method: 'POST', path, authorization: req.headers.authorization, args: { body: parsed }, response: answer, status });
  }

  private record(entry: Omit<LoggedRequest, 'seq' | 'at'>): void {
    const logged: LoggedRequest = { seq: ++this.counterSeq, at: this.now(), ...entry };
    this.log.push(logged);
    this.events.emit('request', logged);
  }

  // ---- Web API methods --------------------------------------------------------------------------------------

  private buildHandlers(): Record<string, ApiHandler> {
    return {
      'api.test': (args) => ({ ok: true, args }),
      'auth.test': () => ({
        ok: true, url: `https://${this.teamDomain}.slack.com/`, team: this.teamDomain, user: 'perfusion',
        team_id: this.teamId, user_id: this.botUserId, bot_id: this.botId, is_enterprise_install: false,
        ...(this.enterpriseId ? { enterprise_id: this.enterpriseId } : {}),
      }),
      'apps.connections.open': () => ({ ok: true, url: `ws://127.0.0.1:${this.port}/socket?ticket=${randomHex(16)}` }),
      'chat.postMessage': (args) => {
        const channel = str(args.channel);
        if (!channel) return { ok: false, error: 'channel_not_found' };
        if (args.text === undefined && args.blocks === undefined && args.attachments === undefined) {
          return { ok: false, error: 'no_text' };
        }
        const known = this.channels.get(channel);
        if (known && !known.is_member) return { ok: false, error: 'not_in_channel' };
        const invalid = messageProblem(args);
        if (invalid) return invalid;
        const message = this.storeBotMessage(channel, args);
        return { ok: true, channel, ts: message.ts, message: this.messageJson(message) };
      },
      'chat.update': (args) => {
        const message = this.messages.get(`${str(args.channel)}/${str(args.ts)}`);
        if (!message) return { ok: false, error: 'message_not_found' };
        if (message.bot_id !== this.botId) return { ok: false, error: 'cant_update_message' };
        const invalid = messageProblem(args);
        if (invalid) return invalid;
        if (args.text !== undefined) message.text = str(args.text);
        if (args.blocks !== undefined) message.blocks = args.blocks;
        message.history.push({ text: message.text, blocks: message.blocks, at: this.now() });
        return { ok: true, channel: message.channel, ts: message.ts, text: message.text ?? '', message: this.messageJson(message) };
      },
      'chat.delete': (args) => {
        const key = `${str(args.channel)}/${str(args.ts)}`;
        const message = this.messages.get(key);
        if (!message) return { ok: false, error: 'message_not_found' };
        if (message.bot_id !== this.botId) return { ok: false, error: 'cant_delete_message' };
        this.messages.delete(key);
        return { ok: true, channel: message.channel, ts: message.ts };
      },
      'chat.postEphemeral': (args) => {
        if (!str(args.channel)) return { ok: false, error: 'channel_not_found' };
        if (!str(args.user)) return { ok: false, error: 'user_not_in_channel' };
        return { ok: true, message_ts: this.nextTs() };
      },
      'views.open': (args) => this.openView(args, null),
      'views.push': (args) => this.openView(args, 'push'),
      'views.update': (args) => {
        const id = str(args.view_id) ?? [...this.views.values()].find((v) => v.view.external_id === args.external_id)?.id;
        const stored = id ? this.views.get(id) : undefined;
        if (!stored) return { ok: false, error: 'not_found' };
        if (args.hash !== undefined && args.hash !== stored.hash) return { ok: false, error: 'hash_conflict' };
        const view = asObject(args.view);
        const invalid = viewProblem(view);
        if (invalid) return invalid;
        stored.view = view!;
        stored.hash = `${this.nextId(6)}.${randomHex(8)}`;
        return { ok: true, view: this.viewJson(stored) };
      },
      'files.info': (args) => {
        const stored = this.files.get(str(args.file) ?? '');
        if (!stored) return { ok: false, error: 'file_not_found' };
        return { ok: true, file: structuredClone(stored.file), comments: [], response_metadata: { next_cursor: '' } };
      },
      'files.delete': (args) => {
        const id = str(args.file) ?? '';
        const stored = this.files.get(id);
        if (!stored) return { ok: false, error: 'file_not_found' };
        if (stored.file.user !== this.botUserId) return { ok: false, error: 'cant_delete_file' };
        this.files.delete(id);
        // Slack keeps the message that shared it and shows the file as deleted
        for (const m of this.messages.values()) if (m.files?.some((f) => f.id === id)) m.files = m.files.filter((f) => f.id !== id);
        return { ok: true };
      },
      'files.getUploadURLExternal': (args) => {
        const filename = str(args.filename);
        const length = Number(args.length);
        if (!filename || !Number.isInteger(length) || length <= 0) return { ok: false, error: 'invalid_arguments' };
        const fileId = `F${this.nextId(9)}`;
        const uploadId = `${this.teamId}-${fileId}-${randomHex(8)}`;
        this.pendingUploads.set(uploadId, { fileId, filename, length, completed: false });
        return { ok: true, upload_url: `${this.baseUrl}/upload/v1/${uploadId}`, file_id: fileId };
      },
      'files.completeUploadExternal': (args) => this.completeUpload(args),
      'conversations.info': (args) => {
        const channel = this.channels.get(str(args.channel) ?? '');
        return channel ? { ok: true, channel: { ...channel } } : { ok: false, error: 'channel_not_found' };
      },
      'users.info': (args) => {
        const user = this.users.get(str(args.user) ?? '');
        return user ? { ok: true, user: { ...user } } : { ok: false, error: 'user_not_found' };
      },
    };
  }

  private openView(args: Record<string, unknown>, mode: 'push' | null): ApiResult {
    const triggerId = str(args.trigger_id);
    const trigger = triggerId ? this.triggers.get(triggerId) : undefined;
    if (!trigger) return { ok: false, error: 'invalid_trigger_id' };
    if (trigger.used) return { ok: false, error: 'exchanged_trigger_id' };
    if (this.now() - trigger.issuedAt > this.triggerTtlMs) return { ok: false, error: 'expired_trigger_id' };
    const view = asObject(args.view);
    const invalid = viewProblem(view);
    if (invalid) return invalid;
    trigger.used = true;
    const id = `V${this.nextId(9)}`;
    const root = mode === 'push' ? [...this.views.values()].at(-1) : undefined;
    const stored: StoredView = {
      id, view: view!, hash: `${this.nextId(6)}.${randomHex(8)}`,
      root_view_id: root?.root_view_id ?? id, previous_view_id: root?.id ?? null,
    };
    this.views.set(id, stored);
    return { ok: true, view: this.viewJson(stored) };
  }

  private completeUpload(args: Record<string, unknown>): ApiResult {
    const list = Array.isArray(args.files) ? args.files as Array<{ id?: string; title?: string }> : undefined;
    if (!list || list.length === 0) return { ok: false, error: 'invalid_arguments' };
    const pendingById = new Map([...this.pendingUploads.entries()].map(([uploadId, p]) => [p.fileId, { uploadId, p }]));
    for (const entry of list) {
      const found = entry.id ? pendingById.get(entry.id) : undefined;
      if (!found || found.p.completed) return { ok: false, error: 'file_not_found' };
      if (!found.p.bytes) return { ok: false, error: 'file_upload_not_found' };
      if (found.p.bytes.length !== found.p.length) return { ok: false, error: 'file_size_mismatch' };
    }
    const channelId = str(args.channel_id);
    const threadTs = str(args.thread_ts);
    const initialComment = str(args.initial_comment);
    if (threadTs && !channelId) return { ok: false, error: 'invalid_arguments' };
    const done: CompletedUpload[] = [];
    for (const entry of list) {
      const { p } = pendingById.get(entry.id!)!;
      p.completed = true;
      const file = this.fileObject(p.fileId, p.filename, entry.title ?? p.filename, mimetypeFor(p.filename),
        p.bytes!.length, this.botUserId, channelId ? [channelId] : []);
      this.files.set(file.id, { file, bytes: p.bytes! });
      done.push({
        file, bytes: p.bytes!,
        ...(channelId ? { channel_id: channelId } : {}),
        ...(threadTs ? { thread_ts: threadTs } : {}),
        ...(initialComment !== undefined ? { initial_comment: initialComment } : {}),
      });
    }
    if (channelId) {
      // Slack shares the files in one message carrying the initial comment (in the thread when thread_ts is given).
      const message = this.storeBotMessage(channelId, {
        text: initialComment ?? '', ...(threadTs ? { thread_ts: threadTs } : {}),
        ...(args.blocks !== undefined ? { blocks: args.blocks } : {}),
      }, done.map((d) => d.file));
      for (const d of done) d.message = message;
    }
    this.uploads.push(...done);
    return { ok: true, files: done.map((d) => ({ id: d.file.id, title: d.file.title })) };
  }

  private storeBotMessage(channel: string, args: Record<string, unknown>, files?: FakeSlackFile[]): FakeMessage {
    if (!this.channels.has(channel)) this.addChannel({ id: channel });
    const text = args.text === undefined ? undefined : str(args.text);
    const message: FakeMessage = {
      channel, ts: this.nextTs(), user: this.botUserId, bot_id: this.botId,
      ...(text !== undefined ? { text } : {}),
      ...(args.blocks !== undefined ? { blocks: args.blocks } : {}),
      ...(str(args.thread_ts) ? { thread_ts: str(args.thread_ts)! } : {}),
      ...(files ? { files } : {}),
      history: [{ text, blocks: args.blocks, at: this.now() }],
    };
    this.messages.set(`${channel}/${message.ts}`, message);
    return message;
  }

  private messageJson(m: FakeMessage): Record<string, unknown> {
    return {
      type: 'message', user: m.user, bot_id: m.bot_id, ts: m.ts, text: m.text ?? '', team: this.teamId,
      ...(m.blocks !== undefined ? { blocks: m.blocks } : {}),
      ...(m.thread_ts ? { thread_ts: m.thread_ts } : {}),
      ...(m.files ? { files: m.files } : {}),
    };
  }

  private viewJson(stored: StoredView): Record<string, unknown> {
    return {
      ...stored.view, id: stored.id, team_id: this.teamId, app_id: this.appId, bot_id: this.botId, hash: stored.hash,
      state: { values: {} }, root_view_id: stored.root_view_id, previous_view_id: stored.previous_view_id,
      private_metadata: stored.view.private_metadata ?? '', callback_id: stored.view.callback_id ?? '',
    };
  }

  private fileObject(id: string, name: string, title: string, mimetype: string, size: number, user: string, channels: string[]): FakeSlackFile {
    const seconds = Math.floor(this.now() / 1000);
    const safeName = encodeURIComponent(name);
    const filetype = name.includes('.') ? name.slice(name.lastIndexOf('.') + 1).toLowerCase() : 'binary';
    return {
      id, created: seconds, timestamp: seconds, name, title, mimetype, filetype, pretty_type: filetype.toUpperCase(),
      user, user_team: this.teamId, size, mode: 'hosted', is_external: false, is_public: channels.length > 0,
      url_private: `${this.baseUrl}/files-pri/${this.teamId}-${id}/${safeName}`,
      url_private_download: `${this.baseUrl}/files-pri/${this.teamId}-${id}/download/${safeName}`,
      permalink: `https://${this.teamDomain}.slack.com/files/${user}/${id}/${safeName}`,
      channels,
    };
  }

  private hookIdOf(responseUrl: string): string {
    const path = decodeURIComponent(new URL(responseUrl).pathname);
    return path.startsWith('/commands/') ? path.slice('/commands/'.length) : path;
  }

  private nextTs(): string {
    this.counter += 1;
    return `${Math.floor(this.now() / 1000)}.${String(this.counter % 1_000_000).padStart(6, '0')}`;
  }

  private nextId(width: number): string {
    this.counter += 1;
    return String(this.counter).padStart(width, '0');
  }
}

// ---- helpers ------------------------------------------------------------------------------------------------

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Form-encoded (the WebClient's default) or JSON bodies; JSON-valued form fields are decoded. */
function parseApiArgs(contentType: string | undefined, body: Buffer): Record<string, unknown> {
  const text = body.toString('utf8');
  if (contentType?.startsWith('application/json')) {
    const parsed: unknown = text ? JSON.parse(text) : {};
    return typeof parsed === 'object' && parsed !== null ? { ...(parsed as Record<string, unknown>) } : {};
  }
  const args: Record<string, unknown> = {};
  for (const [key, value] of new URLSearchParams(text)) {
    if (JSON_FIELDS.has(key)) {
      try { args[key] = JSON.parse(value); continue; } catch { /* keep the raw string, as Slack would reject it */ }
    }
    args[key] = value;
  }
  return args;
}

/** Slack's documented limits for modals (views.open/push/update); the errors Slack gives for breaking them. */
function viewProblem(view: Record<string, unknown> | undefined): ApiResult | null {
  const invalid = (detail: string): ApiResult => ({ ok: false, error: 'invalid_arguments', response_metadata: { messages: [`[ERROR] ${detail}`] } });
  if (!view || view.type !== 'modal' || !Array.isArray(view.blocks)) return invalid('a modal view with blocks is required');
  const textOf = (v: unknown) => (asObject(v)?.text as string | undefined) ?? '';
  if (!textOf(view.title) || textOf(view.title).length > 24) return invalid('title must be 1-24 characters');
  if (textOf(view.submit).length > 24 || textOf(view.close).length > 24) return invalid('submit/close must be at most 24 characters');
  if (typeof view.private_metadata === 'string' && view.private_metadata.length > 3000) return invalid('private_metadata must be at most 3000 characters');
  if (typeof view.callback_id === 'string' && view.callback_id.length > 255) return invalid('callback_id must be at most 255 characters');
  if (view.blocks.length > 100) return invalid('a view holds at most 100 blocks');
  const blocks = view.blocks as Array<Record<string, unknown>>;
  if (blocks.some((b) => asObject(b.element)?.type === 'file_input') && !view.submit) return invalid('a view with inputs needs a submit button');
  return blocksProblem(blocks, invalid);
}

/** chat.postMessage / chat.update limits: 50 blocks, and the same block rules as views. */
function messageProblem(args: Record<string, unknown>): ApiResult | null {
  if (typeof args.text === 'string' && args.text.length > 40_000) return { ok: false, error: 'msg_too_long' };
  if (args.blocks === undefined) return null;
  const invalid = (detail: string): ApiResult => ({ ok: false, error: 'invalid_blocks', response_metadata: { messages: [`[ERROR] ${detail}`] } });
  if (!Array.isArray(args.blocks)) return invalid('blocks must be an array');
  if (args.blocks.length > 50) return invalid('a message holds at most 50 blocks');
  return blocksProblem(args.blocks as Array<Record<string, unknown>>, invalid);
}

function blocksProblem(blocks: Array<Record<string, unknown>>, invalid: (detail: string) => ApiResult): ApiResult | null {
  const actionIds = new Set<string>();
  for (const block of blocks) {
    const elements = [asObject(block.element), ...(Array.isArray(block.elements) ? block.elements as unknown[] : []).map(asObject)];
    for (const element of elements) {
      if (!element) continue;
      const actionId = element.action_id;
      if (typeof actionId === 'string') {
        if (actionId.length > 255) return invalid('action_id must be at most 255 characters');
        if (actionIds.has(actionId)) return invalid(`duplicate action_id ${actionId}`);
        actionIds.add(actionId);
      }
      if (element.type === 'file_input') {
        if (block.type !== 'input') return invalid('file_input must be inside an input block');
        const max = element.max_files;
        if (max !== undefined && (typeof max !== 'number' || max < 1 || max > 10)) return invalid('file_input max_files must be 1-10');
      }
    }
    if (block.type === 'section' && typeof asObject(block.text)?.text === 'string' && (asObject(block.text)!.text as string).length > 3000) {
      return invalid('section text must be at most 3000 characters');
    }
    if (block.type === 'actions' && Array.isArray(block.elements) && block.elements.length > 25) return invalid('an actions block holds at most 25 elements');
  }
  return null;
}

function bearerToken(header: string | undefined): string | undefined {
  const match = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
  return match ? match[1] : undefined;
}

function str(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return String(value);
  return undefined;
}

function asObject(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? value as Record<string, unknown> : undefined;
}

function mimetypeFor(name: string): string {
  const ext = name.slice(name.lastIndexOf('.') + 1).toLowerCase();
  const known: Record<string, string> = {
    png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', webp: 'image/webp', gif: 'image/gif',
    txt: 'text/plain', pdf: 'application/pdf',
  };
  return known[ext] ?? 'application/octet-stream';
}

function randomHex(length: number): string {
  let out = '';
  while (out.length < length) out += Math.floor(Math.random() * 0x100000000).toString(16).padStart(8, '0');
  return out.slice(0, length);
}
