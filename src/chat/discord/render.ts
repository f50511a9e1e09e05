// The core's OutgoingMessage as a Discord message body (content, button rows, images as PNG attachments) for
// the REST routes the adapter calls: interaction webhooks (token) and channel messages (bot token).
import { ButtonStyle, ComponentType, MessageFlags, type APIActionRowComponent, type APIButtonComponentWithCustomId, type RawFile } from 'discord.js';
import type { ChatButton, OutgoingMessage } from '../types.ts';

/** Discord's limits: 2000 characters of content, 5 buttons per row, 5 rows. */
export const MAX_CONTENT = 2000;
const BUTTONS_PER_ROW = 5;
const MAX_ROWS = 5;

export interface DiscordMessageBody {
  content: string;
  components: APIActionRowComponent<APIButtonComponentWithCustomId>[];
  allowed_mentions: { parse: []; users?: string[]; replied_user: false };
  /** the attachments the message keeps: new uploads by index; [] removes every earlier attachment */
  attachments?: Array<{ id: number; filename: string; description?: string }>;
  flags?: number;
}

export interface DiscordPayload {
  body: DiscordMessageBody;
  files: RawFile[];
}

const STYLES: Record<NonNullable<ChatButton['style']>, ButtonStyle.Primary | ButtonStyle.Secondary | ButtonStyle.Danger> = {
  primary: ButtonStyle.Primary,
  secondary: ButtonStyle.Secondary,
  danger: ButtonStyle.Danger,
};

export function buttonRows(buttons: readonly ChatButton[]): APIActionRowComponent<APIButtonComponentWithCustomId>[] {
  const rows: APIActionRowComponent<APIButtonComponentWithCustomId>[] = [];
  for (let i = 0; i < buttons.length && rows.length < MAX_ROWS; i += BUTTONS_PER_ROW) {
    rows.push({
      type: ComponentType.ActionRow,
      components: buttons.slice(i, i + BUTTONS_PER_ROW).map((b) => ({
        type: ComponentType.Button, custom_id: b.id, label: b.label.slice(0, 80), style: STYLES[b.style ?? 'secondary'],
      })),
    });
  }
  return rows;
}

function clip(text: string): string {
  return text.length <= MAX_CONTENT ? text : `${text.slice(0, MAX_CONTENT - 1)}…`;
}

export interface RenderOptions {
  /** ping this user (and nobody else) with a mention in front of the text */
  mention?: string;
  /** ephemeral: only the person who asked sees it (new messages only; an edit keeps what the message was) */
  ephemeral?: boolean;
}

/**
 * The body for a new message or an edit. The message's attachments are replaced by its images (none: the
 * edit removes earlier ones), its buttons by its buttons; nobody is pinged unless `mention` says so.
 */
export function renderMessage(m: OutgoingMessage, options: RenderOptions = {}): DiscordPayload {
  const text = options.mention ? `<@${options.mention}> ${m.text}` : m.text;
  const images = m.images ?? [];
  const body: DiscordMessageBody = {
    content: clip(text),
    components: buttonRows(m.buttons ?? []),
    allowed_mentions: options.mention ? { parse: [], users: [options.mention], replied_user: false } : { parse: [], replied_user: false },
    attachments: images.map((img, i) => ({
      id: i, filename: img.filename, ...(img.generationId === undefined ? {} : { description: `Image #${img.generationId}` }),
    })),
  };
  if (options.ephemeral) body.flags = MessageFlags.Ephemeral;
  const files: RawFile[] = images.map((img) => ({ name: img.filename, data: Buffer.from(img.png.buffer, img.png.byteOffset, img.png.byteLength), contentType: 'image/png' }));
  return { body, files };
}
