// Which queued job runs next. Pure: the scheduler calls it with what is waiting and who was served when.
//
// - Fair across people: every person's next job competes, and among equals the person served least recently
//   goes first, so one person's ten jobs interleave with another's one instead of starving it.
// - Short jobs first: an imagine job goes before a training job — unless the training job has waited
//   `teachAgingMs`, after which it competes as a short one (so a stream of images cannot starve training).
// - A person's own jobs keep their order, short before training by the same rule.

export interface Waiting {
  id: number;
  userId: number;
  kind: 'teach' | 'imagine';
  /** when it was queued (ms) */
  queuedAt: number;
  /** submission order; ties broken by it */
  seq: number;
}

export interface PolicyOptions {
  teachAgingMs: number;
}

function klass(job: Waiting, now: number, opts: PolicyOptions): number {
  return job.kind === 'imagine' || now - job.queuedAt >= opts.teachAgingMs ? 0 : 1;
}

function better(a: Waiting, b: Waiting, served: ReadonlyMap<number, number>, now: number, opts: PolicyOptions): boolean {
  const ka = klass(a, now, opts), kb = klass(b, now, opts);
  if (ka !== kb) return ka < kb;
  const sa = served.get(a.userId) ?? -Infinity, sb = served.get(b.userId) ?? -Infinity;
  if (sa !== sb) return sa < sb;
  return a.seq < b.seq;
}

/** Each person's next job: their oldest short job, else their oldest job. */
function heads(waiting: readonly Waiting[], now: number, opts: PolicyOptions): Waiting[] {
  const byUser = new Map<number, Waiting>();
  for (const j of waiting) {
    const cur = byUser.get(j.userId);
    if (!cur) { byUser.set(j.userId, j); continue; }
    const kj = klass(j, now, opts), kc = klass(cur, now, opts);
    if (kj < kc || (kj === kc && j.seq < cur.seq)) byUser.set(j.userId, j);
  }
  return [...byUser.values()];
}

export function pickNext(waiting: readonly Waiting[], served: ReadonlyMap<number, number>, now: number, opts: PolicyOptions): Waiting | undefined {
  let best: Waiting | undefined;
  for (const h of heads(waiting, now, opts)) if (!best || better(h, best, served, now, opts)) best = h;
  return best;
}

/**
 * The order the waiting jobs will start in if nothing else arrives, simulating `pickNext` repeatedly
 * (`servedCounter` is the value the next start will record). Used for queue positions and ETAs.
 */
export function predictOrder(waiting: readonly Waiting[], served: ReadonlyMap<number, number>, servedCounter: number, now: number, opts: PolicyOptions): Waiting[] {
  const left = [...waiting];
  const sim = new Map(served);
  const order: Waiting[] = [];
  let counter = servedCounter;
  while (left.length) {
    const next = pickNext(left, sim, now, opts)!;
    order.push(next);
    sim.set(next.userId, counter++);
    left.splice(left.indexOf(next), 1);
  }
  return order;
}
