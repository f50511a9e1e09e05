// The composition root: store → engine workers → scheduler → BotCore → local web chat. Used by src/main.ts
// (`npm start`) and by the end-to-end tests, which start and stop whole bots in-process or as child processes.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { commands } from '../commands/index.ts';
import { Bot } from './bot.ts';
import { startLocalChat, type LocalChat } from './chat/local/server.ts';
import type { BotCore } from './chat/types.ts';
import type { Config } from './config.ts';
import type { JobExecutor } from './jobs/executor.ts';
import { JobKinds } from './jobs/job-kinds.ts';
import { Scheduler } from './jobs/scheduler.ts';
import { WorkerPool } from './jobs/worker-pool.ts';
import { createLogger, type Logger } from './log.ts';
import { openMigratedDatabase } from './store/migrate.ts';
import { openDatabase } from './store/prisma.ts';
import type { Services } from './services.ts';

export interface App {
  config: Config;
  services: Services;
  bot: Bot;
  chat: LocalChat | null;
  /** stop taking work, let running work finish or checkpoint (within graceMs), close everything */
  stop(graceMs?: number): Promise<void>;
}

/**
 * A chat front end (the Discord or Slack adapter): started after the core is up and before the queue is
 * rebuilt, so that its UpdateSink already receives the updates of jobs re-queued at start; stopped first.
 */
export interface FrontEnd {
  name: string;
  start(bot: BotCore, log: Logger): Promise<{ stop(): Promise<void> }>;
}

export interface StartOptions {
  log?: Logger;
  frontEnds?: FrontEnd[];
  /** a different executor (tests of the scheduler's logic); default: GPU worker threads */
  executor?: JobExecutor;
}

export async function startApp(config: Config, opts: StartOptions = {}): Promise<App> {
  const log = opts.log ?? createLogger(config.logLevel);
  mkdirSync(config.dataDir, { recursive: true });
  const { db, migrated } = await openMigratedDatabase(config.database, openDatabase);
  if (migrated) log.info({ provider: config.database.provider }, 'database migrations applied');
  const executor = opts.executor ?? new WorkerPool({
    init: { modelDir: config.modelDir, demoModelDir: join(config.dataDir, 'demo-model'), backend: config.backend, cacheDir: join(config.dataDir, 'cache') },
    workers: config.gpuWorkers,
    log,
  });
  const scheduler = new Scheduler(db, executor, new JobKinds(db, {
    checkpointEvery: config.checkpointEvery, teachBatchSize: config.teachBatchSize, teachGradientAccumulation: config.teachGradientAccumulation,
  }), {
    maxAttempts: config.jobMaxAttempts, log,
  });
  const services: Services = { db, scheduler, executor, config, log };
  const bot = new Bot(services, commands);
  let chat: Awaited<ReturnType<typeof startLocalChat>> | null = null;
  const running: { name: string; stop(): Promise<void> }[] = [];
  try {
    chat = config.localChat ? await startLocalChat(services, bot, config.port) : null;
    for (const fe of opts.frontEnds ?? []) {
      running.push({ name: fe.name, ...(await fe.start(bot, log.child({ frontEnd: fe.name }))) });
      log.info({ frontEnd: fe.name }, 'chat front end started');
    }
    await scheduler.start();
    await bot.redeliver();
  } catch (err) {
    // a front end that cannot start (bad token, busy port) must not leave the rest running
    for (const fe of running.reverse()) await fe.stop().catch(() => {});
    await chat?.close().catch(() => {});
    await scheduler.shutdown(0).catch(() => {});
    await executor.close().catch(() => {});
    await db.$disconnect().catch(() => {});
    throw err;
  }
  bot.engineReady().then(
    () => log.info({ model: bot.model }, 'model loaded'),
    (err) => log.error({ reason: (err as Error).message }, 'the model could not be loaded; commands will say so'),
  );

  let stopped: Promise<void> | null = null;
  return {
    config, services, bot, chat,
    stop(graceMs = config.shutdownGraceMs) {
      stopped ??= (async () => {
        for (const fe of running.reverse()) {
          await fe.stop().catch((err) => log.warn({ err, frontEnd: fe.name }, 'front end did not stop cleanly'));
        }
        await chat?.close();
        await scheduler.shutdown(graceMs);
        await executor.close();
        await db.$disconnect();
      })();
      return stopped;
    },
  };
}
