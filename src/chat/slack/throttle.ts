// Paces chat.update calls for progress messages. Slack rate-limits chat.update per workspace (Tier 3, about
// 50 a minute), and a user gains nothing from more than one edit every second or two, so each message is edited
// at most once per `minIntervalMs` and each workspace at most `perWorkspacePerMinute` times a minute. Updates
// that arrive in between replace each other: only the newest state is sent, and the last one is always delivered.
// After `finish` (the final state, e.g. the result with its buttons) later progress for that message is dropped,
// so a late progress event can never overwrite a result.

export interface ThrottleClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: ThrottleClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

/** The message to edit: workspace (team id) for the rate limit, channel and ts for chat.update. */
export interface MessageRef {
  workspace: string;
  channel: string;
  ts: string;
}

export interface UpdateThrottleOptions<Body> {
  /** Performs the edit (chat.update with the bot token). */
  send: (message: MessageRef, body: Body) => Promise<void>;
  /** Minimum time between two edits of one message. Default 1500 ms. */
  minIntervalMs?: number;
  /** Edits allowed per workspace in any 60-second window. Default 45 (below Tier 3's ~50). */
  perWorkspacePerMinute?: number;
  clock?: ThrottleClock;
  /** Failed progress edits (not final ones, which reject `finish`) are reported here. */
  onError?: (error: unknown, message: MessageRef) => void;
}

interface Waiter { resolve: () => void; reject: (error: unknown) => void }

interface MessageState {
  ref: MessageRef;
  lastSentAt: number;
  pending: { body: unknown; final: boolean; waiters: Waiter[] } | undefined;
  inFlight: boolean;
  timer: unknown;
  finished: boolean;
}

const WINDOW_MS = 60_000;
const RETENTION_MS = 10 * 60_000;

export class ChatUpdateThrottle<Body> {
  private readonly send: (message: MessageRef, body: Body) => Promise<void>;
  private readonly minIntervalMs: number;
  private readonly perWorkspacePerMinute: number;
  private readonly clock: ThrottleClock;
  private readonly onError: (error: unknown, message: MessageRef) => void;
  private readonly messages = new Map<string, MessageState>();
  /** Send times per workspace within the last minute, oldest first. */
  private readonly workspaceSends = new Map<string, number[]>();
  private idleWaiters: Array<() => void> = [];

  constructor(opts: UpdateThrottleOptions<Body>) {
    this.send = opts.send;
    this.minIntervalMs = opts.minIntervalMs ?? 1500;
    this.perWorkspacePerMinute = opts.perWorkspacePerMinute ?? 45;
    this.clock = opts.clock ?? systemClock;
    this.onError = opts.onError ?? (() => undefined);
  }

  /** Queues a progress state; it replaces any state of the same message not yet sent. Ignored after `finish`. */
  update(message: MessageRef, body: Body): void {
    const state = this.stateOf(message);
    if (state.finished) return;
    const waiters = state.pending?.waiters ?? [];
    state.pending = { body, final: false, waiters };
    this.schedule(state);
  }

  /**
   * Queues the final state: it replaces any unsent progress, is sent as soon as the pacing allows, and later
   * `update`s of this message are ignored (a later `finish` is still sent). Resolves when it has been delivered;
   * rejects if that edit failed.
   */
  finish(message: MessageRef, body: Body): Promise<void> {
    const state = this.stateOf(message);
    state.finished = true;
    return new Promise<void>((resolve, reject) => {
      const waiters = state.pending?.waiters ?? [];
      waiters.push({ resolve, reject });
      state.pending = { body, final: true, waiters };
      this.schedule(state);
    });
  }

  /** Messages with an edit waiting or in flight. */
  get busyCount(): number {
    let n = 0;
    for (const s of this.messages.values()) if (s.pending || s.inFlight) n += 1;
    return n;
  }

  /** Resolves when no edit is waiting or in flight (e.g. before shutdown). */
  idle(): Promise<void> {
    if (this.busyCount === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Drops unsent edits and timers (shutdown). Pending `finish` promises reject. */
  close(): void {
    for (const state of this.messages.values()) {
      if (state.timer !== undefined) this.clock.clearTimeout(state.timer);
      state.timer = undefined;
      for (const w of state.pending?.waiters ?? []) w.reject(new Error('the update throttle was closed'));
      state.pending = undefined;
    }
    this.messages.clear();
    this.notifyIdle();
  }

  private stateOf(ref: MessageRef): MessageState {
    const key = `${ref.workspace}/${ref.channel}/${ref.ts}`;
    let state = this.messages.get(key);
    if (!state) {
      this.pruneIdle();
      state = { ref: { ...ref }, lastSentAt: -Infinity, pending: undefined, inFlight: false, timer: undefined, finished: false };
      this.messages.set(key, state);
    }
    return state;
  }

  /**
   * A message is remembered (a finished one so that late progress stays dropped) until its last edit is
   * RETENTION_MS old; then it is forgotten to keep memory bounded on a long-running bot.
   */
  private pruneIdle(): void {
    const cutoff = this.clock.now() - RETENTION_MS;
    for (const [key, s] of this.messages) {
      if (!s.pending && !s.inFlight && s.lastSentAt < cutoff) this.messages.delete(key);
    }
  }

  private schedule(state: MessageState): void {
    if (state.inFlight || state.timer !== undefined || !state.pending) return;
    const now = this.clock.now();
    const earliest = Math.max(state.lastSentAt + this.minIntervalMs, this.workspaceAvailableAt(state.ref.workspace, now));
    if (earliest <= now) {
      void this.sendNow(state, now);
      return;
    }
    state.timer = this.clock.setTimeout(() => {
      state.timer = undefined;
      this.schedule(state);
    }, earliest - now);
  }

  private workspaceAvailableAt(workspace: string, now: number): number {
    const sends = this.workspaceSends.get(workspace);
    if (!sends) return now;
    while (sends.length > 0 && sends[0]! <= now - WINDOW_MS) sends.shift();
    if (sends.length < this.perWorkspacePerMinute) return now;
    return sends[sends.length - this.perWorkspacePerMinute]! + WINDOW_MS;
  }

  private async sendNow(state: MessageState, now: number): Promise<void> {
    const pending = state.pending!;
    state.pending = undefined;
    state.inFlight = true;
    state.lastSentAt = now;
    const sends = this.workspaceSends.get(state.ref.workspace) ?? [];
    sends.push(now);
    this.workspaceSends.set(state.ref.workspace, sends);
    try {
      await this.send(state.ref, pending.body as Body);
      for (const w of pending.waiters) w.resolve();
    } catch (error) {
      if (pending.waiters.length > 0) for (const w of pending.waiters) w.reject(error);
      else this.onError(error, state.ref);
    } finally {
      state.inFlight = false;
    }
    if (state.pending) this.schedule(state);
    this.notifyIdle();
  }

  private notifyIdle(): void {
    if (this.busyCount > 0 || this.idleWaiters.length === 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
