// The application commands the bot registers with Discord, and the modal the message command opens.
// Platform-neutral command logic lives in commands/; this file only describes how Discord shows them.
import {
  ApplicationIntegrationType,
  ContextMenuCommandBuilder,
  ApplicationCommandType,
  InteractionContextType,
  LabelBuilder,
  ModalBuilder,
  SlashCommandBuilder,
  TextInputBuilder,
  TextInputStyle,
  type RESTPostAPIApplicationCommandsJSONBody,
} from 'discord.js';

export const COMMAND_NAMES = {
  teach: 'teach',
  imagine: 'imagine',
  concepts: 'concepts',
  queue: 'queue',
  cancel: 'cancel',
  /** Message context command ("Apps" menu on a message that carries images). */
  teachFromMessage: 'Teach concept from these images',
} as const;

/** `/teach` takes up to this many images, one attachment option each (`image1` required). */
export const MAX_TEACH_IMAGES = 10;
export const TEACH_IMAGE_OPTIONS: readonly string[] = Array.from({ length: MAX_TEACH_IMAGES }, (_, i) => `image${i + 1}`);

/** Output sizes offered by `/imagine size:` (width x height, multiples of 8). */
export const IMAGINE_SIZES = ['512x512', '512x768', '768x512', '384x384', '256x256'] as const;
export const IMAGINE_SAMPLERS = ['pndm', 'ddim', 'euler', 'dpmpp-2m'] as const;

export const CONCEPT_NAME_MAX = 32;
export const CATEGORY_MAX = 40;
export const PROMPT_MAX = 1000;

/** Where a command is registered: one server (instant, for development) or globally. */
export type CommandScope = 'guild' | 'global';

/**
 * The JSON body for `PUT /applications/{app}/commands` (global) or `…/guilds/{guild}/commands`.
 * Global commands carry contexts: servers and the bot's DMs (guild install). Guild commands are never shown in
 * DMs and Discord ignores contexts there, so they are left out.
 */
export function applicationCommands(scope: CommandScope): RESTPostAPIApplicationCommandsJSONBody[] {
  const teach = new SlashCommandBuilder()
    .setName(COMMAND_NAMES.teach)
    .setDescription('Teach the bot a new visual concept from 1–10 of your images')
    .addStringOption((o) => o.setName('name').setDescription('Name to use in prompts as <name>, e.g. hugsy')
      .setRequired(true).setMinLength(2).setMaxLength(CONCEPT_NAME_MAX))
    .addStringOption((o) => o.setName('category').setDescription('What it is, in a word or two, e.g. teddy bear, dog, mug')
      .setRequired(true).setMinLength(2).setMaxLength(CATEGORY_MAX));
  TEACH_IMAGE_OPTIONS.forEach((name, i) => {
    teach.addAttachmentOption((o) => o.setName(name)
      .setDescription(i === 0 ? 'A photo of the concept (PNG, JPEG or WebP)' : 'Another photo of the concept (optional)')
      .setRequired(i === 0));
  });

  const imagine = new SlashCommandBuilder()
    .setName(COMMAND_NAMES.imagine)
    .setDescription('Generate an image; use taught concepts as <name> in the prompt')
    .addStringOption((o) => o.setName('prompt').setDescription('What to draw, e.g. a photo of <hugsy> on the beach')
      .setRequired(true).setMaxLength(PROMPT_MAX).setAutocomplete(true))
    .addStringOption((o) => o.setName('negative').setDescription('What to avoid in the image').setMaxLength(PROMPT_MAX))
    .addIntegerOption((o) => o.setName('seed').setDescription('Same seed and settings give the same image')
      .setMinValue(0).setMaxValue(4_294_967_295))
    .addIntegerOption((o) => o.setName('steps').setDescription('Denoising steps: more is slower and finer (default 30)')
      .setMinValue(1).setMaxValue(100))
    .addNumberOption((o) => o.setName('guidance').setDescription('How closely to follow the prompt (default 7.5)')
      .setMinValue(0).setMaxValue(30))
    .addStringOption((o) => o.setName('size').setDescription('Width x height in pixels')
      .addChoices(...IMAGINE_SIZES.map((s) => ({ name: s.replace('x', ' × '), value: s }))))
    .addNumberOption((o) => o.setName('strength').setDescription('How strongly the taught concepts show (0–2, default 1)')
      .setMinValue(0).setMaxValue(2))
    .addStringOption((o) => o.setName('sampler').setDescription('Noise scheduler (default: the model\'s own)')
      .addChoices(...IMAGINE_SAMPLERS.map((s) => ({ name: s, value: s }))));

  const concepts = new SlashCommandBuilder()
    .setName(COMMAND_NAMES.concepts)
    .setDescription('List the concepts you can use here');

  const queue = new SlashCommandBuilder()
    .setName(COMMAND_NAMES.queue)
    .setDescription('Show the job queue and where your jobs are in it');

  const cancel = new SlashCommandBuilder()
    .setName(COMMAND_NAMES.cancel)
    .setDescription('Cancel one of your queued or running jobs')
    .addStringOption((o) => o.setName('job').setDescription('Which job (default: your latest)').setAutocomplete(true));

  const teachFromMessage = new ContextMenuCommandBuilder()
    .setName(COMMAND_NAMES.teachFromMessage)
    .setType(ApplicationCommandType.Message);

  const builders = [teach, imagine, concepts, queue, cancel, teachFromMessage];
  if (scope === 'global') {
    for (const b of builders) {
      b.setContexts(InteractionContextType.Guild, InteractionContextType.BotDM);
      b.setIntegrationTypes(ApplicationIntegrationType.GuildInstall);
    }
  }
  return builders.map((b) => b.toJSON());
}

const TEACH_MODAL_PREFIX = 'teach-msg:';
export const TEACH_MODAL_FIELDS = { name: 'name', category: 'category' } as const;

/** The modal the message command opens to ask for the concept's name and category. */
export function teachFromMessageModal(messageId: string): ModalBuilder {
  return new ModalBuilder()
    .setCustomId(`${TEACH_MODAL_PREFIX}${messageId}`)
    .setTitle('Teach a concept from these images')
    .addLabelComponents(
      new LabelBuilder().setLabel('Name').setDescription('Used in prompts as <name>')
        .setTextInputComponent(new TextInputBuilder().setCustomId(TEACH_MODAL_FIELDS.name).setStyle(TextInputStyle.Short)
          .setRequired(true).setMinLength(2).setMaxLength(CONCEPT_NAME_MAX).setPlaceholder('hugsy')),
      new LabelBuilder().setLabel('Category').setDescription('What it is, in a word or two')
        .setTextInputComponent(new TextInputBuilder().setCustomId(TEACH_MODAL_FIELDS.category).setStyle(TextInputStyle.Short)
          .setRequired(true).setMinLength(2).setMaxLength(CATEGORY_MAX).setPlaceholder('teddy bear')),
    );
}

/** The message id a teach modal was opened for, or null when the custom id is not a teach modal's. */
export function parseTeachModalId(customId: string): string | null {
  if (!customId.startsWith(TEACH_MODAL_PREFIX)) return null;
  const id = customId.slice(TEACH_MODAL_PREFIX.length);
  return /^\d{15,21}$/.test(id) ? id : null;
}
