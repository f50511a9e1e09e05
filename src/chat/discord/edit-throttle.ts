// Paces edits of one Discord message (progress of a job): edits never overlap, the next one starts at least one
// interval after the previous one finished (so they also arrive at Discord at least that far apart), states that
// arrive in between are coalesced, and the last state is always delivered (until cancel(): the job's final
// message goes its own way, see update-sink.ts).
import { systemClock, type Clock, type TimerHandle } from './clock.ts';

/** Discord accepts about five edits per 5 s on one message; one per 2.5 s leaves room for other calls. */
export const DEFAULT_EDIT_INTERVAL_MS = 2_500;

export interface EditThrottleOptions<T> {
  /** Performs one edit. Never called again before the previous call settled. */
  send: (state: T) => Promise<void>;
  minIntervalMs?: number;
  clock?: Clock;
  /** Called when an intermediate edit fails; the throttle carries on with the next state. */
  onError?: (error: unknown, state: T) => void;
}

export class EditThrottle<T> {
  readonly #send: (state: T) => Promise<void>;
  readonly #interval: number;
  readonly #clock: Clock;
  readonly #onError: (error: unknown, state: T) => void;
  #pending: { state: T } | null = null;
  #lastFinishedAt = Number.NEGATIVE_INFINITY;
  #inFlight = false;
  #timer: TimerHandle | null = null;
  #closed = false;
  #idleWaiters: Array<() => void> = [];

  constructor(options: EditThrottleOptions<T>) {
    this.#send = options.send;
    this.#interval = options.minIntervalMs ?? DEFAULT_EDIT_INTERVAL_MS;
    this.#clock = options.clock ?? systemClock;
    this.#onError = options.onError ?? (() => {});
  }

  /** Offers a new state; it replaces any state not yet sent. Ignored after cancel(). */
  update(state: T): void {
    if (this.#closed) return;
    this.#pending = { state };
    this.#schedule();
  }

  /** Drops anything not yet sent and stops; an edit already under way still completes (see idle()). */
  cancel(): void {
    this.#closed = true;
    this.#pending = null;
    if (this.#timer !== null) { this.#clock.clearTimeout(this.#timer); this.#timer = null; }
    this.#notifyIdleIfSettled();
  }

  /** Resolves when nothing is pending or in flight. */
  idle(): Promise<void> {
    if (!this.#inFlight && this.#pending === null) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #schedule(): void {
    if (this.#inFlight || this.#timer !== null || this.#pending === null) return;
    const wait = this.#lastFinishedAt + this.#interval - this.#clock.now();
    if (wait <= 0) { void this.#deliver(); return; }
    this.#timer = this.#clock.setTimeout(() => { this.#timer = null; void this.#deliver(); }, wait);
  }

  async #deliver(): Promise<void> {
    const pending = this.#pending;
    if (pending === null) return;
    this.#pending = null;
    this.#inFlight = true;
    try {
      await this.#send(pending.state);
    } catch (error) {
      this.#onError(error, pending.state);
    }
    this.#inFlight = false;
    this.#lastFinishedAt = this.#clock.now();
    this.#schedule();
    this.#notifyIdleIfSettled();
  }

  #notifyIdleIfSettled(): void {
    if (this.#inFlight || this.#pending !== null) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
