/** @module bench/lib/procs — child processes the bench runs: Tally, redis-server, baselines. */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../tools/free-port.js';

export { freePort };

/** Repository root (bench/lib/../..). */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** A child process that serves HTTP (or Redis) on a loopback port. */
export interface Service {
  readonly name: string;
  readonly pid: number;
  readonly port: number;
  /** http://127.0.0.1:<port> (redis://… for redis-server). */
  readonly url: string;
  /** Everything the process printed so far. */
  output(): string;
  /** Resident set size in bytes (or its peak), from /proc (Linux); undefined elsewhere. */
  rssBytes(field?: 'VmRSS' | 'VmHWM'): number | undefined;
  /** Sends `signal` (SIGTERM by default) and resolves with the exit code once it exited. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>;
}

const running = new Set<ChildProcess>();
let scratch: string | undefined;

/** Kills every child still running; the bench calls it on exit and on Ctrl-C. */
export function killAll(): void {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
  if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
  scratch = undefined;
}

/** A fresh directory under this run's scratch directory (removed by `killAll`). */
export function workDir(label: string): string {
  scratch ??= mkdtempSync(join(tmpdir(), 'tally-bench-'));
  const dir = join(scratch, label);
  mkdirSync(dir, { recursive: true });
  return dir;
}

interface SpawnOptions {
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: Record<string, string>;
  readonly port: number;
  readonly url: string;
  /** Resolves once the output matches. */
  readonly ready: RegExp;
  readonly timeoutMs?: number;
}

async function spawnService(options: SpawnOptions): Promise<Service> {
  const child = spawn(options.command, options.args, {
    cwd: ROOT,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let out = '';
  const append = (d: Buffer) => {
    // Keep the tail only: a chatty process must not grow the bench's memory.
    out = (out + d.toString()).slice(-64 * 1024);
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      running.delete(child);
      resolve(code);
    });
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${options.name} did not start in time:\n${out}`));
    }, options.timeoutMs ?? 20_000);
    const check = () => {
      if (options.ready.test(out)) {
        clearTimeout(timer);
        child.stdout?.off('data', check);
        resolve();
      }
    };
    child.stdout?.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${options.name} exited with ${code} at start:\n${out}`));
    });
  });
  const pid = child.pid ?? -1;
  return {
    name: options.name,
    pid,
    port: options.port,
    url: options.url,
    output: () => out,
    rssBytes: (field) => rssOf(pid, field),
    async stop(signal = 'SIGTERM', timeoutMs = 120_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Child pids of a process (Linux /proc); empty elsewhere. */
export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter((s) => s !== '')
      .map(Number);
  } catch {
    return [];
  }
}

/** VmRSS (or VmHWM, the peak) of a process in bytes (Linux /proc), or undefined. */
export function rssOf(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(status);
    return m?.[1] === undefined ? undefined : Number(m[1]) * 1024;
  } catch {
    return undefined;
  }
}

/** Options for {@link startTally}. */
export interface TallyOptions {
  /** Label for messages and the work directory name. */
  readonly name: string;
  /** TALLY_* variables; the bench sets port, host, paths and logging itself. */
  readonly env?: Record<string, string>;
  /** Extra node flags, e.g. --cpu-prof. */
  readonly nodeFlags?: readonly string[];
  /** Entry point to run, for A/B runs of a patched build. @default <repo>/dist/main.js */
  readonly main?: string;
  /** How long to wait for "listening" (a replay on start takes longer), ms. @default 20000 */
  readonly startTimeoutMs?: number;
}

/** Starts `node dist/main.js serve` on a free loopback port with its own data directory. */
export async function startTally(options: TallyOptions): Promise<Service> {
  const port = await freePort();
  const dir = workDir(options.name);
  return spawnService({
    name: options.name,
    command: process.execPath,
    args: [...(options.nodeFlags ?? []), options.main ?? join(ROOT, 'dist/main.js'), 'serve'],
    env: {
      TALLY_HOST: '127.0.0.1',
      TALLY_DATA_DIR: join(dir, 'data'),
      TALLY_SQLITE_PATH: join(dir, 'tally.db'),
      TALLY_LOG_DIR: join(dir, 'log'),
      TALLY_LOG_FILES: 'false',
      TALLY_LOG_LEVEL: 'warn',
      TALLY_BENCH_ROUTES: 'true',
      // Every comparison is one process against one process; the workers section sets its own.
      TALLY_WORKERS: '1',
      ...options.env,
      TALLY_PORT: String(port),
    },
    port,
    url: `http://127.0.0.1:${port}`,
    ready: /Tally listening on http:\/\//,
    ...(options.startTimeoutMs === undefined ? {} : { timeoutMs: options.startTimeoutMs }),
  });
}

/** The SQLite file `startTally` gave a service of this name. */
export function sqlitePathOf(name: string): string {
  return join(workDir(name), 'tally.db');
}

/** redis-server's version, or undefined when it is not installed. */
export function redisVersion(): string | undefined {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (probe.error !== undefined || probe.status !== 0) return undefined;
  return /v=(\S+)/.exec(probe.stdout)?.[1] ?? 'unknown';
}

/**
 * Starts a private redis-server on loopback without persistence; with `replicaOf`, a replica of
 * that one, resolved once its first sync finished.
 */
export async function startRedis(replicaOf?: Service): Promise<Service> {
  const port = await freePort();
  const dir = workDir(replicaOf === undefined ? 'redis' : `redis-replica-${port}`);
  return spawnService({
    name: replicaOf === undefined ? 'redis-server' : 'redis-replica',
    command: 'redis-server',
    args: [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'no',
      ...(replicaOf === undefined ? [] : ['--replicaof', '127.0.0.1', String(replicaOf.port)]),
    ],
    port,
    url: `redis://127.0.0.1:${port}`,
    ready: replicaOf === undefined ? /Ready to accept connections/ : /sync: Finished with success/,
  });
}

/** The baselines in bench/baselines/, by file name. */
export type BaselineKind = 'express-incr' | 'fastify-incr';

/** Starts a baseline server (TypeScript through tsx) against a Redis. */
export async function startBaseline(
  kind: BaselineKind,
  redisUrl: string,
  keyPrefix: string,
): Promise<Service> {
  const port = await freePort();
  return spawnService({
    name: kind,
    command: process.execPath,
    args: ['--import', 'tsx', join(ROOT, 'bench/baselines', `${kind}.ts`)],
    env: { PORT: String(port), REDIS_URL: redisUrl, KEY_PREFIX: keyPrefix },
    port,
    url: `http://127.0.0.1:${port}`,
    ready: /listening on http:\/\//,
  });
}
