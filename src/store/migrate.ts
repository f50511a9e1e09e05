// Applies the committed migrations at start. When the database already records every migration folder
// (same name, same checksum, finished), nothing runs; otherwise `prisma migrate deploy` runs through the
// project's prisma.config.ts (WebAssembly schema engine, offline), exactly as a person would run it.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DatabaseTarget } from './database-url.ts';
import type { Db } from './prisma.ts';

const ROOT = new URL('../../', import.meta.url).pathname;

export class MigrationError extends Error {
  constructor(message: string) { super(message); this.name = 'MigrationError'; }
}

export interface LocalMigration { name: string; checksum: string }

export function localMigrations(provider: DatabaseTarget['provider']): LocalMigration[] {
  const dir = join(ROOT, 'prisma', provider, 'migrations');
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(dir, d.name, 'migration.sql')))
    .map((d) => ({
      name: d.name,
      checksum: createHash('sha256').update(readFileSync(join(dir, d.name, 'migration.sql'))).digest('hex'),
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** The migrations the database records as applied (empty when it has no migrations table yet). */
async function appliedMigrations(db: Db): Promise<Map<string, string>> {
  try {
    const rows = await db.$queryRawUnsafe<{ migration_name: string; checksum: string }[]>(
      'SELECT migration_name, checksum FROM "_prisma_migrations" WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL');
    return new Map(rows.map((r) => [r.migration_name, r.checksum]));
  } catch {
    return new Map();
  }
}

export async function isUpToDate(db: Db, provider: DatabaseTarget['provider']): Promise<boolean> {
  const applied = await appliedMigrations(db);
  return localMigrations(provider).every((m) => applied.get(m.name) === m.checksum);
}

/** Runs `prisma migrate deploy` for `target`; resolves with its output, rejects with its last lines. */
export function deployMigrations(target: DatabaseTarget): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'node_modules/prisma/build/index.js'), 'migrate', 'deploy'], {
      cwd: ROOT,
      env: { ...process.env, DATABASE_URL: target.url, CHECKPOINT_DISABLE: '1', PRISMA_HIDE_UPDATE_MESSAGE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(out);
      else reject(new MigrationError(`Applying the database migrations failed (prisma migrate deploy, exit ${code}):\n${out.trim().split('\n').slice(-40).join('\n')}`));
    });
  });
}

/**
 * Opens the database and brings it up to date. When migrations are pending, the connection is closed while
 * `prisma migrate deploy` runs (SQLite allows one writer), then opened again.
 */
export async function openMigratedDatabase(target: DatabaseTarget, open: (t: DatabaseTarget) => Promise<Db>): Promise<{ db: Db; migrated: boolean }> {
  let db = await open(target);
  if (await isUpToDate(db, target.provider)) return { db, migrated: false };
  await db.$disconnect();
  await deployMigrations(target);
  db = await open(target);
  if (!(await isUpToDate(db, target.provider))) {
    await db.$disconnect();
    throw new MigrationError('The database still misses migrations after prisma migrate deploy; see its output above.');
  }
  return { db, migrated: true };
}
