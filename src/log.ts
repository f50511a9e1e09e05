// pino logging: one root logger; jobs log through `jobLogger(id)` so every line carries the job id.
import pino, { type Logger } from 'pino';

export type { Logger } from 'pino';

export function createLogger(level: string = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { app: 'perfusion-bot' } });
}

export function jobLogger(log: Logger, jobId: number, kind?: string): Logger {
  return log.child(kind ? { jobId, kind } : { jobId });
}
