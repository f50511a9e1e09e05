// /queue: what is running and waiting, your jobs' positions and ETAs.
import type { CommandDescription } from '../src/chat/types.ts';

export const description: CommandDescription = {
  name: 'queue',
  description: 'What the GPU is doing and where your jobs are in line',
  options: [],
};
