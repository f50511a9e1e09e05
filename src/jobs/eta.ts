// Measured speed, for queue ETAs: an exponentially weighted average of milliseconds per work unit
// (job-params.ts `workUnits`) per job kind, fed by every finished job and seeded at start from recent rows.

export class StepTimes {
  private readonly msPerUnit = new Map<'teach' | 'imagine', number>();
  constructor(private readonly weight = 0.3) {}

  record(kind: 'teach' | 'imagine', msPerUnit: number): void {
    if (!Number.isFinite(msPerUnit) || msPerUnit <= 0) return;
    const prev = this.msPerUnit.get(kind);
    this.msPerUnit.set(kind, prev === undefined ? msPerUnit : prev + this.weight * (msPerUnit - prev));
  }

  /** estimated milliseconds for `units` of work, or null before anything of that kind was measured */
  estimate(kind: 'teach' | 'imagine', units: number): number | null {
    const ms = this.msPerUnit.get(kind);
    return ms === undefined ? null : ms * units;
  }
}

/**
 * When each job will be done, given what runs (remaining ms) and the start order of what waits
 * (duration ms), on `slots` workers: every job takes the first slot to free up. null propagates: once an
 * unknown duration is ahead, later jobs are unknown too.
 */
export function finishTimes(running: (number | null)[], order: (number | null)[], slots: number): (number | null)[] {
  const free: (number | null)[] = running.slice(0, slots);
  while (free.length < slots) free.push(0);
  const out: (number | null)[] = [];
  for (const d of order) {
    let i = 0;
    for (let k = 1; k < free.length; k++) {
      const a = free[k], b = free[i];
      if (b === null || (a !== null && a! < b!)) i = k;
    }
    const start = free[i]!;
    const end = start === null || d === null ? null : start + d;
    free[i] = end;
    out.push(end);
  }
  return out;
}
