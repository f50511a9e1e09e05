// Shared test helpers: a migrated SQLite database per test (copied from a template migrated once with the
// real `prisma migrate deploy`), settings pointing at the tiny fixture model, a fake executor for the
// scheduler's own logic, and images made with sharp.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { loadConfig, type Config } from '../../src/config.ts';
import { resolveDatabase } from '../../src/store/database-url.ts';
import { deployMigrations, localMigrations } from '../../src/store/migrate.ts';
import type { ExecutionHooks, JobExecutor, JobInput, JobOutput, WorkerModel } from '../../src/jobs/executor.ts';
import { JobAbortedError, WorkerCrashError } from '../../src/jobs/executor.ts';

export const ROOT = new URL('../../', import.meta.url).pathname;
export const FIXTURE_MODEL = join(ROOT, 'test/fixtures/sd-tiny-a/model');

/** A SQLite file with every migration applied, made once per migration set and then copied. */
async function templateDb(): Promise<string> {
  const key = createHash('sha256').update(JSON.stringify(localMigrations('sqlite'))).digest('hex').slice(0, 16);
  const file = join(tmpdir(), `perfusion-test-template-${key}.db`);
  if (existsSync(file)) return file;
  const dir = mkdtempSync(join(tmpdir(), 'perfusion-template-'));
  const tmp = join(dir, 'template.db');
  await deployMigrations(resolveDatabase({ DATABASE_URL: `file:${tmp}` }));
  renameSync(tmp, file);
  rmSync(dir, { recursive: true, force: true });
  return file;
}

export interface TestDir {
  dir: string;
  env: Record<string, string>;
  cleanup(): void;
}

/** A data folder with a freshly migrated database, and the environment for a bot using it. */
export async function testDataDir(extraEnv: Record<string, string> = {}): Promise<TestDir> {
  const dir = mkdtempSync(join(tmpdir(), 'perfusion-test-'));
  mkdirSync(dir, { recursive: true });
  copyFileSync(await templateDb(), join(dir, 'perfusion.db'));
  const env = {
    DATA_DIR: dir, PORT: '0', MODEL_DIR: FIXTURE_MODEL, GPU_BACKEND: 'wasm', LOG_LEVEL: 'silent',
    PROGRESS_INTERVAL_MS: '0', SHUTDOWN_GRACE_MS: '5000', ...extraEnv,
  };
  return { dir, env, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function testConfig(env: Record<string, string>): Config {
  return loadConfig(env as NodeJS.ProcessEnv, ROOT);
}

export const FAKE_MODEL: WorkerModel = {
  dir: '/fake', name: 'fake model', isDemo: false, hash: 'fakehash', resolution: 128, defaultScheduler: 'pndm', hiddenSize: 32, backend: 'fake',
};

type Control = { resolve: () => void; crash: () => void; input: JobInput; hooks: ExecutionHooks };

/**
 * An executor whose jobs run until the test lets them finish (`finish(id)`), or automatically after `autoMs`.
 * Imagine results are real PNGs of the requested size; teach results are a few bytes.
 */
export class FakeExecutor implements JobExecutor {
  readonly started: number[] = [];
  readonly runs = new Map<number, Control>();
  private waiters: (() => void)[] = [];
  constructor(readonly slots = 1, private readonly autoMs: number | null = null, private readonly category = (w: string) => (w.length > 12 ? `"${w}" is not one token` : null)) {}

  ready(): Promise<WorkerModel> { return Promise.resolve(FAKE_MODEL); }
  checkCategory(word: string): Promise<string | null> { return Promise.resolve(this.category(word)); }
  async close(): Promise<void> {}

  run(input: JobInput, hooks: ExecutionHooks): Promise<JobOutput> {
    this.started.push(input.jobId);
    return new Promise<JobOutput>((resolve, reject) => {
      const done = async () => {
        this.runs.delete(input.jobId);
        if (input.kind === 'imagine') {
          const png = new Uint8Array(await sharp({ create: { width: input.request.width, height: input.request.height, channels: 3, background: '#336699' } }).png().toBuffer());
          resolve({ kind: 'imagine', png, width: input.request.width, height: input.request.height, seed: input.request.seed, msPerStep: 10, truncated: [] });
        } else {
          resolve({ kind: 'teach', artifact: new Uint8Array([1, 2, 3, 4]), finalLoss: 0.5, steps: input.request.steps, msPerStep: 5 });
        }
      };
      const ctl: Control = { resolve: () => void done(), crash: () => { this.runs.delete(input.jobId); reject(new WorkerCrashError('fake crash')); }, input, hooks };
      this.runs.set(input.jobId, ctl);
      hooks.signal.addEventListener('abort', () => { this.runs.delete(input.jobId); reject(new JobAbortedError()); }, { once: true });
      hooks.onProgress({ step: 0, total: 10 });
      if (this.autoMs !== null) setTimeout(() => { if (this.runs.get(input.jobId) === ctl) ctl.resolve(); }, this.autoMs);
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** resolves once job `id` is running */
  async whenRunning(id: number): Promise<Control> {
    while (!this.runs.has(id)) await new Promise<void>((r) => this.waiters.push(r));
    return this.runs.get(id)!;
  }
}

export async function pngImage(width: number, height: number, color = '#c03030'): Promise<Uint8Array> {
  return new Uint8Array(await sharp({ create: { width, height, channels: 3, background: color } })
    .composite([{ input: { create: { width: Math.max(1, width >> 2), height: Math.max(1, height >> 2), channels: 3, background: '#ffffff' } }, left: width >> 3, top: height >> 3 }])
    .png().toBuffer());
}

export async function jpegWithOrientation(width: number, height: number, orientation: number): Promise<Uint8Array> {
  return new Uint8Array(await sharp({ create: { width, height, channels: 3, background: '#2080c0' } }).jpeg().withMetadata({ orientation }).toBuffer());
}

export async function animatedGif(width: number, height: number, frames = 3): Promise<Uint8Array> {
  const colours = ['#ff0000', '#00ff00', '#0000ff', '#ffff00'];
  const inputs = await Promise.all(Array.from({ length: frames }, (_, i) =>
    sharp({ create: { width, height, channels: 3, background: colours[i % colours.length]! } }).png().toBuffer()));
  return new Uint8Array(await sharp(inputs, { join: { animated: true } }).gif({ loop: 0 }).toBuffer());
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** A tiny PNG file whose header claims `width`×`height` pixels (a decompression bomb's shape). */
export function bombPng(width: number, height: number): Uint8Array {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0); ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; ihdr[9] = 2; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
  return new Uint8Array(Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', deflateSync(Buffer.alloc(1024))), chunk('IEND', Buffer.alloc(0)),
  ]));
}

/** Polls `check` until it returns a value (not undefined), or fails after `ms`. */
export async function waitFor<T>(check: () => Promise<T | undefined> | T | undefined, ms = 60_000, what = 'condition'): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
