// Button ids carry only an action and a database id, so a click works after a restart or days later:
// `reroll:42`, `vary:42`, `info:42`, `delete:42` (generation ids), `cancel:17` (a job id). Clicks are answered
// statelessly from the store by the command that declares the action (CommandDescription.button).

export type ButtonAction = 'reroll' | 'vary' | 'info' | 'delete' | 'cancel';

export function buttonId(action: ButtonAction, id: number): string {
  return `${action}:${id}`;
}

export function parseButtonId(id: string): { action: string; id: number } | null {
  const m = /^([a-z]+):([1-9][0-9]{0,15})$/.exec(id);
  return m ? { action: m[1]!, id: Number(m[2]) } : null;
}
