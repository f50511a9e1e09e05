// chat.update pacing with a manual clock: one edit per interval per message, newest state wins, the final
// state always arrives and is never overwritten by late progress, and a workspace-wide cap per minute.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ChatUpdateThrottle, type MessageRef, type ThrottleClock } from '../../../src/chat/slack/throttle.ts';

/** Timers that fire only when the test advances time. */
class ManualClock implements ThrottleClock {
  private t = 0;
  private seq = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();
  now(): number { return this.t; }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void { this.timers.delete(handle as number); }
  get pendingTimers(): number { return this.timers.size; }
  /** Moves time forward, firing due timers in order (and letting the sends they start settle). */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await settle();
      const due = [...this.timers.entries()].filter(([, x]) => x.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.t = Math.max(this.t, due[1].at);
      due[1].fn();
    }
    this.t = end;
    await settle();
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
}

function setup(opts: { minIntervalMs?: number; perWorkspacePerMinute?: number; fail?: (body: string) => boolean } = {}) {
  const clock = new ManualClock();
  const sent: Array<{ at: number; ts: string; body: string }> = [];
  const errors: unknown[] = [];
  const throttle = new ChatUpdateThrottle<string>({
    clock,
    ...(opts.minIntervalMs !== undefined ? { minIntervalMs: opts.minIntervalMs } : {}),
    ...(opts.perWorkspacePerMinute !== undefined ? { perWorkspacePerMinute: opts.perWorkspacePerMinute } : {}),
    send: async (m, body) => {
      await Promise.resolve();
      if (opts.fail?.(body)) throw new Error(`ratelimited: ${body}`);
      sent.push({ at: clock.now(), ts: m.ts, body });
    },
    onError: (e) => errors.push(e),
  });
  return { clock, sent, errors, throttle };
}

const msg = (ts: string, workspace = 'T1'): MessageRef => ({ workspace, channel: 'C1', ts });

describe('ChatUpdateThrottle', () => {
  it('sends the first state at once, then at most one edit per interval with the newest state', async () => {
    const { clock, sent, throttle } = setup({ minIntervalMs: 1500 });
    throttle.update(msg('1.1'), 'step 1');
    await settle();
    for (let step = 2; step <= 10; step++) {
      await clock.advance(200);
      throttle.update(msg('1.1'), `step ${step}`);
    }
    await clock.advance(3000);
    assert.deepEqual(sent.map((s) => [s.at, s.body]), [[0, 'step 1'], [1500, 'step 8'], [3000, 'step 10']]);
    for (let i = 1; i < sent.length; i++) assert.ok(sent[i]!.at - sent[i - 1]!.at >= 1500);
    assert.equal(clock.pendingTimers, 0);
    await throttle.idle();
  });

  it('paces each message separately', async () => {
    const { clock, sent, throttle } = setup({ minIntervalMs: 1000 });
    throttle.update(msg('a'), 'a1');
    throttle.update(msg('b'), 'b1');
    await settle();
    throttle.update(msg('a'), 'a2');
    throttle.update(msg('b'), 'b2');
    await clock.advance(999);
    assert.deepEqual(sent.map((s) => s.body), ['a1', 'b1']);
    await clock.advance(1);
    assert.deepEqual(sent.map((s) => `${s.at}:${s.body}`), ['0:a1', '0:b1', '1000:a2', '1000:b2']);
  });

  it('finish: delivers the final state (replacing unsent progress), resolves when sent, and later progress is dropped', async () => {
    const { clock, sent, throttle } = setup({ minIntervalMs: 1500 });
    throttle.update(msg('1.1'), 'step 1');
    await settle();
    throttle.update(msg('1.1'), 'step 2');
    let resolved = false;
    const finished = throttle.finish(msg('1.1'), 'done').then(() => { resolved = true; });
    throttle.update(msg('1.1'), 'late step 3');
    await clock.advance(1000);
    assert.equal(resolved, false);
    await clock.advance(500);
    await finished;
    assert.deepEqual(sent.map((s) => s.body), ['step 1', 'done']);
    throttle.update(msg('1.1'), 'late step 4');
    await clock.advance(5000);
    assert.deepEqual(sent.map((s) => s.body), ['step 1', 'done']);
    // A second final state (e.g. "deleted") is still sent.
    await Promise.all([throttle.finish(msg('1.1'), 'deleted'), clock.advance(1500)]);
    assert.deepEqual(sent.map((s) => s.body), ['step 1', 'done', 'deleted']);
  });

  it('a failed progress edit goes to onError and the next state is still sent; a failed final edit rejects finish', async () => {
    const { clock, sent, errors, throttle } = setup({ minIntervalMs: 100, fail: (b) => b === 'step 1' || b === 'final' });
    throttle.update(msg('x'), 'step 1');
    await settle();
    throttle.update(msg('x'), 'step 2');
    await clock.advance(100);
    assert.deepEqual(sent.map((s) => s.body), ['step 2']);
    assert.equal(errors.length, 1);
    const finalRejected = assert.rejects(throttle.finish(msg('x'), 'final'), /ratelimited: final/);
    await clock.advance(100);
    await finalRejected;
    assert.equal(errors.length, 1, 'the final failure is reported to the caller, not onError');
  });

  it('caps edits per workspace per minute across messages, and other workspaces are unaffected', async () => {
    const { clock, sent, throttle } = setup({ minIntervalMs: 0, perWorkspacePerMinute: 3 });
    for (const ts of ['1', '2', '3', '4', '5']) throttle.update(msg(ts, 'T1'), `T1-${ts}`);
    throttle.update(msg('9', 'T2'), 'T2-9');
    await settle();
    assert.deepEqual(sent.map((s) => s.body).sort(), ['T1-1', 'T1-2', 'T1-3', 'T2-9']);
    await clock.advance(59_999);
    assert.equal(sent.length, 4);
    await clock.advance(1);
    assert.deepEqual(sent.slice(4).map((s) => `${s.at}:${s.body}`).sort(), ['60000:T1-4', '60000:T1-5']);
    const perMinute = (from: number) => sent.filter((s) => s.at >= from && s.at < from + 60_000 && s.body.startsWith('T1')).length;
    assert.ok(perMinute(0) <= 3 && perMinute(60_000) <= 3);
  });

  it('idle() waits for queued edits; close() drops them and rejects pending finishes', async () => {
    const { clock, sent, throttle } = setup({ minIntervalMs: 1000 });
    throttle.update(msg('1'), 'a');
    throttle.update(msg('1'), 'b');
    let idle = false;
    const idlePromise = throttle.idle().then(() => { idle = true; });
    await settle();
    assert.equal(idle, false);
    assert.equal(throttle.busyCount, 1);
    await clock.advance(1000);
    await idlePromise;
    assert.deepEqual(sent.map((s) => s.body), ['a', 'b']);

    throttle.update(msg('2'), 'c');
    await settle();
    const pending = throttle.finish(msg('2'), 'never');
    throttle.close();
    await assert.rejects(pending, /closed/);
    assert.equal(clock.pendingTimers, 0);
    await clock.advance(5000);
    assert.deepEqual(sent.map((s) => s.body), ['a', 'b', 'c']);
  });
});
