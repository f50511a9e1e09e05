// Prisma CLI settings. The schema engine runs as WebAssembly through a driver adapter (`engine: 'js'`), so
// `prisma migrate deploy` / `migrate diff` work offline; the provider follows DATABASE_URL exactly as the bot
// resolves it (src/store/database-url.ts): a SQLite file by default, PostgreSQL for a postgres URL.
import { defineConfig } from 'prisma/config';
import { resolveDatabase } from './src/store/database-url.ts';
import { migrationAdapterFactory } from './src/store/migrate-adapters.ts';

const target = resolveDatabase(process.env);
// The schemas read `url = env("DATABASE_URL")` (Prisma 6 requires a url); the adapter below is what connects.
process.env.DATABASE_URL = target.url;

export default defineConfig({
  experimental: { adapter: true },
  schema: `prisma/${target.provider}/schema.prisma`,
  migrations: { path: `prisma/${target.provider}/migrations` },
  engine: 'js',
  adapter: async () => migrationAdapterFactory(target),
});
