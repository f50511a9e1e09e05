// Clocks for tests. ManualClock runs timers only when a test advances it (unit tests of timing logic).
// ShiftedClock follows real time but can jump ahead, so the real discord.js client keeps working while a test
// skips 15 minutes of an interaction token's life.
import type { Clock, TimerHandle } from '../../../src/chat/discord/clock.ts';

export class ManualClock implements Clock {
  #now: number;
  #timers = new Map<number, { at: number; callback: () => void }>();
  #nextId = 1;

  constructor(start = 1_700_000_000_000) { this.#now = start; }

  now(): number { return this.#now; }

  setTimeout(callback: () => void, ms: number): TimerHandle {
    const id = this.#nextId++;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), callback });
    return id;
  }

  clearTimeout(handle: TimerHandle): void { this.#timers.delete(handle as number); }

  get pendingTimers(): number { return this.#timers.size; }

  /** Moves time forward, firing due timers in order and letting promises settle after each. */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    for (;;) {
      await settle();
      const due = [...this.#timers.entries()].filter(([, t]) => t.at <= target).sort((a, b) => a[1].at - b[1].at || a[0] - b[0])[0];
      if (!due) break;
      this.#timers.delete(due[0]);
      this.#now = Math.max(this.#now, due[1].at);
      due[1].callback();
    }
    this.#now = target;
    await settle();
  }
}

export class ShiftedClock implements Clock {
  #offset = 0;
  now(): number { return Date.now() + this.#offset; }
  advance(ms: number): void { this.#offset += ms; }
  /** Timers run in real time: a jump skips the token's life, not the pacing of edits. */
  setTimeout(callback: () => void, ms: number): TimerHandle { return setTimeout(callback, ms); }
  clearTimeout(handle: TimerHandle): void { clearTimeout(handle as ReturnType<typeof setTimeout>); }
}

/** Lets queued promise callbacks and I/O callbacks run. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
