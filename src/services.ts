// What commands and front ends work with: the store, the scheduler, the engine, the settings; and the small
// store helpers they share (who is asking, where, a job as people see it).
import type { Config } from './config.ts';
import type { ChatScope, ChatUser, DeliveryRoute, JobStatus, OutgoingMessage } from './chat/types.ts';
import type { GenerationSummary } from './chat/messages.ts';
import { LimitError, UnavailableError, UserError } from './errors.ts';
import type { JobExecutor, WorkerModel } from './jobs/executor.ts';
import { parseParams } from './jobs/job-params.ts';
import type { Scheduler } from './jobs/scheduler.ts';
import type { Logger } from './log.ts';
import type { Db, Generation, Job, Scope, User } from './store/prisma.ts';

export interface Services {
  db: Db;
  scheduler: Scheduler;
  executor: JobExecutor;
  config: Config;
  log: Logger;
}

/** Who asks, where, and where the updates of the jobs they start go. */
export interface Requester {
  user: ChatUser;
  scope: ChatScope;
  route: DeliveryRoute;
}

/** What a job-starting command returns: the row, how people see it now, and the reply. */
export interface Submitted {
  job: Job;
  status: JobStatus;
  message: OutgoingMessage;
}

// Users and scopes are read on every command; rows never go away, so each process remembers them and
// writes only when a display name changes.
const knownUsers = new WeakMap<Db, Map<string, User>>();
const knownScopes = new WeakMap<Db, Map<string, Scope>>();

function cacheOf<T>(m: WeakMap<Db, Map<string, T>>, db: Db): Map<string, T> {
  let c = m.get(db);
  if (!c) m.set(db, c = new Map());
  return c;
}

export async function ensureUser(db: Db, u: ChatUser): Promise<User> {
  const cache = cacheOf(knownUsers, db);
  const key = `${u.platform}\u0000${u.externalId}`;
  const hit = cache.get(key);
  if (hit && hit.displayName === u.displayName) return hit;
  const row = await db.user.upsert({
    where: { platform_externalId: { platform: u.platform, externalId: u.externalId } },
    create: { platform: u.platform, externalId: u.externalId, displayName: u.displayName },
    update: { displayName: u.displayName },
  });
  cache.set(key, row);
  return row;
}

export async function ensureScope(db: Db, s: ChatScope): Promise<Scope> {
  const cache = cacheOf(knownScopes, db);
  const key = `${s.platform}\u0000${s.kind}\u0000${s.externalId}`;
  const hit = cache.get(key);
  if (hit && (!s.name || hit.name === s.name)) return hit;
  const row = await db.scope.upsert({
    where: { platform_kind_externalId: { platform: s.platform, kind: s.kind, externalId: s.externalId } },
    create: { platform: s.platform, kind: s.kind, externalId: s.externalId, name: s.name ?? null },
    update: s.name ? { name: s.name } : {},
  });
  cache.set(key, row);
  return row;
}

/** The loaded model; a person-readable error when the engine could not start. */
export async function readyModel(s: Services): Promise<WorkerModel> {
  try {
    return await s.executor.ready();
  } catch (err) {
    throw new UnavailableError(`The image model could not be loaded, so nothing can be drawn or taught: ${(err as Error).message}`);
  }
}

/** Refuses new work when shutting down, or when the person already has their limit of jobs queued or running. */
export async function checkCanSubmit(s: Services, userId: number): Promise<void> {
  if (!s.scheduler.isAccepting) throw new UnavailableError('The bot is restarting and takes no new work for a moment; try again shortly.');
  const active = s.scheduler.activeCount(userId);
  if (active >= s.config.maxQueuedPerUser) {
    throw new LimitError(`You already have ${active} jobs waiting or running; the limit is ${s.config.maxQueuedPerUser}. Wait for one to finish, or cancel one with /cancel.`);
  }
}

export function jobStatus(s: Services, job: Job & { generation?: { id: number } | null }): JobStatus {
  const live = job.state === 'queued' || job.state === 'running' ? s.scheduler.status(job.id) : null;
  const params = parseParams(job.kind, job.params);
  const progress = live?.progress
    ?? (job.state === 'running' && job.progressStep !== null && job.progressTotal !== null
      ? { step: job.progressStep, total: job.progressTotal, ...(job.progressLoss === null ? {} : { loss: job.progressLoss }) }
      : null);
  return {
    id: job.id,
    kind: params.kind,
    state: job.state as JobStatus['state'],
    position: live?.position ?? null,
    etaMs: live?.etaMs === undefined || live.etaMs === null ? null : Math.round(live.etaMs),
    progress,
    error: job.error,
    attempts: job.attempts,
    createdAt: job.createdAt.toISOString(),
    startedAt: job.startedAt?.toISOString() ?? null,
    finishedAt: job.finishedAt?.toISOString() ?? null,
    concept: params.kind === 'teach' ? params.params.name : null,
    generationId: job.generation?.id ?? null,
  };
}

export async function loadJob(s: Services, id: number) {
  return s.db.job.findUnique({ where: { id }, include: { generation: { select: { id: true } }, user: true, scope: true } });
}

export function generationSummary(g: Generation): GenerationSummary {
  const concepts = (JSON.parse(g.concepts) as { name: string; strength: number | null }[]).map((c) => ({ name: c.name, strength: c.strength }));
  return {
    id: g.id, prompt: g.prompt, negativePrompt: g.negativePrompt, seed: g.seed, steps: g.steps, guidance: g.guidance,
    scheduler: g.scheduler, width: g.width, height: g.height, concepts, parentId: g.parentId,
    variationAmount: g.variationAmount, modelName: g.modelName, durationMs: g.durationMs, notes: g.notes,
  };
}

/** A generation visible from `scope` (generations are shown only where they were made). */
export async function findGeneration(s: Services, scope: ChatScope, id: number): Promise<Generation> {
  const g = await s.db.generation.findUnique({ where: { id }, include: { scope: true } });
  if (!g || g.scope.platform !== scope.platform || g.scope.kind !== scope.kind || g.scope.externalId !== scope.externalId) {
    throw new UserError(`There is no image #${id} here.`, 404);
  }
  return g;
}

export function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 31);
}
