/**
 * @module http/cors — which web pages may call Tally from another origin. Only the public routes
 * (reads, increments, live values) answer CORS, marked with `config: { cors: true }`; admin
 * routes (set, delete) never do, so a browser on another origin cannot reach them at all, and no
 * route ever allows credentials. The headers are set by each public route's own onSend hook
 * (src/http/server.ts), so a request without `Origin` pays one header lookup.
 */
import type { FastifyInstance } from 'fastify';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route answers cross-origin requests from the allowed origins. */
    cors?: boolean;
  }
}

/** Headers a cross-origin page may read from an answer. */
const EXPOSED = 'retry-after, idempotent-replayed, x-request-id, x-path, x-admin-key';
/** Request headers a cross-origin page may send. */
const ALLOWED_HEADERS = 'content-type, idempotency-key, x-request-id, last-event-id';
/** How long a browser may keep a preflight answer, in seconds. */
const PREFLIGHT_MAX_AGE_S = '86400';

/** The origins allowed on the public routes: any (`*`), none, or a list. */
export class CorsPolicy {
  private readonly any: boolean;
  private readonly origins: ReadonlySet<string>;

  /** `allowed`: TALLY_CORS_ORIGINS, already split (`['*']`, `[]`, or origins). */
  constructor(allowed: readonly string[]) {
    this.any = allowed.includes('*');
    this.origins = new Set(allowed.filter((o) => o !== '*'));
  }

  /** Access-Control-Allow-Origin for a request from `origin`, or undefined when not allowed. */
  allowOrigin(origin: string): string | undefined {
    if (this.any) return '*';
    return this.origins.has(origin) ? origin : undefined;
  }

  /** Adds the CORS headers of an answer to a request from `origin`, when it is allowed. */
  apply(origin: string, set: (name: string, value: string) => unknown): void {
    const allow = this.allowOrigin(origin);
    if (allow === undefined) return;
    set('access-control-allow-origin', allow);
    set('access-control-expose-headers', EXPOSED);
    // A listed origin is echoed, so caches must keep answers per Origin.
    if (allow !== '*') set('vary', 'origin');
  }

  /**
   * Answers browsers' preflight (OPTIONS) for a public path: 204 naming `methods`, or 204 without
   * CORS headers for an origin that is not allowed (the browser then refuses the request).
   */
  preflight(app: FastifyInstance, path: string, methods: readonly string[]): void {
    const allowMethods = methods.join(', ');
    app.options(path, async (request, reply) => {
      const origin = request.headers.origin;
      if (origin !== undefined && this.allowOrigin(origin) !== undefined) {
        this.apply(origin, (name, value) => reply.header(name, value));
        reply
          .header('access-control-allow-methods', allowMethods)
          .header('access-control-allow-headers', ALLOWED_HEADERS)
          .header('access-control-max-age', PREFLIGHT_MAX_AGE_S);
      }
      reply.header('allow', `${allowMethods}, OPTIONS`);
      return reply.code(204).send();
    });
  }
}
