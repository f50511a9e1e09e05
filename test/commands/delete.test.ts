// Deleting an image through BotCore, as a front end's Delete button does it (`delete:<generationId>`): the
// requester or an admin of the scope may, others are refused in words; it works after a restart (the id is
// all the button carries); variations of a deleted image keep working with their parent link cleared.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startApp, type App } from '../../src/app.ts';
import type { ChatScope, ChatUser, JobUpdate, OutgoingMessage } from '../../src/chat/types.ts';
import { FakeExecutor, testConfig, testDataDir, waitFor } from '../src/helpers.ts';

const guild: ChatScope = { platform: 'discord', kind: 'community', externalId: '111111111111111111', name: 'Test guild' };
const otherGuild: ChatScope = { platform: 'discord', kind: 'community', externalId: '999999999999999999' };
const ann: ChatUser = { platform: 'discord', externalId: '1001', displayName: 'Ann', isAdmin: false };
const bob: ChatUser = { platform: 'discord', externalId: '1002', displayName: 'Bob', isAdmin: false };
const mod: ChatUser = { platform: 'discord', externalId: '1003', displayName: 'Mod', isAdmin: true };

async function press(app: App, id: string, user: ChatUser, scope = guild): Promise<OutgoingMessage> {
  const replies: OutgoingMessage[] = [];
  await app.bot.press({ id, user, scope, route: { platform: 'discord', data: {} }, reply: async (m) => { replies.push(m); } });
  assert.equal(replies.length, 1, 'a press is answered exactly once');
  return replies[0]!;
}

/** Imagines as `user` and resolves with the finished generation's id (taken from its result's Delete button). */
async function imageBy(app: App, updates: JobUpdate[], user: ChatUser, prompt: string): Promise<number> {
  const replies: OutgoingMessage[] = [];
  await app.bot.dispatch({
    command: 'imagine', user, scope: guild, options: { prompt }, route: { platform: 'discord', data: {} },
    reply: async (m) => { replies.push(m); },
  });
  const jobId = replies[0]!.jobId!;
  const done = await waitFor(() => updates.find((u) => u.job.id === jobId && u.final), 10_000, `job ${jobId}`);
  assert.equal(done.event, 'succeeded');
  const del = done.message.buttons!.find((b) => b.label === 'Delete');
  assert.equal(del?.style, 'danger');
  assert.equal(del!.id, `delete:${done.job.generationId}`);
  return done.job.generationId!;
}

describe('deleting an image', () => {
  test('the requester and an admin may, others are refused privately; a variation survives its deleted parent', async () => {
    const dir = await testDataDir({ LOCAL_CHAT: 'false' });
    const app = await startApp(testConfig(dir.env), { executor: new FakeExecutor(1, 0) });
    const updates: JobUpdate[] = [];
    app.bot.addSink({ platform: 'discord', deliver: async (u) => { updates.push(u); } });
    const db = app.services.db;
    try {
      const anns = await imageBy(app, updates, ann, 'a red boat');
      const refused = await press(app, `delete:${anns}`, bob);
      assert.equal(refused.text, `Image #${anns} was asked for by Ann; only they or an admin can delete it.`);
      assert.equal(refused.private, true);
      assert.equal(refused.deletedGeneration, undefined);
      assert.ok(await db.generation.findUnique({ where: { id: anns } }), 'still there');
      assert.match((await press(app, `delete:${anns}`, ann, otherGuild)).text, new RegExp(`There is no image #${anns} here`), 'not from another server');

      // Bob varies Ann's image; then Ann deletes hers: the variation stays, its parent link is cleared
      const vary = await press(app, `vary:${anns}`, bob);
      const varyDone = await waitFor(() => updates.find((u) => u.job.id === vary.jobId && u.final), 10_000, 'the variation');
      const variation = varyDone.job.generationId!;
      assert.equal((await db.generation.findUniqueOrThrow({ where: { id: variation } })).parentId, anns);
      const deleted = await press(app, `delete:${anns}`, ann);
      assert.equal(deleted.text, `🗑️ Image #${anns} is deleted.`);
      assert.equal(deleted.private, true);
      assert.equal(deleted.deletedGeneration, anns);
      assert.equal(await db.generation.findUnique({ where: { id: anns } }), null);
      const kept = await db.generation.findUniqueOrThrow({ where: { id: variation } });
      assert.equal(kept.parentId, null);
      assert.ok(kept.png.byteLength > 0);
      assert.match((await press(app, `info:${variation}`, bob)).text, new RegExp(`Image #${variation}\\nprompt: a red boat`));
      const reroll = await press(app, `reroll:${variation}`, bob);
      assert.ok(reroll.jobId, 're-rolling the variation still works');
      assert.match((await press(app, `delete:${anns}`, ann)).text, new RegExp(`There is no image #${anns} here`), 'a second click');

      // an admin may delete anyone's image; the slash command form takes the same id
      const replies: OutgoingMessage[] = [];
      await app.bot.dispatch({
        command: 'delete', user: mod, scope: guild, options: { generation: variation }, route: { platform: 'discord', data: {} },
        reply: async (m) => { replies.push(m); },
      });
      assert.equal(replies[0]!.text, `🗑️ Image #${variation} is deleted.`);
      assert.equal(await db.generation.findUnique({ where: { id: variation } }), null);
      await app.services.scheduler.onIdle();
    } finally { await app.stop(); dir.cleanup(); }
  });

  test('a Delete button still works after a restart: only the id travels', async () => {
    const dir = await testDataDir({ LOCAL_CHAT: 'false' });
    const first = await startApp(testConfig(dir.env), { executor: new FakeExecutor(1, 0) });
    const updates: JobUpdate[] = [];
    first.bot.addSink({ platform: 'discord', deliver: async (u) => { updates.push(u); } });
    let id: number;
    try {
      id = await imageBy(first, updates, ann, 'a lighthouse');
    } finally { await first.stop(); }
    const again = await startApp(testConfig(dir.env), { executor: new FakeExecutor(1, 0) });
    try {
      assert.match((await press(again, `delete:${id!}`, bob)).text, /was asked for by Ann; only they or an admin can delete it/);
      assert.equal((await press(again, `delete:${id!}`, ann)).deletedGeneration, id!);
      assert.equal(await again.services.db.generation.count(), 0);
      assert.equal((await again.services.db.job.findFirstOrThrow()).state, 'succeeded', 'the job that made it stays in the history');
    } finally { await again.stop(); dir.cleanup(); }
  });
});
