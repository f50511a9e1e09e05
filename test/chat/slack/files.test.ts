// The private-file downloader against the fake Slack: bytes only with the bot token, Slack's login page and
// other non-images refused with a message for the user, size and time limits, Slack Connect stubs.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FakeSlack } from './fake-slack.ts';
import { jpegImage, noisyPng, pngImage } from './test-images.ts';
import { SlackFileError, downloadSlackImage, downloadSlackImages, sniffImageType, type DownloadOptions } from '../../../src/chat/slack/files.ts';

describe('downloadSlackImage against the fake Slack', () => {
  let fake: FakeSlack;
  let opts: DownloadOptions;

  before(async () => {
    fake = await FakeSlack.start();
    opts = { botToken: fake.botToken, trustedOrigins: [fake.baseUrl] };
  });
  after(() => fake.close());

  const rejectsWith = async (promise: Promise<unknown>, code: string, message: RegExp) => {
    await assert.rejects(promise, (error: unknown) => {
      assert.ok(error instanceof SlackFileError, `expected a SlackFileError, got ${String(error)}`);
      assert.equal(error.code, code);
      assert.match(error.message, message);
      return true;
    });
  };

  it('downloads a PNG and a JPEG with the bot token and reports what the bytes are', async () => {
    const png = await pngImage(10, 10);
    const jpeg = await jpegImage(10, 10);
    // A JPEG named .png: the type comes from the bytes, not the name.
    const fPng = fake.addFile({ name: 'a.png', bytes: png });
    const fJpeg = fake.addFile({ name: 'b.png', bytes: jpeg, mimetype: 'image/png' });
    const a = await downloadSlackImage(fPng, opts);
    const b = await downloadSlackImage(fJpeg, opts);
    assert.deepEqual([a.fileId, a.name, a.contentType], [fPng.id, 'a.png', 'image/png']);
    assert.deepEqual(a.bytes, png);
    assert.equal(b.contentType, 'image/jpeg');
    assert.deepEqual(b.bytes, jpeg);
    const served = fake.requests('file').slice(-2);
    assert.deepEqual(served.map((r) => r.authorization), [`Bearer ${fake.botToken}`, `Bearer ${fake.botToken}`]);
  });

  it('reports Slack\'s login page (wrong token) as an error worded for the user', async () => {
    const f = fake.addFile({ name: 'holiday.png', bytes: await pngImage() });
    await rejectsWith(downloadSlackImage(f, { ...opts, botToken: 'xoxb-revoked' }), 'login_page',
      /^Slack sent a sign-in page instead of "holiday\.png".*files:read/);
    assert.equal(fake.requests('file').at(-1)!.response, 'login page');
  });

  it('refuses a file that is not an image even when its name and type claim it is', async () => {
    const text = fake.addFile({ name: 'notes.txt', bytes: new TextEncoder().encode('hello') });
    await rejectsWith(downloadSlackImage(text, opts), 'not_image', /"notes\.txt" is not a PNG, JPEG, WebP or GIF image/);
    const fakePng = fake.addFile({ name: 'renamed.png', bytes: new TextEncoder().encode('%PDF-1.7 not really a png'), mimetype: 'image/png' });
    await rejectsWith(downloadSlackImage(fakePng, opts), 'not_image', /"renamed\.png" is not a PNG/);
  });

  it('refuses a file over the size limit: from its declared size (no request), content-length, or the streamed bytes', async () => {
    const big = await noisyPng(64, 64);
    assert.ok(big.length > 12 * 1024);
    const f = fake.addFile({ name: 'big.png', bytes: big });
    const requestsBefore = fake.requests('file').length;
    await rejectsWith(downloadSlackImage(f, { ...opts, maxBytes: 4096 }), 'too_large', /^"big\.png" is \d+ KB; images can be at most 4 KB\./);
    assert.equal(fake.requests('file').length, requestsBefore, 'the declared size was enough to refuse it');
    const { size: _size, ...undeclared } = f;
    await rejectsWith(downloadSlackImage(undeclared, { ...opts, maxBytes: 4096 }), 'too_large', /^"big\.png" is \d+ KB; images can be at most 4 KB\./);
    const streamed = fake.addFile({ name: 'streamed.png', bytes: big, chunked: true });
    const { size: _s, ...streamedUndeclared } = streamed;
    await rejectsWith(downloadSlackImage(streamedUndeclared, { ...opts, maxBytes: 4096 }), 'too_large', /^"streamed\.png" is larger than 4 KB/);
    const ok = await downloadSlackImage(streamedUndeclared, { ...opts, maxBytes: big.length });
    assert.deepEqual(ok.bytes, big);
  });

  it('gives up on a download that takes too long', async () => {
    const f = fake.addFile({ name: 'slow.png', bytes: await pngImage(), respondAfterMs: 2000 });
    const started = performance.now();
    await rejectsWith(downloadSlackImage(f, { ...opts, timeoutMs: 150 }), 'timeout', /^Downloading "slow\.png" from Slack took longer than 150 ms\. Please try again\.$/);
    assert.ok(performance.now() - started < 1500);
  });

  it('never sends the bot token to a host that is not Slack (or the configured API origin)', async () => {
    const f = fake.addFile({ name: 'a.png', bytes: await pngImage() });
    const before = fake.requests('file').length;
    await rejectsWith(downloadSlackImage(f, { botToken: fake.botToken }), 'untrusted_url', /not stored in Slack/);
    await rejectsWith(downloadSlackImage({ ...f, url_private_download: 'https://evil.example/files/a.png' }, opts), 'untrusted_url', /not stored in Slack/);
    assert.equal(fake.requests('file').length, before, 'no request was made');
  });

  it('looks up a Slack Connect stub (no URLs) with files.info before downloading', async () => {
    const png = await pngImage(9, 9);
    const f = fake.addFile({ name: 'shared.png', bytes: png });
    const looked: string[] = [];
    const image = await downloadSlackImage({ id: f.id, file_access: 'check_file_info' }, {
      ...opts,
      fileInfo: async (id) => {
        looked.push(id);
        const res = await fetch(`${fake.apiUrl}files.info`, {
          method: 'POST', headers: { authorization: `Bearer ${fake.botToken}`, 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ file: id }),
        });
        return ((await res.json()) as { file: { id: string } }).file;
      },
    });
    assert.deepEqual(looked, [f.id]);
    assert.deepEqual(image.bytes, png);
    await rejectsWith(downloadSlackImage({ id: 'F0MISSING', name: 'gone.png' }, opts), 'no_url', /could not get "gone\.png"/);
    const lookupFailed = downloadSlackImage({ id: 'F0STUB' }, { ...opts, fileInfo: async () => { throw new Error('missing_scope'); } });
    await rejectsWith(lookupFailed, 'no_url', /could not look up "F0STUB" in Slack.*files:read/);
    await lookupFailed.catch((e: Error) => assert.equal((e.cause as Error).message, 'missing_scope'));
  });

  it('downloadSlackImages keeps the order and fails on the first unusable file, naming it', async () => {
    const files = await Promise.all([1, 2, 3, 4].map(async (i) => fake.addFile({ name: `p${i}.png`, bytes: await pngImage(8, 8, [i, i, i]) })));
    const images = await downloadSlackImages(files, { ...opts, concurrency: 2 });
    assert.deepEqual(images.map((i) => i.name), ['p1.png', 'p2.png', 'p3.png', 'p4.png']);
    const bad = fake.addFile({ name: 'bad.gif', bytes: new TextEncoder().encode('<html><body>hi</body></html>'), mimetype: 'image/gif' });
    await rejectsWith(downloadSlackImages([files[0]!, bad, files[1]!], opts), 'login_page', /"bad\.gif"/);
  });

  it('sniffs PNG, JPEG, WebP and GIF signatures and nothing else', async () => {
    assert.equal(sniffImageType(await pngImage()), 'image/png');
    assert.equal(sniffImageType(await jpegImage()), 'image/jpeg');
    assert.equal(sniffImageType(new TextEncoder().encode('RIFF\0\0\0\0WEBPVP8 ')), 'image/webp');
    assert.equal(sniffImageType(new TextEncoder().encode('GIF89a......')), 'image/gif');
    assert.equal(sniffImageType(new TextEncoder().encode('<!DOCTYPE html>')), null);
    assert.equal(sniffImageType(new Uint8Array([0x89, 0x50])), null);
  });
});
