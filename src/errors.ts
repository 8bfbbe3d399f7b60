/** @module errors — the one registry of Tally's error codes, each with a fixed HTTP status. */

/** Every error code Tally answers with. Codes are stable API: clients may switch on them. */
export const ERRORS = {
  INVALID_NAME: {
    status: 400,
    message: 'Counter names are 1-128 characters of A-Za-z0-9_.:- starting with a letter or digit',
  },
  INVALID_NAMESPACE: {
    status: 400,
    message: 'Namespaces and keys are 1-64 characters of A-Za-z0-9_.-',
  },
  INVALID_JSON: { status: 400, message: 'The body is not valid JSON' },
  INVALID_BODY: { status: 400, message: 'The body does not have the expected shape' },
  UNKNOWN_FIELD: { status: 400, message: 'The body has a field this route does not accept' },
  INVALID_NUMBER: { status: 400, message: 'Expected an integer' },
  NUMBER_OUT_OF_RANGE: { status: 400, message: 'The number is outside the allowed range' },
  INVALID_QUERY: { status: 400, message: 'A query parameter is invalid' },
  UNIQUES_OFF: {
    status: 400,
    message: 'This server does not count unique visitors (TALLY_UNIQUES=false)',
  },
  INVALID_HEADER: { status: 400, message: 'A request header is invalid' },
  BAD_REQUEST: { status: 400, message: 'The request is malformed' },
  BATCH_TOO_LARGE: { status: 400, message: 'A batch holds 1 to 1000 increments' },
  REQUEST_TIMEOUT: {
    status: 408,
    message: 'The request was not received in time (TALLY_REQUEST_TIMEOUT_MS)',
  },
  HEADERS_TOO_LARGE: {
    status: 431,
    message: 'The request headers are larger than the limit (16 KiB)',
  },
  BODY_TOO_LARGE: { status: 413, message: 'The body is larger than the limit' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'Send JSON with Content-Type: application/json' },
  UNAUTHORIZED: { status: 401, message: 'A valid admin bearer token is required' },
  ADMIN_DISABLED: {
    status: 403,
    message: 'Admin routes are disabled: no admin token is configured',
  },
  KEY_REQUIRED: {
    status: 401,
    message:
      "This write needs a key (the counter's admin key, its namespace key or the admin token): without one a client may add 1, or what the counter's update bounds allow",
  },
  FORBIDDEN: { status: 403, message: 'This key does not cover this counter' },
  NOT_FOUND: { status: 404, message: 'No such route' },
  METHOD_NOT_ALLOWED: { status: 405, message: 'This route does not answer that method' },
  COUNTER_NOT_FOUND: { status: 404, message: 'No such counter' },
  COUNTER_EXISTS: { status: 409, message: 'The counter exists already' },
  NAMESPACE_TAKEN: { status: 409, message: 'The namespace is claimed already' },
  COUNTER_OVERFLOW: {
    status: 422,
    message: 'The counter would leave the range ±(2^53-1); nothing was applied',
  },
  IDEMPOTENCY_KEY_REUSED: {
    status: 422,
    message: 'This Idempotency-Key was used for a different request',
  },
  IDEMPOTENCY_IN_PROGRESS: {
    status: 409,
    message: 'A request with this Idempotency-Key is still being processed; retry shortly',
  },
  IDEMPOTENCY_KEYS_FULL: {
    status: 503,
    message:
      'The store holds as many live Idempotency-Keys as it may (TALLY_IDEMPOTENCY_MAX_KEYS); nothing was applied: retry later, or without a key',
  },
  TOO_MANY_SSE_CLIENTS: { status: 503, message: 'Too many live streams on this instance' },
  RATE_LIMITED: {
    status: 429,
    message:
      'This client sent more increments than TALLY_RATE_LIMIT allows; nothing was applied: retry after the Retry-After delay',
  },
  TOO_MANY_STREAMS: {
    status: 429,
    message: 'This client holds too many live streams (TALLY_MAX_SSE_PER_CLIENT); close one first',
  },
  IDENTITY_CONFLICT: {
    status: 503,
    message:
      'Another process holds this instance id; this one no longer accepts increments (docs/reliability.md)',
  },
  OVERLOADED: { status: 503, message: 'Too much pending work; retry after the Retry-After delay' },
  STORE_UNAVAILABLE: { status: 503, message: 'The store is unavailable' },
  NOT_CONFIRMED: {
    status: 503,
    message:
      'The increment was accepted but the store did not confirm it in time; it will be applied once, do not retry without an Idempotency-Key',
  },
  LOG_UNAVAILABLE: {
    status: 503,
    message: 'The write-ahead log cannot be written; increments are refused',
  },
  SHUTTING_DOWN: { status: 503, message: 'This instance is shutting down' },
  INTERNAL: { status: 500, message: 'Internal error' },
} as const satisfies Record<string, { status: number; message: string }>;

/** A stable error code, e.g. `INVALID_NAME`. */
export type ErrorCode = keyof typeof ERRORS;

/** The one error type Tally throws on purpose: a stable code, an HTTP status and a cause. */
export class TallyError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Seconds for a Retry-After header, on 503s and 429s. */
  readonly retryAfterS: number | undefined;
  /** More headers of the answer (the RateLimit ones of a 429). */
  readonly headers: Readonly<Record<string, string>> | undefined;

  constructor(
    code: ErrorCode,
    message?: string,
    options?: { cause?: unknown; retryAfterS?: number; headers?: Record<string, string> },
  ) {
    super(message ?? ERRORS[code].message, { cause: options?.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = ERRORS[code].status;
    this.retryAfterS = options?.retryAfterS;
    this.headers = options?.headers;
  }
}

/**
 * A start refused for a reason the operator must fix (a data dir in use, an instance id held
 * elsewhere, a Redis that evicts keys): the CLI prints the message, no stack, and exits 1.
 */
export class StartRefusedError extends Error {
  override name = 'StartRefusedError';
}

/** `503 STORE_UNAVAILABLE` with `Retry-After: 1`, caused by `cause`: the one way it is made. */
export function storeUnavailable(cause?: unknown, message?: string): TallyError {
  return new TallyError('STORE_UNAVAILABLE', message, {
    ...(cause === undefined ? {} : { cause }),
    retryAfterS: 1,
  });
}

export function isTallyError(err: unknown): err is TallyError {
  return err instanceof TallyError;
}
