// /cancel: stop a queued or running job (yours, or any here if you are an admin). Button: cancel:<jobId>.
import type { Command } from '../src/chat/command.ts';
import type { ChatScope, CommandDescription } from '../src/chat/types.ts';
import { ForbiddenError, UserError } from '../src/errors.ts';
import { ensureUser, type Requester, type Services } from '../src/services.ts';

export const description: CommandDescription = {
  name: 'cancel',
  description: 'Cancel a waiting or running job (default: your latest)',
  options: [{ type: 'integer', name: 'job', description: 'The job number', min: 1 }],
  button: { action: 'cancel', option: 'job' },
};

const sameScope = (a: { platform: string; kind: string; externalId: string }, b: ChatScope) =>
  a.platform === b.platform && a.kind === b.kind && a.externalId === b.externalId;

/** Cancels job `id` (or the asker's latest active job); returns what happened, in words. */
export async function cancelJob(s: Services, who: Pick<Requester, 'user' | 'scope'>, id?: number): Promise<{ jobId: number; outcome: 'cancelled' | 'stopping'; text: string }> {
  const user = await ensureUser(s.db, who.user);
  const job = id === undefined
    ? await s.db.job.findFirst({ where: { userId: user.id, state: { in: ['queued', 'running'] } }, orderBy: { id: 'desc' }, include: { scope: true } })
    : await s.db.job.findUnique({ where: { id }, include: { scope: true } });
  if (!job || !sameScope(job.scope, who.scope)) {
    throw new UserError(id === undefined ? 'You have no waiting or running jobs to cancel.' : `There is no job #${id} here.`, 404);
  }
  if (job.userId !== user.id && !who.user.isAdmin) throw new ForbiddenError(`Job #${job.id} is someone else's; only they or an admin can cancel it.`);
  if (job.state !== 'queued' && job.state !== 'running') throw new UserError(`Job #${job.id} has already ${job.state === 'succeeded' ? 'finished' : job.state === 'failed' ? 'failed' : 'been cancelled'}.`, 409);
  const outcome = await s.scheduler.cancel(job.id, job.userId === user.id ? 'Cancelled by you.' : `Cancelled by ${who.user.displayName}.`);
  if (outcome === 'not-active') throw new UserError(`Job #${job.id} has just finished; nothing to cancel.`, 409);
  return { jobId: job.id, outcome, text: outcome === 'cancelled' ? `🛑 Job #${job.id} is cancelled.` : `🛑 Stopping job #${job.id}…` };
}

export const command: Command = {
  description,
  async run(ctx, s) {
    const { text } = await cancelJob(s, ctx, ctx.options.job as number | undefined);
    await ctx.reply({ text, private: true });
  },
};
