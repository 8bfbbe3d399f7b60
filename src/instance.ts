/** @module instance — this process's stable instance id, kept in the data directory. */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

const ID_RE = /^[A-Za-z0-9_.:-]{1,64}$/;

/**
 * Returns the configured id, or the one saved in `<dataDir>/instance-id`, creating it on first
 * start. The id names this instance's batch sequence in the store, so it must survive restarts
 * and must not be shared by two running processes.
 */
export function resolveInstanceId(dataDir: string, configured?: string, suffix = ''): string {
  if (configured !== undefined) return configured + suffix;
  const file = join(dataDir, 'instance-id');
  try {
    const saved = readFileSync(file, 'utf8').trim();
    if (ID_RE.test(saved)) return saved + suffix;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const host =
    hostname()
      .replace(/[^A-Za-z0-9_.-]/g, '')
      .slice(0, 32) || 'tally';
  const id = `${host}-${randomBytes(4).toString('hex')}`;
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(file, `${id}\n`, { flag: 'wx' });
  return id + suffix;
}
