// How a prompt cut short by the text encoder is told to people (the command-line tool and the bot say the same).
import type { PromptTruncation } from '../types.ts';

const MAX_QUOTED = 120;

/** One sentence: which prompt was cut, how long it was, and what the model did not read. */
export function truncationNote(t: PromptTruncation): string {
  const which = t.field === 'prompt' ? 'The prompt' : 'The negative prompt';
  const dropped = t.droppedText.length > MAX_QUOTED ? `${t.droppedText.slice(0, MAX_QUOTED - 1)}…` : t.droppedText;
  return `${which} is ${t.tokens} tokens long and the model reads only the first ${t.limit}, so “${dropped}” was left out.`;
}
