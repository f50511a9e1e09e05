// /vary: a variation of a generation — its starting noise mixed with a little new noise. Button: vary:<id>.
import type { Command } from '../src/chat/command.ts';
import type { CommandDescription } from '../src/chat/types.ts';
import { redraw } from './reroll.ts';

export const DEFAULT_VARIATION = 0.25;

export const description: CommandDescription = {
  name: 'vary',
  description: 'Draw a variation of an image: same settings, slightly different start',
  options: [
    { type: 'integer', name: 'generation', description: 'The image number', required: true, min: 1 },
    { type: 'number', name: 'amount', description: 'How different, 0.05–1 (default 0.25)', min: 0.05, max: 1 },
  ],
  button: { action: 'vary', option: 'generation' },
};

export const command: Command = {
  description,
  async run(ctx, s) {
    const { message } = await redraw(s, ctx, ctx.options.generation as number, (ctx.options.amount as number | undefined) ?? DEFAULT_VARIATION);
    await ctx.reply(message);
  },
};
