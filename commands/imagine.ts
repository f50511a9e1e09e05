// /imagine: resolve every <name> in the prompt against the scope's concepts, store an imagine job, reply with
// the queue position. The result is a generation whose parameters are stored for info, re-roll and variations.
import type { CommandDescription } from '../src/chat/types.ts';

export const description: CommandDescription = {
  name: 'imagine',
  description: 'Draw an image; use taught concepts as <name> (strength: <name:0.8>)',
  options: [
    { type: 'string', name: 'prompt', description: 'What to draw, e.g. a photo of <hugsy> on the beach', required: true, minLength: 1, maxLength: 500, autocomplete: 'prompt' },
    { type: 'string', name: 'negative', description: 'What to avoid, e.g. blurry, text', maxLength: 500 },
    { type: 'integer', name: 'seed', description: 'Same seed and settings give the same image', min: 0, max: 4294967295 },
    { type: 'integer', name: 'steps', description: 'Denoising steps (default 30)', min: 1, max: 150 },
    { type: 'number', name: 'guidance', description: 'How closely to follow the prompt (default 7.5)', min: 0, max: 30 },
    { type: 'integer', name: 'width', description: 'Width in pixels, a multiple of 8 (default: the model\'s size)', min: 64, max: 1024 },
    { type: 'integer', name: 'height', description: 'Height in pixels, a multiple of 8 (default: the model\'s size)', min: 64, max: 1024 },
    { type: 'number', name: 'strength', description: 'How strongly concepts show, 0–1 (default: each concept\'s own)', min: 0, max: 1 },
  ],
};
