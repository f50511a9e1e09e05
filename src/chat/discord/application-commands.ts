// The application commands the bot registers with Discord, derived from the core's CommandDescriptions
// (commands/*.ts) so the two cannot drift, plus the message command and the modal it opens. Platform-neutral
// command logic lives in commands/; this file only describes how Discord shows them.
import {
  ApplicationCommandType,
  ApplicationIntegrationType,
  ContextMenuCommandBuilder,
  InteractionContextType,
  LabelBuilder,
  ModalBuilder,
  SlashCommandBuilder,
  TextInputBuilder,
  TextInputStyle,
  type RESTPostAPIApplicationCommandsJSONBody,
  type SharedSlashCommandOptions,
} from 'discord.js';
import type { CommandDescription, OptionDescription } from '../types.ts';

/** Message context command ("Apps" menu on a message that carries images). */
export const TEACH_FROM_MESSAGE = 'Teach concept from these images';
/** The core command the message command and its modal feed. */
export const TEACH_COMMAND = 'teach';

/** Where a command is registered: one server (instant, for development) or globally. */
export type CommandScope = 'guild' | 'global';

/**
 * Discord's option names for a core option. An `attachments` option becomes `max` attachment options named
 * `${name}1` … `${name}${max}` (one file each, the first `min` required); every other option keeps its name.
 */
export function discordOptionNames(option: OptionDescription): string[] {
  if (option.type !== 'attachments') return [option.name];
  return Array.from({ length: option.max }, (_, i) => `${option.name}${i + 1}`);
}

type OptionTarget = SharedSlashCommandOptions<any>;

interface PlannedOption { required: boolean; add(target: OptionTarget): void }

/** One core option as the Discord options that stand for it, each with how to add it to a builder. */
function planOption(o: OptionDescription): PlannedOption[] {
  const required = o.required === true;
  switch (o.type) {
    case 'string':
      return [{
        required,
        add: (t) => t.addStringOption((b) => {
          b.setName(o.name).setDescription(o.description).setRequired(required);
          if (o.minLength !== undefined) b.setMinLength(o.minLength);
          if (o.maxLength !== undefined) b.setMaxLength(o.maxLength);
          if (o.autocomplete) b.setAutocomplete(true);
          if (o.choices?.length) b.addChoices(...o.choices.map((c) => ({ name: c.name, value: c.value })));
          return b;
        }),
      }];
    case 'integer':
      return [{
        required,
        add: (t) => t.addIntegerOption((b) => {
          b.setName(o.name).setDescription(o.description).setRequired(required);
          if (o.min !== undefined) b.setMinValue(o.min);
          if (o.max !== undefined) b.setMaxValue(o.max);
          return b;
        }),
      }];
    case 'number':
      return [{
        required,
        add: (t) => t.addNumberOption((b) => {
          b.setName(o.name).setDescription(o.description).setRequired(required);
          if (o.min !== undefined) b.setMinValue(o.min);
          if (o.max !== undefined) b.setMaxValue(o.max);
          return b;
        }),
      }];
    case 'boolean':
      return [{ required, add: (t) => t.addBooleanOption((b) => b.setName(o.name).setDescription(o.description).setRequired(required)) }];
    case 'attachments':
      return discordOptionNames(o).map((name, i) => {
        const isRequired = required && i < Math.max(1, o.min);
        const description = i === 0 ? o.description : `Another one (optional, up to ${o.max})`;
        return { required: isRequired, add: (t) => t.addAttachmentOption((b) => b.setName(name).setDescription(description).setRequired(isRequired)) };
      });
  }
}

/** Adds the options, required ones first (Discord's rule), otherwise in the description's order. */
function addOptions(target: OptionTarget, options: readonly OptionDescription[]): void {
  const planned = options.flatMap(planOption);
  for (const p of [...planned.filter((x) => x.required), ...planned.filter((x) => !x.required)]) p.add(target);
}

/** The slash command for one core command. */
export function slashCommand(d: CommandDescription): SlashCommandBuilder {
  const builder = new SlashCommandBuilder().setName(d.name).setDescription(d.description);
  if (d.subcommands?.length) {
    for (const sub of d.subcommands) {
      builder.addSubcommand((s) => {
        s.setName(sub.name).setDescription(sub.description);
        addOptions(s, sub.options);
        return s;
      });
    }
  } else {
    addOptions(builder, d.options ?? []);
  }
  return builder;
}

/**
 * The JSON body for `PUT /applications/{app}/commands` (global) or `…/guilds/{guild}/commands`: one slash
 * command per core command, then the message command. Global commands carry contexts: servers and the bot's
 * DMs (guild install). Guild commands are never shown in DMs and Discord ignores contexts there.
 */
export function applicationCommands(commands: readonly CommandDescription[], scope: CommandScope): RESTPostAPIApplicationCommandsJSONBody[] {
  if (!commands.some((c) => c.name === TEACH_COMMAND)) throw new Error(`the message command needs the core's /${TEACH_COMMAND}`);
  const builders: Array<SlashCommandBuilder | ContextMenuCommandBuilder> = commands.map(slashCommand);
  builders.push(new ContextMenuCommandBuilder().setName(TEACH_FROM_MESSAGE).setType(ApplicationCommandType.Message));
  if (scope === 'global') {
    for (const b of builders) {
      b.setContexts(InteractionContextType.Guild, InteractionContextType.BotDM);
      b.setIntegrationTypes(ApplicationIntegrationType.GuildInstall);
    }
  }
  return builders.map((b) => b.toJSON());
}

// ---- the message command's modal ---------------------------------------------------------------------

const TEACH_MODAL_PREFIX = 'teach-msg:';
/** The modal's text inputs carry the core's option names, so the submitted values map onto /teach. */
export const TEACH_MODAL_FIELDS = { name: 'name', category: 'category' } as const;

/** The modal the message command opens to ask for the concept's name and category, with /teach's limits. */
export function teachFromMessageModal(messageId: string, teach: CommandDescription): ModalBuilder {
  const field = (name: string) => {
    const o = teach.options?.find((x) => x.name === name);
    if (o?.type !== 'string') throw new Error(`/${teach.name} has no text option "${name}"`);
    const input = new TextInputBuilder().setCustomId(name).setStyle(TextInputStyle.Short).setRequired(true);
    if (o.minLength !== undefined) input.setMinLength(o.minLength);
    if (o.maxLength !== undefined) input.setMaxLength(o.maxLength);
    return { o, input };
  };
  const name = field(TEACH_MODAL_FIELDS.name);
  const category = field(TEACH_MODAL_FIELDS.category);
  return new ModalBuilder()
    .setCustomId(`${TEACH_MODAL_PREFIX}${messageId}`)
    .setTitle('Teach a concept from these images')
    .addLabelComponents(
      new LabelBuilder().setLabel('Name').setDescription(name.o.description.slice(0, 100))
        .setTextInputComponent(name.input.setPlaceholder('hugsy')),
      new LabelBuilder().setLabel('Category').setDescription(category.o.description.slice(0, 100))
        .setTextInputComponent(category.input.setPlaceholder('teddy')),
    );
}

/** The message id a teach modal was opened for, or null when the custom id is not a teach modal's. */
export function parseTeachModalId(customId: string): string | null {
  if (!customId.startsWith(TEACH_MODAL_PREFIX)) return null;
  const id = customId.slice(TEACH_MODAL_PREFIX.length);
  return /^\d{15,21}$/.test(id) ? id : null;
}
