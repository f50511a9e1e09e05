// startApp as a whole: a front end that cannot start (a bad token, a busy port) stops the start and leaves
// nothing running behind it — the local chat's port is free again and the database can be reopened.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { startApp, type FrontEnd } from '../../src/app.ts';
import { FakeExecutor, testConfig, testDataDir } from './helpers.ts';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    }).on('error', reject);
  });
}

test('a front end that fails to start stops the whole start and releases what had started', async () => {
  const dir = await testDataDir({ LOCAL_CHAT: 'true', PORT: String(await freePort()) });
  const config = testConfig(dir.env);
  let stoppedEarlier = 0;
  const healthy: FrontEnd = { name: 'healthy', start: async () => ({ stop: async () => { stoppedEarlier++; } }) };
  const broken: FrontEnd = { name: 'broken', start: async () => { throw new Error('the chat platform refused the token'); } };
  const executor = new FakeExecutor(1, 0);
  try {
    await assert.rejects(startApp(config, { executor, frontEnds: [healthy, broken] }), /refused the token/);
    assert.equal(stoppedEarlier, 1, 'the front end that had started was stopped');
    // the same port and database work for the next start
    const app = await startApp(config, { executor: new FakeExecutor(1, 0) });
    try {
      const res = await fetch(`http://127.0.0.1:${config.port}/api/status`);
      assert.equal(res.status, 200);
    } finally {
      await app.stop();
    }
  } finally {
    dir.cleanup();
  }
});
