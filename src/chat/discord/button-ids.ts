// Buttons under a generated image. Their custom ids carry the generation id and nothing else, so a click is
// handled from the store alone: it keeps working after a restart and long after the interaction token died.
import { ActionRowBuilder, ButtonBuilder, ButtonStyle } from 'discord.js';

export const GENERATION_ACTIONS = ['reroll', 'variations', 'info', 'delete'] as const;
export type GenerationAction = (typeof GENERATION_ACTIONS)[number];

const PREFIX = 'gen1';
/** Discord allows custom ids of 1–100 characters; the prefix and action take at most 16 of them. */
const GENERATION_ID = /^[A-Za-z0-9_-]{1,80}$/;

export function generationButtonId(action: GenerationAction, generationId: string): string {
  if (!GENERATION_ID.test(generationId)) throw new RangeError(`generation id ${JSON.stringify(generationId)} cannot go into a button`);
  return `${PREFIX}:${action}:${generationId}`;
}

/** The action and generation a button's custom id names, or null when it is not one of these buttons. */
export function parseGenerationButtonId(customId: string): { action: GenerationAction; generationId: string } | null {
  const [prefix, action, generationId, ...rest] = customId.split(':');
  if (prefix !== PREFIX || rest.length > 0 || generationId === undefined || !GENERATION_ID.test(generationId)) return null;
  if (!(GENERATION_ACTIONS as readonly string[]).includes(action ?? '')) return null;
  return { action: action as GenerationAction, generationId };
}

const LABELS: Record<GenerationAction, { label: string; emoji: string; style: ButtonStyle }> = {
  reroll: { label: 'Re-roll', emoji: '🎲', style: ButtonStyle.Primary },
  variations: { label: 'Variations', emoji: '🔀', style: ButtonStyle.Secondary },
  info: { label: 'Info', emoji: 'ℹ️', style: ButtonStyle.Secondary },
  delete: { label: 'Delete', emoji: '🗑️', style: ButtonStyle.Danger },
};

/** One action row: re-roll, variations, info, delete (the handler checks requester-or-admin for delete). */
export function generationButtonRow(generationId: string): ActionRowBuilder<ButtonBuilder> {
  return new ActionRowBuilder<ButtonBuilder>().addComponents(GENERATION_ACTIONS.map((action) =>
    new ButtonBuilder()
      .setCustomId(generationButtonId(action, generationId))
      .setLabel(LABELS[action].label)
      .setEmoji(LABELS[action].emoji)
      .setStyle(LABELS[action].style)));
}
