/** @module obs/logger — pino to stdout, app.log (configured level) and error.log (errors only). */
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { RotatingFile } from './rotating-file.js';

export type { Logger };

/** Options for {@link createLogger}. */
export interface LoggerOptions {
  /** pino level for stdout and app.log. @default 'info' */
  readonly level?: string;
  /** Directory for app.log and error.log; omit for stdout only. */
  readonly dir?: string;
  /** Rotate each file at this size, bytes. @default 52428800 */
  readonly maxBytes?: number;
  /** Rotated copies kept per file. @default 14 */
  readonly keep?: number;
  /** Also log to stdout. @default true */
  readonly stdout?: boolean;
}

/** A logger plus the files behind it, so shutdown can flush them. */
export interface LoggerHandle {
  readonly logger: Logger;
  /** Flushes and closes the log files. */
  close(): void;
}

/** Paths that must never reach a log line (the admin token rides in Authorization). */
const REDACT = [
  'req.headers.authorization',
  'headers.authorization',
  'adminToken',
  'config.adminToken',
];

export function createLogger(options: LoggerOptions = {}): LoggerHandle {
  const level = options.level ?? 'info';
  const files: RotatingFile[] = [];
  const streams: pino.StreamEntry[] = [];
  if (options.stdout ?? true)
    streams.push({
      level: level as pino.Level,
      stream: pino.destination({ dest: 1, sync: false }),
    });
  if (options.dir !== undefined) {
    const app = new RotatingFile({
      path: join(options.dir, 'app.log'),
      maxBytes: options.maxBytes,
      keep: options.keep,
    });
    const error = new RotatingFile({
      path: join(options.dir, 'error.log'),
      maxBytes: options.maxBytes,
      keep: options.keep,
    });
    files.push(app, error);
    streams.push({ level: level as pino.Level, stream: app }, { level: 'error', stream: error });
  }
  const logger = pino(
    {
      level: level === 'silent' ? 'silent' : 'trace',
      redact: { paths: REDACT, censor: '[redacted]' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.multistream(streams),
  );
  // The root level is the lowest any stream wants; each stream filters to its own level.
  if (level !== 'silent') logger.level = lowest(level);
  return {
    logger,
    close() {
      for (const f of files) f.end();
    },
  };
}

function lowest(level: string): string {
  const order = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];
  return order.indexOf(level) <= order.indexOf('error') ? level : 'error';
}

/**
 * The logger for one HTTP request's lines: Tally's logger with the request's id bound. Fastify is
 * given no logger (its per-request child and response listeners cost 5-8% of the no-op route,
 * docs/benchmarks.md), so `request.log` discards everything; routes log through this instead, and
 * the child is built only by the few requests that log at all.
 */
export function requestLog(logger: Logger, request: { readonly id: string }): Logger {
  return logger.child({ reqId: request.id });
}
