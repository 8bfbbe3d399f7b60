// The directory lock: one holder at a time, in this process or across processes, and free again
// after release or after the holder is killed with SIGKILL.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { DirectoryLockedError, type DirLock, lockDirectory } from '../../src/lock.js';
import { tempDir } from '../helpers/tmp.js';

// The built module, as `tally serve` runs it (test/helpers/global-setup.ts builds dist/).
const BUILT = pathToFileURL(fileURLToPath(new URL('../../dist/lock.js', import.meta.url))).href;

/** argv: module URL, directory, `hold` (keep it until killed) or `once` (take, release, exit). */
const CHILD = `
const [url, dir, mode] = process.argv.slice(1);
const { lockDirectory } = await import(url);
try {
  const lock = lockDirectory(dir, 'data directory');
  console.log('locked');
  if (mode === 'once') lock.release();
  else setInterval(() => {}, 60_000);
} catch (err) {
  console.error(err.name + ': ' + err.message);
  process.exit(3);
}
`;

function child(dir: string, mode: 'hold' | 'once') {
  const proc = spawn(process.execPath, ['--input-type=module', '-e', CHILD, BUILT, dir, mode], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  proc.stderr.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const locked = async () => {
    const deadline = Date.now() + 10_000;
    while (!out.includes('locked')) {
      if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`child: ${out}${err}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  return { proc, exited, locked, stderr: () => err };
}

describe('lockDirectory', () => {
  const tmp = tempDir('tally-lock');
  const locks: DirLock[] = [];
  const procs: ChildProcess[] = [];
  let n = 0;
  const freshDir = () => join(tmp.path, `d${n++}`, 'data');

  afterEach(() => {
    for (const lock of locks.splice(0)) lock.release();
    for (const p of procs.splice(0)) if (p.exitCode === null) p.kill('SIGKILL');
  });
  afterAll(() => tmp.remove());

  it('creates the directory and records the holder next to the lock', () => {
    const dir = freshDir();
    const lock = lockDirectory(dir, 'data directory');
    expect(lock.dir).toBe(dir);
    const holder = JSON.parse(readFileSync(join(dir, '.lock.holder'), 'utf8'));
    expect(holder).toMatchObject({ pid: process.pid, hostname: hostname() });
    expect(Date.parse(holder.startedAt)).toBeGreaterThan(Date.now() - 60_000);
    expect(holder.command).toContain(process.argv[1]);
    lock.release();
    lock.release();
    // Released: no holder record, and nothing else left beside the lock file.
    expect(readdirSync(dir)).toEqual(['.lock']);
  });

  it('refuses a second lock in this process, naming the directory and the holder', async () => {
    const dir = freshDir();
    const first = lockDirectory(dir, 'data directory');
    locks.push(first);
    let error: unknown;
    try {
      lockDirectory(dir, 'data directory');
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(DirectoryLockedError);
    const locked = error as DirectoryLockedError;
    expect(locked.name).toBe('DirectoryLockedError');
    expect(locked.dir).toBe(dir);
    expect(locked.holder?.pid).toBe(process.pid);
    expect(locked.message).toContain(`The data directory ${dir} is in use by this process`);
    expect(locked.message).toContain(`pid ${process.pid}`);
    expect(locked.message).toMatch(/stop that one, or give this one its own data directory/);
    // Closing the refused connection did not drop the first one's POSIX lock (closing any
    // descriptor of a file can): another process is still refused.
    const other = child(dir, 'once');
    procs.push(other.proc);
    expect(await other.exited).toBe(3);
    first.release();
    locks.push(lockDirectory(dir, 'data directory'));
  });

  it('refuses another process while held, and lets it in after release', async () => {
    const dir = freshDir();
    const lock = lockDirectory(dir, 'write-ahead log');
    const refused = child(dir, 'once');
    procs.push(refused.proc);
    expect(await refused.exited).toBe(3);
    expect(refused.stderr()).toContain(`DirectoryLockedError: The data directory ${dir} is in use`);
    expect(refused.stderr()).toContain(`pid ${process.pid} on host ${hostname()}`);
    expect(refused.stderr()).toContain(process.argv[1]);
    expect(existsSync(join(dir, '.lock.holder'))).toBe(true);
    lock.release();
    const admitted = child(dir, 'once');
    procs.push(admitted.proc);
    expect(await admitted.exited).toBe(0);
  });

  it('is free again once the holding process is killed with SIGKILL', async () => {
    const dir = freshDir();
    const holder = child(dir, 'hold');
    procs.push(holder.proc);
    await holder.locked();
    expect(() => lockDirectory(dir, 'data directory')).toThrow(
      new RegExp(`in use by another process: pid ${holder.proc.pid} on host .*lock\\.js`),
    );
    holder.proc.kill('SIGKILL');
    await holder.exited;
    // The holder's record outlives it; the lock does not.
    const lock = lockDirectory(dir, 'data directory');
    locks.push(lock);
    expect(JSON.parse(readFileSync(join(dir, '.lock.holder'), 'utf8')).pid).toBe(process.pid);
  });
});
