// /reroll: the same prompt and settings as a generation, with a new seed. Button: reroll:<generationId>.
import type { CommandDescription } from '../src/chat/types.ts';

export const description: CommandDescription = {
  name: 'reroll',
  description: 'Draw an image again with the same prompt and settings and a new seed',
  options: [{ type: 'integer', name: 'generation', description: 'The image number', required: true, min: 1 }],
  button: { action: 'reroll', option: 'generation' },
};
