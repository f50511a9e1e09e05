import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pickNext, predictOrder, type Waiting } from '../../../src/jobs/policy.ts';
import { finishTimes, StepTimes } from '../../../src/jobs/eta.ts';

const opts = { teachAgingMs: 60_000 };
let seq = 0;
const job = (id: number, userId: number, kind: 'teach' | 'imagine' = 'imagine', queuedAt = 0): Waiting => ({ id, userId, kind, queuedAt, seq: seq++ });

test('one person\'s ten jobs do not starve another person\'s one', () => {
  const waiting = [...Array.from({ length: 10 }, (_, i) => job(i + 1, 1)), job(11, 2)];
  const order = predictOrder(waiting, new Map(), 0, 0, opts).map((w) => w.id);
  assert.equal(order[0], 1);
  assert.equal(order[1], 11, 'the second person goes second');
  assert.deepEqual(order.slice(2), [2, 3, 4, 5, 6, 7, 8, 9, 10]);
});

test('people take turns: the one served least recently goes first', () => {
  const waiting = [job(1, 1), job(2, 1), job(3, 2), job(4, 2), job(5, 3)];
  assert.deepEqual(predictOrder(waiting, new Map(), 0, 0, opts).map((w) => w.id), [1, 3, 5, 2, 4]);
  // person 1 was just served: the others go first
  assert.equal(pickNext(waiting, new Map([[1, 5]]), 0, opts)!.id, 3);
});

test('short jobs go before training, until the training job has waited long enough', () => {
  const teach = job(1, 1, 'teach', 0);
  const img = job(2, 2, 'imagine', 10);
  assert.equal(pickNext([teach, img], new Map(), 1000, opts)!.id, 2);
  assert.equal(pickNext([teach, img], new Map(), 60_000, opts)!.id, 1, 'aged training competes as short, and is older');
  // within one person too
  const own = [job(3, 5, 'teach'), job(4, 5, 'imagine')];
  assert.equal(pickNext(own, new Map(), 0, opts)!.id, 4);
});

test('finish times fill the free slots in order; unknown durations propagate', () => {
  assert.deepEqual(finishTimes([100], [50, 50], 1), [150, 200]);
  assert.deepEqual(finishTimes([100, 0], [50, 50, 10], 2), [50, 100, 110]);
  assert.deepEqual(finishTimes([], [null, 10], 1), [null, null]);
  assert.deepEqual(finishTimes([null], [10], 2), [10]);
});

test('step times: an average that follows recent jobs', () => {
  const t = new StepTimes(0.5);
  assert.equal(t.estimate('imagine', 10), null);
  t.record('imagine', 100);
  assert.equal(t.estimate('imagine', 10), 1000);
  t.record('imagine', 200);
  assert.equal(t.estimate('imagine', 1), 150);
  assert.equal(t.estimate('teach', 1), null);
});
