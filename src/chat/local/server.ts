// The local web chat: one page and the JSON API it uses, on 127.0.0.1 only (no accounts: whoever can reach
// the port is the local user and an admin of the local scope). The API is documented in the README.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import type { Bot } from '../../bot.ts';
import { imagine } from '../../../commands/imagine.ts';
import { teach } from '../../../commands/teach.ts';
import { cancelJob } from '../../../commands/cancel.ts';
import { deleteConcept, listConcepts } from '../../../commands/concepts.ts';
import { INTERNAL_ERROR_MESSAGE, UnavailableError, UserError } from '../../errors.ts';
import { MAX_IMAGE_BYTES, MAX_IMAGES } from '../../input/images.ts';
import { findGeneration, generationSummary, jobStatus, loadJob, type Requester, type Services } from '../../services.ts';
import { parseCommandText } from '../parse-text.ts';
import type { Attachment, ChatScope, ChatUser, JobStatus, JobUpdate, OutgoingMessage } from '../types.ts';

const PAGE = readFileSync(new URL('./page.html', import.meta.url), 'utf8');
const MAX_JSON_BYTES = 64 * 1024;
const MAX_MULTIPART_BYTES = MAX_IMAGES * MAX_IMAGE_BYTES + 1024 * 1024;
/** the local sink's progress rate: the page shows steps almost live */
const LOCAL_PROGRESS_MS = 250;

export const LOCAL_SCOPE: ChatScope = { platform: 'local', kind: 'local', externalId: 'local', name: 'local chat' };

function localUser(name: unknown): ChatUser {
  const raw = typeof name === 'string' ? name.trim() : '';
  if (raw && !/^[\p{L}\p{N} _.-]{1,32}$/u.test(raw)) throw new UserError('user must be 1–32 letters, digits, spaces, _ . or -.');
  return { platform: 'local', externalId: raw || 'local', displayName: raw || 'you', isAdmin: true };
}

function requester(user: ChatUser): Requester {
  return { user, scope: LOCAL_SCOPE, route: { platform: 'local', data: {} } };
}

class HttpError extends UserError {}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(text);
}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (Number.isFinite(declared) && declared > limit) throw new HttpError(`The request is too large (${(declared / 1048576).toFixed(1)} MB; at most ${(limit / 1048576).toFixed(0)} MB).`, 413);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new HttpError(`The request is too large (over ${(limit / 1048576).toFixed(0)} MB).`, 413);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) throw new HttpError('Send JSON with the header Content-Type: application/json.', 415);
  const body = await readBody(req, MAX_JSON_BYTES);
  let parsed: unknown;
  try { parsed = JSON.parse(body.toString('utf8')); } catch { throw new HttpError('The request body is not valid JSON.'); }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new HttpError('The request body must be a JSON object.');
  return parsed as Record<string, unknown>;
}

async function readForm(req: IncomingMessage): Promise<FormData> {
  const type = req.headers['content-type'] ?? '';
  if (!/^multipart\/form-data\b/i.test(type)) throw new HttpError('Send the images as multipart/form-data (fields name, category, images).', 415);
  const body = await readBody(req, MAX_MULTIPART_BYTES);
  try {
    return await new Request('http://local/', { method: 'POST', headers: { 'content-type': type }, body: Readable.toWeb(Readable.from([body])) as ReadableStream, duplex: 'half' } as RequestInit).formData();
  } catch {
    throw new HttpError('The multipart form could not be read; send name, category and one or more images.');
  }
}

function str(v: unknown, field: string, required = false): string | undefined {
  if (v === undefined || v === null || v === '') {
    if (required) throw new HttpError(`${field} is missing.`);
    return undefined;
  }
  if (typeof v !== 'string') throw new HttpError(`${field} must be a string.`);
  return v;
}

function num(v: unknown, field: string, integer: boolean): number | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  const n = typeof v === 'string' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new HttpError(`${field} must be a ${integer ? 'whole ' : ''}number.`);
  return n;
}

function messageJson(m: OutgoingMessage) {
  return {
    text: m.text, jobId: m.jobId ?? null, buttons: m.buttons ?? [],
    images: (m.images ?? []).map((i) => ({ url: `/api/generations/${i.generationId}/image.png`, width: i.width, height: i.height, generationId: i.generationId })),
  };
}

export interface LocalChat {
  server: Server;
  url: string;
  close(): Promise<void>;
}

export async function startLocalChat(s: Services, bot: Bot, port: number): Promise<LocalChat> {
  const streams = new Map<number, Set<ServerResponse>>();
  let closing = false;

  /** what a succeeded job made; an image deleted since then has no generation (and no image URL) any more */
  function jobResult(status: JobStatus): unknown {
    if (status.state !== 'succeeded') return null;
    if (status.kind === 'teach') return { concept: status.concept };
    return status.generationId === null
      ? { generationId: null, image: null, deleted: true }
      : { generationId: status.generationId, image: `/api/generations/${status.generationId}/image.png` };
  }

  async function statusJson(id: number): Promise<(JobStatus & { result: unknown; message: ReturnType<typeof messageJson> }) | null> {
    const row = await loadJob(s, id);
    if (!row || row.scope.platform !== 'local') return null;
    const status = jobStatus(s, row);
    const result = jobResult(status);
    const message = await bot.render({ type: status.state === 'succeeded' ? 'succeeded' : 'position' }, status, status.generationId);
    return { ...status, result, message: messageJson(message) };
  }

  bot.addSink({
    platform: 'local',
    progressIntervalMs: LOCAL_PROGRESS_MS,
    wants: (jobId) => (streams.get(jobId)?.size ?? 0) > 0,
    async deliver(u: JobUpdate) {
      const subs = streams.get(u.job.id);
      if (!subs?.size) return;
      const result = jobResult(u.job);
      const data = `event: ${u.event}\ndata: ${JSON.stringify({ ...u.job, result, message: messageJson(u.message) })}\n\n`;
      for (const res of subs) {
        res.write(data);
        if (u.final) res.end();
      }
      if (u.final) streams.delete(u.job.id);
    },
  });

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://local');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (method === 'GET' && (path === '/' || path === '/index.html')) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(PAGE);
      return;
    }
    if (!path.startsWith('/api/')) throw new HttpError('Not found.', 404);
    if (closing && method !== 'GET') throw new UnavailableError('The bot is shutting down; try again after it restarts.');

    if (path === '/api/status' && method === 'GET') {
      const snap = s.scheduler.snapshot();
      send(res, 200, { model: bot.model, running: snap.running.length, waiting: snap.waiting.length, commands: bot.commands.map((c) => ({ name: c.name, description: c.description })) });
      return;
    }
    if (path === '/api/teach' && method === 'POST') {
      const form = await readForm(req);
      const files = form.getAll('images').filter((f): f is File => typeof f !== 'string');
      if (form.getAll('images').some((f) => typeof f === 'string')) throw new HttpError('images must be files, not text fields.');
      const images: Attachment[] = await Promise.all(files.map(async (f) => ({ filename: f.name, contentType: f.type, bytes: new Uint8Array(await f.arrayBuffer()) })));
      const who = requester(localUser(form.get('user')));
      const out = await teach(s, who, {
        name: str(form.get('name'), 'name', true)!, category: str(form.get('category'), 'category', true)!, images,
        ...(form.get('steps') ? { steps: num(form.get('steps'), 'steps', true)! } : {}),
      });
      send(res, 202, { jobId: out.job.id, concept: out.concept.name, status: out.status, message: messageJson(out.message) });
      return;
    }
    if (path === '/api/imagine' && method === 'POST') {
      const b = await readJson(req);
      const strengths = b.strengths;
      if (strengths !== undefined && (typeof strengths !== 'object' || strengths === null || Array.isArray(strengths) || Object.values(strengths).some((v) => typeof v !== 'number'))) {
        throw new HttpError('strengths must be an object of concept name → number from 0 to 1.');
      }
      const opt = <T>(k: string, v: T | undefined) => (v === undefined ? {} : { [k]: v });
      const out = await imagine(s, requester(localUser(b.user)), {
        prompt: str(b.prompt, 'prompt', true)!,
        ...opt('negative', str(b.negative ?? b.negativePrompt, 'negative')),
        ...opt('seed', num(b.seed, 'seed', true)), ...opt('steps', num(b.steps, 'steps', true)),
        ...opt('guidance', num(b.guidance, 'guidance', false)), ...opt('width', num(b.width, 'width', true)),
        ...opt('height', num(b.height, 'height', true)), ...opt('strength', num(b.strength, 'strength', false)),
        ...opt('strengths', strengths as Record<string, number> | undefined), ...opt('scheduler', str(b.scheduler, 'scheduler')),
      });
      send(res, 202, { jobId: out.job.id, status: out.status, message: messageJson(out.message) });
      return;
    }
    let m = /^\/api\/jobs\/(\d{1,15})(\/events|\/cancel)?$/.exec(path);
    if (m) {
      const id = Number(m[1]);
      if (!m[2] && method === 'GET') {
        const st = await statusJson(id);
        if (!st) throw new HttpError(`There is no job #${id}.`, 404);
        send(res, 200, st);
        return;
      }
      if (m[2] === '/cancel' && method === 'POST') {
        const out = await cancelJob(s, { user: localUser(url.searchParams.get('user')), scope: LOCAL_SCOPE }, id);
        send(res, 202, { jobId: id, outcome: out.outcome, message: out.text });
        return;
      }
      if (m[2] === '/events' && method === 'GET') {
        const st = await statusJson(id);
        if (!st) throw new HttpError(`There is no job #${id}.`, 404);
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
        res.write(`event: status\ndata: ${JSON.stringify(st)}\n\n`);
        if (st.state === 'succeeded' || st.state === 'failed' || st.state === 'cancelled') { res.end(); return; }
        let subs = streams.get(id);
        if (!subs) streams.set(id, subs = new Set());
        subs.add(res);
        res.on('close', () => { subs!.delete(res); if (subs!.size === 0 && streams.get(id) === subs) streams.delete(id); });
        return;
      }
      throw new HttpError('Method not allowed.', 405);
    }
    if (path === '/api/concepts' && method === 'GET') {
      send(res, 200, { concepts: await listConcepts(s, LOCAL_SCOPE) });
      return;
    }
    m = /^\/api\/concepts\/([^/]{1,64})$/.exec(path);
    if (m && method === 'DELETE') {
      const name = await deleteConcept(s, { user: localUser(url.searchParams.get('user')), scope: LOCAL_SCOPE }, decodeURIComponent(m[1]!));
      send(res, 200, { deleted: name });
      return;
    }
    m = /^\/api\/generations\/(\d{1,15})(\/image\.png)?$/.exec(path);
    if (m && method === 'GET') {
      const g = await findGeneration(s, LOCAL_SCOPE, Number(m[1]));
      if (m[2]) {
        res.writeHead(200, { 'content-type': 'image/png', 'content-length': g.png.byteLength, 'cache-control': 'public, max-age=31536000, immutable' });
        res.end(Buffer.from(g.png.buffer, g.png.byteOffset, g.png.byteLength));
      } else {
        send(res, 200, { ...generationSummary(g), jobId: g.jobId, image: `/api/generations/${g.id}/image.png`, createdAt: g.createdAt.toISOString() });
      }
      return;
    }
    if ((path === '/api/command' || path === '/api/press') && method === 'POST') {
      const b = await readJson(req);
      const user = localUser(b.user);
      const replies: ReturnType<typeof messageJson>[] = [];
      const reply = async (msg: OutgoingMessage) => { replies.push(messageJson(msg)); };
      if (path === '/api/press') {
        await bot.press({ id: str(b.id, 'id', true)!, user, scope: LOCAL_SCOPE, route: { platform: 'local', data: {} }, reply });
      } else {
        const parsed = parseCommandText(str(b.text, 'text', true)!, bot.commands);
        await bot.dispatch({ ...parsed, user, scope: LOCAL_SCOPE, route: { platform: 'local', data: {} }, reply });
      }
      send(res, 200, { replies });
      return;
    }
    throw new HttpError(path.startsWith('/api/') ? `There is no ${method} ${path}.` : 'Not found.', 404);
  }

  const server = createServer((req, res) => {
    route(req, res).catch((err) => {
      if (res.headersSent) { res.end(); return; }
      if (err instanceof UserError) send(res, err.status, { error: err.message });
      else {
        s.log.error({ err, url: req.url }, 'local chat request failed');
        send(res, 500, { error: INTERNAL_ERROR_MESSAGE });
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => { server.off('error', reject); resolve(); });
  });
  const addr = server.address() as AddressInfo;
  return {
    server,
    url: `http://127.0.0.1:${addr.port}/`,
    async close() {
      closing = true;
      for (const subs of streams.values()) for (const r of subs) r.end();
      streams.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
