// The neutral chat surface every front end (Discord, Slack, the local web chat) builds on.
//
// An adapter turns a platform event into a `CommandContext` and hands it to `BotCore.dispatch`; the command
// (commands/*.ts) answers through `ctx.reply`. Work that outlives the request (teach, imagine) becomes a job
// whose row stores `ctx.route`; every later event of that job (queued position, progress, result, failure)
// reaches the adapter as a `JobUpdate` through the `UpdateSink` it registered — also after a restart, because
// the route is read back from the job row. Wording lives in src/chat/messages.ts so all front ends say the
// same thing; adapters only translate `OutgoingMessage` into their platform's message format.
//
// Nothing here knows discord.js, Bolt or HTTP.

export type Platform = 'discord' | 'slack' | 'local';

/**
 * Where a command runs. Concepts are shared by everyone in a scope and names are unique per scope.
 * - `community`: a Discord guild (externalId = guild id) or a Slack workspace (externalId = `${enterpriseId ?? '-'}/${teamId}`)
 * - `dm`: a direct conversation with the bot (externalId = the user's platform id): personal concepts only
 * - `local`: the local web chat (externalId = 'local')
 */
export interface ChatScope {
  platform: Platform;
  kind: 'community' | 'dm' | 'local';
  externalId: string;
  /** guild/workspace name for messages and logs, when known */
  name?: string;
}

/** Who runs a command. Platform ids are stored as strings (Discord snowflakes are 64-bit). */
export interface ChatUser {
  platform: Platform;
  externalId: string;
  /** how to address them in messages (no mention syntax: adapters add mentions themselves) */
  displayName: string;
  /**
   * May manage every concept in the scope (delete others' concepts). Discord: Manage Server or Administrator
   * in that guild; Slack: workspace admin or owner; local chat: true. Always false in DMs (nobody else's data).
   */
  isAdmin: boolean;
}

/** An uploaded file, already downloaded by the adapter (platform URLs expire). Never trust name or type. */
export interface Attachment {
  filename: string;
  /** what the platform claimed; informative only — images are checked by decoding them */
  contentType?: string;
  bytes: Uint8Array;
}

// ---------------------------------------------------------------------------------------------------
// Command descriptions: what adapters register (Discord slash commands, Slack commands/modals, the local
// chat's help) and what BotCore validates before a handler runs.

export type OptionValue = string | number | boolean | Attachment[];
export type OptionValues = Readonly<Record<string, OptionValue | undefined>>;

interface OptionBase {
  /** lowercase, [a-z0-9_-]{1,32} (Discord's rule), unique within the command */
  name: string;
  /** one short line shown next to the option (Discord: ≤ 100 characters) */
  description: string;
  required?: boolean;
}

export interface StringOption extends OptionBase {
  type: 'string';
  minLength?: number;
  maxLength?: number;
  /** checked by BotCore; `patternHint` is the sentence shown when it does not match */
  pattern?: RegExp;
  patternHint?: string;
  /**
   * 'concept': offer the names of concepts visible in the scope (BotCore.autocomplete). 'prompt': the value
   * is a prompt with `<name>` mentions; suggestions complete the last `<…` typed.
   */
  autocomplete?: 'concept' | 'prompt';
  /** a fixed list of allowed values (never together with autocomplete) */
  choices?: readonly { name: string; value: string }[];
}

export interface IntegerOption extends OptionBase {
  type: 'integer';
  min?: number;
  max?: number;
}

export interface NumberOption extends OptionBase {
  type: 'number';
  min?: number;
  max?: number;
}

export interface BooleanOption extends OptionBase {
  type: 'boolean';
}

/**
 * Files. Discord: register `max` attachment options named `${name}1` … `${name}${max}` (the first `min`
 * required) and pass them together as one array under `name`. Slack: a modal `file_input` with
 * `max_files = max`. Local chat: a multipart field repeated.
 */
export interface AttachmentsOption extends OptionBase {
  type: 'attachments';
  min: number;
  max: number;
  /** the count we advise (e.g. 3–10 for teach); fewer is accepted with a note */
  recommended?: { min: number; max: number };
}

export type OptionDescription = StringOption | IntegerOption | NumberOption | BooleanOption | AttachmentsOption;

export interface SubcommandDescription {
  name: string;
  description: string;
  options: readonly OptionDescription[];
}

/**
 * What a command is, for registration and validation. A command has either options or subcommands
 * (Discord's rule: not both). Commands are never admin-only at registration: ownership/admin rights are
 * checked in code (DM contexts ignore Discord's default permissions).
 */
export interface CommandDescription {
  /** lowercase, as typed after the slash */
  name: string;
  description: string;
  options?: readonly OptionDescription[];
  subcommands?: readonly SubcommandDescription[];
  /**
   * Buttons this command answers: a click on a button whose id is `${action}:${id}` runs this command with
   * `{ [option]: id }` (an integer option). Ids are built with `buttonId()` (src/chat/buttons.ts) and carry
   * only database ids, so they keep working after a restart.
   */
  button?: { action: string; option: string };
}

// ---------------------------------------------------------------------------------------------------
// Messages going out.

export interface ChatButton {
  /** `${action}:${id}`, ≤ 100 characters, e.g. `reroll:42`; answer clicks with BotCore.press */
  id: string;
  label: string;
  style?: 'primary' | 'secondary' | 'danger';
}

export interface OutgoingImage {
  filename: string;
  png: Uint8Array;
  width: number;
  height: number;
  /** the generation this image is, when it is one (for alt text, links) */
  generationId?: number;
}

export interface OutgoingMessage {
  /**
   * Plain text with a small subset of markdown that every platform renders or degrades gracefully:
   * `**bold**`, `` `code` ``, line breaks. User-provided text inside it is already escaped with
   * `escapeChatText` (src/chat/messages.ts); adapters must still disable mentions (`allowed_mentions: []`).
   */
  text: string;
  images?: OutgoingImage[];
  buttons?: ChatButton[];
  /** only the person who asked should see it, where the platform can (Discord ephemeral, Slack ephemeral) */
  private?: boolean;
  /** the job this message is about: later `JobUpdate`s of this job should edit this message */
  jobId?: number;
  /** this message confirms that this generation was deleted: front ends take its image down where they show it */
  deletedGeneration?: number;
}

// ---------------------------------------------------------------------------------------------------
// Running commands.

/**
 * Where the updates of a job go. `data` is the adapter's own JSON (strings, numbers, booleans, null),
 * stored with the job, e.g.
 *   Discord: { applicationId, interactionToken, tokenExpiresAt, channelId, guildId, messageId }
 *   Slack:   { teamId, channelId, threadTs, messageTs, responseUrl, responseUrlExpiresAt, responseUrlUses }
 *   local:   {}
 * Keep it small (< 4 KB) and free of secrets other than short-lived interaction tokens.
 */
export interface DeliveryRoute {
  platform: Platform;
  data: Record<string, string | number | boolean | null>;
}

/** What a command's handler receives. Built by the adapter; options are validated before `run`. */
export interface CommandContext {
  command: string;
  subcommand?: string;
  user: ChatUser;
  scope: ChatScope;
  /** by option name; attachments arrive as `Attachment[]` under the attachments option's name */
  options: OptionValues;
  /** stored with every job this command creates; job updates are delivered there */
  route: DeliveryRoute;
  /**
   * Answers the command. A command replies exactly once (errors included: BotCore replies with the
   * user-facing message of a thrown `UserError`). Adapters must have acknowledged the platform event
   * before calling `dispatch` (Discord deferReply, Slack ack), since a handler may take a few seconds
   * (image decoding, database).
   */
  reply(message: OutgoingMessage): Promise<void>;
}

/** A button click: `id` as sent in `ChatButton.id`; who and where, as for commands. */
export interface ButtonPress {
  id: string;
  user: ChatUser;
  scope: ChatScope;
  route: DeliveryRoute;
  reply(message: OutgoingMessage): Promise<void>;
}

/** An autocomplete request for a string option with `autocomplete` set. Answer within ~2 s. */
export interface AutocompleteRequest {
  command: string;
  subcommand?: string;
  option: string;
  /** what the person has typed so far in that option */
  value: string;
  user: ChatUser;
  scope: ChatScope;
}

export interface AutocompleteChoice {
  /** shown (≤ 100 characters) */
  name: string;
  /** put into the option when picked */
  value: string;
}

// ---------------------------------------------------------------------------------------------------
// Job updates going out later.

export type JobKind = 'teach' | 'imagine';
export type JobState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export type JobEventType =
  | 'queued'     // accepted; position and ETA known
  | 'position'   // its queue position changed (sent at most every few seconds)
  | 'started'    // a GPU worker took it
  | 'progress'   // steps done (throttled: at most one every PROGRESS_INTERVAL_MS per job)
  | 'requeued'   // interrupted (restart, crashed worker) and waiting again; it resumes from its checkpoint
  | 'succeeded'
  | 'failed'
  | 'cancelled';

/** A job as people see it: what `GET /api/jobs/:id` returns and what updates carry. */
export interface JobStatus {
  id: number;
  kind: JobKind;
  state: JobState;
  /** 1 = next to start; null when not queued */
  position: number | null;
  /** estimated milliseconds until it finishes (queued or running), from measured step times; null if unknown */
  etaMs: number | null;
  progress: { step: number; total: number; loss?: number } | null;
  /** a sentence for people when failed or cancelled */
  error: string | null;
  attempts: number;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  /** the concept a teach job teaches */
  concept: string | null;
  /** the generation an imagine job made, once succeeded */
  generationId: number | null;
}

/**
 * One event of one job for the platform that created it. `message` is the full text to show now (the
 * same words in every front end); an adapter typically edits the message it first replied with
 * (found through `route`), or posts a new one when that is no longer possible (Discord tokens expire
 * after 15 minutes, Slack response_urls after 30 minutes or 5 uses).
 */
export interface JobUpdate {
  event: JobEventType;
  job: JobStatus;
  route: DeliveryRoute;
  /** who asked, to mention them when posting a new message */
  user: { platform: Platform; externalId: string; displayName: string };
  message: OutgoingMessage;
  /** true for succeeded/failed/cancelled: no more updates of this job follow */
  final: boolean;
}

/**
 * How an adapter receives job updates. Updates of one job arrive in order, never concurrently. A final
 * update is marked delivered when `deliver` resolves; if it throws (platform down) or the process stops
 * first, it is delivered again after the next start — so a user is told exactly once in the normal case
 * and at least once otherwise.
 */
export interface UpdateSink {
  platform: Platform;
  deliver(update: JobUpdate): Promise<void>;
  /** at most one progress/position update per job per this many ms (default: PROGRESS_INTERVAL_MS) */
  progressIntervalMs?: number;
  /** when given, non-final updates of a job go out only while this says true (e.g. someone is watching it) */
  wants?(jobId: number): boolean;
}

/** The core services adapters talk to (implemented in src/bot.ts). */
export interface BotCore {
  /** every command, for registration (Discord) or help (Slack, local chat) */
  readonly commands: readonly CommandDescription[];
  /** the model in use, for a status line ("built-in demo model" is said plainly) */
  readonly model: { name: string; isDemo: boolean; resolution: number };
  /** validates options against the description, runs the command; user errors become a private reply */
  dispatch(ctx: CommandContext): Promise<void>;
  /** runs the command a button id belongs to (`reroll:42` → reroll with generation 42) */
  press(press: ButtonPress): Promise<void>;
  autocomplete(req: AutocompleteRequest): Promise<AutocompleteChoice[]>;
  /** registers the adapter's sink; returns the function that removes it */
  addSink(sink: UpdateSink): () => void;
  /** merges fields into a job's stored route (e.g. the id of the message the adapter posted) */
  updateRoute(jobId: number, data: DeliveryRoute['data']): Promise<void>;
}
