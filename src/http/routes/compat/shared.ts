/** @module http/routes/compat/shared — what the CountAPI and Abacus layers have in common. */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { CounterService } from '../../../counters/service.js';
import type { LiveHub } from '../../../live/hub.js';
import type { Access } from '../../access.js';
import type { BadgeRenderer } from '../../badges.js';
import type { CorsPolicy } from '../../cors.js';
import { toTallyError } from '../../errors.js';
import type { ClientLimiter, LimitedRequest } from '../../rate-limit.js';
import type { StreamSlots } from '../../stream-slots.js';

/** What both compatibility layers are given. */
export interface CompatOptions {
  readonly counters: CounterService;
  readonly access: Access;
  readonly cors: CorsPolicy;
  readonly hub: LiveHub;
  /** The caps on open live streams, shared with Tally's own. */
  readonly slots: StreamSlots;
  readonly heartbeatMs: number;
  readonly instanceId: string;
  /** Counters expire after this long without a write; undefined: never. */
  readonly expireIdleMs: number | undefined;
  readonly limiter?: ClientLimiter;
  readonly createLimiter?: ClientLimiter;
  /** Draws Abacus's `/shield` badges, as Tally's own. */
  readonly renderer: BadgeRenderer;
  /** The client address a hit counts for (unique visitors). */
  readonly clientOf: (request: LimitedRequest) => string;
}

/** A request to a route naming a counter: `/op/:key` or `/op/:ns/:key`. */
export type CompatRequest = FastifyRequest<{
  Params: { ns?: string; key: string };
  Querystring: Record<string, unknown>;
}>;

/** A counter as a compatible route names it, and its stored name. */
export interface CompatPath {
  readonly namespace: string;
  readonly key: string;
  readonly name: string;
}

/** Both APIs name counters with 3-64 characters of `A-Za-z0-9_-.`. */
export const COMPAT_NAME_RE = /^[A-Za-z0-9_\-.]{3,64}$/;

/** A JSONP callback: a JavaScript identifier path, nothing that could smuggle code. */
const CALLBACK_RE = /^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*){0,4}$/;

/** The callback a request asks for; undefined when none or not a safe identifier. */
export function callbackOf(query: Record<string, unknown>): string | undefined {
  const cb = query.callback;
  return typeof cb === 'string' && cb.length <= 100 && CALLBACK_RE.test(cb) ? cb : undefined;
}

/** Sends `body` as JSONP: `callback(body);` as JavaScript. */
export function sendJsonp(reply: FastifyReply, callback: string, body: unknown): FastifyReply {
  return reply
    .header('content-type', 'application/javascript; charset=utf-8')
    .header('x-content-type-options', 'nosniff')
    .send(`/**/${callback}(${JSON.stringify(body)});`);
}

/** A refusal in a compatible API's own words and status (Abacus's messages). */
export class CompatError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Errors in these layers answer in their APIs' shape, `{"error": "<message>"}`, with Tally's
 * status and headers (Retry-After and RateLimit-* on a 429). Scoped to the layer's plugin.
 * `jsonpErrors`: a request with a callback gets its error as JSONP too, and one with `?img` the
 * pixel (CountAPI).
 */
export function compatErrors(app: FastifyInstance, jsonpErrors: boolean): void {
  app.setErrorHandler((raw, request, reply) => {
    if (raw instanceof CompatError) return reply.code(raw.status).send({ error: raw.message });
    const err = toTallyError(raw);
    if (err.retryAfterS !== undefined) reply.header('retry-after', String(err.retryAfterS));
    if (err.headers !== undefined) reply.headers(err.headers);
    const query = request.query as Record<string, unknown>;
    // CountAPI: `?img` always answers the pixel, with the status the JSON answer would have.
    if (jsonpErrors && query.img !== undefined) return sendPixel(reply.code(err.status));
    // CountAPI: "JSONP requests never fail": 200, with the status inside the answer.
    const callback = jsonpErrors ? callbackOf(query) : undefined;
    if (callback !== undefined) {
      return sendJsonp(reply.code(200), callback, { error: err.message, status: err.status });
    }
    return reply.code(err.status).send({ error: err.message });
  });
}

/** The 1×1 transparent GIF CountAPI's `?img` answers with. */
const PIXEL = Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64');

/** Answers the pixel (the caller set the status). */
export function sendPixel(reply: FastifyReply): FastifyReply {
  return reply.header('content-type', 'image/gif').header('cache-control', 'no-store').send(PIXEL);
}

/**
 * CountAPI's reserved words, resolved from the page the request came from: `:HOST:` is the host name of
 * its Origin (or Referer), `:PATHNAME:` the Referer's path without its slashes. Shorter than 3,
 * padded with dots on the left; longer than 64, cut. Undefined when the header is missing.
 */
export function resolveReserved(part: string, request: FastifyRequest): string | undefined {
  if (part !== ':HOST:' && part !== ':PATHNAME:') return part;
  const origin = header(request, 'origin') ?? header(request, 'referer');
  const referer = header(request, 'referer');
  let value: string | undefined;
  try {
    if (part === ':HOST:' && origin !== undefined) value = new URL(origin).hostname;
    if (part === ':PATHNAME:' && referer !== undefined) {
      value = new URL(referer).pathname.replaceAll('/', '');
    }
  } catch {
    return undefined;
  }
  if (value === undefined) return undefined;
  return value.padStart(3, '.').slice(0, 64);
}

function header(request: FastifyRequest, name: string): string | undefined {
  const v = request.headers[name];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** How long ago the process started, as Go prints a duration (`1h2m3.5s`), for /stats answers. */
export function goDuration(ms: number): string {
  if (ms <= 0) return '0s';
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms % 3_600_000) / 60_000);
  const s = (ms % 60_000) / 1000;
  const sec = `${Number(s.toFixed(3))}s`;
  if (h > 0) return `${h}h${m}m${sec}`;
  if (m > 0) return `${m}m${sec}`;
  return sec;
}
