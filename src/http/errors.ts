/** @module http/errors — the one error handler at the HTTP edge: `{ error: { code, message, requestId } }`. */
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ERRORS, type ErrorCode, TallyError } from '../errors.js';
import { type Logger, requestLog } from '../obs/logger.js';
import type { Metrics } from '../obs/metrics.js';

/** Fastify's own error codes that mean the client sent something wrong. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BAD_REQUEST',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
  FST_ERR_BAD_URL: 'BAD_REQUEST',
  FST_ERR_ASYNC_CONSTRAINT: 'BAD_REQUEST',
};

/** Turns anything thrown into a TallyError; unknown errors become INTERNAL. */
export function toTallyError(err: unknown): TallyError {
  if (err instanceof TallyError) return err;
  const fe = err as Partial<FastifyError> | undefined;
  const mapped = fe?.code !== undefined ? FASTIFY_CODES[fe.code] : undefined;
  if (mapped !== undefined) return new TallyError(mapped, undefined, { cause: err });
  if (fe?.statusCode !== undefined && fe.statusCode >= 400 && fe.statusCode < 500) {
    return new TallyError('BAD_REQUEST', fe.message, { cause: err });
  }
  return new TallyError('INTERNAL', undefined, { cause: err });
}

export function sendError(
  err: TallyError,
  request: FastifyRequest,
  reply: FastifyReply,
): FastifyReply {
  if (err.retryAfterS !== undefined) reply.header('retry-after', String(err.retryAfterS));
  if (err.headers !== undefined) reply.headers(err.headers);
  if (err.code === 'UNAUTHORIZED') reply.header('www-authenticate', 'Bearer');
  reply.header('x-request-id', request.id);
  return reply.code(err.status).send({
    error: { code: err.code, message: err.message, requestId: request.id },
  });
}

/** What the not-found handler needs to know beyond the error: the routes, and the HTML page. */
export interface NotFoundOptions {
  /** The methods some route answers for this path (empty when no route matches it). */
  allowed(path: string): string[];
  /** The browser's 404 page for this path and its headers; set once the web routes load. */
  html?: (path: string) => { body: Buffer; headers: Record<string, string> };
}

export function registerErrorHandling(
  app: FastifyInstance,
  logger: Logger,
  metrics: Pick<Metrics, 'countRequest'>,
  notFound: NotFoundOptions = { allowed: () => [] },
): void {
  app.setErrorHandler((raw, request, reply) => {
    const err = toTallyError(raw);
    if (err.status >= 500) {
      // 503s are expected during outages and overload; only real faults are errors.
      if (err.code === 'INTERNAL')
        requestLog(logger, request).error({ err: raw }, 'request failed');
      else
        requestLog(logger, request).warn(
          { code: err.code, cause: String((err.cause as Error | undefined)?.message ?? '') },
          'request refused',
        );
    } else {
      if (logger.isLevelEnabled('debug')) {
        requestLog(logger, request).debug({ code: err.code }, 'bad request');
      }
    }
    return sendError(err, request, reply);
  });
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?', 1)[0] ?? '/';
    const allowed = notFound.allowed(path);
    // No route, so no route's request counter (src/http/server.ts): counted here.
    if (allowed.length > 0) {
      metrics.countRequest(undefined, request.method, 405);
      reply.header('allow', allowed.join(', '));
      return sendError(new TallyError('METHOD_NOT_ALLOWED'), request, reply);
    }
    metrics.countRequest(undefined, request.method, 404);
    const html = notFound.html;
    if (html !== undefined && wantsHtml(request)) {
      const page = html(path);
      return reply
        .code(404)
        .headers(page.headers)
        .header('x-request-id', request.id)
        .header('cache-control', 'no-store')
        .type('text/html; charset=utf-8')
        .send(page.body);
    }
    return sendError(new TallyError('NOT_FOUND'), request, reply);
  });
}

/** A browser navigating (Accept names text/html before JSON), not an API client. */
function wantsHtml(request: FastifyRequest): boolean {
  const accept = request.headers.accept;
  if (typeof accept !== 'string') return false;
  const html = accept.indexOf('text/html');
  const json = accept.indexOf('application/json');
  return html >= 0 && (json < 0 || html < json);
}

/** Node's parser errors that have their own answer; anything else it rejects is BAD_REQUEST. */
const CLIENT_ERRORS: Record<string, ErrorCode> = {
  HPE_HEADER_OVERFLOW: 'HEADERS_TOO_LARGE',
  ERR_HTTP_REQUEST_TIMEOUT: 'REQUEST_TIMEOUT',
};

/**
 * Fastify's `clientErrorHandler`: errors Node's HTTP parser raises before a request exists
 * (headers too large, a body that never finishes, garbage on the wire) get the same
 * `{ error: { code, message } }` answer as every other error, then the connection closes.
 */
export function answerClientError(err: Error & { code?: string }, socket: Socket): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const code = CLIENT_ERRORS[err.code ?? ''] ?? 'BAD_REQUEST';
  const { status, message } = ERRORS[code];
  const body = JSON.stringify({ error: { code, message } });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
      'Content-Type: application/json; charset=utf-8\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\n` +
      'Connection: close\r\n\r\n' +
      body,
  );
}
