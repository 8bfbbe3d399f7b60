/**
 * @module app — the composition root: assembles one Tally instance (identity, log, aggregator,
 * live values, HTTP) from its parts and hands back a way to stop it. No listen, no logic here.
 */

import type { FastifyInstance } from 'fastify';
import { type Aggregator, createAggregator, type DrainResult } from './aggregator/index.js';
import type { Config } from './config.js';
import { followChanges } from './counters/changes.js';
import { startExpiry, startHistorySweep } from './counters/expiry.js';
import { CounterService } from './counters/service.js';
import { Visitors } from './counters/visitors.js';
import { TallyError } from './errors.js';
import { createHttp } from './http/index.js';
import { InstanceLease } from './instance.js';
import type { SiblingBus } from './live/bus.js';
import { LiveHub } from './live/hub.js';
import type { DirLock } from './lock.js';
import { flushEvents, leaseEvents } from './obs/events.js';
import type { Logger } from './obs/logger.js';
import { Metrics } from './obs/metrics.js';
import { HistoryStore } from './store/history.js';
import type { Store } from './store/interface.js';
import { untilDone } from './util/retry.js';
import { openLog } from './wal/startup.js';
import type { WalFile, WriteAheadLog } from './wal/wal.js';

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
  readonly bus?: SiblingBus;
}

/** One assembled instance. */
export interface Tally {
  readonly app: FastifyInstance;
  /** The OpenAPI document of every route (`GET /openapi.json`). */
  openapi(): Record<string, unknown>;
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
  const { logger, instanceId, bus } = deps;
  // Every store keeps history: time buckets ride in the batches (store/history.ts).
  const store =
    deps.store instanceof HistoryStore
      ? deps.store
      : new HistoryStore(deps.store, {
          ...(config.historyDays === undefined
            ? {}
            : { dayRetentionMs: config.historyDays * 86_400_000 }),
        });
  const metrics = deps.metrics ?? new Metrics();
  const hub = new LiveHub(config.flushIntervalMs);
  // Values this process changed: local streams, then sibling processes.
  const changed = (changes: ReadonlyMap<string, number>) => {
    hub.publish(changes);
    bus?.publish(changes);
  };

  // The instance id first: its epoch names this process's batches and log. Renewed from now on,
  // replay included, so a long replay cannot let the lease lapse.
  const lease = await InstanceLease.claim(store, instanceId, {
    leaseMs: config.instanceLeaseMs,
    dataDir: config.dataDir,
    onEvent: leaseEvents(metrics, logger, instanceId),
  });
  let lost: TallyError | undefined;
  let aggregator: Aggregator | undefined;
  lease.keep(() => {
    lost = new TallyError('IDENTITY_CONFLICT');
    aggregator?.suspend(lost);
  });
  let locks: DirLock[] = [];
  try {
    const log = await openLog({
      config,
      store,
      instanceId,
      writerId: lease.writerId,
      liveInstanceIds: deps.liveInstanceIds,
      openFile: deps.openWalFile,
      logger,
    });
    const wal = log.wal;
    locks = log.locks;
    const firstSeq = (await untilDone(() => store.lastSeq(lease.writerId))) + 1;
    // The store answered: up until a flush or a ping says otherwise.
    metrics.storeUp.set(1);

    const agg = createAggregator(config.aggregator, {
      store,
      writerId: lease.writerId,
      firstSeq,
      flushIntervalMs: config.flushIntervalMs,
      maxPending: config.maxPending,
      maxUnflushed: config.maxUnflushed,
      maxBatchSize: config.maxBatchSize,
      ...(wal ? { journal: wal } : {}),
      events: flushEvents({
        metrics,
        logger,
        applied: changed,
        // Still our epoch: nobody else can write as us, so the client library re-sent our own
        // first attempt. Otherwise another process has our writer id: stop admitting.
        conflict: async () => {
          if (await lease.owned()) return false;
          agg.suspend(new TallyError('IDENTITY_CONFLICT'));
          return true;
        },
      }),
    });
    aggregator = agg;
    if (lost !== undefined) agg.suspend(lost);

    const unfollow = followChanges(store, agg, hub, bus);
    const visitors = config.uniques
      ? new Visitors({ store, logger, flushIntervalMs: config.flushIntervalMs })
      : undefined;
    await visitors?.start();
    const counters = new CounterService(
      store,
      agg,
      changed,
      bus?.flushSiblings?.bind(bus),
      visitors,
      bus?.siblingsUnsent?.bind(bus),
    );
    let closing = false;
    const { app, docs } = await createHttp(config, {
      store,
      aggregator: agg,
      counters,
      hub,
      metrics,
      logger,
      instanceId,
      writerId: lease.writerId,
      ...(bus === undefined ? {} : { bus }),
      closing: () => closing,
      checks: [
        () => wal?.problem(),
        () => lease.problem(),
        () => {
          const failures = agg.consecutiveFailures();
          if (failures < config.readyMaxFlushFailures) return undefined;
          return `${failures} consecutive flushes failed; acknowledged increments wait in the log`;
        },
      ],
    });

    agg.start();
    const stopExpiry =
      config.expireIdle === undefined ? () => {} : startExpiry(counters, config.expireIdle, logger);
    const stopHistorySweep = startHistorySweep(store, logger);

    let closed: Promise<DrainResult> | undefined;
    const close = (): Promise<DrainResult> => {
      closed ??= (async () => {
        closing = true;
        stopExpiry();
        stopHistorySweep();
        // Idle keep-alive sockets are closed at once; sockets that never sent a request (browser
        // and undici preconnects) would hold close() for seconds, so cut everything after a grace
        // period that lets in-flight requests finish.
        const force = setTimeout(() => app.server.closeAllConnections(), CLOSE_GRACE_MS);
        await app.close();
        clearTimeout(force);
        const result = await agg.drain(config.drainTimeoutMs);
        if (!result.drained) {
          logger.error(
            { event: 'drain_incomplete', unflushed: result.unflushed },
            'stopped with unflushed increments',
          );
        }
        await wal?.close();
        await visitors?.close();
        await lease.release();
        for (const lock of locks) lock.release();
        unfollow();
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
    return {
      app,
      openapi: () => docs.document(),
      store,
      aggregator: agg,
      hub,
      metrics,
      counters,
      wal,
      close,
      abandon,
    };
  } catch (err) {
    // A start that fails after the claim gives back what it took, so a retry can have them.
    await lease.release();
    for (const lock of locks) lock.release();
    throw err;
  }
}

/** How long in-flight requests get to finish on close before their sockets are cut. */
const CLOSE_GRACE_MS = 1000;
