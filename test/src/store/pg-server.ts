// A throwaway PostgreSQL server for tests: Debian's `postgresql` package (initdb + pg_ctl), a fresh cluster
// in a temp folder on a free port, trust auth on 127.0.0.1 only. As root the server runs as the `postgres`
// user (PostgreSQL refuses root). `available()` says why not when it cannot run here.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function binDir(): string | null {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return null;
  const versions = readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a));
  return versions.length ? join(root, versions[0]!, 'bin') : null;
}

function asPostgres(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  const r = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  return r.status === 0 ? { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) } : null;
}

/** null when a server can be started here, else the reason (shown as the skip reason). */
export function pgUnavailable(): string | null {
  let why: string | null = null;
  if (!binDir()) why = 'PostgreSQL is not installed (apt-get install postgresql); .ci/run installs it in CI';
  else if (process.getuid?.() === 0 && !asPostgres()) why = 'running as root without a postgres user to run the server';
  // Skipped on a developer's machine without it; in CI a missing server is a failure, not a silent skip.
  if (why && process.env.CI === 'true') throw new Error(`PostgreSQL tests cannot run in CI: ${why}`);
  return why;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const port = (s.address() as { port: number }).port; s.close(() => resolve(port)); });
  });
}

export interface PgServer {
  /** postgresql://postgres@127.0.0.1:PORT/DB */
  url(database: string): string;
  createDatabase(name: string): Promise<string>;
  stop(): void;
}

export async function startPostgres(): Promise<PgServer> {
  const bin = binDir()!;
  const owner = asPostgres();
  const dir = mkdtempSync(join(tmpdir(), 'perfusion-pg-'));
  chmodSync(dir, 0o700);
  if (owner) chownSync(dir, owner.uid, owner.gid);
  const run = (cmd: string, args: string[]) => {
    const [file, argv] = owner ? ['runuser', ['-u', 'postgres', '--', join(bin, cmd), ...args]] : [join(bin, cmd), args];
    execFileSync(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
  };
  const data = join(dir, 'data');
  run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
  const port = await freePort();
  run('pg_ctl', ['-D', data, '-w', '-l', join(dir, 'log'), '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`, 'start']);
  const url = (database: string) => `postgresql://postgres@127.0.0.1:${port}/${database}`;
  return {
    url,
    async createDatabase(name) {
      const { default: pg } = await import('pg');
      const c = new pg.Client({ connectionString: url('postgres') });
      await c.connect();
      try { await c.query(`CREATE DATABASE "${name}"`); } finally { await c.end(); }
      return url(name);
    },
    stop() {
      try { run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']); } catch { /* already stopped */ }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
