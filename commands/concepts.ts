// /concepts list | info | delete: the concepts taught in this scope. Deleting needs the owner or an admin.
import type { Command } from '../src/chat/command.ts';
import { escapeChatText } from '../src/chat/messages.ts';
import type { ChatScope, ChatUser, CommandDescription } from '../src/chat/types.ts';
import { ForbiddenError, UserError } from '../src/errors.ts';
import { closestNames } from '../src/input/prompt.ts';
import { ensureScope, ensureUser, type Services } from '../src/services.ts';

export const description: CommandDescription = {
  name: 'concepts',
  description: 'List, inspect or delete the concepts taught here',
  subcommands: [
    { name: 'list', description: 'The concepts you can use here', options: [] },
    {
      name: 'info', description: 'Who taught a concept, when, and how',
      options: [{ type: 'string', name: 'name', description: 'The concept', required: true, maxLength: 34, autocomplete: 'concept' }],
    },
    {
      name: 'delete', description: 'Delete a concept you taught (admins: any concept here)',
      options: [{ type: 'string', name: 'name', description: 'The concept', required: true, maxLength: 34, autocomplete: 'concept' }],
    },
  ],
};

export interface ConceptView {
  name: string;
  category: string;
  status: string;
  owner: string;
  images: number;
  steps: number | null;
  finalLoss: number | null;
  error: string | null;
  createdAt: string;
}

export async function listConcepts(s: Services, scope: ChatScope): Promise<ConceptView[]> {
  const sc = await ensureScope(s.db, scope);
  const rows = await s.db.concept.findMany({
    where: { scopeId: sc.id }, orderBy: { name: 'asc' }, include: { owner: true, _count: { select: { images: true } } },
  });
  return rows.map((c) => ({
    name: c.name, category: c.category, status: c.status, owner: c.owner.displayName, images: c._count.images,
    steps: c.steps, finalLoss: c.finalLoss, error: c.error, createdAt: c.createdAt.toISOString(),
  }));
}

async function findConcept(s: Services, scope: ChatScope, raw: string) {
  const name = raw.trim().replace(/^<|>$/g, '').toLowerCase();
  const sc = await ensureScope(s.db, scope);
  const c = await s.db.concept.findUnique({ where: { scopeId_name: { scopeId: sc.id, name } }, include: { owner: true, jobs: true, _count: { select: { images: true } } } });
  if (!c) {
    const all = await s.db.concept.findMany({ where: { scopeId: sc.id }, select: { name: true } });
    const close = closestNames(name, all.map((x) => x.name));
    throw new UserError(`There is no concept <${escapeChatText(name.slice(0, 40))}> here.${close.length ? ` Did you mean ${close.map((n) => `<${n}>`).join(', ')}?` : ''}`, 404);
  }
  return c;
}

/** Deletes a concept (cancelling its training first); only its owner or an admin may. */
export async function deleteConcept(s: Services, who: { user: ChatUser; scope: ChatScope }, raw: string): Promise<string> {
  const c = await findConcept(s, who.scope, raw);
  const user = await ensureUser(s.db, who.user);
  if (c.ownerId !== user.id && !who.user.isAdmin) {
    throw new ForbiddenError(`<${c.name}> was taught by ${escapeChatText(c.owner.displayName)}; only they or an admin can delete it.`);
  }
  for (const j of c.jobs) if (j.state === 'queued' || j.state === 'running') await s.scheduler.cancel(j.id, `<${c.name}> was deleted.`);
  await s.db.concept.deleteMany({ where: { id: c.id } });
  return c.name;
}

export const command: Command = {
  description,
  async run(ctx, s) {
    if (ctx.subcommand === 'list') {
      const all = await listConcepts(s, ctx.scope);
      const text = all.length
        ? `Concepts here (${all.length}):\n${all.map((c) => `<${c.name}> — a ${c.category}, by ${escapeChatText(c.owner)}${c.status === 'ready' ? '' : ` (${c.status})`}`).join('\n')}`
        : 'No concepts have been taught here yet. Teach one with /teach.';
      await ctx.reply({ text, private: true });
    } else if (ctx.subcommand === 'info') {
      const c = await findConcept(s, ctx.scope, ctx.options.name as string);
      const lines = [
        `<${c.name}> — a ${c.category}, taught by ${escapeChatText(c.owner.displayName)} on ${c.createdAt.toISOString().slice(0, 10)}`,
        `status: ${c.status}${c.error ? ` (${c.error})` : ''} · ${c._count.images} images${c.steps ? ` · ${c.steps} steps` : ''}${c.finalLoss === null ? '' : ` · final loss ${c.finalLoss.toFixed(3)}`}`,
      ];
      await ctx.reply({ text: lines.join('\n'), private: true });
    } else {
      const name = await deleteConcept(s, ctx, ctx.options.name as string);
      await ctx.reply({ text: `🗑️ <${name}> is deleted, with its images.`, private: true });
    }
  },
};
