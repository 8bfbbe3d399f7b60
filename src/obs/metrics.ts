/** @module obs/metrics — Prometheus metrics of one Tally process (prom-client, own registry). */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** The metrics Tally exports at /metrics; names are stable (dashboards and alarms use them). */
export class Metrics {
  readonly registry = new Registry();
  // The two per-request counters (see scrapedCounter below).
  private readonly acceptedCounts = scrapedCounter(this.registry, {
    name: 'tally_increments_accepted_total',
    help: 'Increments accepted (acknowledged), by consistency',
    labelNames: ['consistency'],
  });
  private readonly requestCounts = scrapedCounter(this.registry, {
    name: 'tally_http_requests_total',
    help: 'HTTP requests by route pattern, method and status',
    labelNames: ['route', 'method', 'status'],
  });
  readonly incrementsAccepted = this.acceptedCounts.counter;
  readonly httpRequests = this.requestCounts.counter;
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

  /** Counts one HTTP request by route pattern, method and status. */
  countRequest(route: string, method: string, status: number): void {
    this.requestCounts.add(`${route}${SEP}${method}${SEP}${status}`);
  }

  readonly storeUp = new Gauge({
    name: 'tally_store_up',
    help: '1 when the last flush or ping reached the store, else 0',
    registers: [this.registry],
  });

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics ?? true)
      collectDefaultMetrics({ register: this.registry, prefix: 'tally_' });
  }
}

/** Joins label values into one key; no route pattern, method, status or consistency holds it. */
const SEP = '\u0000';

/**
 * A prom-client counter whose hot-path increments are plain numbers in a Map, copied in when
 * /metrics is scraped: prom-client hashes the label set on every `inc()`, a measurable share of
 * a request's CPU (docs/benchmarks.md). `add` takes the label values joined by {@link SEP}.
 */
function scrapedCounter(
  registry: Registry,
  options: { name: string; help: string; labelNames: readonly string[] },
): { counter: Counter<string>; add(key: string, n?: number): void } {
  const counts = new Map<string, number>();
  const counter = new Counter({
    ...options,
    registers: [registry],
    collect() {
      this.reset();
      for (const [key, n] of counts) this.labels(...key.split(SEP)).inc(n);
    },
  });
  return {
    counter,
    add(key, n = 1) {
      counts.set(key, (counts.get(key) ?? 0) + n);
    },
  };
}
