// Downloads the images users attach, at once (Discord's attachment URLs are signed and expire). Only bytes are
// fetched here; whether they are a real image of sane size is the core's upload check.
import type { Attachment, Message } from 'discord.js';

export const MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024;
export const DEFAULT_DOWNLOAD_TIMEOUT_MS = 20_000;
/** Where Discord serves attachments. A test server or proxy adds its own host through `allowedHosts`. */
export const DISCORD_CDN_HOSTS: readonly string[] = ['cdn.discordapp.com', 'media.discordapp.net'];

/** What the adapter knows about an attachment before downloading it. */
export interface AttachmentRef {
  id: string;
  name: string;
  url: string;
  /** Size Discord reported; checked before downloading and again while reading. */
  size: number;
  contentType: string | null;
}

export interface DownloadedAttachment {
  id: string;
  name: string;
  /** As Discord labelled it; the core sniffs the bytes and does not trust this. */
  contentType: string | null;
  bytes: Uint8Array;
}

export type AttachmentProblem = 'too-large' | 'timeout' | 'unavailable' | 'unreachable' | 'host-not-allowed' | 'cancelled';

/** A download failed; `message` is worded for the user who attached the file. */
export class AttachmentDownloadError extends Error {
  override name = 'AttachmentDownloadError';
  constructor(readonly problem: AttachmentProblem, readonly attachmentName: string, message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

export interface DownloadOptions {
  maxBytes?: number;
  /** Whole download, headers and body. */
  timeoutMs?: number;
  allowedHosts?: readonly string[];
  signal?: AbortSignal;
  fetch?: typeof globalThis.fetch;
}

export function attachmentRef(attachment: Pick<Attachment, 'id' | 'name' | 'url' | 'size' | 'contentType'>): AttachmentRef {
  return { id: attachment.id, name: attachment.name, url: attachment.url, size: attachment.size, contentType: attachment.contentType };
}

/** The attachments of a message, in order (for the "Teach concept from these images" message command). */
export function messageAttachmentRefs(message: Pick<Message, 'attachments'>): AttachmentRef[] {
  return [...message.attachments.values()].map(attachmentRef);
}

/** The hosts to accept attachment URLs from: Discord's CDN plus the host of a non-default API URL. */
export function attachmentHostsFor(apiUrl: string): string[] {
  const host = new URL(apiUrl).host;
  return host === 'discord.com' ? [...DISCORD_CDN_HOSTS] : [...DISCORD_CDN_HOSTS, host];
}

export async function downloadAttachment(ref: AttachmentRef, options: DownloadOptions = {}): Promise<DownloadedAttachment> {
  const maxBytes = options.maxBytes ?? MAX_ATTACHMENT_BYTES;
  const timeoutMs = options.timeoutMs ?? DEFAULT_DOWNLOAD_TIMEOUT_MS;
  const allowedHosts = options.allowedHosts ?? DISCORD_CDN_HOSTS;
  const fetchImpl = options.fetch ?? globalThis.fetch;
  const tooLarge = () => new AttachmentDownloadError('too-large', ref.name,
    `"${ref.name}" is larger than ${formatMiB(maxBytes)}; please attach a smaller image.`);

  let url: URL;
  try {
    url = new URL(ref.url);
  } catch {
    throw new AttachmentDownloadError('unavailable', ref.name, `"${ref.name}" has no usable link; please attach it again.`);
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || !allowedHosts.includes(url.host)) {
    throw new AttachmentDownloadError('host-not-allowed', ref.name,
      `"${ref.name}" is not a Discord attachment; please upload the image itself.`);
  }
  if (ref.size > maxBytes) throw tooLarge();

  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  const failure = (error: unknown): AttachmentDownloadError => {
    if (error instanceof AttachmentDownloadError) return error;
    if (options.signal?.aborted) return new AttachmentDownloadError('cancelled', ref.name, `Downloading "${ref.name}" was cancelled.`, { cause: error });
    if (timeout.aborted) {
      return new AttachmentDownloadError('timeout', ref.name,
        `Discord took too long to send "${ref.name}" (over ${Math.round(timeoutMs / 1000)} s); please try again.`, { cause: error });
    }
    return new AttachmentDownloadError('unreachable', ref.name, `Could not download "${ref.name}" from Discord; please try again.`, { cause: error });
  };

  let response: Response;
  try {
    // Discord's CDN answers directly; a redirect would lead somewhere nobody vetted.
    response = await fetchImpl(url, { signal, redirect: 'error' });
  } catch (error) {
    throw failure(error);
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel().catch(() => {});
    throw new AttachmentDownloadError('unavailable', ref.name,
      `Discord no longer serves "${ref.name}" (HTTP ${response.status}); please attach it again.`);
  }
  const declared = Number(response.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await response.body.cancel().catch(() => {});
    throw tooLarge();
  }

  const chunks: Uint8Array[] = [];
  let received = 0;
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      received += value.byteLength;
      if (received > maxBytes) throw tooLarge();
      chunks.push(value);
    }
  } catch (error) {
    await reader.cancel().catch(() => {});
    throw failure(error);
  }
  const bytes = new Uint8Array(received);
  let offset = 0;
  for (const chunk of chunks) { bytes.set(chunk, offset); offset += chunk.byteLength; }
  return { id: ref.id, name: ref.name, contentType: ref.contentType ?? response.headers.get('content-type'), bytes };
}

/**
 * Downloads all attachments, two at a time, in the given order. The first failure rejects (the others are
 * cancelled): a concept is taught from all the images or none.
 */
export async function downloadAttachments(refs: readonly AttachmentRef[], options: DownloadOptions = {}): Promise<DownloadedAttachment[]> {
  const abort = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, abort.signal]) : abort.signal;
  const results: DownloadedAttachment[] = new Array(refs.length);
  let next = 0;
  const worker = async () => {
    while (next < refs.length) {
      const index = next++;
      results[index] = await downloadAttachment(refs[index]!, { ...options, signal });
    }
  };
  try {
    await Promise.all([worker(), worker()]);
  } catch (error) {
    abort.abort();
    throw error;
  }
  return results;
}

function formatMiB(bytes: number): string {
  return `${Math.round((bytes / (1024 * 1024)) * 10) / 10} MB`;
}
