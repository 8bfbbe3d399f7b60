/** @module store/redis/factory — opens a RedisStore (standalone or Cluster) from config. */
import { createRequire } from 'node:module';
import type { ConnectionOptions } from 'node:tls';
import {
  type AbstractConnector,
  Cluster,
  type ClusterOptions,
  Redis,
  type RedisOptions,
  SentinelConnector,
} from 'ioredis';
import type { Config } from '../../config.js';
import { StartRefusedError } from '../../errors.js';
import { backoffMs } from '../../util/retry.js';
import type { Store } from '../interface.js';
import { type RedisClient, RedisStore } from './store.js';
import {
  describeTarget,
  parseRedisUrl,
  parseRedisUrls,
  type RedisTarget,
  RedisUrlError,
} from './url.js';

/** Hash-tagged shards per key prefix on Redis Cluster. Fixed: changing it moves counters. */
export const CLUSTER_SHARDS = 16;

type Stream = Awaited<ReturnType<AbstractConnector['connect']>>;
type ConnectArgs = Parameters<AbstractConnector['connect']>;
/** The instance side of ioredis's StandaloneConnector, as a plain (non-abstract) shape. */
interface Connector {
  connect(...args: ConnectArgs): Promise<Stream>;
  disconnect(): void;
}
type ConnectorClass = new (
  options: ConstructorParameters<NonNullable<RedisOptions['Connector']>>[0],
) => Connector;

// ioredis does not export its plain connector from the package index.
const { default: StandaloneConnector } = createRequire(import.meta.url)(
  'ioredis/built/connectors/StandaloneConnector',
) as { default: ConnectorClass };

/**
 * ioredis's plain connector, plus one lasting `error` listener on every socket it opens. ioredis
 * listens with `once('error')`, so a socket that errs twice (a TLS handshake that fails and then
 * gets the server's alert, a reset after a timeout) would throw the second error as an uncaught
 * exception and stop the process. ioredis has already handled the first and reconnects; the
 * later ones carry nothing new.
 */
export class GuardedConnector extends StandaloneConnector {
  override async connect(...args: ConnectArgs): Promise<Stream> {
    const stream = await super.connect(...args);
    stream.on('error', () => {});
    return stream;
  }
}

/**
 * The same guard on ioredis's sentinel connector. A custom Connector replaces ioredis's choice
 * between the two, so sentinel mode must get its own (with the plain one it would ignore the
 * sentinels and connect to the default localhost:6379).
 */
export class GuardedSentinelConnector extends SentinelConnector {
  override async connect(...args: ConnectArgs): Promise<Stream> {
    const stream = await super.connect(...args);
    stream.on('error', () => {});
    return stream;
  }
}

/** Options for {@link openRedisStore}. */
export interface OpenRedisOptions {
  /** redis:// or rediss:// URL; for a cluster, comma-separated seed URLs. */
  readonly url: string;
  /** True: Redis Cluster (keys sharded by hash tag). @default false */
  readonly cluster?: boolean;
  /** @default 'tally:' */
  readonly keyPrefix?: string;
  /** Extra TLS options for rediss:// (e.g. a private CA); NODE_EXTRA_CA_CERTS works too. */
  readonly tls?: ConnectionOptions;
  /** How long to wait for Redis at start before giving up, in ms. @default 5000 */
  readonly connectWaitMs?: number;
  /** See RedisStoreOptions.commandTimeoutMs, in ms. @default 2000 */
  readonly commandTimeoutMs?: number;
  /** Timeout of one connection attempt, in ms. @default 2000 */
  readonly connectTimeoutMs?: number;
  /** Longest pause between reconnection attempts, in ms. @default 2000 */
  readonly maxReconnectDelayMs?: number;
  /** See RedisStoreOptions.subscriberHeartbeatMs, in ms. @default 15_000 */
  readonly subscriberHeartbeatMs?: number;
  /** See RedisStoreOptions.allowEviction. @default false */
  readonly allowEviction?: boolean;
  /** `host:port,…` of Redis Sentinels; the primary is then found through them. */
  readonly sentinels?: string | undefined;
  /** The master name the sentinels monitor. @default 'mymaster' */
  readonly sentinelName?: string | undefined;
  /** See RedisStoreOptions.waitReplicas. @default 0 */
  readonly waitReplicas?: number;
  /** See RedisStoreOptions.waitTimeoutMs, in ms. @default 1000 */
  readonly waitTimeoutMs?: number;
  /** Record each counter's last write, so idle ones can expire. @default false */
  readonly trackLastWrite?: boolean;
}

/** Opens the store for TALLY_STORE=redis or redis-cluster. */
export async function createRedisStore(config: Config): Promise<Store> {
  return openRedisStore({
    url: config.redisUrl,
    cluster: config.store === 'redis-cluster',
    keyPrefix: config.redisKeyPrefix,
    allowEviction: config.redisAllowEviction,
    waitReplicas: config.redisWaitReplicas,
    waitTimeoutMs: config.redisWaitTimeoutMs,
    sentinels: config.redisSentinels,
    sentinelName: config.redisSentinelName,
    // Always: a counter written while expiry was off must not look idle once it is turned on.
    trackLastWrite: true,
  });
}

/** `host:port,host:port` → ioredis sentinel addresses (empty when none are set). */
function parseSentinels(list: string | undefined): Array<{ host: string; port: number }> {
  if (list === undefined || list.trim() === '') return [];
  return list.split(',').map((entry) => {
    const m = /^\s*([^\s:]+|\[[^\]]+\]):(\d{1,5})\s*$/.exec(entry);
    if (m === null) throw new RedisUrlError(`TALLY_REDIS_SENTINELS: "${entry}" is not host:port`);
    return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port: Number(m[2]) };
  });
}

/** Connects (waiting up to `connectWaitMs` for Redis to answer) and returns the store. */
export async function openRedisStore(options: OpenRedisOptions): Promise<RedisStore> {
  let lastError: Error | undefined;
  const remember = (err: Error) => {
    lastError = err;
  };
  const retry = reconnectDelay(options.maxReconnectDelayMs ?? 2000);
  let client: RedisClient;
  let createSubscriber: () => RedisClient;
  let target: string;
  let db = 0;

  if (options.cluster && (options.waitReplicas ?? 0) > 0) {
    throw new StartRefusedError(
      'TALLY_REDIS_WAIT_REPLICAS works on one Redis (with replicas), not yet on Redis Cluster',
    );
  }
  if (options.cluster) {
    const seeds = parseRedisUrls(options.url);
    const first = seeds[0] as RedisTarget;
    if (seeds.some((s) => s.db !== 0)) {
      throw new RedisUrlError('Redis Cluster has only database 0: drop the /db from the URLs');
    }
    target = seeds.map(describeTarget).join(',');
    const clusterOptions = (offlineQueue: boolean): ClusterOptions => ({
      enableOfflineQueue: offlineQueue,
      clusterRetryStrategy: retry,
      slotsRefreshTimeout: 2000,
      // ElastiCache (and most TLS setups) need the node names as given, not resolved IPs.
      dnsLookup: (address, callback) => callback(null, address),
      redisOptions: {
        ...nodeOptions(first, options),
        maxRetriesPerRequest: offlineQueue ? null : 0,
      },
    });
    const nodes = seeds.map((s) => ({ host: s.host, port: s.port }));
    client = new Cluster(nodes, clusterOptions(false));
    createSubscriber = () => new Cluster(nodes, clusterOptions(true));
  } else {
    if (options.url.includes(',')) {
      throw new RedisUrlError('TALLY_REDIS_URL lists several URLs: use TALLY_STORE=redis-cluster');
    }
    const t = parseRedisUrl(options.url);
    target = describeTarget(t);
    db = t.db;
    const sentinels = parseSentinels(options.sentinels);
    if (sentinels.length > 0) {
      target = `sentinel ${options.sentinelName ?? 'mymaster'} via ${options.sentinels}`;
    }
    const redisOptions = (offlineQueue: boolean): RedisOptions => ({
      ...nodeOptions(t, options),
      // With sentinels, ioredis asks them for the current primary on every (re)connect and
      // follows a failover; the URL then gives only credentials, database and TLS.
      ...(sentinels.length > 0
        ? {
            sentinels,
            name: options.sentinelName ?? 'mymaster',
            sentinelRetryStrategy: retry,
            Connector: GuardedSentinelConnector as unknown as NonNullable<
              RedisOptions['Connector']
            >,
          }
        : { host: t.host, port: t.port }),
      db: t.db,
      retryStrategy: retry,
      // Offline, commands fail at once (the aggregator keeps the batch and retries); a command
      // in flight when the connection drops fails too instead of being re-sent later.
      enableOfflineQueue: offlineQueue,
      maxRetriesPerRequest: offlineQueue ? null : 0,
    });
    client = new Redis(redisOptions(false));
    createSubscriber = () => new Redis(redisOptions(true));
  }

  client.on('error', remember);
  client.on('ready', () => {
    lastError = undefined;
  });
  try {
    await waitReady(client, options.connectWaitMs ?? 5000);
  } catch {
    client.disconnect();
    const why = lastError?.message ?? `no answer in ${options.connectWaitMs ?? 5000} ms`;
    throw new Error(`cannot reach Redis at ${target}: ${why}`);
  }
  const store = new RedisStore({
    client,
    createSubscriber,
    keyPrefix: options.keyPrefix,
    shards: options.cluster ? CLUSTER_SHARDS : 1,
    db,
    target,
    commandTimeoutMs: options.commandTimeoutMs,
    subscriberHeartbeatMs: options.subscriberHeartbeatMs,
    lastError: () => lastError,
    allowEviction: options.allowEviction ?? false,
    waitReplicas: options.waitReplicas ?? 0,
    waitTimeoutMs: options.waitTimeoutMs ?? 1000,
    trackLastWrite: options.trackLastWrite ?? false,
  });
  const problem = await store.checkEviction().catch(() => undefined);
  if (problem !== undefined) {
    client.disconnect();
    throw new StartRefusedError(problem);
  }
  // A reconnect may land on another node (a failover) with another policy: look again.
  client.on('ready', () => void store.checkEviction().catch(() => undefined));
  return store;
}

function nodeOptions(t: RedisTarget, options: OpenRedisOptions): RedisOptions {
  return {
    Connector: GuardedConnector as unknown as NonNullable<RedisOptions['Connector']>,
    username: t.username,
    password: t.password,
    tls: t.tls ? { ...options.tls } : undefined,
    connectTimeout: options.connectTimeoutMs ?? 2000,
    connectionName: 'tally',
    // The store asks for readiness itself (status 'ready' means INFO answered).
    enableReadyCheck: true,
  };
}

/** Reconnect delays: capped, jittered backoff, so many instances do not reconnect in lockstep. */
function reconnectDelay(maxMs: number): (attempt: number) => number {
  return (attempt) => backoffMs(attempt, 100, maxMs);
}

function waitReady(client: RedisClient, ms: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('ready', onReady);
      reject(new Error('timeout'));
    }, ms);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    client.once('ready', onReady);
  });
}
