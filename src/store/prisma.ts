// The Prisma client for the configured database: SQLite through better-sqlite3 by default, PostgreSQL
// through pg. Both clients are generated from the same models (prisma/build.mjs), so they share one type;
// the SQLite client's type is used for both.
import { PrismaBetterSQLite3 } from '@prisma/adapter-better-sqlite3';
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient as SqliteClient } from '../../generated/prisma/sqlite/client.ts';
import { PrismaClient as PostgresClient } from '../../generated/prisma/postgresql/client.ts';
import type { DatabaseTarget } from './database-url.ts';

export type Db = SqliteClient;
export type { Prisma } from '../../generated/prisma/sqlite/client.ts';
export type { User, Scope, Concept, ConceptImage, Job, Generation } from '../../generated/prisma/sqlite/client.ts';

/** A client or the client inside an interactive transaction. */
export type Tx = Omit<Db, '$connect' | '$disconnect' | '$on' | '$transaction' | '$extends'>;

export async function openDatabase(target: DatabaseTarget): Promise<Db> {
  if (target.provider === 'postgresql') {
    const client = new PostgresClient({ adapter: new PrismaPg({ connectionString: target.url }) });
    await client.$connect();
    return client as unknown as Db;
  }
  const client = new SqliteClient({ adapter: new PrismaBetterSQLite3({ url: target.file!, timeout: 10_000 }) });
  // WAL: readers never wait for the writer; NORMAL sync is durable across process crashes (SIGKILL).
  await client.$queryRawUnsafe('PRAGMA journal_mode = WAL');
  await client.$executeRawUnsafe('PRAGMA synchronous = NORMAL');
  await client.$executeRawUnsafe('PRAGMA foreign_keys = ON');
  return client;
}

/** Prisma's Bytes fields take Uint8Array<ArrayBuffer>; bytes from workers and sharp are plain ArrayBuffer-backed. */
export function bytes(u: Uint8Array): Uint8Array<ArrayBuffer> {
  return u.buffer instanceof ArrayBuffer ? (u as Uint8Array<ArrayBuffer>) : new Uint8Array(u);
}
