/** @module config — one schema over environment variables and `tally serve` flags, parsed once. */
import { z } from 'zod';

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const bool = z
  .union([z.boolean(), z.enum(['true', 'false', '1', '0', 'yes', 'no'])])
  .transform((v) => v === true || v === 'true' || v === '1' || v === 'yes');

/**
 * Every setting: its environment variable, schema (with default) and one line of documentation.
 * The README's configuration table is this list.
 */
export const SETTINGS = {
  port: {
    env: 'TALLY_PORT',
    schema: int(0, 65535).default(8080),
    doc: 'TCP port to listen on (0 = any free port)',
  },
  host: {
    env: 'TALLY_HOST',
    schema: z.string().min(1).default('127.0.0.1'),
    doc: 'Address to bind; 0.0.0.0 to accept remote clients',
  },
  trustProxy: {
    env: 'TALLY_TRUST_PROXY',
    schema: z
      .string()
      .regex(/^(true|false|\d{1,2}|[0-9A-Fa-f:./]+(,[0-9A-Fa-f:./]+)*)$/)
      .default('false')
      .transform((v): boolean | number | string[] =>
        v === 'true' ? true : v === 'false' ? false : /^\d+$/.test(v) ? Number(v) : v.split(','),
      ),
    doc: 'Proxies whose X-Forwarded-For names the client (false, true, a hop count, or addresses/CIDRs): per-client limits behind a load balancer',
  },
  rateLimit: {
    env: 'TALLY_RATE_LIMIT',
    schema: z
      .string()
      .regex(/^(auto|off|[1-9]\d{0,8}\/[1-9]\d{0,5})$/)
      .default('auto'),
    doc: 'Public increments (single and batched; keyless, or with a key that covers nothing) per client address: N/S (N requests per S seconds, a token bucket), off, or auto: off when TALLY_HOST is loopback and TALLY_TRUST_PROXY is false, else 100/10; past it, 429 RATE_LIMITED',
  },
  createRateLimit: {
    env: 'TALLY_CREATE_RATE_LIMIT',
    schema: z
      .string()
      .regex(/^(auto|off|[1-9]\d{0,8}\/[1-9]\d{0,5})$/)
      .default('auto'),
    doc: 'Counters created and namespaces claimed per client address: N/S, off, or auto: off when TALLY_HOST is loopback and TALLY_TRUST_PROXY is false, else 10/60; past it, 429 RATE_LIMITED',
  },
  publicWrites: {
    env: 'TALLY_PUBLIC_WRITES',
    schema: z.enum(['auto', 'hits', 'open']).default('auto'),
    doc: "What clients without a key may write. hits: +1 per request (or within a created counter's update bounds), no batches; open: any amount and batches; auto: open when TALLY_HOST is loopback and TALLY_TRUST_PROXY is false (no reverse proxy brings others in), else hits",
  },
  expireIdle: {
    env: 'TALLY_EXPIRE_IDLE',
    schema: z
      .string()
      .regex(/^(off|[1-9]\d{0,5}[smhd])$/)
      .default('off')
      .transform((v): number | undefined => {
        if (v === 'off') return undefined;
        const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[v.slice(-1) as 's'];
        return Number(v.slice(0, -1)) * unit;
      }),
    doc: 'Delete counters not written for this long (e.g. 180d; s, m, h, d), swept every minute; off keeps every counter',
  },
  uniques: {
    env: 'TALLY_UNIQUES',
    schema: bool.default(false),
    doc: 'Count unique visitors per counter (per day and overall, HyperLogLog): each counted hit also hashes a daily salt + client address + User-Agent + counter; readings gain `uniques`',
  },
  historyDays: {
    env: 'TALLY_HISTORY_DAYS',
    schema: z
      .string()
      .regex(/^(forever|[1-9]\d{0,5})$/)
      .default('forever')
      .transform((v): number | undefined => (v === 'forever' ? undefined : Number(v))),
    doc: 'Days to keep daily history buckets and rankings (minute buckets are kept 48 h, hourly 90 days); forever keeps them',
  },
  compatRoot: {
    env: 'TALLY_COMPAT_ROOT',
    schema: z.enum(['none', 'countapi', 'abacus']).default('none'),
    doc: 'Also answer CountAPI (countapi) or Abacus (abacus) routes at the root, not only under /countapi/ and /abacus/',
  },
  corsOrigins: {
    env: 'TALLY_CORS_ORIGINS',
    schema: z
      .string()
      .regex(
        /^(\*|none|https?:\/\/[A-Za-z0-9.-]+(:\d{1,5})?(,https?:\/\/[A-Za-z0-9.-]+(:\d{1,5})?)*)$/,
      )
      .default('*')
      .transform((v): string[] => (v === 'none' ? [] : v.split(','))),
    doc: 'Origins whose pages may call the public routes (reads, increments, live values): *, none, or a comma-separated list of origins; admin routes never answer CORS',
  },
  frameAncestors: {
    env: 'TALLY_FRAME_ANCESTORS',
    schema: z
      .string()
      .regex(
        /^(none|\*|https?:\/\/[A-Za-z0-9.*-]+(:\d{1,5})?( https?:\/\/[A-Za-z0-9.*-]+(:\d{1,5})?)*)$/,
      )
      .default('none'),
    doc: 'Pages that may embed the click page in an iframe (CSP frame-ancestors): none, *, or space-separated origins',
  },
  store: {
    env: 'TALLY_STORE',
    schema: z.enum(['sqlite', 'memory', 'redis', 'redis-cluster', 'postgres']).default('sqlite'),
    doc: 'Storage backend',
  },
  sqlitePath: {
    env: 'TALLY_SQLITE_PATH',
    schema: z.string().min(1).default('./data/tally.db'),
    doc: 'SQLite database file (sqlite store)',
  },
  redisUrl: {
    env: 'TALLY_REDIS_URL',
    schema: z.string().min(1).default('redis://127.0.0.1:6379'),
    doc: 'redis:// or rediss:// URL; for redis-cluster, comma-separated seed URLs',
  },
  redisKeyPrefix: {
    env: 'TALLY_REDIS_PREFIX',
    schema: z.string().max(64).default('tally:'),
    doc: 'Prefix of every Redis key, so several apps can share one Redis',
  },
  redisAllowEviction: {
    env: 'TALLY_REDIS_ALLOW_EVICTION',
    schema: bool.default(false),
    doc: "Work on a Redis whose maxmemory-policy is not noeviction (it may evict Tally's keys); by default such a Redis is refused",
  },
  redisSentinels: {
    env: 'TALLY_REDIS_SENTINELS',
    schema: z.string().min(1).optional(),
    doc: 'host:port,… of Redis Sentinels: the primary is found (and followed through failovers) through them; TALLY_REDIS_URL then gives credentials, database and TLS',
  },
  redisSentinelName: {
    env: 'TALLY_REDIS_SENTINEL_NAME',
    schema: z.string().min(1).default('mymaster'),
    doc: 'The master name the sentinels monitor',
  },
  redisWaitReplicas: {
    env: 'TALLY_REDIS_WAIT_REPLICAS',
    schema: int(0, 16).default(0),
    doc: 'Replicas that must hold a batch (Redis WAIT) before it leaves the log; an unconfirmed batch is re-sent under its own seq (redis store)',
  },
  redisWaitTimeoutMs: {
    env: 'TALLY_REDIS_WAIT_TIMEOUT_MS',
    schema: int(10, 60_000).default(1000),
    doc: 'Longest wait for those replicas per write (ms)',
  },
  postgresUrl: {
    env: 'TALLY_POSTGRES_URL',
    schema: z.string().min(1).default('postgres://127.0.0.1:5432/tally'),
    doc: 'postgres:// URL with user, password and database (postgres store); its sslmode (disable, require, verify-ca, verify-full) sets TLS',
    secret: true,
  },
  postgresPool: {
    env: 'TALLY_POSTGRES_POOL',
    schema: int(1, 1000).default(10),
    doc: 'Most connections each instance opens to PostgreSQL (one more for LISTEN)',
  },
  postgresSsl: {
    env: 'TALLY_POSTGRES_SSL',
    schema: z.enum(['off', 'require', 'verify-full']).optional(),
    doc: "TLS to PostgreSQL, winning over the URL's sslmode: off, require (encrypted, certificate not checked) or verify-full (certificate and host name checked against Node's CAs and NODE_EXTRA_CA_CERTS)",
  },
  dataDir: {
    env: 'TALLY_DATA_DIR',
    schema: z.string().min(1).default('./data'),
    doc: 'Directory for the instance id file and the write-ahead log',
  },
  instanceId: {
    env: 'TALLY_INSTANCE_ID',
    schema: z
      .string()
      .regex(/^[A-Za-z0-9_.:-]{1,64}$/)
      .optional(),
    doc: 'Stable id of this instance (default: generated once, kept in the data dir)',
  },
  aggregator: {
    env: 'TALLY_AGGREGATOR',
    schema: z.enum(['accumulate', 'queue']).default('accumulate'),
    doc: 'Write-behind design: accumulate (timer flush) or queue (pull worker)',
  },
  flushIntervalMs: {
    env: 'TALLY_FLUSH_INTERVAL_MS',
    schema: int(1, 60_000).default(100),
    doc: 'Accumulate: milliseconds between flushes (±10% jitter); also the SSE coalescing window',
  },
  maxPending: {
    env: 'TALLY_MAX_PENDING',
    schema: int(1, 100_000_000).default(1_000_000),
    doc: 'Pending work bound: distinct pending counters (accumulate) or queued increments (queue); past it, 503 OVERLOADED',
  },
  maxUnflushed: {
    env: 'TALLY_MAX_UNFLUSHED',
    schema: int(1, 1_000_000_000).default(10_000_000),
    doc: 'Most acknowledged increments not yet in the store (the write-ahead log backlog during an outage); past it, 503 OVERLOADED',
  },
  maxBatchSize: {
    env: 'TALLY_MAX_BATCH',
    schema: int(1, 10_000_000).default(100_000),
    doc: 'Queue: most queued increments one drain takes into a batch',
  },
  drainTimeoutMs: {
    env: 'TALLY_DRAIN_TIMEOUT_MS',
    schema: int(0, 600_000).default(10_000),
    doc: 'On SIGTERM/SIGINT: how long to keep retrying the final flush',
  },
  adminToken: {
    env: 'TALLY_ADMIN_TOKEN',
    schema: z.string().min(16).optional(),
    doc: 'Bearer token for PUT/DELETE (at least 16 characters); unset = admin routes answer 403',
    secret: true,
  },
  logDir: {
    env: 'TALLY_LOG_DIR',
    schema: z.string().min(1).default('./log'),
    doc: 'Directory of app.log and error.log',
  },
  logLevel: {
    env: 'TALLY_LOG_LEVEL',
    schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    doc: 'Log level for stdout and app.log (error.log always takes errors)',
  },
  logFiles: {
    env: 'TALLY_LOG_FILES',
    schema: bool.default(true),
    doc: 'Write app.log and error.log (false: stdout only)',
  },
  logMaxBytes: {
    env: 'TALLY_LOG_MAX_BYTES',
    schema: int(1024, 1 << 30).default(50 * 1024 * 1024),
    doc: 'Rotate a log file when it reaches this size (bytes); also rotated daily',
  },
  logKeepFiles: {
    env: 'TALLY_LOG_KEEP',
    schema: int(0, 1000).default(14),
    doc: 'Rotated files kept per log (app.log.1 … app.log.N)',
  },
  maxSseClients: {
    env: 'TALLY_MAX_SSE_CLIENTS',
    schema: int(0, 1_000_000).default(10_000),
    doc: 'Live event streams per instance; past it, 503 TOO_MANY_SSE_CLIENTS',
  },
  maxSseClientsPerIp: {
    env: 'TALLY_MAX_SSE_PER_CLIENT',
    schema: int(1, 1_000_000).default(32),
    doc: 'Live event streams one client address may hold open; past it, 429 TOO_MANY_STREAMS',
  },
  sseHeartbeatMs: {
    env: 'TALLY_SSE_HEARTBEAT_MS',
    schema: int(100, 600_000).default(15_000),
    doc: 'Milliseconds between SSE heartbeat comments',
  },
  bodyLimitBytes: {
    env: 'TALLY_BODY_LIMIT_BYTES',
    schema: int(64, 16 * 1024 * 1024).default(256 * 1024),
    doc: 'Largest request body (bytes); a 1000-item batch needs about 100 KiB',
  },
  wal: {
    env: 'TALLY_WAL',
    schema: bool.default(true),
    doc: 'Write-ahead log: every increment is on disk before it is acknowledged',
  },
  walFsync: {
    env: 'TALLY_WAL_FSYNC',
    schema: z.enum(['always', 'interval', 'never']).default('interval'),
    doc: 'always: ack after fdatasync; interval: ack after write, fdatasync every TALLY_WAL_SYNC_MS; never',
  },
  walSyncMs: {
    env: 'TALLY_WAL_SYNC_MS',
    schema: int(1, 60_000).default(10),
    doc: 'interval mode: milliseconds between fdatasync calls (the power-loss window)',
  },
  walSegmentBytes: {
    env: 'TALLY_WAL_SEGMENT_BYTES',
    schema: int(4096, 1 << 30).default(64 * 1024 * 1024),
    doc: 'Start a new log segment past this size (bytes); flushed segments are deleted',
  },
  readyMaxFlushFailures: {
    env: 'TALLY_READY_MAX_FLUSH_FAILURES',
    schema: int(1, 1_000_000).default(3),
    doc: 'Consecutive failed flushes after which /readyz answers 503',
  },
  instanceLeaseMs: {
    env: 'TALLY_INSTANCE_LEASE_MS',
    schema: int(1000, 3_600_000).default(15_000),
    doc: 'Lease on the instance id in the store (ms), renewed every third of it; a process that loses it stops accepting increments',
  },
  idempotencyTtlMs: {
    env: 'TALLY_IDEMPOTENCY_TTL_MS',
    schema: int(1000, 30 * 24 * 3600 * 1000).default(24 * 3600 * 1000),
    doc: 'How long an Idempotency-Key is remembered (ms)',
  },
  idempotencyMaxKeys: {
    env: 'TALLY_IDEMPOTENCY_MAX_KEYS',
    schema: int(1, 100_000_000).default(100_000),
    doc: 'Most live Idempotency-Keys the store holds (shared by all instances); past it a request with a new key gets 503 IDEMPOTENCY_KEYS_FULL and changes nothing',
  },
  requestTimeoutMs: {
    env: 'TALLY_REQUEST_TIMEOUT_MS',
    schema: int(100, 600_000).default(10_000),
    doc: 'Longest time to receive a whole request (slow bodies get 408)',
  },
  benchRoutes: {
    env: 'TALLY_BENCH_ROUTES',
    schema: bool.default(false),
    doc: 'Expose POST /api/v1/noop (the benchmark ceiling: same stack, no counting)',
  },
  workers: {
    env: 'TALLY_WORKERS',
    schema: int(0, 256).default(0),
    doc: 'Processes sharing the port (node:cluster), each its own instance; 0 = one per core',
  },
} as const;

type Settings = typeof SETTINGS;
/** Tally's configuration, after parsing and defaults; frozen. */
export type Config = { readonly [K in keyof Settings]: z.output<Settings[K]['schema']> };
/** Raw values by config key, as flags give them. */
export type ConfigInput = { [K in keyof Settings]?: unknown };

/** A bad setting: the message names the variable and what was wrong. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/**
 * Parses config from environment variables, with `overrides` (CLI flags, tests) winning.
 * Throws ConfigError naming the first bad variable.
 */
export function loadConfig(
  env: Record<string, string | undefined> = process.env,
  overrides: ConfigInput = {},
): Config {
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [key, setting] of Object.entries(SETTINGS)) {
    const fromFlag = (overrides as Record<string, unknown>)[key];
    const raw = fromFlag !== undefined ? fromFlag : emptyToUndefined(env[setting.env]);
    const parsed = (setting.schema as z.ZodType).safeParse(raw);
    if (parsed.success) {
      out[key] = parsed.data;
    } else {
      const why = parsed.error.issues.map((i) => i.message).join('; ');
      // A secret is never printed, not even a rejected one (it may be the real token, mistyped).
      const shown =
        'secret' in setting && typeof raw === 'string'
          ? `<hidden, ${raw.length} characters>`
          : JSON.stringify(raw);
      problems.push(`${setting.env}=${shown}: ${why}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(`invalid configuration: ${problems.join(', ')}`);
  return Object.freeze(out) as Config;
}

function emptyToUndefined(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v;
}
