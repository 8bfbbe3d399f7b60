/** @module http/routes/health — liveness, readiness and Prometheus metrics. */
import type { FastifyInstance } from 'fastify';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { Aggregator } from '../../aggregator/index.js';
import type { SiblingBus } from '../../live/bus.js';
import type { Metrics } from '../../obs/metrics.js';
import type { Store } from '../../store/interface.js';
import { json, media, object, type RouteDoc } from '../openapi.js';

export interface HealthRoutesOptions {
  readonly store: Store;
  readonly aggregator: Aggregator;
  readonly metrics: Metrics;
  readonly instanceId: string;
  /** Identity of this process's batches (`<instanceId>@<epoch>`). */
  readonly writerId: string;
  /** Extra readiness checks (e.g. the write-ahead log); a string is the reason it is not ready. */
  readonly checks?: ReadonlyArray<() => string | undefined>;
  /** True once shutdown began: load balancers should stop sending traffic. */
  readonly closing: () => boolean;
  /** Sibling workers of one `tally serve`: /metrics then answers for the whole host. */
  readonly siblings?: Pick<SiblingBus, 'siblingMetrics' | 'serveMetrics'>;
}

/** How long /readyz waits for the store to answer a ping. */
const PING_TIMEOUT_MS = 1000;

export async function healthRoutes(app: FastifyInstance, opts: HealthRoutesOptions): Promise<void> {
  const { store, aggregator, metrics } = opts;

  app.get('/healthz', { config: { doc: HEALTH_DOC } }, async () => ({ status: 'ok' }));

  app.get('/readyz', { config: { doc: READY_DOC } }, async (_request, reply) => {
    const problems: string[] = [];
    if (opts.closing()) problems.push('shutting down');
    try {
      await withTimeout(store.ping(), PING_TIMEOUT_MS);
      metrics.storeUp.set(1);
    } catch (err) {
      metrics.storeUp.set(0);
      problems.push(`store unreachable: ${(err as Error).message}`);
    }
    for (const check of opts.checks ?? []) {
      const problem = check();
      if (problem !== undefined) problems.push(problem);
    }
    reply.code(problems.length === 0 ? 200 : 503);
    return {
      status: problems.length === 0 ? 'ready' : 'unavailable',
      problems,
      store: store.kind,
      aggregator: aggregator.kind,
      instanceId: opts.instanceId,
      writerId: opts.writerId,
      pending: aggregator.pendingSize(),
      flushFailures: aggregator.consecutiveFailures(),
    };
  });

  /** This process's metrics, gauges read now. */
  const own = () => {
    metrics.pendingDeltas.set(aggregator.pendingSize() + aggregator.inflightSize());
    metrics.pendingIncrements.set(aggregator.pendingIncrements());
  };
  const siblings = opts.siblings;
  const unserve = siblings?.serveMetrics?.(async () => {
    own();
    return metrics.registry.getMetricsAsJSON();
  });
  if (unserve !== undefined) app.addHook('onClose', async () => unserve());

  // Under `tally serve` with several workers, whichever worker takes the scrape answers for all
  // of them: counters and histograms summed, so totals are the host's and never step back
  // between scrapes; gauges summed too (pending work, streams), except `tally_store_up`, the
  // lowest (one worker cut off from the store shows). Workers that do not answer within 2 s
  // are left out of that scrape.
  app.get('/metrics', { config: { doc: METRICS_DOC } }, async (_request, reply) => {
    own();
    reply.header('content-type', metrics.registry.contentType);
    if (siblings?.siblingMetrics === undefined) return metrics.registry.metrics();
    const [mine, others] = await Promise.all([
      metrics.registry.getMetricsAsJSON(),
      siblings.siblingMetrics(),
    ]);
    if (others.length === 0) return metrics.registry.metrics();
    const all = [mine, ...others] as MetricObjectWithValues<MetricValue<string>>[][];
    return AggregatorRegistry.aggregate(all).metrics();
  });
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

const HEALTH_DOC: RouteDoc = {
  summary: 'Liveness',
  description: 'Answers while the process runs, whatever the store does.',
  tag: 'Operations',
  responses: { 200: json('Alive', object({ status: { const: 'ok' } })) },
};

const readiness = object({
  status: { enum: ['ready', 'unavailable'] },
  problems: { type: 'array', items: { type: 'string' }, description: 'Why it is not ready' },
  store: { type: 'string', description: 'The store kind' },
  aggregator: { type: 'string', description: 'The aggregation strategy' },
  instanceId: { type: 'string' },
  writerId: { type: 'string', description: 'The instance id and its epoch, as batches name it' },
  pending: { type: 'integer', description: 'Counters with deltas waiting to be sent' },
  flushFailures: { type: 'integer', description: 'Flushes failed in a row' },
});

const READY_DOC: RouteDoc = {
  summary: 'Readiness',
  description:
    'Ready when the store answers a ping within 1 s, the write-ahead log and the instance lease are sound, and flushes are not failing (TALLY_READY_MAX_FLUSH_FAILURES). A load balancer sends traffic only to ready instances.',
  tag: 'Operations',
  responses: { 200: json('Ready', readiness), 503: json('Not ready, and why', readiness) },
};

const METRICS_DOC: RouteDoc = {
  summary: 'Prometheus metrics',
  description:
    "Prometheus text format. Under `tally serve` with several workers, the host's totals: whichever worker answers sums its siblings'.",
  tag: 'Operations',
  responses: { 200: media('Metrics (text format 0.0.4)', 'text/plain') },
};
