// The store on both providers: the provider schemas are generated from prisma/models.prisma, the committed
// migrations match the models (checked with the real `prisma migrate diff`, offline), and the bot runs on
// SQLite and on a real PostgreSQL server (skipped, with the reason, where none can be started).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startApp } from '../../../src/app.ts';
import { imagine } from '../../../commands/imagine.ts';
import { teach } from '../../../commands/teach.ts';
import { LOCAL_SCOPE } from '../../../src/chat/local/server.ts';
import { resolveDatabase } from '../../../src/store/database-url.ts';
import { isUpToDate, openMigratedDatabase } from '../../../src/store/migrate.ts';
import { openDatabase } from '../../../src/store/prisma.ts';
import { FakeExecutor, pngImage, ROOT, testConfig, testDataDir, waitFor } from '../helpers.ts';
import { pgUnavailable, startPostgres, type PgServer } from './pg-server.ts';

function prisma(args: string[], databaseUrl: string) {
  return spawnSync(process.execPath, [join(ROOT, 'node_modules/prisma/build/index.js'), ...args], {
    cwd: ROOT, encoding: 'utf8', env: { ...process.env, DATABASE_URL: databaseUrl, CHECKPOINT_DISABLE: '1', PRISMA_HIDE_UPDATE_MESSAGE: '1' },
  });
}

const who = { user: { platform: 'local' as const, externalId: 'ann', displayName: 'Ann', isAdmin: false }, scope: LOCAL_SCOPE, route: { platform: 'local' as const, data: { note: 'kept' } } };

test('the provider schemas are generated from prisma/models.prisma', () => {
  const r = spawnSync(process.execPath, [join(ROOT, 'prisma/build.mjs'), '--check'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  for (const provider of ['sqlite', 'postgresql']) {
    const schema = readFileSync(join(ROOT, 'prisma', provider, 'schema.prisma'), 'utf8');
    assert.match(schema, new RegExp(`provider = "${provider}"`));
    assert.match(schema, /engineType\s+= "client"/);
    assert.ok(schema.includes(readFileSync(join(ROOT, 'prisma/models.prisma'), 'utf8')));
  }
});

describe('SQLite', () => {
  test('the committed migrations produce exactly the models, and a drift is detected', () => {
    const dir = mkdtempSync(join(tmpdir(), 'perfusion-diff-'));
    try {
      const url = `file:${join(dir, 'x.db')}`;
      const same = prisma(['migrate', 'diff', '--from-migrations', 'prisma/sqlite/migrations', '--to-schema-datamodel', 'prisma/sqlite/schema.prisma', '--exit-code'], url);
      assert.equal(same.status, 0, same.stdout + same.stderr);
      const changed = join(dir, 'changed.prisma');
      writeFileSync(changed, `${readFileSync(join(ROOT, 'prisma/sqlite/schema.prisma'), 'utf8')}\nmodel Extra {\n  id Int @id\n}\n`);
      const drift = prisma(['migrate', 'diff', '--from-migrations', 'prisma/sqlite/migrations', '--to-schema-datamodel', changed, '--exit-code'], url);
      assert.equal(drift.status, 2, drift.stdout + drift.stderr);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a fresh database is migrated on start; a migrated one is left as it is', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'perfusion-fresh-'));
    try {
      const target = resolveDatabase({ DATABASE_URL: `file:${join(dir, 'fresh.db')}` });
      const first = await openMigratedDatabase(target, openDatabase);
      assert.equal(first.migrated, true);
      assert.equal(await isUpToDate(first.db, 'sqlite'), true);
      await first.db.$disconnect();
      const second = await openMigratedDatabase(target, openDatabase);
      assert.equal(second.migrated, false);
      await second.db.$disconnect();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('PostgreSQL', { skip: pgUnavailable() ?? false }, () => {
  let pg: PgServer;
  before(async () => { pg = await startPostgres(); });
  after(() => pg?.stop());

  test('the committed migrations produce exactly the models', async () => {
    const url = await pg.createDatabase('diffcheck');
    const r = prisma(['migrate', 'diff', '--from-migrations', 'prisma/postgresql/migrations', '--to-schema-datamodel', 'prisma/postgresql/schema.prisma', '--exit-code'], url);
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  test('the bot migrates a PostgreSQL database on start and stores everything there', async () => {
    const url = await pg.createDatabase('bot');
    const dir = await testDataDir({ DATABASE_URL: url, LOCAL_CHAT: 'false' });
    const app = await startApp(testConfig(dir.env), { executor: new FakeExecutor(1, 0) });
    try {
      assert.equal(app.config.database.provider, 'postgresql');
      const t = await teach(app.services, who, { name: 'hugsy', category: 'teddy', images: [{ filename: 'a.png', bytes: await pngImage(160, 160) }], steps: 20 });
      await waitFor(async () => ((await app.services.db.concept.findUniqueOrThrow({ where: { id: t.concept.id } })).status === 'ready' ? true : undefined), 20_000, 'ready');
      const im = await imagine(app.services, who, { prompt: 'a photo of <hugsy:0.6>', steps: 2, seed: 5 });
      await waitFor(async () => ((await app.services.db.job.findUniqueOrThrow({ where: { id: im.job.id } })).state === 'succeeded' ? true : undefined), 20_000, 'image');
      const g = await app.services.db.generation.findFirstOrThrow({ where: { jobId: im.job.id } });
      assert.equal(g.seed, 5);
      assert.ok(g.png.byteLength > 100);
      assert.deepEqual(JSON.parse(g.concepts).map((c: { name: string; strength: number }) => [c.name, c.strength]), [['hugsy', 0.6]]);
      const img = await app.services.db.conceptImage.findFirstOrThrow({ where: { conceptId: t.concept.id } });
      assert.equal(img.png[0], 0x89, 'bytes round-trip as PNG');
      assert.deepEqual(JSON.parse((await app.services.db.job.findUniqueOrThrow({ where: { id: im.job.id } })).route).data, { note: 'kept' });
    } finally {
      await app.stop();
      dir.cleanup();
    }
    // started again: nothing to migrate
    const again = await openMigratedDatabase(resolveDatabase({ DATABASE_URL: url }), openDatabase);
    assert.equal(again.migrated, false);
    assert.equal(await again.db.generation.count(), 1);
    await again.db.$disconnect();
  });
});
