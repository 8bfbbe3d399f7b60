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

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;

/**
 * Fastify's child logger factory, made lazy: the per-request child (carrying `reqId`) is built
 * only when a request logs at an enabled level. Building one per request cost about 4% of the
 * increment route's CPU (see docs/benchmarks.md); almost no request logs anything.
 */
export function lazyChildLogger(
  parent: Logger,
  bindings: pino.Bindings,
  options: pino.ChildLoggerOptions,
): Logger {
  let child: Logger | undefined;
  const real = (): Logger => {
    child ??= parent.child(bindings, options);
    return child;
  };
  const lazy: Record<string, unknown> = {
    child: (b: pino.Bindings, o?: pino.ChildLoggerOptions) => real().child(b, o),
    silent: () => undefined,
    isLevelEnabled: (level: string) => (child ?? parent).isLevelEnabled(level),
  };
  for (const level of LEVELS) {
    lazy[level] = (...args: unknown[]) => {
      if (child === undefined && !parent.isLevelEnabled(level)) return;
      (real()[level] as (...a: unknown[]) => void)(...args);
    };
  }
  Object.defineProperty(lazy, 'level', {
    get: () => (child ?? parent).level,
    set: (value: string) => {
      real().level = value;
    },
    enumerable: true,
  });
  return lazy as unknown as Logger;
}
