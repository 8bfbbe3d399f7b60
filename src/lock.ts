/**
 * @module lock — an exclusive lock on a directory for as long as this process holds it. The
 * kernel drops it when the process dies (kill -9 included), so a crash never leaves it stale.
 *
 * Node has no flock, so the lock is SQLite's: `<dir>/.lock` opened as a database in exclusive
 * locking mode inside `BEGIN EXCLUSIVE`, which holds a POSIX lock until the connection closes.
 * Any other connection, in another process or this one, gets SQLITE_BUSY at once. Local file
 * systems only: POSIX locks on network file systems are as reliable as their lock daemon.
 */
import { mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { StartRefusedError } from './errors.js';

/**
 * The lock file. Nothing but SQLite may open it: closing any descriptor of a file drops every
 * POSIX lock this process holds on it, and SQLite alone knows to keep its descriptors open.
 */
const LOCK_FILE = '.lock';
/** Who holds the lock, written by the holder once it has it (JSON {@link LockHolder}). */
const HOLDER_FILE = '.lock.holder';

/** A held directory lock. */
export interface DirLock {
  /** The locked directory, as an absolute path. */
  readonly dir: string;
  /** Gives the lock up; later calls do nothing. */
  release(): void;
}

/** Who holds a directory lock, as the holder recorded it. */
export interface LockHolder {
  readonly pid: number;
  readonly hostname: string;
  /** When the holder took the lock, ISO 8601. */
  readonly startedAt: string;
  /** The holder's command line. */
  readonly command: string;
}

/** Thrown by {@link lockDirectory} when another process, or another lock in this one, holds it. */
export class DirectoryLockedError extends StartRefusedError {
  constructor(
    /** The locked directory, absolute. */
    readonly dir: string,
    /** What the directory is to the caller, e.g. `data directory`. */
    readonly what: string,
    /** The holder's own record; undefined when it left none (yet). */
    readonly holder: LockHolder | undefined,
  ) {
    super(
      `The ${what} ${dir} is in use by ${describe(holder)}. Only one process may use it at a ` +
        `time: stop that one, or give this one its own ${what}.`,
    );
    this.name = new.target.name;
  }
}

/** Connections holding locks, referenced so that garbage collection never closes one. */
const held = new Set<Database.Database>();

/**
 * Takes the exclusive lock on `dir` (created if missing), or throws {@link DirectoryLockedError}
 * at once if someone holds it. `what` names the directory in that error. Synchronous.
 */
export function lockDirectory(dir: string, what: string): DirLock {
  const root = resolve(dir);
  let db: Database.Database | undefined;
  try {
    mkdirSync(root, { recursive: true });
    db = new Database(join(root, LOCK_FILE), { timeout: 0 });
    // MEMORY: no `.lock-journal` file appears next to the lock (nothing is ever written).
    db.pragma('journal_mode = MEMORY');
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
  } catch (err) {
    db?.close();
    if ((err as { code?: unknown }).code === 'SQLITE_BUSY') {
      throw new DirectoryLockedError(root, what, readHolder(root));
    }
    throw new Error(`cannot lock the ${what} ${root}: ${(err as Error).message}`, { cause: err });
  }
  const lockDb = db;
  try {
    writeHolder(root);
  } catch (err) {
    lockDb.close();
    throw err;
  }
  held.add(lockDb);
  let released = false;
  return {
    dir: root,
    release() {
      if (released) return;
      released = true;
      try {
        // Before closing: once the lock is free, the record may already be the next holder's.
        unlinkSync(join(root, HOLDER_FILE));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      } finally {
        held.delete(lockDb);
        lockDb.close();
      }
    },
  };
}

/** Records this process as the holder; write + rename, so a reader never sees half of it. */
function writeHolder(root: string): void {
  const holder: LockHolder = {
    pid: process.pid,
    hostname: hostname(),
    startedAt: new Date().toISOString(),
    command: process.argv.join(' '),
  };
  const temp = join(root, `${HOLDER_FILE}.${process.pid}.tmp`);
  writeFileSync(temp, `${JSON.stringify(holder)}\n`);
  renameSync(temp, join(root, HOLDER_FILE));
}

/** The holder's record; undefined when there is none or it cannot be read. */
function readHolder(root: string): LockHolder | undefined {
  try {
    const parsed = JSON.parse(readFileSync(join(root, HOLDER_FILE), 'utf8')) as Partial<LockHolder>;
    if (typeof parsed.pid !== 'number' || typeof parsed.hostname !== 'string') return undefined;
    return {
      pid: parsed.pid,
      hostname: parsed.hostname,
      startedAt: String(parsed.startedAt ?? 'unknown'),
      command: String(parsed.command ?? 'unknown'),
    };
  } catch {
    // A missing or torn record only makes the message less specific; the lock decided.
    return undefined;
  }
}

function describe(holder: LockHolder | undefined): string {
  if (holder === undefined) return 'another process (it has not recorded who it is)';
  const local = holder.hostname === hostname();
  if (local && holder.pid === process.pid) {
    return `this process (pid ${holder.pid}), through another lock taken at ${holder.startedAt}`;
  }
  // The record is written just after the lock is taken: in that moment, or if the holder is not
  // a Tally process, the record is an older holder's.
  const gone =
    local && !running(holder.pid) ? '; that pid no longer runs, so the record is stale' : '';
  return (
    `another process: pid ${holder.pid} on host ${holder.hostname}, started ${holder.startedAt}, ` +
    `command: ${holder.command}${gone}`
  );
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
