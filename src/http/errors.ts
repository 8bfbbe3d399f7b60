/** @module http/errors — the one error handler at the HTTP edge: `{ error: { code, message, requestId } }`. */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type ErrorCode, TallyError } from '../errors.js';

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
  if (err.code === 'UNAUTHORIZED') reply.header('www-authenticate', 'Bearer');
  return reply.code(err.status).send({
    error: { code: err.code, message: err.message, requestId: request.id },
  });
}

export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((raw, request, reply) => {
    const err = toTallyError(raw);
    if (err.status >= 500) {
      // 503s are expected during outages and overload; only real faults are errors.
      if (err.code === 'INTERNAL') request.log.error({ err: raw }, 'request failed');
      else
        request.log.warn(
          { code: err.code, cause: String((err.cause as Error | undefined)?.message ?? '') },
          'request refused',
        );
    } else {
      request.log.debug({ code: err.code }, 'bad request');
    }
    return sendError(err, request, reply);
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(new TallyError('NOT_FOUND'), request, reply),
  );
}
