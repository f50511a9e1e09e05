// /info: every parameter of a generation (prompt, seed, steps, guidance, sampler, size, concept strengths).
import type { CommandDescription } from '../src/chat/types.ts';

export const description: CommandDescription = {
  name: 'info',
  description: 'Show how an image was made: prompt, seed, steps, guidance, concepts',
  options: [{ type: 'integer', name: 'generation', description: 'The image number', required: true, min: 1 }],
  button: { action: 'info', option: 'generation' },
};
