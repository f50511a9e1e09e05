import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_EDIT_INTERVAL_MS, EditThrottle } from '../../../src/chat/discord/edit-throttle.ts';
import { ManualClock, settle } from './clocks.ts';

/** A send that records when each edit started and can be held open to simulate a slow Discord. */
function recorder(clock: ManualClock) {
  const sent: Array<{ at: number; state: string }> = [];
  let inFlight = 0;
  let maxInFlight = 0;
  let hold: Promise<void> | null = null;
  let failNext: Error | null = null;
  const send = async (state: string) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    sent.push({ at: clock.now(), state });
    try {
      if (hold) await hold;
      if (failNext) { const e = failNext; failNext = null; throw e; }
    } finally {
      inFlight--;
    }
  };
  return {
    sent, send,
    get maxInFlight() { return maxInFlight; },
    holdUntil(p: Promise<void>) { hold = p; },
    release() { hold = null; },
    failNextWith(error: Error) { failNext = error; },
  };
}

test('the first state goes out at once; states inside the interval are coalesced into the latest', async () => {
  const clock = new ManualClock();
  const r = recorder(clock);
  const throttle = new EditThrottle({ send: r.send, clock, minIntervalMs: 2_500 });
  const t0 = clock.now();
  throttle.update('queued #3');
  await settle();
  assert.deepEqual(r.sent, [{ at: t0, state: 'queued #3' }]);
  await clock.advance(500);
  throttle.update('queued #2');
  await clock.advance(500);
  throttle.update('queued #1');
  await clock.advance(1_000);
  assert.equal(r.sent.length, 1, 'nothing before the interval ran out');
  await clock.advance(500);
  assert.deepEqual(r.sent[1], { at: t0 + 2_500, state: 'queued #1' });
  await clock.advance(10_000);
  assert.equal(r.sent.length, 2, 'no state, no edit');
  throttle.update('step 1/30');
  await settle();
  assert.deepEqual(r.sent[2], { at: t0 + 12_500, state: 'step 1/30' }, 'after a quiet spell the next state goes out at once');
});

test('edits never overlap: the next one starts an interval after a slow one finished, with the latest state', async () => {
  const clock = new ManualClock();
  const r = recorder(clock);
  const throttle = new EditThrottle({ send: r.send, clock, minIntervalMs: 2_000 });
  let release!: () => void;
  r.holdUntil(new Promise<void>((resolve) => { release = resolve; }));
  throttle.update('a');
  await clock.advance(100);
  throttle.update('b');
  throttle.update('c');
  await clock.advance(5_000);
  assert.deepEqual(r.sent.map((s) => s.state), ['a'], 'still waiting for the first edit');
  r.release();
  release();
  const finishedAt = clock.now();
  await clock.advance(1_999);
  assert.deepEqual(r.sent.map((s) => s.state), ['a'], 'the interval counts from when the slow edit finished');
  await clock.advance(1);
  assert.deepEqual(r.sent.map((s) => s.state), ['a', 'c']);
  assert.equal(r.sent[1]!.at, finishedAt + 2_000);
  assert.equal(r.maxInFlight, 1);
});

test('cancel() while an edit is under way: idle() waits for that edit, nothing is sent after it', async () => {
  const clock = new ManualClock();
  const r = recorder(clock);
  const throttle = new EditThrottle({ send: r.send, clock, minIntervalMs: 1_000 });
  let release!: () => void;
  r.holdUntil(new Promise<void>((resolve) => { release = resolve; }));
  throttle.update('step 29/30');
  await settle();
  throttle.update('step 30/30');
  throttle.cancel();
  let idle = false;
  const waited = throttle.idle().then(() => { idle = true; });
  await settle();
  assert.equal(idle, false, 'the edit under way is not over yet');
  release();
  await waited;
  throttle.update('too late');
  await clock.advance(5_000);
  assert.deepEqual(r.sent.map((s) => s.state), ['step 29/30']);
  assert.equal(clock.pendingTimers, 0);
});

test('a failed edit is reported and the throttle carries on with the next state', async () => {
  const clock = new ManualClock();
  const r = recorder(clock);
  const errors: Array<[string, string]> = [];
  const throttle = new EditThrottle({ send: r.send, clock, minIntervalMs: 1_000, onError: (e, s) => errors.push([(e as Error).message, s]) });
  r.failNextWith(new Error('503'));
  throttle.update('one');
  await settle();
  throttle.update('two');
  await clock.advance(1_000);
  assert.deepEqual(errors, [['503', 'one']]);
  assert.deepEqual(r.sent.map((s) => s.state), ['one', 'two']);
});

test('cancel() drops what is pending and stops the timer', async () => {
  const clock = new ManualClock();
  const r = recorder(clock);
  const throttle = new EditThrottle({ send: r.send, clock, minIntervalMs: 1_000 });
  throttle.update('a');
  await settle();
  throttle.update('b');
  assert.equal(clock.pendingTimers, 1);
  throttle.cancel();
  assert.equal(clock.pendingTimers, 0);
  await clock.advance(5_000);
  assert.deepEqual(r.sent.map((s) => s.state), ['a']);
  await throttle.idle();
});

test('a minute of progress every 100 ms becomes at most one edit per interval, ending with the last state', async () => {
  const clock = new ManualClock();
  const r = recorder(clock);
  const throttle = new EditThrottle({ send: r.send, clock });
  for (let step = 1; step <= 600; step++) {
    throttle.update(`step ${step}/600`);
    await clock.advance(100);
  }
  throttle.update('decoding');
  await clock.advance(DEFAULT_EDIT_INTERVAL_MS);
  await throttle.idle();
  const gaps = r.sent.slice(1).map((s, i) => s.at - r.sent[i]!.at);
  assert.ok(gaps.every((g) => g >= DEFAULT_EDIT_INTERVAL_MS), `gaps ${gaps.join(',')}`);
  assert.ok(r.sent.length <= 60_000 / DEFAULT_EDIT_INTERVAL_MS + 2, `${r.sent.length} edits`);
  assert.ok(r.sent.length >= 60_000 / DEFAULT_EDIT_INTERVAL_MS - 1, 'progress kept flowing');
  assert.equal(r.sent.at(-1)!.state, 'decoding', 'the last state was not lost');
});
