// Driver adapters for the Prisma CLI's WebAssembly schema engine (prisma.config.ts `engine: 'js'`), with two
// workarounds for Prisma 6.19 bugs that break `prisma migrate` through adapters. The bot's own client uses
// the plain adapters (src/store/prisma.ts); these are for migrations only.
//
// 1. PostgreSQL, prisma/orm#27403: @prisma/adapter-pg refuses result columns of the catalog types `name`
//    (OID 19) and `"char"` (OID 18), which the schema engine's own catalog queries return, so every migrate
//    command fails with "Column type 'name' could not be deserialized". Both arrive as text in pg's text
//    protocol, so reporting them as `text` (OID 25) is exact. Its shadow database (for `migrate diff
//    --from-migrations`) is also created here, on the same server, and dropped afterwards.
// 2. SQLite: the schema engine applies a whole migration script to the shadow database with executeRaw,
//    which better-sqlite3 prepares as a single statement ("contains more than one statement"); a script
//    without parameters is run with executeScript instead.
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { PrismaBetterSQLite3 } from '@prisma/adapter-better-sqlite3';
import { PrismaPg } from '@prisma/adapter-pg';
import type { SqlDriverAdapter, SqlMigrationAwareDriverAdapterFactory } from '@prisma/driver-adapter-utils';
import type { DatabaseTarget } from './database-url.ts';

const TEXT_OID = 25;
const CATALOG_TEXT_OIDS = new Set([18, 19]);
const patched = Symbol('catalog-text-patched');

function catalogColumnsAsText<R>(result: R): R {
  const fields = (result as { fields?: { dataTypeID: number }[] } | null)?.fields;
  if (fields) for (const f of fields) if (CATALOG_TEXT_OIDS.has(f.dataTypeID)) f.dataTypeID = TEXT_OID;
  return result;
}

function patchQuery<T extends { query: (...args: any[]) => any }>(target: T): T {
  const t = target as T & { [patched]?: true };
  if (t[patched]) return target;
  const original = target.query.bind(target);
  t.query = ((...args: any[]) => {
    const out = original(...args);
    return out && typeof out.then === 'function' ? out.then(catalogColumnsAsText) : out;
  }) as T['query'];
  t[patched] = true;
  return target;
}

function migrationPool(connectionString: string): pg.Pool {
  const pool = patchQuery(new pg.Pool({ connectionString, max: 2, allowExitOnIdle: true }));
  const connect = pool.connect.bind(pool) as (cb?: (...a: any[]) => void) => Promise<pg.PoolClient> | void;
  // pg's own pool.query() calls connect(callback): leave that form alone (its query is already patched).
  (pool as { connect: unknown }).connect = (cb?: (...a: any[]) => void) =>
    cb ? connect(cb) : (connect() as Promise<pg.PoolClient>).then(patchQuery);
  return pool;
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

function postgresFactory(url: string): SqlMigrationAwareDriverAdapterFactory {
  const base = new PrismaPg(migrationPool(url), { disposeExternalPool: true });
  return {
    provider: base.provider,
    adapterName: base.adapterName,
    connect: () => base.connect(),
    async connectToShadowDb(): Promise<SqlDriverAdapter> {
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      const database = `prisma_migrate_shadow_${randomUUID().replaceAll('-', '')}`;
      await admin.query(`CREATE DATABASE "${database}"`);
      const shadow = await new PrismaPg(migrationPool(withDatabase(url, database)), { disposeExternalPool: true }).connect();
      const dispose = shadow.dispose.bind(shadow);
      shadow.dispose = async () => {
        await dispose();
        try { await admin.query(`DROP DATABASE IF EXISTS "${database}"`); } finally { await admin.end(); }
      };
      return shadow;
    },
  };
}

function sqliteFactory(file: string): SqlMigrationAwareDriverAdapterFactory {
  const base = new PrismaBetterSQLite3({ url: file });
  return {
    provider: base.provider,
    adapterName: base.adapterName,
    connect: () => base.connect(),
    async connectToShadowDb(): Promise<SqlDriverAdapter> {
      const shadow = await base.connectToShadowDb();
      const executeRaw = shadow.executeRaw.bind(shadow);
      shadow.executeRaw = async (query) => {
        if (query.args.length === 0) { await shadow.executeScript(query.sql); return 0; }
        return executeRaw(query);
      };
      return shadow;
    },
  };
}

export function migrationAdapterFactory(target: DatabaseTarget): SqlMigrationAwareDriverAdapterFactory {
  return target.provider === 'postgresql' ? postgresFactory(target.url) : sqliteFactory(target.file!);
}
