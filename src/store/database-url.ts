// Which database to use, from DATABASE_URL and DATA_DIR: shared by the bot (src/config.ts) and the Prisma CLI
// (prisma.config.ts), so both always open the same database.
import { isAbsolute, resolve } from 'node:path';

export type DatabaseProvider = 'sqlite' | 'postgresql';

export interface DatabaseTarget {
  provider: DatabaseProvider;
  /** postgres: the connection string; sqlite: `file:<absolute path>` */
  url: string;
  /** sqlite only: the database file */
  file?: string;
}

export const DEFAULT_DATA_DIR = 'data';

/**
 * No DATABASE_URL: a SQLite file `perfusion.db` in DATA_DIR. `file:relative/path.db` is relative to the
 * working directory. `postgres://` or `postgresql://`: PostgreSQL. Anything else is an error (thrown as a
 * plain Error whose message says what is accepted).
 */
export function resolveDatabase(env: { DATABASE_URL?: string; DATA_DIR?: string }, cwd = process.cwd()): DatabaseTarget {
  const raw = env.DATABASE_URL?.trim();
  if (!raw) {
    const file = resolve(cwd, env.DATA_DIR?.trim() || DEFAULT_DATA_DIR, 'perfusion.db');
    return { provider: 'sqlite', url: `file:${file}`, file };
  }
  if (/^postgres(ql)?:\/\//i.test(raw)) return { provider: 'postgresql', url: raw };
  if (raw.startsWith('file:')) {
    const path = raw.slice('file:'.length).replace(/^\/\/(?=\/)/, '');
    if (!path) throw new Error('DATABASE_URL "file:" needs a path, e.g. file:./data/perfusion.db');
    const file = isAbsolute(path) ? path : resolve(cwd, path);
    return { provider: 'sqlite', url: `file:${file}`, file };
  }
  throw new Error('DATABASE_URL must be a PostgreSQL URL (postgresql://user:password@host:5432/db) or a SQLite file (file:./data/perfusion.db)');
}
