// What the command-line tools (npm run imagine / teach) share: how they talk to the terminal, a usage error,
// a one-line progress bar, and the entry from the shell (Ctrl-C stops the work cleanly).
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Readonly<Record<string, string | undefined>>;
  /** whether stderr is a terminal (then the progress bar redraws one line) */
  interactive: boolean;
  signal?: AbortSignal;
}

/** A command line the tool cannot run; the message is for the person typing ('' asks for the usage text). */
export class UsageError extends Error {}

export function seconds(since: number): string {
  return `${((performance.now() - since) / 1000).toFixed(1)} s`;
}

/**
 * `[##########..........] 12/50 steps, …` on one redrawn line in a terminal; elsewhere (a log, a pipe) one line
 * per tenth of the way.
 */
export class ProgressBar {
  private lastTenth = -1;
  private drawn = false;

  constructor(private readonly io: CliIo) {}

  update(step: number, total: number, detail: string): void {
    const width = 30;
    const filled = Math.round((step / total) * width);
    const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${step}/${total} steps, ${detail}`;
    if (this.io.interactive) {
      this.io.stderr(`\r${line}`);
      this.drawn = true;
      return;
    }
    const tenth = Math.floor((step / total) * 10);
    if (tenth !== this.lastTenth) {
      this.lastTenth = tenth;
      this.io.stderr(`${line}\n`);
    }
  }

  /** A line of its own under the bar (the bar is redrawn below it). */
  note(text: string): void {
    this.io.stderr(`${this.drawn && this.io.interactive ? '\n' : ''}note: ${text}\n`);
  }

  done(): void {
    if (this.io.interactive && this.drawn) this.io.stderr('\n');
  }
}

/** Runs `tool` with the process's arguments and terminal when `moduleUrl` is the script node was started with. */
export async function runFromShell(moduleUrl: string, tool: (argv: readonly string[], io: CliIo) => Promise<number>): Promise<void> {
  if (!process.argv[1] || moduleUrl !== pathToFileURL(resolve(process.argv[1])).href) return;
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort());
  process.exitCode = await tool(process.argv.slice(2), {
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
    env: process.env,
    interactive: process.stderr.isTTY === true,
    signal: controller.signal,
  });
}
