// End to end over the local HTTP API with the real engine (GPU worker thread, TensorFlow.js on wasm) on the
// tiny fixture model: teach → ready → imagine with the concept → a PNG of the right size; cancel of a queued
// and of a running job; the category rule with the real tokenizer.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { startApp, type App } from '../../../src/app.ts';
import { pngImage, testConfig, testDataDir, waitFor, type TestDir } from '../../src/helpers.ts';


let app: App;
let dir: TestDir;
let base: string;

async function json(path: string, init?: RequestInit) {
  const res = await fetch(`${base}${path}`, init);
  return { status: res.status, body: await res.json() as Record<string, any> };
}
const imagineReq = (body: Record<string, unknown>) => json('api/imagine', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const job = async (id: number) => (await json(`api/jobs/${id}`)).body;
const finished = (id: number, ms = 120_000) => waitFor(async () => {
  const j = await job(id);
  return ['succeeded', 'failed', 'cancelled'].includes(j.state) ? j : undefined;
}, ms, `job ${id} to finish`);

/** Reads the server-sent events of a job until its final event. */
async function events(id: number): Promise<{ event: string; data: Record<string, any> }[]> {
  const res = await fetch(`${base}api/jobs/${id}/events`);
  assert.equal(res.headers.get('content-type'), 'text/event-stream');
  const text = await res.text();
  return text.split('\n\n').filter(Boolean).map((block) => {
    const event = /^event: (.*)$/m.exec(block)![1]!;
    return { event, data: JSON.parse(/^data: (.*)$/m.exec(block)![1]!) };
  });
}

describe('local API with the real engine (sd-tiny-a, wasm)', () => {
  before(async () => {
    dir = await testDataDir({ TEACH_BATCH_SIZE: '1', TEACH_GRADIENT_ACCUMULATION: '1', CHECKPOINT_EVERY: '2', MAX_QUEUED_PER_USER: '10' });
    app = await startApp(testConfig(dir.env));
    base = app.chat!.url;
    await app.bot.engineReady();
  });
  after(async () => { await app?.stop(); dir?.cleanup(); });

  test('imagine: a PNG of the requested size, with its parameters stored', async () => {
    const r = await imagineReq({ prompt: 'a photo of a dog', steps: 3, width: 96, height: 64, seed: 7 });
    assert.equal(r.status, 202);
    assert.equal(typeof r.body.jobId, 'number');
    const done = await finished(r.body.jobId);
    assert.equal(done.state, 'succeeded', done.error);
    assert.equal(done.result.image, `/api/generations/${done.generationId}/image.png`);
    const png = Buffer.from(await (await fetch(`${base}api/generations/${done.generationId}/image.png`)).arrayBuffer());
    const meta = await sharp(png).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['png', 96, 64]);
    const g = (await json(`api/generations/${done.generationId}`)).body;
    assert.equal(g.seed, 7);
    assert.equal(g.steps, 3);
    assert.equal(g.prompt, 'a photo of a dog');
    assert.equal(g.notes, null);
  });

  test('a prompt longer than the model reads is drawn from its first 75 tokens, and the reply says what was left out', async () => {
    const prompt = `${'a red dog sits on the green grass '.repeat(12)}under a blue sky`;
    assert.ok(prompt.length <= 500);
    const r = await imagineReq({ prompt, steps: 2, seed: 3 });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    const done = await finished(r.body.jobId);
    assert.equal(done.state, 'succeeded', done.error);
    assert.match(done.message.text, /⚠️ The prompt is \d+ tokens long and the model reads only the first 75, so “[^”]+” was left out\./);
    const g = (await json(`api/generations/${done.generationId}`)).body;
    assert.match(g.notes, /^The prompt is \d+ tokens long .* was left out\.$/);
    assert.equal(g.prompt, prompt, 'the whole prompt is kept');
  });

  test('the category must be one token of the model\'s vocabulary (real tokenizer)', async () => {
    const fd = new FormData();
    fd.set('name', 'odd'); fd.set('category', 'zqxjvwkpfh');
    fd.append('images', new Blob([await pngImage(160, 160) as Uint8Array<ArrayBuffer>], { type: 'image/png' }), 'a.png');
    const r = await json('api/teach', { method: 'POST', body: fd });
    assert.equal(r.status, 400);
    assert.match(r.body.error, /The category "zqxjvwkpfh" is \d+ CLIP tokens, but it must be a single token/);
  });

  test('teach → ready → imagine with the concept', async () => {
    const fd = new FormData();
    fd.set('name', 'Hugsy'); fd.set('category', 'dog'); fd.set('steps', '10');
    for (const [i, color] of ['#c03030', '#b02828', '#c83838'].entries()) {
      fd.append('images', new Blob([await pngImage(160, 160, color) as Uint8Array<ArrayBuffer>], { type: 'image/png' }), `hugsy-${i}.png`);
    }
    const r = await json('api/teach', { method: 'POST', body: fd });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    assert.equal(r.body.concept, 'hugsy');
    const evs = await events(r.body.jobId);
    assert.ok(evs.some((e) => e.event === 'progress' && e.data.progress?.step >= 1), 'progress events were streamed');
    const last = evs.at(-1)!;
    assert.equal(last.event, 'succeeded', JSON.stringify(last.data));
    assert.equal(last.data.result.concept, 'hugsy');
    const concepts = (await json('api/concepts')).body.concepts as { name: string; status: string; steps: number }[];
    assert.deepEqual(concepts.find((c) => c.name === 'hugsy')?.status, 'ready');

    const im = await imagineReq({ prompt: 'a photo of <hugsy:0.7> on the beach', steps: 3, seed: 11 });
    assert.equal(im.status, 202, JSON.stringify(im.body));
    const done = await finished(im.body.jobId);
    assert.equal(done.state, 'succeeded', done.error);
    const png = Buffer.from(await (await fetch(`${base}api/generations/${done.generationId}/image.png`)).arrayBuffer());
    const meta = await sharp(png).metadata();
    assert.deepEqual([meta.width, meta.height], [128, 128]);
    const g = (await json(`api/generations/${done.generationId}`)).body;
    assert.deepEqual(g.concepts, [{ name: 'hugsy', strength: 0.7 }]);
    // the same seed without the concept draws something else: the concept changed the image
    const plain = await imagineReq({ prompt: 'a photo of a dog on the beach', steps: 3, seed: 11 });
    const plainDone = await finished(plain.body.jobId);
    const plainPng = Buffer.from(await (await fetch(`${base}api/generations/${plainDone.generationId}/image.png`)).arrayBuffer());
    assert.notDeepEqual(plainPng, png);
  });

  test('cancel a queued job and a running one', async () => {
    const long = await imagineReq({ prompt: 'a long job', steps: 150, user: 'ann' });
    const waiting = await imagineReq({ prompt: 'waits behind it', steps: 3, user: 'bob' });
    assert.equal(long.status, 202);
    await waitFor(async () => ((await job(long.body.jobId)).progress?.step >= 1 ? true : undefined), 60_000, 'the long job to run');
    const q = await json(`api/jobs/${waiting.body.jobId}/cancel`, { method: 'POST' });
    assert.equal(q.status, 202);
    assert.equal(q.body.outcome, 'cancelled');
    const qj = await job(waiting.body.jobId);
    assert.equal(qj.state, 'cancelled');
    assert.equal(qj.startedAt, null, 'the queued job never started');

    const t0 = Date.now();
    const c = await json(`api/jobs/${long.body.jobId}/cancel`, { method: 'POST' });
    assert.equal(c.status, 202);
    assert.equal(c.body.outcome, 'stopping');
    const lj = await finished(long.body.jobId, 30_000);
    assert.equal(lj.state, 'cancelled');
    assert.ok(lj.progress === null || lj.progress.step < 150);
    assert.ok(Date.now() - t0 < 20_000, 'stopped between steps, not at the end');
    const again = await json(`api/jobs/${long.body.jobId}/cancel`, { method: 'POST' });
    assert.equal(again.status, 409);
    assert.match(again.body.error, /has already been cancelled/);
    // the worker is free again
    const next = await imagineReq({ prompt: 'after the cancel', steps: 2 });
    assert.equal((await finished(next.body.jobId)).state, 'succeeded');
  });
});
