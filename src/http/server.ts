/**
 * @module http/server — the Fastify instance every route runs in: limits, timeouts, request ids,
 * request loggers, one JSON parser, one error handler and the request counter. No routes here.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifyServerOptions,
  LogController,
  type onSendHookHandler,
} from 'fastify';
import type { Config } from '../config.js';
import { TallyError } from '../errors.js';
import { type Logger, requestLog } from '../obs/logger.js';
import { countStatus, type Metrics } from '../obs/metrics.js';
import type { CorsPolicy } from './cors.js';
import { answerClientError, type NotFoundOptions, registerErrorHandling } from './errors.js';
import { RouteDocs } from './openapi.js';

/** Builds the server for one instance. */
export function createHttpServer(
  config: Pick<Config, 'bodyLimitBytes' | 'trustProxy' | 'requestTimeoutMs'>,
  logger: Logger,
  metrics: Metrics,
  cors: CorsPolicy,
  /**
   * Receives the not-found options, so the web routes can add the browser's 404 page, and every
   * route's description, for the OpenAPI document.
   */
  pages: { notFound?: NotFoundOptions; docs?: RouteDocs } = {},
): FastifyInstance {
  const app: FastifyInstance = Fastify({
    // No logger, and no child logger factory. Given a logger, Fastify listens for the end of every
    // response and reads the clock twice for request lines we keep off (4-5% of the no-op route's
    // instructions); given a factory, it builds and checks a child per request (3.4%). Without
    // either, `request.log` is a logger that discards: routes log through `requestLog` (tools/
    // check-layers.ts refuses `request.log`), and `app.log` is set to Tally's logger below.
    logger: false,
    // Skips Fastify's per-request "incoming request" call to that discarding logger.
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
  });
  // Fastify's own lines (the listening addresses, onListen hook errors) read `app.log`.
  app.log = logger as FastifyBaseLogger;

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

  // Every route's path as a pattern, so a known path asked with another method answers 405.
  const patterns = new Map<string, { re: RegExp; methods: Set<string> }>();
  const notFound: NotFoundOptions = {
    allowed: (path) => {
      const methods = new Set<string>();
      for (const { re, methods: m } of patterns.values()) {
        if (re.test(path)) for (const method of m) methods.add(method);
      }
      return [...methods].sort();
    },
  };
  pages.notFound = notFound;
  registerErrorHandling(app, logger, metrics, notFound);
  const docs = new RouteDocs();
  pages.docs = docs;
  app.addHook('onRoute', (route) => {
    docs.add(route);
    let entry = patterns.get(route.url);
    if (entry === undefined) {
      entry = { re: routePattern(route.url), methods: new Set() };
      patterns.set(route.url, entry);
    }
    for (const method of Array.isArray(route.method) ? route.method : [route.method]) {
      entry.methods.add(method);
    }
  });
  // Every route counts its replies in an onSend hook of its own, which knows the route's pattern
  // from when it was added: `request.routeOptions` builds a 12-field object per call. Every reply
  // of a route passes onSend with its final status, errors included; a hijacked one (a live
  // stream) never does, so its route must count it; 404s are counted by the not-found handler.
  // onSend, not onResponse: onResponse brings back the per-response listeners and clock reads
  // that `logger: false` saves. A callback hook, not async: an async hook costs a promise and a
  // microtask per request.
  // The same hook names the answer (see `answerNamer`) and, on public routes
  // (`config: { cors: true }`), adds the CORS headers.
  const nameAnswer = answerNamer(logger);
  app.addHook('onRoute', (route) => {
    const counts = metrics.requestsOf(route.url);
    const count: onSendHookHandler =
      route.config?.cors === true
        ? (request, reply, payload, done) => {
            countStatus(counts, request.method, reply.statusCode);
            nameAnswer(request, reply);
            const origin = request.headers.origin;
            if (origin !== undefined)
              cors.apply(origin, (name, value) => reply.header(name, value));
            done(null, payload);
          }
        : (request, reply, payload, done) => {
            countStatus(counts, request.method, reply.statusCode);
            nameAnswer(request, reply);
            done(null, payload);
          };
    const own = route.onSend;
    route.onSend = own === undefined ? [count] : [...(Array.isArray(own) ? own : [own]), count];
  });
  // The debug line needs the response's end and duration; only a debug logger pays for them.
  if (logger.isLevelEnabled('debug')) {
    app.addHook('onResponse', (request, reply, done) => {
      requestLog(logger, request).debug(
        {
          method: request.method,
          // A key in the query (Abacus's ?token=) never reaches a log line.
          url: request.url.replace(/([?&]token=)[^&]*/g, '$1<hidden>'),
          status: reply.statusCode,
          ms: reply.elapsedTime,
        },
        'request',
      );
      done();
    });
  }
  return app;
}

/** A route path (`/a/:b/c`, `/assets/*`) as a regular expression over request paths. */
function routePattern(url: string): RegExp {
  const body = url
    .split('/')
    .map((part) =>
      part.startsWith(':')
        ? '[^/]+'
        : part === '*'
          ? '.*'
          : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
    )
    .join('/');
  return new RegExp(`^${body}$`);
}

/**
 * Sets `x-request-id` on the answers that carry it: every error (its body and log line name the
 * same id), every answer to a client that sent an id of its own (echoed, or the id that replaced
 * an unusable one), and every answer when request lines are logged (`debug`). A success nobody
 * asked to trace names nothing a log holds, and the header cost about 2% of the no-op route's
 * instructions (docs/benchmarks.md), so it goes without.
 */
function answerNamer(logger: Logger): (request: FastifyRequest, reply: FastifyReply) => void {
  const everyAnswer = logger.isLevelEnabled('debug');
  return (request, reply) => {
    if (everyAnswer || reply.statusCode >= 400 || request.headers['x-request-id'] !== undefined)
      reply.header('x-request-id', request.id);
  };
}

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
