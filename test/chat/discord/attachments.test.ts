// Attachment downloads from the fake Discord's CDN (signed, expiring URLs), with the failure modes a user can hit.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import {
  AttachmentDownloadError, attachmentHostsFor, DISCORD_CDN_HOSTS, downloadAttachment, downloadAttachments,
  type AttachmentProblem, type AttachmentRef,
} from '../../../src/chat/discord/attachments.ts';
import { ShiftedClock } from './clocks.ts';
import { FakeDiscord, type HostedAttachmentOptions } from './fake-discord.ts';

const clock = new ShiftedClock();
let fake: FakeDiscord;
let hosts: string[];

before(async () => {
  fake = await FakeDiscord.start({ clock, cdnUrlTtlMs: 60_000 });
  hosts = attachmentHostsFor(fake.apiUrl);
});
after(async () => { await fake?.stop(); });

function host(options: HostedAttachmentOptions): AttachmentRef {
  const a = fake.hostAttachment(options);
  return { id: a.id, name: a.filename, url: a.url, size: a.size, contentType: a.content_type ?? null };
}

function bytes(n: number, seed = 7): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
}

async function problem(promise: Promise<unknown>): Promise<{ problem: AttachmentProblem; message: string }> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof AttachmentDownloadError, String(error));
    return { problem: error.problem, message: error.message };
  }
  assert.fail('expected the download to fail');
}

const cdnRequestsFor = (ref: AttachmentRef) => fake.requests.filter((r) => ref.url.includes(r.path));

test('attachmentHostsFor: Discord\'s CDN, plus the host of a test server or proxy', () => {
  assert.deepEqual(attachmentHostsFor('https://discord.com/api'), [...DISCORD_CDN_HOSTS]);
  assert.deepEqual(attachmentHostsFor('http://127.0.0.1:4567/api'), [...DISCORD_CDN_HOSTS, '127.0.0.1:4567']);
});

test('downloads the bytes behind a signed CDN URL', async () => {
  const data = bytes(300_000);
  const ref = host({ filename: 'photo.png', bytes: data, cdn: { omitContentLength: true } });
  const downloaded = await downloadAttachment(ref, { allowedHosts: hosts });
  assert.deepEqual(downloaded, { id: ref.id, name: 'photo.png', contentType: 'image/png', bytes: data });
});

test('too large: by the reported size (nothing fetched), by Content-Length, or while streaming', async () => {
  const declared = host({ filename: 'big.png', bytes: bytes(10), declaredSize: 11 * 1024 * 1024 });
  const byDeclared = await problem(downloadAttachment(declared, { allowedHosts: hosts }));
  assert.equal(byDeclared.problem, 'too-large');
  assert.match(byDeclared.message, /"big\.png" is larger than 10 MB/);
  assert.equal(cdnRequestsFor(declared).length, 0);

  const lying = host({ filename: 'liar.png', bytes: bytes(2_000_000), declaredSize: 1000 });
  assert.equal((await problem(downloadAttachment(lying, { allowedHosts: hosts, maxBytes: 1_000_000 }))).problem, 'too-large');

  const chunked = host({ filename: 'stream.png', bytes: bytes(2_000_000), declaredSize: 1000, cdn: { omitContentLength: true } });
  assert.equal((await problem(downloadAttachment(chunked, { allowedHosts: hosts, maxBytes: 1_000_000 }))).problem, 'too-large');
});

test('a CDN that stalls before the headers or in the middle of the body times out', async () => {
  const slow = host({ filename: 'slow.png', bytes: bytes(100), cdn: { delayMs: 3_000 } });
  const a = await problem(downloadAttachment(slow, { allowedHosts: hosts, timeoutMs: 150 }));
  assert.equal(a.problem, 'timeout');
  assert.match(a.message, /took too long to send "slow\.png"/);
  const stalled = host({ filename: 'stalled.png', bytes: bytes(100_000), cdn: { stallBody: true } });
  assert.equal((await problem(downloadAttachment(stalled, { allowedHosts: hosts, timeoutMs: 150 }))).problem, 'timeout');
});

test('an expired or tampered URL, or a CDN error, is "unavailable"', async () => {
  const ref = host({ filename: 'old.png', bytes: bytes(10) });
  assert.equal((await problem(downloadAttachment({ ...ref, url: ref.url.replace(/hm=([0-9a-f])/, (_m, c: string) => `hm=${c === '0' ? '1' : '0'}`) }, { allowedHosts: hosts }))).problem, 'unavailable');
  clock.advance(61_000);
  const expired = await problem(downloadAttachment(ref, { allowedHosts: hosts }));
  assert.equal(expired.problem, 'unavailable');
  assert.match(expired.message, /no longer serves "old\.png" \(HTTP 404\)/);
  const broken = host({ filename: 'e.png', bytes: bytes(10), cdn: { status: 500 } });
  assert.equal((await problem(downloadAttachment(broken, { allowedHosts: hosts }))).problem, 'unavailable');
});

test('URLs outside the allowed hosts are refused without a request', async () => {
  const ref = host({ filename: 'x.png', bytes: bytes(10) });
  assert.equal((await problem(downloadAttachment(ref))).problem, 'host-not-allowed', 'the fake is not Discord\'s CDN');
  assert.equal(cdnRequestsFor(ref).length, 0);
  assert.equal((await problem(downloadAttachment({ ...ref, url: 'file:///etc/passwd' }, { allowedHosts: hosts }))).problem, 'host-not-allowed');
  assert.equal((await problem(downloadAttachment({ ...ref, url: 'not a url' }, { allowedHosts: hosts }))).problem, 'unavailable');
});

test('redirects are not followed', async () => {
  const server = createServer((_req, res) => { res.writeHead(302, { location: 'http://127.0.0.1:9/elsewhere' }).end(); });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const hostPort = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    const ref: AttachmentRef = { id: '1', name: 'r.png', url: `http://${hostPort}/r.png`, size: 10, contentType: null };
    assert.equal((await problem(downloadAttachment(ref, { allowedHosts: [hostPort] }))).problem, 'unreachable');
  } finally {
    server.close();
  }
});

test('downloadAttachments keeps the order, and one failure fails the set with that file named', async () => {
  const data = [bytes(1000, 1), bytes(2000, 2), bytes(3000, 3)];
  const refs = data.map((b, i) => host({ filename: `img${i}.png`, bytes: b, cdn: i === 0 ? { delayMs: 100 } : {} }));
  const downloaded = await downloadAttachments(refs, { allowedHosts: hosts });
  assert.deepEqual(downloaded.map((d) => d.name), ['img0.png', 'img1.png', 'img2.png']);
  assert.deepEqual(downloaded.map((d) => d.bytes), data);

  const withBad = [refs[0]!, host({ filename: 'huge.png', bytes: bytes(10), declaredSize: 50 * 1024 * 1024 }), refs[2]!];
  const failed = await problem(downloadAttachments(withBad, { allowedHosts: hosts }));
  assert.equal(failed.problem, 'too-large');
  assert.match(failed.message, /huge\.png/);
});

test('an aborted signal cancels the download', async () => {
  const ref = host({ filename: 'slow2.png', bytes: bytes(10), cdn: { delayMs: 3_000 } });
  const controller = new AbortController();
  const pending = downloadAttachment(ref, { allowedHosts: hosts, signal: controller.signal });
  setTimeout(() => controller.abort(), 50);
  assert.equal((await problem(pending)).problem, 'cancelled');
});
