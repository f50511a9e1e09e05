// A slash command's options as Discord sends them → the core's option values, by the same description the
// commands were registered from (application-commands.ts). Attachment options come back as references to
// download; the adapter puts the downloaded files under the core's option name.
import { ApplicationCommandOptionType, type CommandInteractionOption } from 'discord.js';
import type { CommandDescription, OptionDescription, OptionValue } from '../types.ts';
import { discordOptionNames } from './application-commands.ts';
import { attachmentRef, type AttachmentRef } from './attachments.ts';

export interface CommandInput {
  subcommand?: string;
  /** plain values by the core's option names */
  values: Record<string, OptionValue>;
  /** attachments to download, by the core's option name, in option order (`images1`, `images2`, …) */
  attachments: Record<string, AttachmentRef[]>;
}

function optionsOf(d: CommandDescription, subcommand: string | undefined): readonly OptionDescription[] {
  if (d.subcommands?.length) return d.subcommands.find((s) => s.name === subcommand)?.options ?? [];
  return d.options ?? [];
}

/**
 * Reads `data` (discord.js's `interaction.options.data`) against the core description. Options the
 * description does not know are ignored (a stale registration); BotCore validates the values.
 */
export function readCommandOptions(d: CommandDescription, data: readonly CommandInteractionOption[]): CommandInput {
  const sub = data.find((o) => o.type === ApplicationCommandOptionType.Subcommand);
  const subcommand = sub?.name;
  const given = new Map((sub ? sub.options ?? [] : data).map((o) => [o.name, o]));
  const values: Record<string, OptionValue> = {};
  const attachments: Record<string, AttachmentRef[]> = {};
  for (const option of optionsOf(d, subcommand)) {
    if (option.type === 'attachments') {
      const refs = discordOptionNames(option).flatMap((name) => {
        const a = given.get(name)?.attachment;
        return a ? [attachmentRef(a)] : [];
      });
      if (refs.length) attachments[option.name] = refs;
      continue;
    }
    const value = given.get(option.name)?.value;
    if (value !== undefined) values[option.name] = value;
  }
  return { ...(subcommand ? { subcommand } : {}), values, attachments };
}

/** The core option an autocomplete request is for: the focused one, with its (sub)command. */
export function focusedOption(data: readonly CommandInteractionOption[]): { subcommand?: string; option: string; value: string } | null {
  const sub = data.find((o) => o.type === ApplicationCommandOptionType.Subcommand);
  const focused = (sub ? sub.options ?? [] : data).find((o) => o.focused);
  if (!focused) return null;
  return { ...(sub ? { subcommand: sub.name } : {}), option: focused.name, value: String(focused.value ?? '') };
}
