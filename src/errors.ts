// Errors a person may see. A UserError's message is a full sentence saying what is wrong and what to do;
// it is shown in chat (and returned by the local HTTP API with `status`) as it is. Anything else is an
// internal error: logged with its stack, and the person sees only a short apology.

export class UserError extends Error {
  /** the HTTP status the local API answers with */
  readonly status: number;
  constructor(message: string, status = 400) {
    super(message);
    this.name = 'UserError';
    this.status = status;
  }
}

/** Something named does not exist (or is not visible to the asker). */
export class NotFoundError extends UserError {
  constructor(message: string) { super(message, 404); this.name = 'NotFoundError'; }
}

/** The asker may not do this (not the owner, not an admin). */
export class ForbiddenError extends UserError {
  constructor(message: string) { super(message, 403); this.name = 'ForbiddenError'; }
}

/** A limit was reached (queue limit); the message says when to try again. */
export class LimitError extends UserError {
  constructor(message: string) { super(message, 429); this.name = 'LimitError'; }
}

/** The bot is shutting down or not ready. */
export class UnavailableError extends UserError {
  constructor(message: string) { super(message, 503); this.name = 'UnavailableError'; }
}

export const INTERNAL_ERROR_MESSAGE = 'Something went wrong on our side. It has been logged; please try again in a moment.';
