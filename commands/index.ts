// Every command, in the order front ends list them.
import type { Command } from '../src/chat/command.ts';
import { command as teach } from './teach.ts';
import { command as imagine } from './imagine.ts';
import { command as concepts } from './concepts.ts';
import { command as queue } from './queue.ts';
import { command as cancel } from './cancel.ts';
import { command as info } from './info.ts';
import { command as reroll } from './reroll.ts';
import { command as vary } from './vary.ts';
import { command as del } from './delete.ts';

export const commands: readonly Command[] = [teach, imagine, concepts, queue, cancel, info, reroll, vary, del];
