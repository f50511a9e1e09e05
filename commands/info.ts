// /info: every parameter of a generation (prompt, seed, steps, guidance, sampler, size, concept strengths).
import type { Command } from '../src/chat/command.ts';
import { generationInfoText } from '../src/chat/messages.ts';
import type { CommandDescription } from '../src/chat/types.ts';
import { findGeneration, generationSummary } from '../src/services.ts';

export const description: CommandDescription = {
  name: 'info',
  description: 'Show how an image was made: prompt, seed, steps, guidance, concepts',
  options: [{ type: 'integer', name: 'generation', description: 'The image number', required: true, min: 1 }],
  button: { action: 'info', option: 'generation' },
};

export const command: Command = {
  description,
  async run(ctx, s) {
    const g = await findGeneration(s, ctx.scope, ctx.options.generation as number);
    await ctx.reply({
      text: generationInfoText(generationSummary(g)),
      private: true,
      buttons: [{ id: `reroll:${g.id}`, label: 'Re-roll' }, { id: `vary:${g.id}`, label: 'Variations' }],
    });
  },
};
