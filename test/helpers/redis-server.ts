// Starts a private redis-server on a free loopback port for a test file, and stops it.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePort } from './server-process.js';
import { tempDir } from './tmp.js';

export interface RedisServerOptions {
  /** Keep data across stop/start: append-only file fsynced on every write. @default false */
  readonly persistent?: boolean;
  /** More redis-server arguments, e.g. ['--requirepass', 'x']. */
  readonly args?: readonly string[];
  /** Run as a Redis Cluster node (its bus on another free port). @default false */
  readonly clusterNode?: boolean;
}

export interface RedisServer {
  readonly port: number;
  /** redis://127.0.0.1:<port> */
  readonly url: string;
  /** True while the process runs. */
  running(): boolean;
  /** Stops the process (SIGTERM by default, SIGKILL for a crash) and waits for it to exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same port and waits until it answers PING. */
  start(): Promise<void>;
  /** Freezes (SIGSTOP) or thaws (SIGCONT) the process: commands hang instead of failing. */
  pause(): void;
  resume(): void;
  /** Stdout/stderr so far, for failure messages. */
  output(): string;
  /** Stops it for good and removes its directory. */
  close(): Promise<void>;
}

let checked = false;

/** Throws with install instructions when redis-server is not on PATH. */
export function requireRedisServer(): void {
  if (checked) return;
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (probe.error !== undefined || probe.status !== 0) {
    throw new Error(
      'redis-server is required for the Redis tests but was not found on PATH. Install it with ' +
        '`sudo apt-get install redis-server` (Debian/Ubuntu; .ci/run does this) or ' +
        '`brew install redis` (macOS).',
    );
  }
  checked = true;
}

/** Starts a redis-server with no persistence (unless asked) on a free port. */
export async function startRedis(options: RedisServerOptions = {}): Promise<RedisServer> {
  requireRedisServer();
  const dir = tempDir('tally-redis');
  let port = 0;
  let args: string[] = [];
  // Ports are chosen again when one was taken between freePort() and redis-server's bind: the
  // cluster bus port most of all, since any outgoing connection may be handed it meanwhile.
  const choose = async () => {
    port = await freePort();
    args = [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--daemonize',
      'no',
      '--dir',
      dir.path,
      '--save',
      '',
      ...(options.persistent
        ? ['--appendonly', 'yes', '--appendfsync', 'always']
        : ['--appendonly', 'no']),
      ...(options.clusterNode
        ? [
            ...['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf'],
            ...['--cluster-port', String(await freePort()), '--cluster-node-timeout', '2000'],
          ]
        : []),
      ...(options.args ?? []),
    ];
  };
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let out = '';
  const killOnExit = () => child?.kill('SIGKILL');
  process.once('exit', killOnExit);

  const launch = async () => {
    const proc = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    proc.stdout?.on('data', (d) => {
      out += d;
    });
    proc.stderr?.on('data', (d) => {
      out += d;
    });
    exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`redis-server exited at start:\n${out}`);
      if (await answersPing(port)) return;
      if (Date.now() > deadline) throw new Error(`redis-server did not answer PING:\n${out}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  for (let attempt = 1; ; attempt++) {
    await choose();
    try {
      await launch();
      break;
    } catch (err) {
      if (attempt === 5 || !/Address already in use/.test(out)) throw err;
      out = '';
      rmSync(join(dir.path, 'nodes.conf'), { force: true });
    }
  }
  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    running: () => child !== null && child.exitCode === null && child.signalCode === null,
    async stop(signal = 'SIGTERM') {
      const proc = child;
      if (proc === null || proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGCONT');
      proc.kill(signal);
      await exited;
    },
    async start() {
      if (server.running()) return;
      await launch();
    },
    pause() {
      child?.kill('SIGSTOP');
    },
    resume() {
      child?.kill('SIGCONT');
    },
    output: () => out,
    async close() {
      await server.stop('SIGKILL');
      process.off('exit', killOnExit);
      dir.remove();
    },
  };
  return server;
}

/** True when something on the port answers +PONG within a second. */
function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d) => {
      reply += d;
      // NOAUTH: up, but wants a password (tests with requirepass/ACL users).
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG') || reply.startsWith('-NOAUTH'));
    });
  });
}

export interface RedisCluster {
  readonly nodes: readonly RedisServer[];
  /** Comma-separated seed URLs, as TALLY_REDIS_URL takes them for redis-cluster. */
  readonly urls: string;
  close(): Promise<void>;
}

/** Starts `masters` cluster nodes (no replicas), joins them with redis-cli and waits for OK. */
export async function startRedisCluster(masters = 3): Promise<RedisCluster> {
  const nodes: RedisServer[] = [];
  const close = async () => {
    await Promise.all(nodes.map((n) => n.close()));
  };
  try {
    for (let i = 0; i < masters; i++) nodes.push(await startRedis({ clusterNode: true }));
    const create = spawnSync(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...nodes.map((n) => `127.0.0.1:${n.port}`),
        '--cluster-replicas',
        '0',
        '--cluster-yes',
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
    if (create.status !== 0) {
      throw new Error(`redis-cli --cluster create failed:\n${create.stdout}${create.stderr}`);
    }
    const deadline = Date.now() + 20_000;
    for (const n of nodes) {
      for (;;) {
        const info = spawnSync('redis-cli', ['-p', String(n.port), 'cluster', 'info'], {
          encoding: 'utf8',
        });
        if (/cluster_state:ok/.test(info.stdout)) break;
        if (Date.now() > deadline) throw new Error(`cluster not ok:\n${info.stdout}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } catch (err) {
    await close();
    throw err;
  }
  return { nodes, urls: nodes.map((n) => n.url).join(','), close };
}

/** A Redis Sentinel the tests started. */
export interface RedisSentinel {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Starts a sentinel watching `name` at 127.0.0.1:`masterPort` (quorum 2, down after 1 s, so a
 * test's failover takes seconds, not minutes).
 */
export async function startSentinel(masterPort: number, name = 'mymaster'): Promise<RedisSentinel> {
  requireRedisServer();
  const port = await freePort();
  const dir = tempDir('tally-sentinel');
  const conf = join(dir.path, 'sentinel.conf');
  writeFileSync(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir.path}`,
      `sentinel monitor ${name} 127.0.0.1 ${masterPort} 2`,
      `sentinel down-after-milliseconds ${name} 1000`,
      `sentinel failover-timeout ${name} 4000`,
      `sentinel parallel-syncs ${name} 2`,
      '',
    ].join('\n'),
  );
  const child = spawn('redis-server', [conf, '--sentinel'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const deadline = Date.now() + 10_000;
  while (!(await answersPing(port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`redis-server --sentinel did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    port,
    async close() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGKILL');
        await exited;
      }
      process.off('exit', killOnExit);
      dir.remove();
    },
  };
}
