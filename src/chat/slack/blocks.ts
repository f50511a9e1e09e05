// Block Kit for the Slack adapter: the teach modal (and reading its submission back), progress and result
// messages with buttons whose action_ids carry the id they act on, and text escaping for user-provided text.
import type { types } from '@slack/bolt';
import { z } from 'zod';

type KnownBlock = types.KnownBlock;
type ModalView = types.ModalView;
type Button = types.Button;

/** Slash commands the app registers (the manifest lists the same). */
export const SLACK_COMMANDS = ['/teach', '/imagine', '/concepts', '/queue', '/cancel'] as const;
export type SlackCommandName = (typeof SLACK_COMMANDS)[number];

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

// ---- teach modal --------------------------------------------------------------------------------------------

/** Where the teach flow was started, carried through the modal in private_metadata. */
export const teachOriginSchema = z.object({
  /** channel to post progress in */
  channel: z.string().min(1),
  /** message shortcut: the message whose files are the training images, and their ids */
  messageTs: z.string().optional(),
  fileIds: z.array(z.string()).max(MAX_TEACH_IMAGES).optional(),
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
      label: plain(`Images (3 to ${MAX_TEACH_IMAGES})`),
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

// ---- buttons ------------------------------------------------------------------------------------------------

/** What a button does; its action_id is `<action>:<id>` so a click can be handled statelessly after a restart. */
export const BUTTON_ACTIONS = ['reroll', 'variations', 'info', 'delete', 'cancel'] as const;
export type ButtonAction = (typeof BUTTON_ACTIONS)[number];
/** Matches every button action_id this adapter produces (for `app.action(BUTTON_ACTION_PATTERN, …)`). */
export const BUTTON_ACTION_PATTERN = /^(reroll|variations|info|delete|cancel):(.+)$/;

const ACTION_ID_MAX = 255;

export function buttonActionId(action: ButtonAction, id: string): string {
  const actionId = `${action}:${id}`;
  if (id.length === 0 || actionId.length > ACTION_ID_MAX) throw new RangeError(`button id must be 1–${ACTION_ID_MAX - action.length - 1} characters`);
  return actionId;
}

export function parseButtonActionId(actionId: string): { action: ButtonAction; id: string } | null {
  const match = BUTTON_ACTION_PATTERN.exec(actionId);
  return match ? { action: match[1] as ButtonAction, id: match[2]! } : null;
}

function button(text: string, action: ButtonAction, id: string, extra: Partial<Button> = {}): Button {
  return { type: 'button', text: plain(text), action_id: buttonActionId(action, id), value: id, ...extra };
}

// ---- messages -----------------------------------------------------------------------------------------------

/** A message body for chat.postMessage / chat.update: `text` is the notification fallback. */
export interface SlackMessage {
  text: string;
  blocks: KnownBlock[];
}

/** `▰▰▰▱▱▱▱▱▱▱ 30%` — ten cells, rounded down so 100% only shows when done. */
export function progressBar(fraction: number): string {
  const f = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0));
  const filled = Math.floor(f * 10);
  return `${'▰'.repeat(filled)}${'▱'.repeat(10 - filled)} ${Math.floor(f * 100)}%`;
}

export interface ProgressMessageOptions {
  /** What is running, already worded (e.g. "Teaching <hugsy> (teddy) for @ana"); escaped here. */
  title: string;
  /** Current state in words ("Queued, position 2", "Step 12 of 30"); escaped here. */
  status: string;
  /** 0..1 when known; omitted while queued. */
  fraction?: number;
  /** The job the cancel button acts on; no button when omitted (e.g. finished). */
  cancelJobId?: string;
}

export function progressMessage(opts: ProgressMessageOptions): SlackMessage {
  const title = escapeSlackText(opts.title);
  const status = escapeSlackText(opts.status);
  const lines = [`*${title}*`, status];
  if (opts.fraction !== undefined) lines.push(`\`${progressBar(opts.fraction)}\``);
  const blocks: KnownBlock[] = [{ type: 'section', text: mrkdwn(lines.join('\n')) }];
  if (opts.cancelJobId) {
    blocks.push({ type: 'actions', block_id: 'progress_actions', elements: [button('Cancel', 'cancel', opts.cancelJobId)] });
  }
  const percent = opts.fraction === undefined ? '' : ` (${Math.floor(Math.min(1, Math.max(0, opts.fraction)) * 100)}%)`;
  return { text: `${opts.title}: ${opts.status}${percent}`, blocks };
}

export interface ResultMessageOptions {
  generationId: string;
  /** The prompt as the user wrote it; escaped here. */
  prompt: string;
  /** A short line under the prompt (seed, steps, concepts…), already worded; escaped here. */
  details?: string;
  /** The requester's Slack user id, mentioned in the message. */
  requesterUserId: string;
}

/**
 * The finished-image message: what was asked, by whom, and the buttons. The image itself is uploaded with
 * files.uploadV2 into the same thread; delete is shown to everyone and checked on click (requester or admin).
 */
export function resultMessage(opts: ResultMessageOptions): SlackMessage {
  const prompt = escapeSlackText(truncate(opts.prompt, 1000));
  const lines = [`<@${opts.requesterUserId}> *${prompt}*`];
  if (opts.details) lines.push(escapeSlackText(opts.details));
  const id = opts.generationId;
  return {
    text: `Image ready: ${truncate(opts.prompt, 200)}`,
    blocks: [
      { type: 'section', text: mrkdwn(lines.join('\n')) },
      {
        type: 'actions',
        block_id: 'result_actions',
        elements: [
          button('Re-roll', 'reroll', id),
          button('Variations', 'variations', id),
          button('Info', 'info', id),
          button('Delete', 'delete', id, {
            style: 'danger',
            confirm: {
              title: plain('Delete this image?'),
              text: plain('Only the person who asked for it or a workspace admin can delete it.'),
              confirm: plain('Delete'),
              deny: plain('Keep'),
              style: 'danger',
            },
          }),
        ],
      },
    ],
  };
}

/** A failure shown to the user: the typed error's message (already worded for a person); escaped here. */
export function errorMessage(title: string, message: string): SlackMessage {
  return {
    text: `${title}: ${message}`,
    blocks: [{ type: 'section', text: mrkdwn(`:warning: *${escapeSlackText(title)}*\n${escapeSlackText(message)}`) }],
  };
}

/** "Info" for a generation: label/value pairs (seed, steps, guidance, sampler, concepts…) as a field list. */
export function infoMessage(title: string, fields: Array<[label: string, value: string]>): SlackMessage {
  const blocks: KnownBlock[] = [{ type: 'section', text: mrkdwn(`*${escapeSlackText(title)}*`) }];
  // A section holds at most 10 fields.
  for (let i = 0; i < fields.length; i += 10) {
    blocks.push({
      type: 'section',
      fields: fields.slice(i, i + 10).map(([label, value]) => mrkdwn(`*${escapeSlackText(label)}*\n${escapeSlackText(truncate(value, 1900))}`)),
    });
  }
  return { text: `${title}: ${fields.map(([l, v]) => `${l} ${v}`).join(', ')}`, blocks };
}
