// The bot's core settings from the environment, validated once at start (the chat adapters validate their
// own DISCORD_* / SLACK_* settings). Every problem is reported at once, one line per variable, with what to do.
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { DEFAULT_DATA_DIR, resolveDatabase, type DatabaseTarget } from './store/database-url.ts';

export interface Config {
  /** diffusers-format SD 1.x folder; null: the built-in demo model (written under DATA_DIR) */
  modelDir: string | null;
  /** absolute; holds the SQLite database, the demo model and caches */
  dataDir: string;
  database: DatabaseTarget;
  /** local web chat port on 127.0.0.1 (0: any free port) */
  port: number;
  localChat: boolean;
  backend: 'auto' | 'webgpu' | 'tensorflow' | 'wasm' | 'cpu';
  gpuWorkers: number;
  /** queued + running jobs one person may have at a time */
  maxQueuedPerUser: number;
  /** runs of one job (interruptions by a crash or restart count) before it fails */
  jobMaxAttempts: number;
  /** training steps when /teach does not say */
  /** training steps when /teach does not say; null: the model's default (400, or 30 on the demo model) */
  teachSteps: number | null;
  /** images per training forward pass and micro-batches per step; null: the engine's defaults (4 × 4) */
  teachBatchSize: number | null;
  teachGradientAccumulation: number | null;
  /** a teach job saves a checkpoint every this many steps */
  checkpointEvery: number;
  /** at most one progress update per job per this many ms reaches the chat */
  progressIntervalMs: number;
  /** on SIGTERM, how long running work may take to finish or checkpoint before the process exits */
  shutdownGraceMs: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`The settings are not usable:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

const blank = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v);

function int(name: string, min: number, max: number, fallback: number) {
  return z.preprocess(blank, z.coerce.number({ error: `${name} must be a whole number from ${min} to ${max}.` })
    .int({ error: `${name} must be a whole number from ${min} to ${max}.` })
    .min(min, { error: `${name} must be at least ${min}.` })
    .max(max, { error: `${name} must be at most ${max}.` })
    .default(fallback));
}

function flag(name: string, fallback: boolean) {
  return z.preprocess(blank, z.enum(['1', '0', 'true', 'false', 'yes', 'no', 'on', 'off'], {
    error: `${name} must be true or false.`,
  }).default(fallback ? 'true' : 'false')).transform((v) => ['1', 'true', 'yes', 'on'].includes(v));
}

const schema = z.object({
  MODEL_DIR: z.preprocess(blank, z.string().trim().optional()),
  DATA_DIR: z.preprocess(blank, z.string().trim().default(DEFAULT_DATA_DIR)),
  DATABASE_URL: z.preprocess(blank, z.string().trim().optional()),
  PORT: int('PORT', 0, 65535, 3000),
  LOCAL_CHAT: flag('LOCAL_CHAT', true),
  GPU_BACKEND: z.preprocess(blank, z.enum(['auto', 'webgpu', 'tensorflow', 'wasm', 'cpu'], {
    error: 'GPU_BACKEND must be one of auto, webgpu, tensorflow, wasm, cpu.',
  }).default('auto')),
  GPU_WORKERS: int('GPU_WORKERS', 1, 8, 1),
  MAX_QUEUED_PER_USER: int('MAX_QUEUED_PER_USER', 1, 1000, 5),
  JOB_MAX_ATTEMPTS: int('JOB_MAX_ATTEMPTS', 1, 10, 3),
  TEACH_STEPS: z.preprocess(blank, z.coerce.number().int().min(10, { error: 'TEACH_STEPS must be a whole number from 10 to 5000.' }).max(5000, { error: 'TEACH_STEPS must be a whole number from 10 to 5000.' }).optional()),
  CHECKPOINT_EVERY: int('CHECKPOINT_EVERY', 1, 1000, 25),
  TEACH_BATCH_SIZE: z.preprocess(blank, z.coerce.number().int().min(1, { error: 'TEACH_BATCH_SIZE must be a whole number from 1 to 16.' }).max(16, { error: 'TEACH_BATCH_SIZE must be a whole number from 1 to 16.' }).optional()),
  TEACH_GRADIENT_ACCUMULATION: z.preprocess(blank, z.coerce.number().int().min(1, { error: 'TEACH_GRADIENT_ACCUMULATION must be a whole number from 1 to 64.' }).max(64, { error: 'TEACH_GRADIENT_ACCUMULATION must be a whole number from 1 to 64.' }).optional()),
  PROGRESS_INTERVAL_MS: int('PROGRESS_INTERVAL_MS', 0, 60000, 2000),
  SHUTDOWN_GRACE_MS: int('SHUTDOWN_GRACE_MS', 0, 600000, 20000),
  LOG_LEVEL: z.preprocess(blank, z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
    error: 'LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent.',
  }).default('info')),
});

/** Reads and checks every setting; throws ConfigError listing every problem. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Config {
  const parsed = schema.safeParse(env);
  const problems: string[] = [];
  if (!parsed.success) for (const issue of parsed.error.issues) problems.push(issue.message);

  let modelDir: string | null = null;
  const rawModelDir = typeof env.MODEL_DIR === 'string' ? env.MODEL_DIR.trim() : '';
  if (rawModelDir) {
    modelDir = resolve(cwd, rawModelDir);
    if (!existsSync(modelDir) || !statSync(modelDir).isDirectory()) {
      problems.push(`MODEL_DIR "${rawModelDir}" is not a folder: point it at a diffusers-format Stable Diffusion 1.x folder, or leave it unset for the built-in demo model.`);
    } else if (!existsSync(resolve(modelDir, 'model_index.json'))) {
      problems.push(`MODEL_DIR "${rawModelDir}" has no model_index.json: it must be a diffusers-format folder (unet/, vae/, text_encoder/, tokenizer/, scheduler/).`);
    }
  }

  let database: DatabaseTarget | undefined;
  try {
    database = resolveDatabase({ DATABASE_URL: env.DATABASE_URL, DATA_DIR: env.DATA_DIR }, cwd);
  } catch (e) {
    problems.push((e as Error).message);
  }

  if (problems.length || !parsed.success || !database) throw new ConfigError(problems);
  const v = parsed.data;
  return {
    modelDir,
    dataDir: resolve(cwd, v.DATA_DIR),
    database,
    port: v.PORT,
    localChat: v.LOCAL_CHAT,
    backend: v.GPU_BACKEND,
    gpuWorkers: v.GPU_WORKERS,
    maxQueuedPerUser: v.MAX_QUEUED_PER_USER,
    jobMaxAttempts: v.JOB_MAX_ATTEMPTS,
    teachSteps: v.TEACH_STEPS ?? null,
    checkpointEvery: v.CHECKPOINT_EVERY,
    teachBatchSize: v.TEACH_BATCH_SIZE ?? null,
    teachGradientAccumulation: v.TEACH_GRADIENT_ACCUMULATION ?? null,
    progressIntervalMs: v.PROGRESS_INTERVAL_MS,
    shutdownGraceMs: v.SHUTDOWN_GRACE_MS,
    logLevel: v.LOG_LEVEL,
  };
}
