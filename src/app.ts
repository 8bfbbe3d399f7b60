/** @module app — assembles one Tally instance (store, aggregator, live hub, HTTP); no listen here. */

import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyServerOptions,
  LogController,
} from 'fastify';
import { type Aggregator, createAggregator, type DrainResult } from './aggregator/index.js';
import type { Config } from './config.js';
import { IdempotencyKeys } from './counters/idempotency.js';
import { CounterService } from './counters/service.js';
import { TallyError } from './errors.js';
import { adminGuard } from './http/auth.js';
import { answerClientError, registerErrorHandling } from './http/errors.js';
import { counterRoutes, valueReply } from './http/routes/counters.js';
import { eventRoutes } from './http/routes/events.js';
import { healthRoutes } from './http/routes/health.js';
import { webRoutes } from './http/routes/web.js';
import { InstanceLease } from './instance.js';
import { LiveHub } from './live/hub.js';
import type { EventStream } from './live/sse.js';
import { DirectoryLockedError, type DirLock, lockDirectory } from './lock.js';
import { type Logger, lazyChildLogger } from './obs/logger.js';
import { Metrics } from './obs/metrics.js';
import type { Store } from './store/interface.js';
import { adoptOrphanLogs, recoverLog } from './wal/recover.js';
import { type WalFile, WriteAheadLog } from './wal/wal.js';

/** What `buildApp` needs besides config. */
export interface AppDeps {
  readonly store: Store;
  readonly logger: Logger;
  /** This instance's stable id (see instance.ts). */
  readonly instanceId: string;
  /** Defaults to a fresh registry with Node's default metrics. */
  readonly metrics?: Metrics;
  /**
   * Instance ids running in this `tally serve` (this one, or every worker's). When set, this
   * process also replays logs that other instance ids left in the data dir (see
   * `adoptOrphanLogs`). Cluster workers set it on worker 1 only.
   */
  readonly liveInstanceIds?: readonly string[];
  /** Opens write-ahead log segments; tests pass one that fails on demand. */
  readonly openWalFile?: (path: string) => Promise<WalFile>;
  /** Sibling processes on this host (cluster workers): changes fan out to their live streams. */
  readonly bus?: ChangeBus;
}

/** Carries value changes between processes that serve the same counters. */
export interface ChangeBus {
  publish(changes: ReadonlyMap<string, number>): void;
  subscribe(listener: (changes: ReadonlyMap<string, number>) => void): () => void;
  /**
   * Has every sibling process flush what it acknowledged; resolves once all have, rejects if
   * one cannot. Strong reads and admin writes call it, so their guarantees hold across the
   * workers of one `tally serve` as they do within one process.
   */
  flushSiblings?(): Promise<void>;
  /** Answers siblings' `flushSiblings` with this process's flush; returns an unsubscribe. */
  serveFlush?(flush: () => Promise<void>): () => void;
}

/** One assembled instance. */
export interface Tally {
  readonly app: FastifyInstance;
  readonly store: Store;
  readonly aggregator: Aggregator;
  readonly hub: LiveHub;
  readonly metrics: Metrics;
  readonly counters: CounterService;
  /** The write-ahead log, when enabled. */
  readonly wal: WriteAheadLog | undefined;
  /**
   * Clean stop: refuse new requests, end live streams, let in-flight requests finish, flush
   * everything pending (retrying up to `drainTimeoutMs`), close the store.
   */
  close(): Promise<DrainResult>;
  /**
   * Test hook: lets go of what a crashed process would lose with it (its lease stops being
   * renewed, its directory locks are dropped) and nothing else: nothing is flushed, released or
   * closed. Another instance with the same id and data dir may then start in this process.
   */
  abandon(): void;
}

export async function buildApp(config: Config, deps: AppDeps): Promise<Tally> {
  const { store, logger, instanceId } = deps;
  const metrics = deps.metrics ?? new Metrics();
  const hub = new LiveHub(config.flushIntervalMs);
  // Values this process changed: local streams, then sibling processes.
  const changed = (changes: ReadonlyMap<string, number>) => {
    hub.publish(changes);
    deps.bus?.publish(changes);
  };
  const flushLog = logger.child({ component: 'flusher' });
  const idLog = logger.child({ component: 'instance' });

  // Claim the instance id first: its epoch names this process's batches and log.
  const lease = await InstanceLease.claim(store, instanceId, {
    leaseMs: config.instanceLeaseMs,
    dataDir: config.dataDir,
    onEvent(event) {
      if (event.kind === 'waiting') {
        idLog.warn(
          { event: 'instance_held', holder: event.holder, expiresInMs: event.expiresInMs },
          `instance id ${instanceId} is held by another process; waiting for its lease`,
        );
      } else if (event.kind === 'took-over') {
        idLog.info(
          { event: 'instance_took_over', epoch: event.epoch },
          'took over the instance id from this host’s previous, dead process',
        );
      } else if (event.kind === 'claim-failed') {
        idLog.error(
          { event: 'claim_failed', err: event.err, attempt: event.attempt },
          'instance claim failed (store unreachable?); retrying',
        );
      } else if (event.kind === 'renew-failed') {
        idLog.warn({ event: 'lease_renew_failed', err: event.err }, 'lease renewal failed');
      } else {
        metrics.identityConflicts.inc();
        idLog.error(
          { event: 'instance_lost', epoch: event.epoch },
          `another process claimed instance id ${instanceId}: no longer accepting increments`,
        );
      }
    },
  });
  const locks: DirLock[] = [];
  // Renewed from now on, replay included: a long replay must not let the lease lapse.
  let suspend: ((reason: TallyError) => void) | undefined;
  let lost: TallyError | undefined;
  lease.keep(() => {
    lost = new TallyError('IDENTITY_CONFLICT');
    suspend?.(lost);
  });
  try {
    if (deps.liveInstanceIds !== undefined) {
      // With the log off, this run writes no log at all: every directory found is left over.
      const live = new Set(config.wal ? deps.liveInstanceIds : []);
      const adopted = await untilDone(
        () => adoptOrphanLogs(join(config.dataDir, 'wal'), store, live, lockIfFree),
        (err, attempt) =>
          logger.error(
            { event: 'replay_failed', err, attempt },
            'leftover log replay failed; retrying',
          ),
      );
      for (const result of adopted) {
        logger.info(
          { event: 'log_adopted', ...result },
          `replayed the log left by ${result.instanceId}`,
        );
      }
    }

    let wal: WriteAheadLog | undefined;
    if (config.wal) {
      const dir = join(config.dataDir, 'wal', instanceId);
      // Before reading the log: a second process on this log must never replay (and delete) it.
      locks.push(lockDirectory(dir, `write-ahead log of ${instanceId}`));
      const recovery = await untilDone(
        () => recoverLog(dir, store, instanceId),
        (err, attempt) =>
          logger.error({ event: 'replay_failed', err, attempt }, 'log replay failed; retrying'),
      );
      if (recovery.segments > 0) {
        logger.info({ event: 'log_replayed', ...recovery }, 'write-ahead log replayed');
      }
      wal = await WriteAheadLog.open({
        dir,
        fsync: config.walFsync,
        syncIntervalMs: config.walSyncMs,
        segmentBytes: config.walSegmentBytes,
        firstSegment: recovery.nextSegment,
        writer: lease.writerId,
        ...(deps.openWalFile ? { openFile: deps.openWalFile } : {}),
      });
    }
    const firstSeq = (await untilDone(() => store.lastSeq(lease.writerId))) + 1;

    const aggregator = createAggregator(config.aggregator, {
      store,
      writerId: lease.writerId,
      firstSeq,
      flushIntervalMs: config.flushIntervalMs,
      maxPending: config.maxPending,
      maxUnflushed: config.maxUnflushed,
      maxBatchSize: config.maxBatchSize,
      ...(wal ? { journal: wal } : {}),
      events: {
        onApplied(batch, result, durationMs) {
          metrics.batchesFlushed.inc();
          metrics.countersFlushed.inc(batch.deltas.size);
          metrics.flushDuration.observe(durationMs / 1000);
          metrics.storeUp.set(1);
          if (result.duplicate)
            flushLog.info({ seq: batch.seq }, 'retried batch was already applied; skipped');
          if (result.rejected.length > 0) {
            metrics.overflowRejected.inc(result.rejected.length);
            flushLog.error(
              {
                event: 'overflow_rejected',
                seq: batch.seq,
                counters: result.rejected.slice(0, 20),
              },
              'deltas refused: value would leave ±(2^53-1)',
            );
          }
          changed(result.values);
        },
        onFlushError(batch, err, failures) {
          metrics.flushFailures.inc();
          metrics.storeErrors.labels('applyBatch').inc();
          metrics.storeUp.set(0);
          flushLog.error(
            { event: 'flush_failed', seq: batch.seq, counters: batch.deltas.size, failures, err },
            'flush failed; batch kept for retry',
          );
        },
        onIdentityConflict(batch) {
          // Still our epoch: nobody else can write as us, so the client library re-sent our own
          // first attempt (it was applied once). Otherwise another process has our writer id.
          void lease.owned().then((owned) => {
            const at = { writer: batch.instanceId, seq: batch.seq };
            if (owned) {
              flushLog.warn(
                { event: 'batch_resent', ...at },
                'first attempt of a batch found applied, and the lease is still ours: a re-send',
              );
              return;
            }
            metrics.identityConflicts.inc();
            aggregator.suspend(new TallyError('IDENTITY_CONFLICT'));
            flushLog.error(
              { event: 'identity_conflict', ...at },
              'first attempt of a batch was already applied: another process writes as this one; ' +
                'its deltas were not counted and increments are refused (docs/reliability.md)',
            );
          });
        },
        onRecovered() {
          flushLog.info(
            { event: 'flush_recovered' },
            'store reachable again; pending increments flushed',
          );
        },
      },
    });

    suspend = (reason) => aggregator.suspend(reason);
    if (lost !== undefined) aggregator.suspend(lost);

    // Values other instances flushed: refresh estimates and tell local streams.
    const fromElsewhere = (changes: ReadonlyMap<string, number>, since?: number) => {
      for (const [name, value] of changes) aggregator.learn(name, value, since);
      hub.publish(changes);
    };
    const unwatch = store.watch?.(fromElsewhere);
    // Sibling workers share the store but not an order: a sibling's message can arrive after this
    // process flushed a newer value (store.watch orders Redis messages by version; the IPC bus has
    // none). Live streams must never step back, so watched counters publish the store's current
    // value instead, read after the message came.
    // Their unordered values never enter the estimates either; the store's do (eventual reads
    // read the store anyway).
    const fromSiblings = (changes: ReadonlyMap<string, number>) => {
      const watched = hub.watched(changes);
      if (watched.length === 0) return;
      const since = aggregator.readEpoch();
      void Promise.all(watched.map(async (name) => [name, await store.get(name)] as const)).then(
        (entries) => fromElsewhere(new Map(entries), since),
        () => undefined,
      );
    };
    const { bus } = deps;
    const unbus = bus?.subscribe(fromSiblings);
    const unserve = bus?.serveFlush?.(() => aggregator.waitDurable());

    const counters = new CounterService(store, aggregator, changed, bus?.flushSiblings?.bind(bus));
    const keys = new IdempotencyKeys(store, { ttlMs: config.idempotencyTtlMs });
    const streams = new Set<EventStream>();
    let closing = false;

    const app: FastifyInstance = Fastify({
      loggerInstance: logger as FastifyBaseLogger,
      // Per-request logs cost throughput; we log at debug in onResponse instead.
      logController: new LogController({ disableRequestLogging: true }),
      bodyLimit: config.bodyLimitBytes,
      // Behind a load balancer request.ip is the balancer's unless its X-Forwarded-For is trusted.
      trustProxy: config.trustProxy as FastifyServerOptions['trustProxy'],
      // Counter names are up to 128 characters; find-my-way's default cap is 100.
      routerOptions: { maxParamLength: 256 },
      return503OnClosing: true,
      requestTimeout: config.requestTimeoutMs,
      // Node reads requestTimeout only when the server is created (Fastify sets it later, which
      // has no effect), and checks it on an interval (default 30 s): pass both here so a
      // slow-body client gets its 408 near TALLY_REQUEST_TIMEOUT_MS.
      http: {
        requestTimeout: config.requestTimeoutMs,
        connectionsCheckingInterval: Math.max(100, Math.min(1000, config.requestTimeoutMs / 2)),
      },
      // Our own reading of x-request-id (see requestId): Fastify's would echo any value.
      requestIdHeader: false,
      genReqId: requestId,
      clientErrorHandler: answerClientError,
      childLoggerFactory: (parent, bindings, options) =>
        lazyChildLogger(parent as Logger, bindings, options) as FastifyBaseLogger,
    });

    // One JSON parser: an empty body means "no body" (curl -X POST), anything else must parse.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
      const text = body as string;
      if (text.trim() === '') return done(null, undefined);
      try {
        done(null, JSON.parse(text));
      } catch {
        done(new TallyError('INVALID_JSON'), undefined);
      }
    });

    registerErrorHandling(app);
    // A callback hook, not async: an async hook costs a promise and a microtask per request.
    app.addHook('onResponse', (request, reply, done) => {
      metrics.countRequest(
        request.routeOptions.url ?? 'unmatched',
        request.method,
        reply.statusCode,
      );
      if (logger.isLevelEnabled('debug')) {
        request.log.debug(
          {
            method: request.method,
            url: request.url,
            status: reply.statusCode,
            ms: reply.elapsedTime,
          },
          'request',
        );
      }
      done();
    });
    app.addHook('preClose', async () => {
      for (const s of streams) s.end();
    });

    await app.register(healthRoutes, {
      store,
      aggregator,
      metrics,
      instanceId,
      writerId: lease.writerId,
      closing: () => closing,
      checks: [
        () => wal?.problem(),
        () => lease.problem(),
        () => {
          const failures = aggregator.consecutiveFailures();
          if (failures < config.readyMaxFlushFailures) return undefined;
          return `${failures} consecutive flushes failed; acknowledged increments wait in the log`;
        },
      ],
    });
    await app.register(counterRoutes, {
      counters,
      metrics,
      keys,
      requireAdmin: adminGuard(config.adminToken),
    });
    await app.register(eventRoutes, {
      counters,
      hub,
      metrics,
      streams,
      maxClients: config.maxSseClients,
      maxClientsPerIp: config.maxSseClientsPerIp,
      heartbeatMs: config.sseHeartbeatMs,
    });

    await app.register(webRoutes, { flushIntervalMs: config.flushIntervalMs });
    if (config.benchRoutes) {
      // The benchmark's ceiling: same framework, hooks, parser and serializer; no counting.
      app.post(
        '/api/v1/noop',
        { schema: { response: { 202: valueReply } } },
        async (_request, reply) => {
          reply.code(202);
          return { name: 'noop', value: 0 };
        },
      );
    }

    aggregator.start();

    let closed: Promise<DrainResult> | undefined;
    const close = (): Promise<DrainResult> => {
      closed ??= (async () => {
        closing = true;
        // Idle keep-alive sockets are closed at once; sockets that never sent a request (browser
        // and undici preconnects) would hold close() for seconds, so cut everything after a grace
        // period that lets in-flight requests finish.
        const force = setTimeout(() => app.server.closeAllConnections(), CLOSE_GRACE_MS);
        await app.close();
        clearTimeout(force);
        const result = await aggregator.drain(config.drainTimeoutMs);
        if (!result.drained) {
          logger.error(
            { event: 'drain_incomplete', unflushed: result.unflushed },
            'stopped with unflushed increments',
          );
        }
        await wal?.close();
        await lease.release();
        for (const lock of locks) lock.release();
        unwatch?.();
        unbus?.();
        unserve?.();
        hub.close();
        await store.close();
        return result;
      })();
      return closed;
    };

    const abandon = () => {
      lease.abandon();
      for (const lock of locks) lock.release();
    };

    return { app, store, aggregator, hub, metrics, counters, wal, close, abandon };
  } catch (err) {
    // A start that fails after the claim gives back what it took, so a retry can have them.
    await lease.release();
    for (const lock of locks) lock.release();
    throw err;
  }
}

/** Retries `op` with capped backoff until it succeeds: startup waits out a store outage. */
async function untilDone<T>(
  op: () => Promise<T>,
  onError?: (err: unknown, attempt: number) => void,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await op();
    } catch (err) {
      onError?.(err, attempt);
      await new Promise((r) => setTimeout(r, Math.min(5000, 100 * 2 ** attempt)));
    }
  }
}

/** Locks a leftover log directory, or undefined when a running process holds it. */
function lockIfFree(dir: string): DirLock | undefined {
  try {
    return lockDirectory(dir, 'write-ahead log');
  } catch (err) {
    if (err instanceof DirectoryLockedError) return undefined;
    throw err;
  }
}

/** How long in-flight requests get to finish on close before their sockets are cut. */
const CLOSE_GRACE_MS = 1000;

/** Request ids: a random per-process prefix and a counter, unique without a random draw each. */
const REQUEST_ID_PREFIX = randomBytes(4).toString('hex');
let requestSeq = 0;

/**
 * A client's `x-request-id` is kept when it is 1-128 visible ASCII characters (UUIDs, ULIDs,
 * trace ids); anything else is replaced, since the id is echoed into every error body and log
 * line of the request (a 12 KB id was, before).
 */
const CLIENT_REQUEST_ID_RE = /^[\x21-\x7e]{1,128}$/;

function requestId(req: IncomingMessage): string {
  const sent = req.headers['x-request-id'];
  if (typeof sent === 'string' && CLIENT_REQUEST_ID_RE.test(sent)) return sent;
  requestSeq = (requestSeq + 1) % Number.MAX_SAFE_INTEGER;
  return `${REQUEST_ID_PREFIX}-${requestSeq.toString(36)}`;
}
