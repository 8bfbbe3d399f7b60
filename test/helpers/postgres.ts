// A database of its own for a test file on the PostgreSQL server at 127.0.0.1:5432 (or
// TALLY_TEST_POSTGRES_URL), dropped afterwards; a TCP proxy that can cut a connection; and a
// cluster of a test's own (initdb) that can be crashed and restarted.
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './server-process.js';
import { tempDir } from './tmp.js';

/** Where the tests create their databases: a role that may CREATE DATABASE. */
export const ADMIN_URL =
  process.env.TALLY_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export interface TestDatabase {
  readonly name: string;
  /** postgres://…/<name> */
  readonly url: string;
  /** Runs SQL in this database (as the admin role). */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string,
    values?: unknown[],
  ): Promise<pg.QueryResult<R>>;
  /** Ends every other session and drops the database. */
  drop(): Promise<void>;
}

/** Creates `tally_test_<random>`; throws saying how to get a server when none answers. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `tally_test_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL, connectionTimeoutMillis: 3000 });
  try {
    await admin.connect();
  } catch (err) {
    throw new Error(
      `The PostgreSQL tests need a server at ${ADMIN_URL.replace(/\/\/[^@/]*@/, '//')} ` +
        'whose role may CREATE DATABASE (set TALLY_TEST_POSTGRES_URL to use another); ' +
        `connecting failed: ${(err as Error).message}. On Debian: apt-get install postgresql, ` +
        'and trust or a password for local TCP connections.',
    );
  }
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  const pool = new pg.Pool({ connectionString: url.toString(), max: 2 });
  pool.on('error', () => {});
  return {
    name,
    url: url.toString(),
    query: (text, values) => pool.query(text, values),
    async drop() {
      await pool.end();
      const client = new pg.Client({ connectionString: ADMIN_URL });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}

/** A TCP proxy in front of the server, so a test can cut connections and hold new ones off. */
export interface CutProxy {
  /** postgres://…@127.0.0.1:<proxy port>/<database> for `url`. */
  readonly url: string;
  /** Connections accepted so far. */
  accepted(): number;
  /** Drops every open connection and refuses new ones until `restore`. */
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startCutProxy(targetUrl: string): Promise<CutProxy> {
  const target = new URL(targetUrl);
  const sockets = new Set<Socket>();
  let refusing = false;
  let count = 0;
  const server: Server = createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    count++;
    const upstream = tcpConnect(Number(target.port || 5432), target.hostname);
    sockets.add(client);
    sockets.add(upstream);
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const url = new URL(targetUrl);
  url.hostname = '127.0.0.1';
  url.port = String(port);
  return {
    url: url.toString(),
    accepted: () => count,
    cut() {
      refusing = true;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    restore() {
      refusing = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A PostgreSQL cluster of a test's own (initdb + pg_ctl), so it can be killed and restarted. */
export interface PostgresCluster {
  readonly port: number;
  /** postgres://postgres@127.0.0.1:<port>/postgres */
  readonly url: string;
  /** Stops the server: `immediate` is a crash (no checkpoint; recovery on the next start). */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Starts it again on the same port and waits until it accepts connections. */
  start(): Promise<void>;
  /** The server's log so far, for failure messages. */
  log(): string;
  /** Stops it for good and removes its directory. */
  close(): Promise<void>;
}

/** Where initdb and pg_ctl are: PATH, or Debian's versioned directory. */
function postgresBin(tool: string): string {
  const onPath = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' });
  if (onPath.status === 0 && onPath.stdout.trim() !== '') return onPath.stdout.trim();
  const versions = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql') : [];
  for (const v of versions.sort((x, y) => Number(y) - Number(x))) {
    const path = `/usr/lib/postgresql/${v}/bin/${tool}`;
    if (existsSync(path)) return path;
  }
  throw new Error(
    `${tool} is required for this test but was not found. Install the server with ` +
      '`sudo apt-get install postgresql` (Debian/Ubuntu) or `brew install postgresql` (macOS).',
  );
}

/**
 * initdb's a cluster in a temporary directory and starts it on a free loopback port, with trust
 * authentication. PostgreSQL refuses to run as root: under root, the cluster belongs to and runs
 * as the `postgres` user (runuser).
 */
export async function startPostgresCluster(): Promise<PostgresCluster> {
  const initdb = postgresBin('initdb');
  const pgCtl = postgresBin('pg_ctl');
  const port = await freePort();
  const dir = tempDir('tally-pg-cluster');
  const data = join(dir.path, 'data');
  const logFile = join(dir.path, 'server.log');
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const uid = Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout);
    const gid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout);
    if (!Number.isInteger(uid) || uid <= 0) {
      throw new Error('running as root, and there is no `postgres` user to run PostgreSQL as');
    }
    chownSync(dir.path, uid, gid);
  }
  const run = (cmd: string, args: string[]) => {
    const [file, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
    return new Promise<void>((resolve, reject) => {
      execFile(file as string, argv as string[], { timeout: 60_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${stderr || stdout || err}`));
        else resolve();
      });
    });
  };
  await run(initdb, ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync']);
  const options = [
    `-p ${port}`,
    "-c listen_addresses='127.0.0.1'",
    `-c unix_socket_directories='${dir.path}'`,
  ].join(' ');
  const start = () => run(pgCtl, ['-D', data, '-l', logFile, '-o', options, '-w', 'start']);
  await start();
  let running = true;
  return {
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async stop(mode = 'fast') {
      await run(pgCtl, ['-D', data, '-m', mode, '-w', 'stop']);
      running = false;
    },
    async start() {
      await start();
      running = true;
    },
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
    async close() {
      if (running) await run(pgCtl, ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => {});
      dir.remove();
    },
  };
}
