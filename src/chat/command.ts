// A command file (commands/*.ts) exports `command: Command`: its description and its handler, which talks
// only to the neutral context and the core services.
import type { Services } from '../services.ts';
import type { CommandContext, CommandDescription } from './types.ts';

export interface Command {
  description: CommandDescription;
  run(ctx: CommandContext, services: Services): Promise<void>;
}
