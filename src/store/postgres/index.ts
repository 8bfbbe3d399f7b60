/** @module store/postgres — opens a PostgresStore from config: pool, TLS, migrations. */
import pg from 'pg';
import type { Config } from '../../config.js';
import { StartRefusedError } from '../../errors.js';
import { backoffMs, sleep } from '../../util/retry.js';
import type { Store } from '../interface.js';
import { migrate, schemaNames, timed } from './schema.js';
import { PostgresStore, reason } from './store.js';
import { PostgresUrlError, parsePostgresUrl, type SslMode } from './url.js';

export { PostgresStore } from './store.js';
export { PostgresUrlError, parsePostgresUrl } from './url.js';

/** Longest a statement runs on the server (a batch of a million counters takes about 8 s). */
const SERVER_STATEMENT_TIMEOUT_MS = 30_000;

/** Oldest server the SQL is written for (multi-argument unnest, SKIP LOCKED, numeric extract). */
const MIN_SERVER_VERSION = 120000;

/** Options for {@link openPostgresStore}. */
export interface OpenPostgresOptions {
  /** postgres:// URL; its `sslmode` sets TLS unless `ssl` does. */
  readonly url: string;
  /** TLS, winning over the URL's sslmode. @default the URL's sslmode, else off */
  readonly ssl?: SslMode | undefined;
  /** Most pooled connections. @default 10 */
  readonly poolSize?: number;
  /** Schema holding Tally's tables (created if missing). @default 'public' */
  readonly schema?: string;
  /**
   * Where the LISTEN connection goes, when not to `url`: LISTEN needs a session of its own,
   * which a pooler in transaction mode (PgBouncer) does not give. @default url
   */
  readonly listenerUrl?: string;
  /** Index counters by their last write (set when counters expire). @default false */
  readonly indexLastWrite?: boolean;
  /** How long to wait for the database at start before giving up, in ms. @default 5000 */
  readonly connectWaitMs?: number;
  /** Timeout of one connection attempt (and of waiting for a pooled one), in ms. @default 2000 */
  readonly connectTimeoutMs?: number;
  /** See PostgresStoreOptions.commandTimeoutMs, in ms. @default 5000 */
  readonly commandTimeoutMs?: number;
  /** See PostgresStoreOptions.listenerHeartbeatMs, in ms. @default 15_000 */
  readonly listenerHeartbeatMs?: number;
  /** See PostgresStoreOptions.maxReconnectDelayMs, in ms. @default 2000 */
  readonly maxReconnectDelayMs?: number;
  /** See PostgresStoreOptions.onListening. */
  readonly onListening?: (reconnected: boolean) => void;
}

/** Opens the store for TALLY_STORE=postgres. */
export async function createPostgresStore(config: Config): Promise<Store> {
  return openPostgresStore({
    url: config.postgresUrl,
    ssl: config.postgresSsl,
    poolSize: config.postgresPool,
    indexLastWrite: config.expireIdle !== undefined,
  });
}

/**
 * Connects (waiting up to `connectWaitMs` for the database to answer), migrates the schema and
 * returns the store. A bad URL, a server too old, or a refused login ends the start at once.
 */
export async function openPostgresStore(options: OpenPostgresOptions): Promise<PostgresStore> {
  let parsed: ReturnType<typeof parsePostgresUrl>;
  let listener: ReturnType<typeof parsePostgresUrl>;
  try {
    parsed = parsePostgresUrl(options.url, options.ssl);
    listener =
      options.listenerUrl === undefined
        ? parsed
        : parsePostgresUrl(options.listenerUrl, options.ssl);
  } catch (err) {
    if (err instanceof PostgresUrlError) throw new StartRefusedError(err.message);
    throw err;
  }
  const names = schemaNames(options.schema ?? 'public');
  const connectTimeoutMs = options.connectTimeoutMs ?? 2000;
  const clientConfig = (target: ReturnType<typeof parsePostgresUrl>): pg.ClientConfig => ({
    connectionString: target.connectionString,
    ssl: target.ssl,
    connectionTimeoutMillis: connectTimeoutMs,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    application_name: 'tally',
    // The server's own limits: a statement whose client gave up (a timeout closes the
    // connection) would otherwise run on, say blocked on a lock, and each retry would leave
    // another backend waiting until max_connections runs out.
    statement_timeout: SERVER_STATEMENT_TIMEOUT_MS,
    idle_in_transaction_session_timeout: SERVER_STATEMENT_TIMEOUT_MS,
  });
  const pool = new pg.Pool({
    ...clientConfig(parsed),
    max: options.poolSize ?? 10,
    idleTimeoutMillis: 30_000,
  });
  let lastError: Error | undefined;
  // An idle pooled connection that fails (the server restarted) is dropped by the pool; without
  // a listener the 'error' event would end the process.
  pool.on('error', (err) => {
    lastError = err;
  });

  const waitMs = options.connectWaitMs ?? 5000;
  const started = performance.now();
  for (let attempt = 1; ; attempt++) {
    try {
      const { rows } = await pool.query<{ v: string }>(
        timed("SELECT current_setting('server_version_num') AS v", [], connectTimeoutMs),
      );
      if (Number(rows[0]?.v) < MIN_SERVER_VERSION) {
        throw new StartRefusedError(
          `PostgreSQL ${parsed.target} is version ${rows[0]?.v}; Tally needs 12 or newer`,
        );
      }
      await migrate(pool, names, { indexLastWrite: options.indexLastWrite === true });
      break;
    } catch (err) {
      const refused = err instanceof StartRefusedError || !isTransient(err);
      if (refused || performance.now() - started >= waitMs) {
        await pool.end().catch(() => undefined);
        if (err instanceof StartRefusedError) throw err;
        const message = `cannot open PostgreSQL at ${parsed.target}: ${reason(err) || 'no answer'}`;
        // A refused login or a missing database will not change by waiting.
        throw refused ? new StartRefusedError(message) : new Error(message, { cause: err });
      }
      await sleep(backoffMs(attempt, 100, 1000));
    }
  }

  return new PostgresStore({
    pool,
    createListener: () => new pg.Client(clientConfig(listener)),
    names,
    target: parsed.target,
    lastError: () => lastError,
    ...(options.commandTimeoutMs === undefined
      ? {}
      : { commandTimeoutMs: options.commandTimeoutMs }),
    ...(options.listenerHeartbeatMs === undefined
      ? {}
      : { listenerHeartbeatMs: options.listenerHeartbeatMs }),
    ...(options.maxReconnectDelayMs === undefined
      ? {}
      : { maxReconnectDelayMs: options.maxReconnectDelayMs }),
    ...(options.onListening === undefined ? {} : { onListening: options.onListening }),
  });
}

/**
 * True for failures that waiting may cure: the server unreachable, starting up or shutting down,
 * too many connections. Errors of authentication, a missing database or bad SQL are not.
 */
function isTransient(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  // TLS asked for, the server has none: node-postgres says so without a code.
  if (err instanceof Error && /does not support SSL/i.test(err.message)) return false;
  if (typeof code !== 'string') return true; // network errors, timeouts, a dropped connection
  if (/^E[A-Z]+$/.test(code)) return true; // ECONNREFUSED, ETIMEDOUT, ENOTFOUND…
  // 08: connection exception, 53: insufficient resources, 57P: operator intervention
  // (shutdown, starting up), 40: rollback (deadlock, serialization).
  return /^(08|53|57P|40)/.test(code);
}
