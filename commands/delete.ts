// /delete: remove an image the bot made (its stored PNG and parameters). Button: delete:<generationId>.
// Only the person who asked for that image, or an admin of the scope, may delete it. Variations and re-rolls
// of it keep working: their link to it is cleared (the schema's SetNull).
import type { Command } from '../src/chat/command.ts';
import { escapeChatText } from '../src/chat/messages.ts';
import type { ChatScope, ChatUser, CommandDescription } from '../src/chat/types.ts';
import { ForbiddenError } from '../src/errors.ts';
import { ensureUser, findGeneration, type Services } from '../src/services.ts';

export const description: CommandDescription = {
  name: 'delete',
  description: 'Delete an image you asked for (admins: any image here)',
  options: [{ type: 'integer', name: 'generation', description: 'The image number', required: true, min: 1 }],
  button: { action: 'delete', option: 'generation' },
};

/** Deletes generation `id` when `who` asked for it or is an admin of the scope; returns its id. */
export async function deleteGeneration(s: Services, who: { user: ChatUser; scope: ChatScope }, id: number): Promise<number> {
  const g = await findGeneration(s, who.scope, id);
  const user = await ensureUser(s.db, who.user);
  if (g.userId !== user.id && !who.user.isAdmin) {
    const owner = await s.db.user.findUnique({ where: { id: g.userId }, select: { displayName: true } });
    throw new ForbiddenError(`Image #${g.id} was asked for by ${escapeChatText(owner?.displayName ?? 'someone else')}; only they or an admin can delete it.`);
  }
  // deleteMany: a second click racing this one finds nothing instead of failing
  await s.db.generation.deleteMany({ where: { id: g.id } });
  return g.id;
}

export const command: Command = {
  description,
  async run(ctx, s) {
    const id = await deleteGeneration(s, ctx, ctx.options.generation as number);
    await ctx.reply({ text: `🗑️ Image #${id} is deleted.`, private: true, deletedGeneration: id });
  },
};
