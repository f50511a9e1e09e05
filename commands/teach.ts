// /teach: store a concept draft, its checked images and a training job in one transaction; reply with the
// queue position. The scheduler trains it (Perfusion) and the concept becomes usable as <name> in the scope.
import type { CommandDescription } from '../src/chat/types.ts';

export const description: CommandDescription = {
  name: 'teach',
  description: 'Teach the bot a new concept from 1–10 of your images (3–10 work best)',
  options: [
    { type: 'string', name: 'name', description: 'How prompts will call it, as <name>: 2–32 of a-z 0-9 _ -', required: true, minLength: 2, maxLength: 32 },
    { type: 'string', name: 'category', description: 'One word for what kind of thing it is: dog, teddy, mug, person…', required: true, minLength: 2, maxLength: 24 },
    { type: 'attachments', name: 'images', description: 'Photos of the concept (PNG, JPEG, WebP; 10 MB each)', required: true, min: 1, max: 10, recommended: { min: 3, max: 10 } },
    { type: 'integer', name: 'steps', description: 'Training steps (more is slower and closer to your images)', min: 10, max: 2000 },
  ],
};
