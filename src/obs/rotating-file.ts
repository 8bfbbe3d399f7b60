/** @module obs/rotating-file — an append-only log file that rotates by size and by day. */
import { mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { SonicBoom as SonicBoomType } from 'sonic-boom';

// sonic-boom is CommonJS whose named export Node's ESM loader cannot see.
const SonicBoom: typeof SonicBoomType = createRequire(import.meta.url)('sonic-boom');

/** Options for {@link RotatingFile}. */
export interface RotatingFileOptions {
  /** The live file, e.g. `log/app.log`; rotated copies are `app.log.1` (newest) … `.N`. */
  readonly path: string;
  /** Rotate when the live file reaches this many bytes. @default 52428800 (50 MiB) */
  readonly maxBytes?: number;
  /** Rotated copies kept; older ones are deleted. @default 14 */
  readonly keep?: number;
  /** Also rotate when the UTC date changes. @default true */
  readonly daily?: boolean;
}

/**
 * A pino destination. Writes go through SonicBoom in async mode (buffered, never blocking the
 * event loop on disk). Rotation renames the live file and reopens the same path, so readers that
 * follow `app.log` by name (tail -F, the CloudWatch agent) keep working. We do not use pino-roll:
 * it numbers the live file itself (`app.1.log`), so no stable `app.log` exists to follow.
 */
export class RotatingFile {
  private readonly boom: SonicBoomType;
  private readonly maxBytes: number;
  private readonly keep: number;
  private readonly daily: boolean;
  private bytes: number;
  private day: string;

  constructor(private readonly options: RotatingFileOptions) {
    this.maxBytes = options.maxBytes ?? 50 * 1024 * 1024;
    this.keep = options.keep ?? 14;
    this.daily = options.daily ?? true;
    mkdirSync(dirnameOf(options.path), { recursive: true });
    this.bytes = sizeOf(options.path);
    this.day = today();
    this.boom = new SonicBoom({
      dest: options.path,
      append: true,
      mkdir: true,
      sync: false,
      minLength: 4096,
    });
    this.boom.on('error', () => {
      // A failing log disk must not take the service down; the stdout copy still exists.
    });
  }

  write(chunk: string): boolean {
    this.bytes += Buffer.byteLength(chunk);
    if (this.bytes > this.maxBytes || (this.daily && today() !== this.day)) this.rotate();
    return this.boom.write(chunk);
  }

  /** Writes out buffered lines; call before exit. */
  flushSync(): void {
    try {
      this.boom.flushSync();
    } catch {
      // Nothing was pending, or the file is gone; either way there is nothing left to save.
    }
  }

  end(): void {
    this.flushSync();
    this.boom.end();
  }

  private rotate(): void {
    this.flushSync();
    const { path } = this.options;
    try {
      if (this.keep === 0) rmSync(path, { force: true });
      else {
        rmSync(`${path}.${this.keep}`, { force: true });
        for (let i = this.keep - 1; i >= 1; i--) renameIfExists(`${path}.${i}`, `${path}.${i + 1}`);
        renameIfExists(path, `${path}.1`);
      }
    } catch {
      // Rotation is best effort: on failure we keep appending to the same file.
    }
    this.boom.reopen();
    this.bytes = 0;
    this.day = today();
  }
}

function renameIfExists(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

function today(): string {
  return new Date().toISOString().slice(0, 10);
}

function dirnameOf(path: string): string {
  const i = path.lastIndexOf('/');
  return i <= 0 ? '.' : path.slice(0, i);
}
