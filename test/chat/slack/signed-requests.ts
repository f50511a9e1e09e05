// Requests as Slack sends them to an app's Request URL: the exact raw body (form-encoded slash commands,
// `payload=<json>` interactivity, JSON events) signed with HMAC-SHA256 over `v0:<timestamp>:<body>`.
import { createHmac } from 'node:crypto';

export interface SignedRequest {
  body: string;
  headers: Record<string, string>;
}

export interface SignOptions {
  /** Request timestamp in seconds; default: now. Use an old one to test stale-request refusal. */
  timestamp?: number;
  /** Sign with this secret instead of the app's (a forged request). */
  secretOverride?: string;
}

export const FORM = 'application/x-www-form-urlencoded';

/** Slack's signature header value for a raw body: `v0=` + hex HMAC-SHA256 of `v0:ts:body`. */
export function slackSignature(signingSecret: string, timestamp: number, body: string): string {
  return `v0=${createHmac('sha256', signingSecret).update(`v0:${timestamp}:${body}`).digest('hex')}`;
}

export function signRequest(signingSecret: string, body: string, contentType: string, opts: SignOptions = {}): SignedRequest {
  const timestamp = opts.timestamp ?? Math.floor(Date.now() / 1000);
  return {
    body,
    headers: {
      'content-type': contentType,
      'x-slack-request-timestamp': String(timestamp),
      'x-slack-signature': slackSignature(opts.secretOverride ?? signingSecret, timestamp, body),
    },
  };
}

// ---- bodies -------------------------------------------------------------------------------------------------

export interface Workspace {
  teamId: string;
  teamDomain: string;
  enterpriseId?: string;
  appId: string;
}

export interface SlashCommandFields {
  command: string;
  /** what the person typed; sent as Slack sends it, with &, < and > as HTML entities */
  text: string;
  /** send this exact text instead (Slack's own markup, e.g. a picked mention `<@U123|ana>`) */
  slackText?: string;
  userId: string;
  userName?: string;
  channelId: string;
  channelName?: string;
  triggerId: string;
  responseUrl: string;
}

/** Slack escapes these three characters in the text it sends, since it uses `<…>` for its own markup. */
export function escapeLikeSlack(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** The form body of a slash command, in the field order Slack uses. */
export function slashCommandBody(ws: Workspace, f: SlashCommandFields): string {
  const fields: Array<[string, string]> = [
    ['token', 'deprecated-verification-token'],
    ['team_id', ws.teamId],
    ['team_domain', ws.teamDomain],
    ...(ws.enterpriseId ? [['enterprise_id', ws.enterpriseId] as [string, string]] : []),
    ['channel_id', f.channelId],
    ['channel_name', f.channelName ?? 'general'],
    ['user_id', f.userId],
    ['user_name', f.userName ?? f.userId.toLowerCase()],
    ['command', f.command],
    ['text', f.slackText ?? escapeLikeSlack(f.text)],
    ['api_app_id', ws.appId],
    ['is_enterprise_install', 'false'],
    ['response_url', f.responseUrl],
    ['trigger_id', f.triggerId],
  ];
  return new URLSearchParams(fields).toString();
}

/** Interactivity (block_actions, view_submission, message_action, shortcut) is a form with one `payload` field. */
export function interactivityBody(payload: unknown): string {
  return new URLSearchParams([['payload', JSON.stringify(payload)]]).toString();
}

function teamOf(ws: Workspace) {
  return { id: ws.teamId, domain: ws.teamDomain, ...(ws.enterpriseId ? { enterprise_id: ws.enterpriseId } : {}) };
}

function userOf(ws: Workspace, userId: string) {
  return { id: userId, username: userId.toLowerCase(), name: userId.toLowerCase(), team_id: ws.teamId };
}

export interface ViewSubmissionFields {
  userId: string;
  triggerId: string;
  callbackId: string;
  privateMetadata?: string;
  /** `state.values`: block_id → action_id → value object (e.g. `{ type: 'file_input', files: [...] }`). */
  values: Record<string, Record<string, unknown>>;
  viewId?: string;
  blocks?: unknown[];
  responseUrls?: Array<{ block_id: string; action_id: string; channel_id: string; response_url: string }>;
}

export function viewSubmissionPayload(ws: Workspace, f: ViewSubmissionFields): Record<string, unknown> {
  return {
    type: 'view_submission',
    team: teamOf(ws),
    user: userOf(ws, f.userId),
    api_app_id: ws.appId,
    token: 'deprecated-verification-token',
    trigger_id: f.triggerId,
    view: {
      id: f.viewId ?? 'V0FAKEVIEW', team_id: ws.teamId, type: 'modal', blocks: f.blocks ?? [],
      private_metadata: f.privateMetadata ?? '', callback_id: f.callbackId,
      state: { values: f.values }, hash: '1712345678.abcdef', title: { type: 'plain_text', text: 'Modal' },
      clear_on_close: false, notify_on_close: false, close: null, submit: null, previous_view_id: null,
      root_view_id: f.viewId ?? 'V0FAKEVIEW', app_id: ws.appId, external_id: '', app_installed_team_id: ws.teamId,
      bot_id: 'B0FAKEBOT1',
    },
    response_urls: f.responseUrls ?? [],
    is_enterprise_install: false,
    enterprise: null,
  };
}

export interface BlockActionFields {
  userId: string;
  triggerId: string;
  responseUrl: string;
  actionId: string;
  value?: string;
  blockId?: string;
  channelId: string;
  /** The message carrying the button. */
  messageTs: string;
  threadTs?: string;
}

export function blockActionsPayload(ws: Workspace, f: BlockActionFields): Record<string, unknown> {
  return {
    type: 'block_actions',
    user: userOf(ws, f.userId),
    api_app_id: ws.appId,
    token: 'deprecated-verification-token',
    container: { type: 'message', message_ts: f.messageTs, channel_id: f.channelId, is_ephemeral: false, ...(f.threadTs ? { thread_ts: f.threadTs } : {}) },
    trigger_id: f.triggerId,
    team: teamOf(ws),
    enterprise: null,
    is_enterprise_install: false,
    channel: { id: f.channelId, name: 'general' },
    message: { type: 'message', ts: f.messageTs, bot_id: 'B0FAKEBOT1', text: '', ...(f.threadTs ? { thread_ts: f.threadTs } : {}) },
    state: { values: {} },
    response_url: f.responseUrl,
    actions: [{
      type: 'button', action_id: f.actionId, block_id: f.blockId ?? 'actions', text: { type: 'plain_text', text: 'Button', emoji: true },
      ...(f.value !== undefined ? { value: f.value } : {}), action_ts: `${Math.floor(Date.now() / 1000)}.000001`,
    }],
  };
}

export interface MessageShortcutFields {
  userId: string;
  callbackId: string;
  triggerId: string;
  responseUrl: string;
  channelId: string;
  /** The message the shortcut was used on (as Slack sends it, including `files`). */
  message: { ts: string; user: string; text?: string; files?: unknown[]; thread_ts?: string };
}

export function messageShortcutPayload(ws: Workspace, f: MessageShortcutFields): Record<string, unknown> {
  return {
    type: 'message_action',
    token: 'deprecated-verification-token',
    action_ts: `${Math.floor(Date.now() / 1000)}.000002`,
    team: teamOf(ws),
    user: userOf(ws, f.userId),
    channel: { id: f.channelId, name: 'general' },
    is_enterprise_install: false,
    enterprise: null,
    callback_id: f.callbackId,
    trigger_id: f.triggerId,
    response_url: f.responseUrl,
    message_ts: f.message.ts,
    message: { type: 'message', text: '', ...f.message },
  };
}

/** An Events API delivery (`event_callback`) as JSON. */
export function eventCallbackBody(ws: Workspace, event: Record<string, unknown>, eventId = `Ev${Date.now()}`): string {
  return JSON.stringify({
    token: 'deprecated-verification-token',
    team_id: ws.teamId,
    api_app_id: ws.appId,
    event,
    type: 'event_callback',
    event_id: eventId,
    event_time: Math.floor(Date.now() / 1000),
    authorizations: [{ enterprise_id: ws.enterpriseId ?? null, team_id: ws.teamId, user_id: 'U0FAKEBOT1', is_bot: true, is_enterprise_install: false }],
    is_ext_shared_channel: false,
  });
}

export function urlVerificationBody(challenge: string): string {
  return JSON.stringify({ token: 'deprecated-verification-token', challenge, type: 'url_verification' });
}

// ---- sending ------------------------------------------------------------------------------------------------

export interface SentResult {
  status: number;
  text: string;
  /** Milliseconds from sending until the response arrived (the app's ack time). */
  elapsedMs: number;
}

export async function sendSigned(url: string, req: SignedRequest): Promise<SentResult> {
  const started = performance.now();
  const res = await fetch(url, { method: 'POST', headers: req.headers, body: req.body });
  const text = await res.text();
  return { status: res.status, text, elapsedMs: performance.now() - started };
}

/**
 * Sends signed requests to one app endpoint as one workspace: the convenience most tests use.
 * Every method returns the HTTP status, body and ack time.
 */
export class SlackRequestSender {
  constructor(readonly url: string, readonly signingSecret: string, readonly workspace: Workspace) {}

  command(f: SlashCommandFields, opts?: SignOptions): Promise<SentResult> {
    return sendSigned(this.url, signRequest(this.signingSecret, slashCommandBody(this.workspace, f), FORM, opts));
  }

  interactivity(payload: unknown, opts?: SignOptions): Promise<SentResult> {
    return sendSigned(this.url, signRequest(this.signingSecret, interactivityBody(payload), FORM, opts));
  }

  viewSubmission(f: ViewSubmissionFields, opts?: SignOptions): Promise<SentResult> {
    return this.interactivity(viewSubmissionPayload(this.workspace, f), opts);
  }

  blockAction(f: BlockActionFields, opts?: SignOptions): Promise<SentResult> {
    return this.interactivity(blockActionsPayload(this.workspace, f), opts);
  }

  messageShortcut(f: MessageShortcutFields, opts?: SignOptions): Promise<SentResult> {
    return this.interactivity(messageShortcutPayload(this.workspace, f), opts);
  }

  event(event: Record<string, unknown>, opts?: SignOptions): Promise<SentResult> {
    return sendSigned(this.url, signRequest(this.signingSecret, eventCallbackBody(this.workspace, event), 'application/json', opts));
  }

  urlVerification(challenge: string, opts?: SignOptions): Promise<SentResult> {
    return sendSigned(this.url, signRequest(this.signingSecret, urlVerificationBody(challenge), 'application/json', opts));
  }
}
