// Every input rule of the local HTTP API: send the bad input, check the status and the words.
// Real HTTP server, real sharp decoding, real Prisma/SQLite; the GPU executor is a fake that finishes jobs
// at once (the rules are checked before any GPU work).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startApp, type App } from '../../../src/app.ts';
import { animatedGif, bombPng, FakeExecutor, jpegWithOrientation, pngImage, testConfig, testDataDir, waitFor, type TestDir } from '../../src/helpers.ts';

let app: App;
let dir: TestDir;
let base: string;
let good: Uint8Array;

async function teachForm(fields: Record<string, string>, files: { name: string; bytes: Uint8Array; type?: string }[]) {
  const fd = new FormData();
  for (const [k, v] of Object.entries(fields)) fd.set(k, v);
  for (const f of files) fd.append('images', new Blob([f.bytes as Uint8Array<ArrayBuffer>], { type: f.type ?? 'image/png' }), f.name);
  const res = await fetch(`${base}api/teach`, { method: 'POST', body: fd });
  return { status: res.status, body: await res.json() as Record<string, any> };
}

async function post(path: string, body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }) {
  const res = await fetch(`${base}${path}`, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, body: await res.json() as Record<string, any> };
}

async function expectError(p: Promise<{ status: number; body: Record<string, any> }>, status: number, pattern: RegExp) {
  const r = await p;
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.equal(typeof r.body.error, 'string');
  assert.match(r.body.error, pattern);
  assert.doesNotMatch(r.body.error, /\n\s+at /, 'no stack trace');
}

describe('local API input rules', () => {
  before(async () => {
    dir = await testDataDir({ MAX_QUEUED_PER_USER: '3' });
    app = await startApp(testConfig(dir.env), { executor: new FakeExecutor(1, 0) });
    base = app.chat!.url;
    good = await pngImage(200, 200);
    const r = await teachForm({ name: 'hugsy', category: 'teddy' }, [{ name: 'a.png', bytes: good }, { name: 'b.png', bytes: good }, { name: 'c.png', bytes: good }]);
    assert.equal(r.status, 202);
    await waitFor(async () => ((await fetch(`${base}api/jobs/${r.body.jobId}`).then((x) => x.json())).state === 'succeeded' ? true : undefined), 20_000, 'hugsy');
  });
  after(async () => { await app.stop(); dir.cleanup(); });

  describe('teach', () => {
    test('names: 2–32 of a-z 0-9 _ - (case folded), unique per scope', async () => {
      await expectError(teachForm({ name: 'Bad Name!', category: 'dog' }, [{ name: 'a.png', bytes: good }]), 400, /cannot be a concept name: use 2–32 characters of lowercase letters, digits, _ and -/);
      await expectError(teachForm({ name: 'x', category: 'dog' }, [{ name: 'a.png', bytes: good }]), 400, /cannot be a concept name/);
      await expectError(teachForm({ name: 'a'.repeat(33), category: 'dog' }, [{ name: 'a.png', bytes: good }]), 400, /cannot be a concept name/);
      await expectError(teachForm({ name: 'HUGSY', category: 'teddy' }, [{ name: 'a.png', bytes: good }]), 409, /<hugsy> already exists here \(taught by you\)\. Pick another name/);
      await expectError(teachForm({ category: 'dog' }, [{ name: 'a.png', bytes: good }]), 400, /name is missing/);
    });

    test('category: one plain word that is one token', async () => {
      await expectError(teachForm({ name: 'rex', category: 'teddy bear' }, [{ name: 'a.png', bytes: good }]), 400, /must be one plain word of 2–24 letters/);
      await expectError(teachForm({ name: 'rex', category: 'dog2' }, [{ name: 'a.png', bytes: good }]), 400, /one plain word/);
      await expectError(teachForm({ name: 'rex', category: 'extraordinarily' }, [{ name: 'a.png', bytes: good }]), 400, /is not one token/);
    });

    test('images: 1–10, 3–10 recommended and said so', async () => {
      await expectError(teachForm({ name: 'rex', category: 'dog' }, []), 400, /Attach at least one image of the concept \(3–10 work best\)/);
      const eleven = Array.from({ length: 11 }, (_, i) => ({ name: `${i}.png`, bytes: good }));
      await expectError(teachForm({ name: 'rex', category: 'dog' }, eleven), 400, /You attached 11 images; the limit is 10/);
      const one = await teachForm({ name: 'solo', category: 'dog' }, [{ name: 'a.png', bytes: good }]);
      assert.equal(one.status, 202);
      assert.match(one.body.message.text, /Tip: 3–10 images from different angles work best; you sent 1\./);
      assert.equal(one.body.concept, 'solo');
    });

    test('each image is decoded: names and types are not trusted', async () => {
      await expectError(teachForm({ name: 'rex', category: 'dog' }, [{ name: 'photo.png', bytes: new TextEncoder().encode('<html>login page</html>') }]), 400, /"photo.png" is not an image I can read\. Send a PNG, JPEG or WebP photo/);
      await expectError(teachForm({ name: 'rex', category: 'dog' }, [{ name: 'cat.jpg', bytes: good.slice(0, 400), type: 'image/jpeg' }]), 400, /"cat.jpg" is damaged or incomplete/);
      await expectError(teachForm({ name: 'rex', category: 'dog' }, [{ name: 'empty.png', bytes: new Uint8Array(0) }]), 400, /is empty/);
      // decodable, but a drawing format, not a photo
      const svg = new TextEncoder().encode('<svg xmlns="http://www.w3.org/2000/svg" width="200" height="200"><rect width="200" height="200" fill="red"/></svg>');
      await expectError(teachForm({ name: 'rex', category: 'dog' }, [{ name: 'logo.png', bytes: svg }]), 400, /"logo.png" is a svg file, not a photo I can use\. Send a PNG, JPEG or WebP image/);
    });

    test('animated images are refused with a reason', async () => {
      await expectError(teachForm({ name: 'rex', category: 'dog' }, [{ name: 'dance.gif', bytes: await animatedGif(160, 160, 3), type: 'image/gif' }]), 400, /"dance.gif" is animated \(3 frames\)\. Send a still image/);
    });

    test('bytes (10 MB each) and pixels (decompression bombs) are capped', async () => {
      const big = new Uint8Array(10 * 1024 * 1024 + 1000);
      big.set(good);
      randomBytes(1000).copy(Buffer.from(big.buffer), good.length);
      await expectError(teachForm({ name: 'rex', category: 'dog' }, [{ name: 'huge.png', bytes: big }]), 400, /"huge.png" is 10.0 MB; each image may be at most 10.0 MB/);
      await expectError(teachForm({ name: 'rex', category: 'dog' }, [{ name: 'bomb.png', bytes: bombPng(50000, 50000) }]), 400, /"bomb.png" is 50000×50000 pixels, too many to process \(at most 40 megapixels\)/);
    });

    test('a usable size: at least 128 px, not too long and thin', async () => {
      await expectError(teachForm({ name: 'rex', category: 'dog' }, [{ name: 'tiny.png', bytes: await pngImage(100, 100) }]), 400, /"tiny.png" is only 100×100 pixels; images must be at least 128×128/);
      await expectError(teachForm({ name: 'rex', category: 'dog' }, [{ name: 'strip.png', bytes: await pngImage(1000, 200) }]), 400, /"strip.png" is 1000×200, too long and thin/);
    });

    test('EXIF orientation is applied before anything else', async () => {
      const r = await teachForm({ name: 'rotated', category: 'dog' }, [{ name: 'r.jpg', bytes: await jpegWithOrientation(300, 150, 6), type: 'image/jpeg' }]);
      assert.equal(r.status, 202);
      const img = await app.services.db.conceptImage.findFirstOrThrow({ where: { concept: { name: 'rotated' } } });
      assert.equal(img.width, 150);
      assert.equal(img.height, 300);
      // a 100×300 photo stored sideways is 300 wide once upright: the size rule sees the upright image
      await expectError(teachForm({ name: 'rex', category: 'dog' }, [{ name: 's.jpg', bytes: await jpegWithOrientation(300, 100, 6), type: 'image/jpeg' }]), 400, /is only 100×300 pixels/);
    });

    test('steps and the request format', async () => {
      await expectError(teachForm({ name: 'rex', category: 'dog', steps: '5' }, [{ name: 'a.png', bytes: good }]), 400, /Training steps must be a whole number from 10 to 2000/);
      await expectError(teachForm({ name: 'rex', category: 'dog', steps: 'many' }, [{ name: 'a.png', bytes: good }]), 400, /steps must be a whole number/);
      await expectError(post('api/teach', { name: 'rex' }), 415, /multipart\/form-data/);
    });
  });

  describe('imagine', () => {
    test('prompt length', async () => {
      await expectError(post('api/imagine', { prompt: '' }), 400, /prompt is missing/);
      await expectError(post('api/imagine', { prompt: '   ' }), 400, /The prompt is empty/);
      await expectError(post('api/imagine', { prompt: 'a '.repeat(300) }), 400, /The prompt is 599 characters long; the limit is 500/);
      await expectError(post('api/imagine', { prompt: 'a cat', negative: 'x'.repeat(501) }), 400, /The negative prompt is 501 characters long/);
    });

    test('unknown mentions are answered with the closest known names', async () => {
      await expectError(post('api/imagine', { prompt: 'a photo of <hugsi> at sea' }), 404, /I don't know <hugsi> here\. Did you mean <hugsy>\?/);
      await expectError(post('api/imagine', { prompt: 'a photo of <zzzzzzzzzzzz>' }), 404, /I don't know <zzzzzzzzzzzz> here\. \/concepts list shows the \d+ concepts/);
    });

    test('per-concept strength, number of concepts', async () => {
      await expectError(post('api/imagine', { prompt: 'a photo of <hugsy:2>' }), 400, /The strength in <hugsy:2> must be a number from 0 to 1/);
      await expectError(post('api/imagine', { prompt: '<a1> <a2> <a3> <a4> <a5>' }), 400, /uses 5 concepts; at most 4/);
      await expectError(post('api/imagine', { prompt: 'a photo of <hugsy>', strengths: { hugsy: 'strong' } }), 400, /strengths must be an object of concept name → number/);
      const ok = await post('api/imagine', { prompt: 'a photo of <HUGSY:0.8>', steps: 2 });
      assert.equal(ok.status, 202);
      const job = await app.services.db.job.findUniqueOrThrow({ where: { id: ok.body.jobId } });
      const params = JSON.parse(job.params);
      assert.equal(params.prompt, 'a photo of <hugsy>');
      assert.deepEqual(params.concepts.map((c: { name: string; strength: number }) => [c.name, c.strength]), [['hugsy', 0.8]]);
    });

    test('size, steps, guidance, seed, sampler', async () => {
      await expectError(post('api/imagine', { prompt: 'a cat', width: 100 }), 400, /The width must be a multiple of 8 \(e\.g\. 104\); 100 is not/);
      await expectError(post('api/imagine', { prompt: 'a cat', height: 4096 }), 400, /The height must be a whole number of pixels from 64 to 1024/);
      await expectError(post('api/imagine', { prompt: 'a cat', steps: 0 }), 400, /Steps must be a whole number from 1 to 150/);
      await expectError(post('api/imagine', { prompt: 'a cat', guidance: 99 }), 400, /Guidance must be a number from 0 to 30/);
      await expectError(post('api/imagine', { prompt: 'a cat', seed: -1 }), 400, /seed must be a whole number from 0 to 2147483647/);
      await expectError(post('api/imagine', { prompt: 'a cat', scheduler: 'turbo' }), 400, /The sampler must be one of pndm, ddim, euler, dpmpp-2m/);
      await expectError(post('api/imagine', { prompt: 'a cat', steps: 2.5 }), 400, /steps must be a whole number/);
    });

    test('request format', async () => {
      await expectError(post('api/imagine', '{"prompt": ', { 'content-type': 'application/json' }), 400, /not valid JSON/);
      await expectError(post('api/imagine', '[1]', { 'content-type': 'application/json' }), 400, /must be a JSON object/);
      await expectError(post('api/imagine', 'prompt=cat', { 'content-type': 'application/x-www-form-urlencoded' }), 415, /Content-Type: application\/json/);
    });

    test('a concept still being taught', async () => {
      const row = await app.services.db.concept.create({ data: { scopeId: (await app.services.db.scope.findFirstOrThrow()).id, name: 'halfway', category: 'dog', ownerId: (await app.services.db.user.findFirstOrThrow()).id, status: 'training' } });
      await expectError(post('api/imagine', { prompt: 'a <halfway>' }), 409, /<halfway> is still being taught; try again when it is ready/);
      await app.services.db.concept.delete({ where: { id: row.id } });
    });
  });

  describe('limits and lookups', () => {
    test('a per-person limit on queued jobs (429)', async () => {
      // a bot whose GPU is busy: nothing finishes while the queue fills
      const busyDir = await testDataDir({ MAX_QUEUED_PER_USER: '3' });
      const busy = await startApp(testConfig(busyDir.env), { executor: new FakeExecutor(1) });
      try {
        const send = (prompt: string, user: string) => fetch(`${busy.chat!.url}api/imagine`, {
          method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt, user }),
        }).then(async (r) => ({ status: r.status, body: await r.json() as Record<string, any> }));
        for (let i = 0; i < 3; i++) assert.equal((await send(`cat ${i}`, 'ann')).status, 202);
        await expectError(send('one more', 'ann'), 429, /You already have 3 jobs waiting or running; the limit is 3\. Wait for one to finish, or cancel one with \/cancel/);
        assert.equal((await send('someone else', 'bob')).status, 202);
      } finally {
        await busy.stop(0); busyDir.cleanup();
      }
    });

    test('a deleted image: its job says so instead of pointing at an image that is gone', async () => {
      const made = await post('api/imagine', { prompt: 'a lighthouse', steps: 2, width: 64, height: 64 });
      assert.equal(made.status, 202);
      const jobId = made.body.jobId as number;
      await waitFor(async () => ((await (await fetch(`${base}api/jobs/${jobId}`)).json()).state === 'succeeded' ? true : undefined), 10_000, 'image');
      const before = await (await fetch(`${base}api/jobs/${jobId}`)).json();
      const id = before.result.generationId as number;
      assert.equal(before.result.image, `/api/generations/${id}/image.png`);
      assert.equal((await post('api/press', { id: `delete:${id}` })).status, 200);
      const after = await (await fetch(`${base}api/jobs/${jobId}`)).json();
      assert.deepEqual(after.result, { generationId: null, image: null, deleted: true });
      assert.equal((await fetch(`${base}api/generations/${id}/image.png`)).status, 404);
    });

    test('deleting a concept over the API: gone from the list, and prompts that mention it are told so', async () => {
      const taught = await teachForm({ name: 'gone', category: 'dog' }, [{ name: 'a.png', bytes: good }]);
      assert.equal(taught.status, 202);
      await waitFor(async () => ((await (await fetch(`${base}api/jobs/${taught.body.jobId}`)).json()).state === 'succeeded' ? true : undefined), 10_000, 'gone');
      const res = await fetch(`${base}api/concepts/gone`, { method: 'DELETE' });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { deleted: 'gone' });
      const names = ((await (await fetch(`${base}api/concepts`)).json()).concepts as { name: string }[]).map((c) => c.name);
      assert.ok(!names.includes('gone') && names.includes('hugsy'), names.join(', '));
      await expectError(post('api/imagine', { prompt: 'a photo of <gone>' }), 404, /I don't know <gone> here/);
    });

    test('unknown jobs, generations, concepts and routes', async () => {
      await expectError(fetch(`${base}api/jobs/999999`).then(async (r) => ({ status: r.status, body: await r.json() })), 404, /There is no job #999999/);
      await expectError(fetch(`${base}api/generations/999999`).then(async (r) => ({ status: r.status, body: await r.json() })), 404, /There is no image #999999 here/);
      await expectError(fetch(`${base}api/concepts/hugsi`, { method: 'DELETE' }).then(async (r) => ({ status: r.status, body: await r.json() })), 404, /There is no concept <hugsi> here\. Did you mean <hugsy>\?/);
      await expectError(fetch(`${base}api/nothing`).then(async (r) => ({ status: r.status, body: await r.json() })), 404, /There is no GET \/api\/nothing/);
      await expectError(post('api/jobs/1/events', {}), 405, /Method not allowed/);
      await expectError(post('api/command', { text: '/dance' }), 404, /There is no \/dance command/);
    });
  });
});
