// Block Kit and text for the Slack adapter: the teach modal (and reading its submission back), slash command text
// read back as typed, and the core's messages (src/chat/messages.ts wording) as Slack mrkdwn with buttons whose
// action_ids are the core's button ids.
import type { types } from '@slack/bolt';
import { z } from 'zod';
import type { ChatButton, OutgoingMessage } from '../types.ts';

type KnownBlock = types.KnownBlock;
type ModalView = types.ModalView;
type Button = types.Button;

/** Slash commands the app registers (the manifest lists the same). */
export const SLACK_COMMANDS = ['/teach', '/imagine', '/concepts', '/queue', '/cancel'] as const;

/** callback_id of the message shortcut "Teach concept" (manifest: features.shortcuts). */
export const TEACH_SHORTCUT_CALLBACK_ID = 'teach_from_message';
/** callback_id of the teach modal, from /teach or from the message shortcut. */
export const TEACH_MODAL_CALLBACK_ID = 'teach_modal';

/** block_id / action_id pairs of the teach modal's inputs (view.state.values[block][action]). */
export const TEACH_INPUTS = {
  name: { block: 'teach_name', action: 'name' },
  category: { block: 'teach_category', action: 'category' },
  images: { block: 'teach_images', action: 'images' },
} as const;

/** Slack's file_input allows 1–10 files, 10 MB each. */
export const MAX_TEACH_IMAGES = 10;
/** Extensions offered in the file picker. Slack checks extensions only; the bytes are checked after download. */
export const TEACH_IMAGE_FILETYPES = ['png', 'jpg', 'jpeg', 'webp'] as const;

const NAME_MAX = 32;
const CATEGORY_MAX = 32;
const SECTION_TEXT_MAX = 3000;

// ---- escaping -----------------------------------------------------------------------------------------------

/**
 * Escapes user text for mrkdwn/plain message text: `&`, `<` and `>` are control characters in Slack, so a
 * prompt containing `<!channel>` or `<@U123>` must not turn into a mention.
 */
export function escapeSlackText(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

function plain(text: string) {
  return { type: 'plain_text' as const, text, emoji: true };
}

function mrkdwn(text: string) {
  return { type: 'mrkdwn' as const, text: truncate(text, SECTION_TEXT_MAX) };
}

/**
 * A slash command's text as the person typed it. Slack sends `&`, `<` and `>` as HTML entities and its own
 * markup between real angle brackets: mentions `<@U123|ana>`, channels `<#C123|general>`, links
 * `<https://x|label>`, `<!here>`. The markup becomes plain text (`@ana`, `#general`, the label or URL, `@here`) and
 * the entities the characters they stand for, so `/imagine a photo of <hugsy>` reaches the core as typed.
 */
export function typedText(text: string): string {
  return text
    .replace(/<([^<>]*)>/g, (_all, inner: string) => {
      const bar = inner.indexOf('|');
      const target = bar < 0 ? inner : inner.slice(0, bar);
      const label = bar < 0 ? undefined : inner.slice(bar + 1);
      if (target.startsWith('@') || target.startsWith('#')) return `${target[0]}${label ?? target.slice(1)}`;
      if (target.startsWith('!')) return label ? (label.startsWith('@') ? label : `@${label}`) : `@${target.slice(1).split('^')[0]}`;
      return label ?? target;
    })
    .replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

// ---- teach modal --------------------------------------------------------------------------------------------

/** Where the teach flow was started, carried through the modal in private_metadata. */
export const teachOriginSchema = z.object({
  /** channel to post progress in */
  channel: z.string().min(1),
  /** message shortcut: the message whose files are the training images, and their ids */
  messageTs: z.string().optional(),
  fileIds: z.array(z.string()).max(MAX_TEACH_IMAGES).optional(),
  /** training steps typed after /teach (`steps:200`); the core checks the range */
  steps: z.number().int().optional(),
});
export type TeachOrigin = z.infer<typeof teachOriginSchema>;

export function encodeTeachOrigin(origin: TeachOrigin): string {
  return JSON.stringify(teachOriginSchema.parse(origin));
}

/** Reads private_metadata back; null when it is not ours (e.g. a modal from an older version). */
export function decodeTeachOrigin(privateMetadata: string): TeachOrigin | null {
  try {
    const parsed = teachOriginSchema.safeParse(JSON.parse(privateMetadata));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

export interface TeachModalOptions {
  origin: TeachOrigin;
  /** Pre-filled values (e.g. `/teach hugsy teddy`). */
  name?: string;
  category?: string;
  /**
   * Message shortcut: the images already come from the message, so no file input is shown — only how many
   * images were found there.
   */
  imagesFromMessage?: number;
}

/** The modal `/teach` and the "Teach concept" shortcut open: name, category and (for /teach) up to 10 images. */
export function teachModal(opts: TeachModalOptions): ModalView {
  const blocks: KnownBlock[] = [
    {
      type: 'input',
      block_id: TEACH_INPUTS.name.block,
      label: plain('Concept name'),
      hint: plain('Use it in prompts as <name>, e.g. "a photo of <hugsy> on the beach". Letters, digits, - and _.'),
      element: {
        type: 'plain_text_input', action_id: TEACH_INPUTS.name.action, max_length: NAME_MAX,
        placeholder: plain('hugsy'),
        ...(opts.name ? { initial_value: truncate(opts.name, NAME_MAX) } : {}),
      },
    },
    {
      type: 'input',
      block_id: TEACH_INPUTS.category.block,
      label: plain('Category'),
      hint: plain('One everyday word for what it is: teddy, dog, mug, person, style…'),
      element: {
        type: 'plain_text_input', action_id: TEACH_INPUTS.category.action, max_length: CATEGORY_MAX,
        placeholder: plain('teddy'),
        ...(opts.category ? { initial_value: truncate(opts.category, CATEGORY_MAX) } : {}),
      },
    },
  ];
  if (opts.imagesFromMessage === undefined) {
    blocks.push({
      type: 'input',
      block_id: TEACH_INPUTS.images.block,
      label: plain(`Images (up to ${MAX_TEACH_IMAGES}; 3 or more work best)`),
      hint: plain('Photos of the same thing from a few angles. PNG, JPEG or WebP, up to 10 MB each.'),
      element: {
        type: 'file_input', action_id: TEACH_INPUTS.images.action,
        filetypes: [...TEACH_IMAGE_FILETYPES], max_files: MAX_TEACH_IMAGES,
      },
    });
  } else {
    const n = opts.imagesFromMessage;
    blocks.push({
      type: 'context',
      elements: [mrkdwn(`Teaching from the ${n} image${n === 1 ? '' : 's'} in the selected message.`)],
    });
  }
  return {
    type: 'modal',
    callback_id: TEACH_MODAL_CALLBACK_ID,
    private_metadata: encodeTeachOrigin(opts.origin),
    title: plain('Teach a concept'),
    submit: plain('Teach'),
    close: plain('Cancel'),
    blocks,
  };
}

/** A file as it appears in a file_input submission or a message (only the fields the adapter reads). */
export interface SlackFileInfo {
  id: string;
  name?: string;
  title?: string;
  mimetype?: string;
  filetype?: string;
  size?: number;
  url_private?: string;
  url_private_download?: string;
  /** "check_file_info" for Slack Connect stubs: call files.info to get the URLs */
  file_access?: string;
}

export interface TeachSubmission {
  name: string;
  category: string;
  /** Files from the file input (empty for the message-shortcut modal, whose files come from the origin). */
  files: SlackFileInfo[];
  origin: TeachOrigin | null;
}

interface SubmittedView {
  private_metadata?: string;
  state: { values: Record<string, Record<string, { value?: string | null; files?: unknown[] | null }>> };
}

const submittedFileSchema = z.object({
  id: z.string(),
  name: z.string().optional(),
  title: z.string().optional(),
  mimetype: z.string().optional(),
  filetype: z.string().optional(),
  size: z.number().optional(),
  url_private: z.string().optional(),
  url_private_download: z.string().optional(),
  file_access: z.string().optional(),
});

/** Reads the teach modal's state back into plain values (trimmed; missing inputs read as empty). */
export function readTeachSubmission(view: SubmittedView): TeachSubmission {
  const values = view.state.values;
  const text = (input: { block: string; action: string }) => (values[input.block]?.[input.action]?.value ?? '').trim();
  const rawFiles = values[TEACH_INPUTS.images.block]?.[TEACH_INPUTS.images.action]?.files ?? [];
  const files: SlackFileInfo[] = [];
  for (const raw of rawFiles) {
    const parsed = submittedFileSchema.safeParse(raw);
    if (parsed.success) files.push(parsed.data);
  }
  return {
    name: text(TEACH_INPUTS.name),
    category: text(TEACH_INPUTS.category),
    files,
    origin: view.private_metadata ? decodeTeachOrigin(view.private_metadata) : null,
  };
}

/**
 * The ack body that keeps the modal open and shows messages under the inputs
 * (`ack(teachModalErrors({ name: 'That name is taken.' }))`).
 */
export function teachModalErrors(errors: Partial<Record<keyof typeof TEACH_INPUTS, string>>): {
  response_action: 'errors';
  errors: Record<string, string>;
} {
  const out: Record<string, string> = {};
  for (const [field, message] of Object.entries(errors) as Array<[keyof typeof TEACH_INPUTS, string | undefined]>) {
    if (message) out[TEACH_INPUTS[field].block] = message;
  }
  return { response_action: 'errors', errors: out };
}

// ---- messages -----------------------------------------------------------------------------------------------

/** A message body for chat.postMessage / chat.update / respond: `text` is the notification fallback. */
export interface SlackMessage {
  text: string;
  blocks: KnownBlock[];
}

/**
 * The core's message text (src/chat/messages.ts: `**bold**`, user text escaped with backslashes) as Slack
 * mrkdwn: `&`, `<`, `>` escaped (so `<hugsy>` is shown, not parsed as a link or mention), backslash escapes
 * removed (Slack has none), `**bold**` → `*bold*`.
 */
export function slackText(text: string): string {
  return escapeSlackText(text).replace(/\\([\\*_`~|])|\*\*/g, (_all, escaped: string | undefined) => escaped ?? '*');
}

/** Slack buttons know only the primary and danger styles. `value` comes back with the click. */
function slackButton(b: ChatButton, value: string): Button {
  return {
    type: 'button', text: plain(b.label), action_id: b.id, value,
    ...(b.style === 'primary' || b.style === 'danger' ? { style: b.style } : {}),
    ...(b.id.startsWith('delete:') ? {
      confirm: {
        title: plain('Delete this image?'),
        text: plain('Only the person who asked for it or a workspace admin can delete it.'),
        confirm: plain('Delete'),
        deny: plain('Keep'),
        style: 'danger' as const,
      },
    } : {}),
  };
}

export interface SlackMessageOptions {
  /** put before the text, already mrkdwn (e.g. a mention `<@U123> `) */
  prefix?: string;
  /** a button's `value` by its id (default: the id), e.g. the uploaded file a delete button takes down */
  buttonValues?: Readonly<Record<string, string>>;
}

/**
 * A core message as Slack Block Kit: its text in one section and its buttons in one actions block, each
 * button's action_id being the core's button id (`reroll:42`). Images are not part of it: they are uploaded
 * with files.uploadV2.
 */
export function slackMessage(message: Pick<OutgoingMessage, 'text' | 'buttons'>, opts: SlackMessageOptions = {}): SlackMessage {
  const text = `${opts.prefix ?? ''}${slackText(message.text)}`;
  const blocks: KnownBlock[] = [{ type: 'section', text: mrkdwn(text) }];
  const buttons = (message.buttons ?? []).slice(0, 25);
  if (buttons.length > 0) {
    blocks.push({ type: 'actions', block_id: 'job_actions', elements: buttons.map((b) => slackButton(b, opts.buttonValues?.[b.id] ?? b.id)) });
  }
  return { text: truncate(text, 3900), blocks };
}
