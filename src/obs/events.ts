/**
 * @module obs/events — what the aggregator's and the instance lease's events become in metrics
 * and logs. Decisions stay with their owners; this only reports.
 */
import type { AggregatorEvents } from '../aggregator/index.js';
import type { LeaseEvent } from '../instance.js';
import type { Batch } from '../store/interface.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';

/** Options for {@link flushEvents}. */
export interface FlushEventsOptions {
  readonly metrics: Metrics;
  readonly logger: Logger;
  /** Values a batch left in the store (live streams, sibling processes). */
  readonly applied: (values: ReadonlyMap<string, number>) => void;
  /**
   * A first attempt was found already applied: resolves true for a real identity conflict
   * (admissions are then stopped by the caller), false for a re-send of our own attempt.
   */
  readonly conflict: (batch: Batch) => Promise<boolean>;
}

/** The aggregator's observer: metrics, the flusher's log lines, and the two hand-offs. */
export function flushEvents(options: FlushEventsOptions): AggregatorEvents {
  const { metrics } = options;
  const log = options.logger.child({ component: 'flusher' });
  return {
    onApplied(batch, result, durationMs) {
      metrics.batchesFlushed.inc();
      metrics.countersFlushed.inc(batch.deltas.size);
      metrics.flushDuration.observe(durationMs / 1000);
      metrics.storeUp.set(1);
      if (result.duplicate)
        log.info({ seq: batch.seq }, 'retried batch was already applied; skipped');
      if (result.rejected.length > 0) {
        metrics.overflowRejected.inc(result.rejected.length);
        log.error(
          { event: 'overflow_rejected', seq: batch.seq, counters: result.rejected.slice(0, 20) },
          'deltas refused: value would leave ±(2^53-1)',
        );
      }
      options.applied(result.values);
    },
    onFlushError(batch, err, failures) {
      metrics.flushFailures.inc();
      metrics.storeErrors.labels('applyBatch').inc();
      metrics.storeUp.set(0);
      log.error(
        { event: 'flush_failed', seq: batch.seq, counters: batch.deltas.size, failures, err },
        'flush failed; batch kept for retry',
      );
    },
    onIdentityConflict(batch) {
      const at = { writer: batch.instanceId, seq: batch.seq };
      void options.conflict(batch).then((real) => {
        if (!real) {
          log.warn(
            { event: 'batch_resent', ...at },
            'first attempt of a batch found applied, and the lease is still ours: a re-send',
          );
          return;
        }
        metrics.identityConflicts.inc();
        log.error(
          { event: 'identity_conflict', ...at },
          'first attempt of a batch was already applied: another process writes as this one; ' +
            'its deltas were not counted and increments are refused (docs/reliability.md)',
        );
      });
    },
    onRecovered() {
      log.info({ event: 'flush_recovered' }, 'store reachable again; pending increments flushed');
    },
  };
}

/** The lease's observer: waits, takeovers, failed claims and renewals, and a lost id. */
export function leaseEvents(
  metrics: Metrics,
  logger: Logger,
  instanceId: string,
): (event: LeaseEvent) => void {
  const log = logger.child({ component: 'instance' });
  return (event) => {
    switch (event.kind) {
      case 'waiting':
        log.warn(
          { event: 'instance_held', holder: event.holder, expiresInMs: event.expiresInMs },
          `instance id ${instanceId} is held by another process; waiting for its lease`,
        );
        break;
      case 'took-over':
        log.info(
          { event: 'instance_took_over', epoch: event.epoch },
          'took over the instance id from this host’s previous, dead process',
        );
        break;
      case 'claim-failed':
        log.error(
          { event: 'claim_failed', err: event.err, attempt: event.attempt },
          'instance claim failed (store unreachable?); retrying',
        );
        break;
      case 'renew-failed':
        log.warn({ event: 'lease_renew_failed', err: event.err }, 'lease renewal failed');
        break;
      case 'lost':
        metrics.identityConflicts.inc();
        log.error(
          { event: 'instance_lost', epoch: event.epoch },
          `another process claimed instance id ${instanceId}: no longer accepting increments`,
        );
        break;
    }
  };
}
