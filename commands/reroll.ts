// /reroll: the same prompt and settings as a generation, with a new seed. Button: reroll:<generationId>.
import type { Command } from '../src/chat/command.ts';
import type { CommandDescription } from '../src/chat/types.ts';
import { findGeneration, generationSummary, randomSeed, readyModel, ensureScope, type Requester, type Services, type Submitted } from '../src/services.ts';
import { resolveConcepts, submitImagine } from './imagine.ts';

export const description: CommandDescription = {
  name: 'reroll',
  description: 'Draw an image again with the same prompt and settings and a new seed',
  options: [{ type: 'integer', name: 'generation', description: 'The image number', required: true, min: 1 }],
  button: { action: 'reroll', option: 'generation' },
};

/** A new job from generation `id`'s settings: a new seed (re-roll), or the same seed mixed with new noise (variation). */
export async function redraw(s: Services, who: Requester, id: number, variationAmount: number | null): Promise<Submitted> {
  const g = await findGeneration(s, who.scope, id);
  const sum = generationSummary(g);
  const model = await readyModel(s);
  const scope = await ensureScope(s.db, who.scope);
  const concepts = await resolveConcepts(s, scope.id, sum.concepts.map((c) => ({ name: c.name, strength: c.strength })), model.hash);
  return submitImagine(s, who, {
    prompt: g.prompt, negativePrompt: g.negativePrompt, steps: g.steps, guidance: g.guidance, width: g.width, height: g.height,
    scheduler: g.scheduler, concepts, parentId: g.id,
    seed: variationAmount === null ? randomSeed() : g.seed,
    variation: variationAmount === null ? null : { seed: randomSeed(), amount: variationAmount },
  });
}

export const command: Command = {
  description,
  async run(ctx, s) {
    const { message } = await redraw(s, ctx, ctx.options.generation as number, null);
    await ctx.reply(message);
  },
};
