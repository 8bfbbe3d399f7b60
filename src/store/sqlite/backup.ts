/**
 * @module store/sqlite/backup — an online copy of a live SQLite database (`tally backup`), and a
 * probe that the native module loads (`tally doctor`).
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';

/** What a backup wrote. */
export interface BackupResult {
  readonly source: string;
  readonly destination: string;
  readonly bytes: number;
  readonly counters: number;
}

/**
 * Copies a live SQLite database with SQLite's online backup API: a consistent snapshot of the
 * committed batches, taken while Tally keeps writing (each step holds a read lock only briefly,
 * and writes made during the copy restart it). The copy is then checked (`integrity_check`).
 * What Tally has acknowledged but not flushed is in its write-ahead log, not in the file: for a
 * copy that holds everything, read strong first (`tally get <name> --strong`) or stop the server.
 */
export async function backupSqlite(source: string, destination: string): Promise<BackupResult> {
  if (!existsSync(source)) throw new Error(`no SQLite database at ${source}`);
  if (existsSync(destination)) throw new Error(`${destination} exists; pick a new file`);
  mkdirSync(dirname(resolve(destination)), { recursive: true });
  const db = new Database(source, { readonly: true, fileMustExist: true });
  try {
    await db.backup(destination);
  } finally {
    db.close();
  }
  const copy = new Database(destination, { readonly: true, fileMustExist: true });
  try {
    const check = copy.pragma('integrity_check', { simple: true });
    if (check !== 'ok') throw new Error(`the copy failed its integrity check: ${String(check)}`);
    const row = copy.prepare("SELECT count(*) AS n FROM counters WHERE name < '~'").get() as {
      n: number;
    };
    return { source, destination, bytes: statSync(destination).size, counters: row.n };
  } finally {
    copy.close();
  }
}

/** Undefined when better-sqlite3 loads and opens a database; else why not. */
export function probeSqlite(): string | undefined {
  try {
    new Database(':memory:').close();
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}
