/** @module obs/metrics — Prometheus metrics of one Tally process (prom-client, own registry). */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** The metrics Tally exports at /metrics; names are stable (dashboards and alarms use them). */
export class Metrics {
  readonly registry = new Registry();
  // The two per-request counters: plain numbers, copied into prom-client at scrape time.
  private readonly acceptedCounts = scrapedCounter(this.registry, {
    name: 'tally_increments_accepted_total',
    help: 'Increments accepted (acknowledged), by consistency',
    labelNames: ['consistency'],
  });
  // route pattern → method → status → requests (see countRequest).
  private readonly requestCounts = new Map<string, Map<string, Map<number, number>>>();
  readonly incrementsAccepted = this.acceptedCounts.counter;
  readonly httpRequests = scrapedTree(this.registry, this.requestCounts, {
    name: 'tally_http_requests_total',
    help: 'HTTP requests by route pattern, method and status',
    labelNames: ['route', 'method', 'status'],
  });
  readonly batchesFlushed = new Counter({
    name: 'tally_batches_flushed_total',
    help: 'Batches applied to the store (including duplicates found already applied)',
    registers: [this.registry],
  });
  readonly countersFlushed = new Counter({
    name: 'tally_counters_flushed_total',
    help: 'Counter deltas written by flushed batches',
    registers: [this.registry],
  });
  readonly flushDuration = new Histogram({
    name: 'tally_flush_duration_seconds',
    help: 'Time to apply one batch to the store',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly flushFailures = new Counter({
    name: 'tally_flush_failures_total',
    help: 'Flush attempts that failed (the batch is kept and retried)',
    registers: [this.registry],
  });
  readonly storeErrors = new Counter({
    name: 'tally_store_errors_total',
    help: 'Store operations that failed, by operation',
    labelNames: ['op'] as const,
    registers: [this.registry],
  });
  readonly overflowRejected = new Counter({
    name: 'tally_overflow_rejected_total',
    help: 'Counter deltas the store refused because the value would leave ±(2^53-1)',
    registers: [this.registry],
  });
  readonly identityConflicts = new Counter({
    name: 'tally_identity_conflicts_total',
    help: 'Times another process was found using this instance id (lease taken, or a batch already applied on its first attempt)',
    registers: [this.registry],
  });
  readonly pendingDeltas = new Gauge({
    name: 'tally_pending_deltas',
    help: 'Pending work: distinct counters (accumulate) or queued increments (queue)',
    registers: [this.registry],
  });
  readonly pendingIncrements = new Gauge({
    name: 'tally_pending_increments',
    help: 'Acknowledged increments not yet in a flushed batch',
    registers: [this.registry],
  });
  readonly sseClients = new Gauge({
    name: 'tally_sse_clients',
    help: 'Open Server-Sent Events streams',
    registers: [this.registry],
  });
  /** Counts accepted increments (acknowledged), by consistency. */
  accepted(consistency: 'eventual' | 'strong', n = 1): void {
    this.acceptedCounts.add(consistency, n);
  }

  /**
   * Counts one HTTP request by route pattern (`unmatched` when no route matched), method and
   * status. One Map lookup per label: the route pattern and method are the same string objects
   * on every request, whose hashes V8 keeps, where a joined key was a new string to build and
   * hash each time (2% of the no-op route's CPU, docs/benchmarks.md).
   */
  countRequest(route: string | undefined, method: string, status: number): void {
    countStatus(this.requestsOf(route ?? 'unmatched'), method, status);
  }

  /**
   * The request counts of one route pattern (method → status → requests), for a counter that
   * looks the pattern up once, when the route is added, and then calls {@link countStatus}.
   */
  requestsOf(route: string): Map<string, Map<number, number>> {
    let byMethod = this.requestCounts.get(route);
    if (byMethod === undefined) {
      byMethod = new Map();
      this.requestCounts.set(route, byMethod);
    }
    return byMethod;
  }

  readonly storeUp = new Gauge({
    name: 'tally_store_up',
    help: '1 when the last flush or ping reached the store, else 0',
    // Across the workers of one `tally serve`: 0 when any of them is cut off.
    aggregator: 'min',
    registers: [this.registry],
  });

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics ?? true)
      collectDefaultMetrics({ register: this.registry, prefix: 'tally_' });
  }
}

/**
 * A prom-client counter whose hot-path increments are plain numbers in a Map, copied in when
 * /metrics is scraped: prom-client hashes the label set on every `inc()`, a measurable share of
 * a request's CPU (docs/benchmarks.md). `add` takes the one label's value.
 */
function scrapedCounter(
  registry: Registry,
  options: { name: string; help: string; labelNames: readonly [string] },
): { counter: Counter<string>; add(value: string, n?: number): void } {
  const counts = new Map<string, number>();
  const counter = new Counter({
    ...options,
    registers: [registry],
    collect() {
      this.reset();
      for (const [value, n] of counts) this.labels(value).inc(n);
    },
  });
  return {
    counter,
    add(value, n = 1) {
      counts.set(value, (counts.get(value) ?? 0) + n);
    },
  };
}

/** The same for three labels, counted in nested Maps (one level per label) by the caller. */
function scrapedTree(
  registry: Registry,
  counts: ReadonlyMap<string, ReadonlyMap<string, ReadonlyMap<number, number>>>,
  options: { name: string; help: string; labelNames: readonly [string, string, string] },
): Counter<string> {
  return new Counter({
    ...options,
    registers: [registry],
    collect() {
      this.reset();
      for (const [a, byB] of counts) {
        for (const [b, byC] of byB) {
          for (const [c, n] of byC) this.labels(a, b, String(c)).inc(n);
        }
      }
    },
  });
}

/** Counts one request in a route's counts (see `Metrics.requestsOf`). */
export function countStatus(
  byMethod: Map<string, Map<number, number>>,
  method: string,
  status: number,
): void {
  let byStatus = byMethod.get(method);
  if (byStatus === undefined) {
    byStatus = new Map();
    byMethod.set(method, byStatus);
  }
  byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
}
