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
 * Fastify's child logger factory, made lazy: the per-request child (carrying `reqId`) is built
 * only when a request logs at an enabled level. Almost no request logs anything, and building a
 * pino child per request was a measurable share of the increment route's CPU
 * (docs/benchmarks.md). A class, so a request costs one small object and no closures.
 */
export function lazyChildLogger(
  parent: Logger,
  bindings: pino.Bindings,
  options: pino.ChildLoggerOptions,
): Logger {
  return new LazyChild(parent, bindings, options) as unknown as Logger;
}

type LogArgs = [unknown, ...unknown[]];

class LazyChild {
  private built: Logger | undefined;

  constructor(
    private readonly parent: Logger,
    private readonly bindings: pino.Bindings,
    private readonly options: pino.ChildLoggerOptions,
  ) {}

  private real(): Logger {
    this.built ??= this.parent.child(this.bindings, this.options);
    return this.built;
  }

  private emit(level: pino.Level, args: LogArgs): void {
    if (this.built === undefined && !this.parent.isLevelEnabled(level)) return;
    (this.real()[level] as (...a: unknown[]) => void)(...args);
  }

  get level(): string {
    return (this.built ?? this.parent).level;
  }

  set level(value: string) {
    this.real().level = value;
  }

  isLevelEnabled(level: string): boolean {
    return (this.built ?? this.parent).isLevelEnabled(level);
  }

  child(bindings: pino.Bindings, options?: pino.ChildLoggerOptions): Logger {
    return this.real().child(bindings, options);
  }

  fatal(...args: LogArgs): void {
    this.emit('fatal', args);
  }
  error(...args: LogArgs): void {
    this.emit('error', args);
  }
  warn(...args: LogArgs): void {
    this.emit('warn', args);
  }
  info(...args: LogArgs): void {
    this.emit('info', args);
  }
  debug(...args: LogArgs): void {
    this.emit('debug', args);
  }
  trace(...args: LogArgs): void {
    this.emit('trace', args);
  }
  silent(): void {}
}
