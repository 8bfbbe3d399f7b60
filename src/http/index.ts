/**
 * @module http — the HTTP edge of one instance: the Fastify server (http/server.ts), the
 * policies every route shares (CORS, rate limits, who may write, idempotency keys) and every
 * route, registered in one order. app.ts hands it the parts; it hands back the server.
 */
import type { FastifyInstance } from 'fastify';
import type { Aggregator } from '../aggregator/index.js';
import type { Config } from '../config.js';
import type { CounterService } from '../counters/service.js';
import type { SiblingBus } from '../live/bus.js';
import type { LiveHub } from '../live/hub.js';
import type { EventStream } from '../live/sse.js';
import type { Logger } from '../obs/logger.js';
import type { Metrics } from '../obs/metrics.js';
import type { Store } from '../store/interface.js';
import { Access, publicWritesFor } from './access.js';
import { BadgeRenderer } from './badges.js';
import { CorsPolicy } from './cors.js';
import type { NotFoundOptions } from './errors.js';
import { IdempotencyKeys } from './idempotency.js';
import { json, type RouteDoc, type RouteDocs } from './openapi.js';
import {
  AUTO_CREATE_LIMIT,
  AUTO_HIT_LIMIT,
  ClientLimiter,
  clientAddressOf,
  rateLimitFor,
} from './rate-limit.js';
import { badgeRoutes } from './routes/badges.js';
import { abacusRoutes } from './routes/compat/abacus.js';
import { countapiRoutes } from './routes/compat/countapi.js';
import type { CompatOptions } from './routes/compat/shared.js';
import { counterRoutes, valueReply } from './routes/counters.js';
import { docsRoutes } from './routes/docs.js';
import { eventRoutes } from './routes/events.js';
import { healthRoutes } from './routes/health.js';
import { historyRoutes } from './routes/history.js';
import { webRoutes } from './routes/web.js';
import { createHttpServer } from './server.js';
import { StreamSlots } from './stream-slots.js';

/** What the routes run on: the instance's parts, assembled by app.ts. */
export interface HttpParts {
  readonly store: Store;
  readonly aggregator: Aggregator;
  readonly counters: CounterService;
  readonly hub: LiveHub;
  readonly metrics: Metrics;
  readonly logger: Logger;
  readonly instanceId: string;
  /** Identity of this process's batches (`<instanceId>@<epoch>`), shown by /readyz. */
  readonly writerId: string;
  /** Sibling workers of one `tally serve`: /metrics answers for the whole host. */
  readonly bus?: SiblingBus;
  /** Readiness checks besides the store's ping; a string is why this instance is not ready. */
  readonly checks: ReadonlyArray<() => string | undefined>;
  /** True once shutdown began: /readyz answers 503 so load balancers move on. */
  readonly closing: () => boolean;
}

/** The server with every route, and the OpenAPI document collected from them. */
export interface Http {
  readonly app: FastifyInstance;
  readonly docs: RouteDocs;
}

export async function createHttp(config: Config, parts: HttpParts): Promise<Http> {
  const { counters, metrics, logger, hub, bus } = parts;
  const cors = new CorsPolicy(config.corsOrigins);
  const clientOf = clientAddressOf(config.trustProxy);
  const rateLimit = rateLimitFor(config.rateLimit, config.host, AUTO_HIT_LIMIT, config.trustProxy);
  const createLimit = rateLimitFor(
    config.createRateLimit,
    config.host,
    AUTO_CREATE_LIMIT,
    config.trustProxy,
  );
  // One budget per client across the native and the compatible routes.
  const limiter = rateLimit === undefined ? undefined : new ClientLimiter(rateLimit, clientOf);
  const createLimiter =
    createLimit === undefined ? undefined : new ClientLimiter(createLimit, clientOf);
  const limits = {
    ...(limiter === undefined ? {} : { limiter }),
    ...(createLimiter === undefined ? {} : { createLimiter }),
  };
  const access = new Access(
    config.adminToken,
    counters.settings,
    publicWritesFor(config.publicWrites, config.host, config.trustProxy),
  );
  const keys = new IdempotencyKeys(parts.store, {
    ttlMs: config.idempotencyTtlMs,
    maxKeys: config.idempotencyMaxKeys,
  });

  const pages: { notFound?: NotFoundOptions; docs?: RouteDocs } = {};
  const app = createHttpServer(config, logger, metrics, cors, pages);
  // Live streams never end by themselves: close ends them, or it would wait for every browser.
  const streams = new Set<EventStream>();
  app.addHook('preClose', async () => {
    for (const s of streams) s.end();
  });
  const slots = new StreamSlots(streams, config.maxSseClients, config.maxSseClientsPerIp, (open) =>
    metrics.sseClients.set(open),
  );

  await app.register(healthRoutes, {
    store: parts.store,
    aggregator: parts.aggregator,
    metrics,
    instanceId: parts.instanceId,
    writerId: parts.writerId,
    closing: parts.closing,
    checks: parts.checks,
    ...(bus === undefined ? {} : { siblings: bus }),
  });
  await app.register(counterRoutes, {
    counters,
    metrics,
    keys,
    access,
    logger,
    cors,
    clientOf,
    ...limits,
    ...(config.expireIdle === undefined ? {} : { expireIdleMs: config.expireIdle }),
  });
  await app.register(eventRoutes, {
    counters,
    hub,
    slots,
    heartbeatMs: config.sseHeartbeatMs,
    cors,
  });
  const renderer = new BadgeRenderer();
  await app.register(historyRoutes, { counters, cors });
  await app.register(badgeRoutes, {
    counters,
    access,
    metrics,
    renderer,
    clientOf,
    ...(limiter === undefined ? {} : { limiter }),
  });
  const compat: CompatOptions = {
    renderer,
    clientOf,
    counters,
    access,
    cors,
    hub,
    slots,
    heartbeatMs: config.sseHeartbeatMs,
    instanceId: parts.instanceId,
    expireIdleMs: config.expireIdle,
    ...limits,
  };
  await app.register(countapiRoutes, { ...compat, prefix: '/countapi' });
  await app.register(abacusRoutes, { ...compat, prefix: '/abacus' });
  // A client that only lets its host be changed finds one of them at the root too.
  if (config.compatRoot === 'countapi') await app.register(countapiRoutes, compat);
  if (config.compatRoot === 'abacus') await app.register(abacusRoutes, compat);
  await app.register(webRoutes, {
    ...(pages.notFound === undefined ? {} : { notFound: pages.notFound }),
    flushIntervalMs: config.flushIntervalMs,
    frameAncestors: config.frameAncestors,
  });
  const docs = pages.docs as RouteDocs;
  await app.register(docsRoutes, { docs });
  if (config.benchRoutes) {
    // The benchmark's ceiling: same framework, hooks, parser and serializer; no counting.
    app.post(
      '/api/v1/noop',
      { schema: { response: { 202: valueReply } }, config: { doc: NOOP_DOC } },
      async (_request, reply) => {
        reply.code(202);
        return { name: 'noop', value: 0 };
      },
    );
  }
  return { app, docs };
}

const NOOP_DOC: RouteDoc = {
  summary: 'The benchmark ceiling (TALLY_BENCH_ROUTES)',
  description: 'Counts nothing: the same framework, hooks, parser and serializer as an increment.',
  tag: 'Operations',
  responses: { 202: json('Always the same answer', valueReply) },
};
