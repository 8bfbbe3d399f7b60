/** @module http/routes/health — liveness, readiness and Prometheus metrics. */
import type { FastifyInstance } from 'fastify';
import type { Aggregator } from '../../aggregator/index.js';
import type { Metrics } from '../../obs/metrics.js';
import type { Store } from '../../store/interface.js';

export interface HealthRoutesOptions {
  readonly store: Store;
  readonly aggregator: Aggregator;
  readonly metrics: Metrics;
  readonly instanceId: string;
  /** Identity of this process's batches (`<instanceId>@<epoch>`). */
  readonly writerId: string;
  /** Extra readiness checks (e.g. the write-ahead log); a string is the reason it is not ready. */
  readonly checks?: Array<() => string | undefined>;
  /** True once shutdown began: load balancers should stop sending traffic. */
  readonly closing: () => boolean;
}

/** How long /readyz waits for the store to answer a ping. */
const PING_TIMEOUT_MS = 1000;

export async function healthRoutes(app: FastifyInstance, opts: HealthRoutesOptions): Promise<void> {
  const { store, aggregator, metrics } = opts;

  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
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

  app.get('/metrics', async (_request, reply) => {
    metrics.pendingDeltas.set(aggregator.pendingSize() + aggregator.inflightSize());
    metrics.pendingIncrements.set(aggregator.pendingIncrements());
    reply.header('content-type', metrics.registry.contentType);
    return metrics.registry.metrics();
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
