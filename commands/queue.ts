// /queue: what is running and waiting, your jobs' positions and ETAs.
import type { Command } from '../src/chat/command.ts';
import { formatDuration } from '../src/chat/messages.ts';
import type { CommandDescription } from '../src/chat/types.ts';
import { ensureUser, type Services } from '../src/services.ts';
import type { ChatUser } from '../src/chat/types.ts';

export const description: CommandDescription = {
  name: 'queue',
  description: 'What the GPU is doing and where your jobs are in line',
  options: [],
};

export async function queueText(s: Services, who: ChatUser): Promise<string> {
  const snap = s.scheduler.snapshot();
  const me = await ensureUser(s.db, who);
  const ids = [...snap.running.map((r) => r.id), ...snap.waiting.map((w) => w.id)];
  const rows = ids.length ? await s.db.job.findMany({ where: { id: { in: ids } }, include: { user: true } }) : [];
  const label = (id: number, kind: string) => {
    const row = rows.find((r) => r.id === id);
    const name = kind === 'teach' && row ? ` <${(JSON.parse(row.params) as { name: string }).name}>` : '';
    return `#${id} ${kind === 'teach' ? 'teach' : 'image'}${name}${row ? ` by ${row.user.displayName}` : ''}`;
  };
  const eta = (ms: number | null) => (ms === null ? '' : ` · about ${formatDuration(ms)} left`);
  const lines: string[] = [];
  if (snap.running.length === 0 && snap.waiting.length === 0) return 'The queue is empty: a new job starts right away.';
  for (const r of snap.running) {
    const p = r.progress ? ` · step ${r.progress.step}/${r.progress.total}` : ' · starting';
    lines.push(`▶️ ${label(r.id, r.kind)}${p}${eta(r.etaMs)}`);
  }
  lines.push(`⏳ ${snap.waiting.length} waiting.`);
  for (const w of snap.waiting.filter((x) => x.userId === me.id)) lines.push(`  your ${label(w.id, w.kind)} · position ${w.position}${eta(w.etaMs)}`);
  return lines.join('\n');
}

export const command: Command = {
  description,
  async run(ctx, s) {
    await ctx.reply({ text: await queueText(s, ctx.user), private: true });
  },
};
