// npm run bench:queue [-- --jobs 200 --steps 2 --users 20 --workers 1 --backend wasm]
// 200 concurrent imagine requests over the local HTTP API against the tiny fixture model with the real engine:
// accept latency (p50, p99), throughput and peak memory; checks that every job completes and none is lost.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startApp } from '../app.ts';
import { loadConfig } from '../config.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const { values: args } = parseArgs({
  options: {
    jobs: { type: 'string', default: '200' }, steps: { type: 'string', default: '2' }, users: { type: 'string', default: '20' },
    workers: { type: 'string', default: '1' }, backend: { type: 'string', default: 'wasm' }, model: { type: 'string', default: join(ROOT, 'test/fixtures/sd-tiny-a/model') },
  },
});
const jobs = Number(args.jobs), steps = Number(args.steps), users = Number(args.users);

const dir = mkdtempSync(join(tmpdir(), 'perfusion-bench-'));
const config = loadConfig({
  DATA_DIR: dir, PORT: '0', MODEL_DIR: args.model, GPU_BACKEND: args.backend, GPU_WORKERS: args.workers, LOG_LEVEL: 'warn',
  MAX_QUEUED_PER_USER: String(Math.ceil(jobs / users) + 1), PROGRESS_INTERVAL_MS: '1000',
} as NodeJS.ProcessEnv, ROOT);

let peakRss = 0, peakHeap = 0;
const sample = () => { const m = process.memoryUsage(); peakRss = Math.max(peakRss, m.rss); peakHeap = Math.max(peakHeap, m.heapUsed); };
const sampler = setInterval(sample, 50);

const app = await startApp(config);
try {
  await app.bot.engineReady();
  const base = app.chat!.url;
  // warm up: one image, so the first measured request does not pay for the engine's first run
  const warm = await (await fetch(`${base}api/imagine`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'warm up', steps }) })).json() as { jobId: number };
  await app.services.scheduler.onIdle();
  void warm;

  const t0 = performance.now();
  const accepted = await Promise.all(Array.from({ length: jobs }, async (_, i) => {
    const start = performance.now();
    const res = await fetch(`${base}api/imagine`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: `a photo of thing number ${i}`, steps, seed: i, user: `user${i % users}` }),
    });
    const body = await res.json() as { jobId?: number; error?: string };
    // a refusal is counted and reported, not thrown: the run goes on and the table says how many
    if (res.status !== 202) return { jobId: null, ms: performance.now() - start, refusal: `${res.status} ${body.error}` };
    return { jobId: body.jobId!, ms: performance.now() - start, refusal: null };
  }));
  const acceptedAt = performance.now();
  const refusals = accepted.flatMap((a) => (a.refusal ? [a.refusal] : []));
  const ids = accepted.flatMap((a) => (a.jobId === null ? [] : [a.jobId]));
  for (;;) {
    const left = await app.services.db.job.count({ where: { id: { in: ids }, state: { in: ['queued', 'running'] } } });
    if (left === 0) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const doneAt = performance.now();
  const rows = await app.services.db.job.findMany({ where: { id: { in: ids } }, include: { generation: { select: { id: true, width: true } } } });
  const succeeded = rows.filter((r) => r.state === 'succeeded' && r.generation).length;
  const lost = ids.length - rows.length;
  const lat = accepted.map((a) => a.ms).sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!;
  sample();
  const table: [string, string][] = [
    ['requests (concurrent)', `${jobs} from ${users} users`],
    ['engine', `${app.bot.model.name} on ${(await app.services.executor.ready()).backend}, ${config.gpuWorkers} worker(s), ${steps} steps`],
    ['accept latency p50', `${q(0.5).toFixed(1)} ms`],
    ['accept latency p99', `${q(0.99).toFixed(1)} ms`],
    ['all accepted after', `${(acceptedAt - t0).toFixed(0)} ms`],
    ['all done after', `${((doneAt - t0) / 1000).toFixed(1)} s`],
    ['throughput', `${(jobs / ((doneAt - t0) / 1000)).toFixed(2)} images/s`],
    ['refused', `${refusals.length}${refusals.length ? ` (first: ${refusals[0]})` : ''}`],
    ['succeeded / lost', `${succeeded} / ${lost}`],
    ['peak RSS (process + workers)', `${(peakRss / 1048576).toFixed(0)} MiB`],
    ['peak JS heap (main thread)', `${(peakHeap / 1048576).toFixed(0)} MiB`],
  ];
  const w = Math.max(...table.map(([k]) => k.length));
  console.log(`\nqueue benchmark (${new Date().toISOString()})`);
  for (const [k, v] of table) console.log(`${k.padEnd(w)}  ${v}`);
  if (succeeded !== jobs || lost !== 0) {
    console.error(`\nFAILED: ${jobs - succeeded} of ${jobs} requests did not give an image (${refusals.length} refused, ${lost} lost)`);
    process.exitCode = 1;
  }
} finally {
  clearInterval(sampler);
  await app.stop();
  rmSync(dir, { recursive: true, force: true });
}
