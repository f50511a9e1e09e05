// Downloading the images users share with the bot. Slack's private file URLs need the bot token; without it
// (or without the files:read scope) Slack answers its HTML sign-in page with status 200, so a response is only
// accepted when its bytes are really a PNG, JPEG, WebP or GIF. Size and time are bounded.
import type { SlackFileInfo } from './blocks.ts';

export const MAX_IMAGE_BYTES = 10 * 1024 * 1024;
export const DOWNLOAD_TIMEOUT_MS = 30_000;

export type ImageType = 'image/png' | 'image/jpeg' | 'image/webp' | 'image/gif';

export interface DownloadedImage {
  fileId: string;
  name: string;
  /** What the bytes are (sniffed), not what the name or the server claims. */
  contentType: ImageType;
  bytes: Uint8Array;
}

export type SlackFileErrorCode =
  | 'login_page' | 'not_image' | 'too_large' | 'timeout' | 'http_error' | 'network' | 'no_url' | 'untrusted_url';

/** A file that could not be used; `message` is worded for the person who shared it. */
export class SlackFileError extends Error {
  constructor(readonly code: SlackFileErrorCode, readonly fileName: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SlackFileError';
  }
}

export interface DownloadOptions {
  botToken: string;
  maxBytes?: number;
  timeoutMs?: number;
  /**
   * Origins (besides https://files.slack.com and other https *.slack.com hosts) the bot token may be sent to —
   * the SLACK_API_URL origin when it points at a proxy or a test server.
   */
  trustedOrigins?: readonly string[];
  /** Looks up a file that arrived as a stub without URLs (Slack Connect: file_access "check_file_info"). */
  fileInfo?: (fileId: string) => Promise<SlackFileInfo>;
  signal?: AbortSignal;
}

/** The image type the bytes start with, or null. */
export function sniffImageType(bytes: Uint8Array): ImageType | null {
  const b = bytes;
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47
    && b[4] === 0x0d && b[5] === 0x0a && b[6] === 0x1a && b[7] === 0x0a) return 'image/png';
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'image/jpeg';
  if (b.length >= 12 && ascii(b, 0, 4) === 'RIFF' && ascii(b, 8, 12) === 'WEBP') return 'image/webp';
  if (b.length >= 6 && (ascii(b, 0, 6) === 'GIF87a' || ascii(b, 0, 6) === 'GIF89a')) return 'image/gif';
  return null;
}

function ascii(bytes: Uint8Array, start: number, end: number): string {
  return String.fromCharCode(...bytes.subarray(start, end));
}

function looksLikeHtml(bytes: Uint8Array): boolean {
  const head = new TextDecoder().decode(bytes.subarray(0, 512)).trimStart().toLowerCase();
  return head.startsWith('<!doctype html') || head.startsWith('<html') || head.startsWith('<head') || head.startsWith('<body');
}

function isTrustedUrl(url: URL, trustedOrigins: readonly string[]): boolean {
  if (url.protocol === 'https:' && (url.hostname === 'slack.com' || url.hostname.endsWith('.slack.com'))) return true;
  return trustedOrigins.some((origin) => new URL(origin).origin === url.origin);
}

function formatSize(bytes: number): string {
  if (bytes < 1024 * 1024) return `${Math.ceil(bytes / 1024)} KB`;
  return `${Math.round((bytes / (1024 * 1024)) * 10) / 10} MB`;
}

function formatDuration(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`;
}

/**
 * Downloads one shared file with the bot token and returns its bytes when they are an image; anything else —
 * Slack's sign-in page, another file type, a file over the size limit, a slow or failed download — throws a
 * SlackFileError whose message tells the user what to do.
 */
export async function downloadSlackImage(file: SlackFileInfo, opts: DownloadOptions): Promise<DownloadedImage> {
  const maxBytes = opts.maxBytes ?? MAX_IMAGE_BYTES;
  let info = file;
  if (!info.url_private_download && !info.url_private && opts.fileInfo) {
    try {
      info = { ...file, ...(await opts.fileInfo(file.id)) };
    } catch (error) {
      throw new SlackFileError('no_url', file.name ?? file.id,
        `I could not look up "${file.name ?? file.id}" in Slack, so I can't read it. Please upload the image itself `
        + '(a workspace admin may need to give the app the files:read permission).', { cause: error });
    }
  }
  const name = info.name ?? info.title ?? info.id;
  const shown = `"${name}"`;
  if (info.size !== undefined && info.size > maxBytes) {
    throw new SlackFileError('too_large', name, `${shown} is ${formatSize(info.size)}; images can be at most ${formatSize(maxBytes)}. Please share a smaller version.`);
  }
  const rawUrl = info.url_private_download ?? info.url_private;
  if (!rawUrl) {
    throw new SlackFileError('no_url', name, `I could not get ${shown} from Slack. Please share it again in a channel I'm in.`);
  }
  const url = new URL(rawUrl);
  if (!isTrustedUrl(url, opts.trustedOrigins ?? [])) {
    throw new SlackFileError('untrusted_url', name, `${shown} is not stored in Slack, so I can't read it. Please upload the image itself.`);
  }

  const timeoutMs = opts.timeoutMs ?? DOWNLOAD_TIMEOUT_MS;
  const signal = opts.signal ? AbortSignal.any([opts.signal, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs);
  const timedOut = `Downloading ${shown} from Slack took longer than ${formatDuration(timeoutMs)}. Please try again.`;
  let response: Response;
  try {
    response = await fetch(url, { headers: { authorization: `Bearer ${opts.botToken}` }, signal });
  } catch (error) {
    if (signal.aborted && !opts.signal?.aborted) throw new SlackFileError('timeout', name, timedOut);
    if (opts.signal?.aborted) throw error;
    throw new SlackFileError('network', name, `I could not download ${shown} from Slack (the connection failed). Please try again in a moment.`);
  }
  if (response.status !== 200) {
    await response.body?.cancel();
    throw new SlackFileError('http_error', name, `Slack refused the download of ${shown} (HTTP ${response.status}). Please share it again.`);
  }
  const declaredLength = Number(response.headers.get('content-length') ?? NaN);
  if (Number.isFinite(declaredLength) && declaredLength > maxBytes) {
    await response.body?.cancel();
    throw new SlackFileError('too_large', name, `${shown} is ${formatSize(declaredLength)}; images can be at most ${formatSize(maxBytes)}. Please share a smaller version.`);
  }

  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    const reader = response.body?.getReader();
    for (;;) {
      const chunk = reader ? await reader.read() : { done: true as const, value: undefined };
      if (chunk.done) break;
      total += chunk.value.length;
      if (total > maxBytes) {
        await reader?.cancel().catch(() => undefined);
        throw new SlackFileError('too_large', name, `${shown} is larger than ${formatSize(maxBytes)}, the most an image can be. Please share a smaller version.`);
      }
      chunks.push(chunk.value);
    }
  } catch (error) {
    if (error instanceof SlackFileError) throw error;
    if (signal.aborted && !opts.signal?.aborted) throw new SlackFileError('timeout', name, timedOut);
    if (opts.signal?.aborted) throw error;
    throw new SlackFileError('network', name, `The download of ${shown} from Slack broke off. Please try again in a moment.`);
  }
  const bytes = concat(chunks, total);

  const contentType = (response.headers.get('content-type') ?? '').toLowerCase();
  if (contentType.startsWith('text/html') || looksLikeHtml(bytes)) {
    throw new SlackFileError('login_page', name,
      `Slack sent a sign-in page instead of ${shown}, so I could not read the image. `
      + 'A workspace admin needs to give the app the files:read permission (reinstall it from the app settings); then try again.');
  }
  const sniffed = sniffImageType(bytes);
  if (!sniffed) {
    throw new SlackFileError('not_image', name, `${shown} is not a PNG, JPEG, WebP or GIF image. Please share photos in one of those formats.`);
  }
  return { fileId: info.id, name, contentType: sniffed, bytes };
}

/**
 * Downloads several files, at most `concurrency` at a time, and fails with the first unusable one
 * (a training set with a bad image is fixed by the user, not silently shrunk).
 */
export async function downloadSlackImages(files: readonly SlackFileInfo[], opts: DownloadOptions & { concurrency?: number }): Promise<DownloadedImage[]> {
  const results = new Array<DownloadedImage>(files.length);
  const controller = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, controller.signal]) : controller.signal;
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const index = next++;
      results[index] = await downloadSlackImage(files[index]!, { ...opts, signal });
    }
  };
  const workers = Array.from({ length: Math.min(opts.concurrency ?? 3, files.length) }, worker);
  try {
    await Promise.all(workers);
  } catch (error) {
    controller.abort();
    await Promise.allSettled(workers);
    throw error;
  }
  return results;
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let offset = 0;
  for (const c of chunks) { out.set(c, offset); offset += c.length; }
  return out;
}
