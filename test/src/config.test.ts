import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { FIXTURE_MODEL, ROOT } from './helpers.ts';

test('defaults: demo model, SQLite under data/, port 3000', () => {
  const c = loadConfig({}, ROOT);
  assert.equal(c.modelDir, null);
  assert.equal(c.dataDir, join(ROOT, 'data'));
  assert.deepEqual(c.database, { provider: 'sqlite', url: `file:${join(ROOT, 'data/perfusion.db')}`, file: join(ROOT, 'data/perfusion.db') });
  assert.equal(c.port, 3000);
  assert.equal(c.backend, 'auto');
  assert.equal(c.maxQueuedPerUser, 5);
  assert.equal(c.teachBatchSize, null);
});

test('PostgreSQL and SQLite URLs; a model folder', () => {
  const c = loadConfig({ DATABASE_URL: 'postgresql://u:p@db:5432/bot', MODEL_DIR: FIXTURE_MODEL, PORT: '0', LOCAL_CHAT: 'no' }, ROOT);
  assert.equal(c.database.provider, 'postgresql');
  assert.equal(c.modelDir, FIXTURE_MODEL);
  assert.equal(c.port, 0);
  assert.equal(c.localChat, false);
  assert.equal(loadConfig({ DATABASE_URL: 'file:./x/y.db' }, '/srv').database.file, '/srv/x/y.db');
});

test('every bad variable is reported at once, each with what to do', () => {
  try {
    loadConfig({ PORT: 'eighty', GPU_BACKEND: 'cuda', DATABASE_URL: 'mysql://x', MODEL_DIR: '/nope/nothing', MAX_QUEUED_PER_USER: '0', LOG_LEVEL: 'loud', LOCAL_CHAT: 'maybe' }, ROOT);
    assert.fail('should throw');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    const all = err.problems.join('\n');
    assert.match(all, /PORT must be a whole number from 0 to 65535/);
    assert.match(all, /GPU_BACKEND must be one of auto, webgpu, tensorflow, wasm, cpu/);
    assert.match(all, /DATABASE_URL must be a PostgreSQL URL .* or a SQLite file/);
    assert.match(all, /MODEL_DIR "\/nope\/nothing" is not a folder/);
    assert.match(all, /MAX_QUEUED_PER_USER must be at least 1/);
    assert.match(all, /LOG_LEVEL must be one of/);
    assert.match(all, /LOCAL_CHAT must be true or false/);
    assert.equal(err.problems.length, 7);
  }
  assert.throws(() => loadConfig({ MODEL_DIR: ROOT }, ROOT), /has no model_index\.json: it must be a diffusers-format folder/);
});
