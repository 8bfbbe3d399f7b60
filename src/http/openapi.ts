/**
 * @module http/openapi — the OpenAPI 3.1 document, built from the routes themselves. Each route
 * carries its description in `config.doc` (a {@link RouteDoc}, next to its handler); an onRoute
 * hook in http/server.ts hands every route to a {@link RouteDocs}, which turns what it was given
 * into `GET /openapi.json`. Fastify never compiles these schemas: input is checked by hand, each
 * fault with its own code (docs/architecture.md, departure 3), and the tests check every answer
 * they see against this document (test/helpers/openapi-check.ts).
 */
import { ERRORS, type ErrorCode } from '../errors.js';
import { VERSION } from '../version.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route's description in the OpenAPI document. */
    doc?: RouteDoc;
  }
}

export type JsonSchema = Record<string, unknown>;

/** One path, query or header parameter. */
export interface ParamDoc {
  readonly description: string;
  readonly schema: JsonSchema;
  /** Query and header parameters are optional unless this says otherwise; path ones never are. */
  readonly required?: boolean;
  readonly example?: unknown;
}

/** One answer of a route at one status. */
export interface ResponseDoc {
  readonly description: string;
  /**
   * Media type → the body's schema; `null` for a body of that type with no JSON schema (SVG,
   * HTML, CSV). Absent: no body (204, 301, 304).
   */
  readonly content?: Readonly<Record<string, JsonSchema | null>>;
  /** Response headers worth naming → their description. */
  readonly headers?: Readonly<Record<string, string>>;
}

export type Tag =
  | 'Counters'
  | 'Namespaces'
  | 'History'
  | 'Live'
  | 'Badges'
  | 'Pages'
  | 'Operations'
  | 'CountAPI'
  | 'Abacus';

/** What a route says of itself (its `config.doc`). */
export interface RouteDoc {
  readonly summary: string;
  readonly description?: string;
  readonly tag: Tag;
  readonly params?: Readonly<Record<string, ParamDoc>>;
  readonly query?: Readonly<Record<string, ParamDoc>>;
  readonly headers?: Readonly<Record<string, ParamDoc>>;
  /** The JSON body's schema (the route also takes none when `bodyOptional`). */
  readonly body?: JsonSchema;
  readonly bodyOptional?: boolean;
  /** `admin`: the admin token; `key`: a counter or namespace key or the admin token; `optional`: a key lifts limits. */
  readonly auth?: 'admin' | 'key' | 'optional';
  readonly responses: Readonly<Record<number, ResponseDoc>>;
  /**
   * The stable error codes the route answers with (`{ error: { code, message, requestId } }`),
   * beyond those every route may answer ({@link COMMON_ERRORS}, and the body's own when it
   * takes one). The document groups them by status.
   */
  readonly errors?: readonly ErrorCode[];
  /** Other media types the errors come in (a badge draws its error as an SVG). */
  readonly errorMedia?: readonly string[];
  /**
   * The compatibility layers answer every error in their APIs' shape, `{ error: "<message>" }`
   * (or in `errorMedia`), at these statuses; `errors` and the common codes do not apply.
   */
  readonly compatErrors?: readonly number[];
}

/** What any route may answer with: a fault of ours, a malformed request. */
export const COMMON_ERRORS: readonly ErrorCode[] = ['BAD_REQUEST', 'INTERNAL'];
/**
 * What any route whose method carries a body may answer with: Fastify reads a POST's, PUT's,
 * PATCH's or DELETE's body (JSON only) whether or not the route uses one.
 */
export const BODY_ERRORS: readonly ErrorCode[] = [
  'INVALID_JSON',
  'INVALID_BODY',
  'UNKNOWN_FIELD',
  'BODY_TOO_LARGE',
  'UNSUPPORTED_MEDIA_TYPE',
];

/** What an increment may be refused with once its input is good. */
export const WRITE_ERRORS: readonly ErrorCode[] = [
  'COUNTER_OVERFLOW',
  'OVERLOADED',
  'STORE_UNAVAILABLE',
  'NOT_CONFIRMED',
  'LOG_UNAVAILABLE',
  'IDENTITY_CONFLICT',
  'SHUTTING_DOWN',
];
/** What a request with an `Idempotency-Key` may be refused with. */
export const IDEMPOTENCY_ERRORS: readonly ErrorCode[] = [
  'INVALID_HEADER',
  'IDEMPOTENCY_KEY_REUSED',
  'IDEMPOTENCY_IN_PROGRESS',
  'IDEMPOTENCY_KEYS_FULL',
];
/** What a write that needs a key may be refused with. */
export const OWNER_ERRORS: readonly ErrorCode[] = [
  'UNAUTHORIZED',
  'KEY_REQUIRED',
  'FORBIDDEN',
  'ADMIN_DISABLED',
];

const JSON_TYPE = 'application/json';

// -- schemas shared by several routes, as components --

const text = (description: string, extra: JsonSchema = {}): JsonSchema => ({
  type: 'string',
  description,
  ...extra,
});
const integer = (description: string, extra: JsonSchema = {}): JsonSchema => ({
  type: 'integer',
  description,
  ...extra,
});
/** An object with exactly these properties (all required unless listed in `optional`). */
export function object(
  properties: Record<string, JsonSchema>,
  optional: readonly string[] = [],
  description?: string,
): JsonSchema {
  return {
    type: 'object',
    ...(description === undefined ? {} : { description }),
    properties,
    required: Object.keys(properties).filter((p) => !optional.includes(p)),
    additionalProperties: false,
  };
}
export const ref = (name: keyof typeof COMPONENTS): JsonSchema => ({
  $ref: `#/components/schemas/${name}`,
});
const nullable = (schema: JsonSchema): JsonSchema => ({ anyOf: [schema, { type: 'null' }] });

/** The fields naming a counter in an answer. */
export const NAMING = {
  name: text('The stored name: `key` in the default namespace, otherwise `namespace/key`'),
  namespace: text('The namespace (`default` for flat names)'),
  key: text('The key within the namespace'),
};

export const COMPONENTS = {
  Error: object({
    error: object({
      code: text('Stable error code: clients may switch on it', {
        enum: Object.keys(ERRORS),
      }),
      message: text('What went wrong, for people'),
      requestId: text("The request's id, also in `x-request-id` and the logs"),
    }),
  }),
  CompatError: object(
    { error: text("The compatible API's message") },
    [],
    'How the CountAPI and Abacus layers answer errors, in their own shape',
  ),
  Reading: object(
    {
      ...NAMING,
      value: integer('The value'),
      stale: {
        type: 'boolean',
        const: true,
        description:
          'Present when the store could not be read and the value is this instance’s last known one',
      },
      uniques: object(
        {
          total: integer('Distinct visitors ever (HyperLogLog estimate, ±0.81%)'),
          today: integer('Distinct visitors today (UTC)'),
        },
        [],
        'Present when the server counts unique visitors (TALLY_UNIQUES)',
      ),
    },
    ['namespace', 'key', 'stale', 'uniques'],
  ),
  CounterInfo: object(
    {
      ...NAMING,
      value: integer('The value'),
      created: nullable(
        integer(
          'When it was created (ms since the epoch); null for a counter made by its first increment',
        ),
      ),
      updated: nullable(integer('Last write (ms since the epoch), when known')),
      expires: nullable(integer('When it expires unless written (TALLY_EXPIRE_IDLE); null: never')),
      enable_reset: { type: 'boolean', description: 'Whether its key may set it' },
      update_lowerbound: integer('The smallest increment a keyless client may send'),
      update_upperbound: integer('The largest increment a keyless client may send'),
      has_key: { type: 'boolean', description: 'Whether it was created with an admin key' },
    },
    ['namespace', 'key'],
  ),
  CounterPage: object({
    items: {
      type: 'array',
      items: object({ ...NAMING, value: integer('The value') }, ['namespace', 'key']),
    },
    nextCursor: nullable(text('Pass as `cursor` for the next page; null on the last page')),
  }),
  History: object({
    ...NAMING,
    granularity: text('Bucket size', { enum: ['minute', 'hour', 'day'] }),
    from: text('Start of the first bucket (UTC)', { format: 'date-time' }),
    to: text('End of the range (UTC)', { format: 'date-time' }),
    buckets: {
      type: 'array',
      description: 'Every bucket of the range, oldest first; a bucket without increments is 0',
      items: object(
        {
          start: text('Bucket start (UTC)', { format: 'date-time' }),
          count: integer('The sum of increments in the bucket'),
          uniques: integer('Distinct visitors that day (day buckets, TALLY_UNIQUES)'),
        },
        ['uniques'],
      ),
    },
  }),
} satisfies Record<string, JsonSchema>;

// -- parameters used by many routes --

export const PARAMS = {
  name: {
    description:
      'A counter name: 1-128 characters of `A-Za-z0-9_.:-`, starting with a letter or a digit',
    schema: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$' },
    example: 'page:home',
  },
  ns: {
    description: 'A namespace: 1-64 characters of `A-Za-z0-9_.-`',
    schema: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,64}$' },
    example: 'blog',
  },
  key: {
    description:
      'A key in the namespace: 1-64 characters of `A-Za-z0-9_.-` (in `default`, any counter name)',
    schema: { type: 'string' },
    example: 'post-1',
  },
} satisfies Record<string, ParamDoc>;

export const CONSISTENCY: ParamDoc = {
  description:
    '`eventual` (default): answered 202 at once, stored within TALLY_FLUSH_INTERVAL_MS. `strong`: answered 200 once stored',
  schema: { type: 'string', enum: ['eventual', 'strong'], default: 'eventual' },
};

export const IDEMPOTENCY_KEY: ParamDoc = {
  description:
    'Any string of 1-255 visible characters: a retry with the same key and request is applied once (answers carry `idempotent-replayed: true`)',
  schema: { type: 'string', minLength: 1, maxLength: 255 },
};

/** A JSON answer. */
export function json(
  description: string,
  schema: JsonSchema,
  headers?: Record<string, string>,
): ResponseDoc {
  return {
    description,
    content: { [JSON_TYPE]: schema },
    ...(headers === undefined ? {} : { headers }),
  };
}

/** An answer of another media type, without a JSON schema. */
export function media(description: string, ...types: string[]): ResponseDoc {
  return { description, content: Object.fromEntries(types.map((t) => [t, null])) };
}

/** A route's registration as the onRoute hook sees it. */
interface RouteSeen {
  readonly method: string | string[];
  readonly url: string;
  readonly config?: unknown;
}

interface Operation {
  readonly method: string;
  readonly url: string;
  readonly doc: RouteDoc | undefined;
}

/** Every route's description, collected as routes are added; the document is built on demand. */
export class RouteDocs {
  readonly #operations: Operation[] = [];
  #document: JsonSchema | undefined;

  /** Called for every route (onRoute). HEAD and OPTIONS (CORS preflights) are left out. */
  add(route: RouteSeen): void {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const doc = (route.config as { doc?: RouteDoc } | undefined)?.doc;
    for (const method of methods) {
      if (method === 'HEAD' || method === 'OPTIONS') continue;
      this.#operations.push({ method, url: route.url, doc });
      this.#document = undefined;
    }
  }

  /** The OpenAPI 3.1 document (built once, rebuilt when routes are added later). */
  document(): JsonSchema {
    if (this.#document === undefined) this.#document = this.#build();
    return this.#document;
  }

  #build(): JsonSchema {
    const paths: Record<string, Record<string, unknown>> = {};
    for (const op of this.#operations) {
      const path = openapiPath(op.url);
      paths[path] ??= {};
      paths[path][op.method.toLowerCase()] = operation(op, path);
    }
    return {
      openapi: '3.1.0',
      info: {
        title: 'Tally',
        version: VERSION,
        summary: 'A self-hostable, high-throughput counter service',
        description:
          'Every error answers `{ "error": { "code", "message", "requestId" } }` with a stable `code`; ' +
          'each operation lists the codes it may answer. Public routes (reads, increments, badges, ' +
          'streams) answer CORS preflights for the origins in TALLY_CORS_ORIGINS. Every GET also ' +
          'answers HEAD. Errors, and answers to a request that sent `x-request-id`, carry `x-request-id`.',
        license: { name: 'MIT', identifier: 'MIT' },
      },
      tags: TAGS,
      paths,
      components: {
        schemas: COMPONENTS,
        securitySchemes: {
          bearer: {
            type: 'http',
            scheme: 'bearer',
            description:
              "The admin token (TALLY_ADMIN_TOKEN), a counter's admin key or a namespace key",
          },
        },
      },
    };
  }
}

const TAGS = [
  { name: 'Counters', description: 'Read, increment, set and delete counters' },
  {
    name: 'Namespaces',
    description: 'Claim a namespace, create counters with keys, list and rank them',
  },
  { name: 'History', description: 'Minute, hour and day buckets of a counter' },
  { name: 'Live', description: 'Server-Sent Events with a counter’s value as it changes' },
  { name: 'Badges', description: 'SVG badges that count a view' },
  { name: 'Pages', description: 'The click page, the dashboard, the embed and their assets' },
  { name: 'Operations', description: 'Health, readiness, metrics and this document' },
  { name: 'CountAPI', description: 'CountAPI’s API (api.countapi.xyz) under /countapi' },
  { name: 'Abacus', description: 'Abacus’s API (abacus.jasoncameron.dev) under /abacus' },
];

/** `/a/:b/c` → `/a/{b}/c`; a wildcard `*` becomes `{path}`. */
export function openapiPath(url: string): string {
  return url
    .split('/')
    .map((part) => (part.startsWith(':') ? `{${part.slice(1)}}` : part === '*' ? '{path}' : part))
    .join('/');
}

function operation(op: Operation, path: string): Record<string, unknown> {
  const doc: RouteDoc = op.doc ?? {
    summary: 'Undocumented',
    tag: 'Operations',
    responses: { 200: { description: 'Undocumented' } },
  };
  const parameters: unknown[] = [];
  for (const match of path.matchAll(/\{([^}]+)\}/g)) {
    const name = match[1] as string;
    const p = doc.params?.[name === 'path' ? '*' : name] ?? doc.params?.[name];
    parameters.push(
      parameter(name, 'path', p ?? { description: name, schema: { type: 'string' } }, true),
    );
  }
  for (const [name, p] of Object.entries(doc.query ?? {}))
    parameters.push(parameter(name, 'query', p));
  for (const [name, p] of Object.entries(doc.headers ?? {}))
    parameters.push(parameter(name, 'header', p));

  const responses: Record<string, unknown> = {};
  for (const [status, r] of Object.entries(doc.responses)) responses[status] = response(r);
  const codes =
    doc.compatErrors === undefined
      ? [...COMMON_ERRORS, ...(parsesBody(op.method) ? BODY_ERRORS : []), ...(doc.errors ?? [])]
      : [];
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set(codes)) {
    const status = ERRORS[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  for (const [status, list] of [...byStatus].sort((a, b) => a[0] - b[0])) {
    responses[String(status)] = mergeError(responses[String(status)], status, list, doc.errorMedia);
  }
  for (const status of doc.compatErrors ?? []) {
    responses[String(status)] = mergeCompat(responses[String(status)], status, doc.errorMedia);
  }

  return {
    operationId: operationId(op.method, path),
    summary: doc.summary,
    ...(doc.description === undefined ? {} : { description: doc.description }),
    tags: [doc.tag],
    ...(parameters.length === 0 ? {} : { parameters }),
    ...(doc.body === undefined
      ? {}
      : {
          requestBody: {
            required: doc.bodyOptional !== true,
            content: { [JSON_TYPE]: { schema: doc.body } },
          },
        }),
    ...(doc.auth === undefined
      ? {}
      : { security: doc.auth === 'optional' ? [{}, { bearer: [] }] : [{ bearer: [] }] }),
    responses: Object.fromEntries(
      Object.entries(responses).sort(([a], [b]) => Number(a) - Number(b)),
    ),
  };
}

function parsesBody(method: string): boolean {
  return method === 'POST' || method === 'PUT' || method === 'PATCH' || method === 'DELETE';
}

function parameter(name: string, where: string, p: ParamDoc, required = p.required === true) {
  return {
    name,
    in: where,
    required,
    description: p.description,
    schema: p.schema,
    ...(p.example === undefined ? {} : { example: p.example }),
  };
}

function response(r: ResponseDoc): Record<string, unknown> {
  const out: Record<string, unknown> = { description: r.description };
  if (r.content !== undefined) {
    out.content = Object.fromEntries(
      Object.entries(r.content).map(([type, schema]) => [type, schema === null ? {} : { schema }]),
    );
  }
  if (r.headers !== undefined) {
    out.headers = Object.fromEntries(
      Object.entries(r.headers).map(([name, description]) => [
        name,
        { description, schema: { type: 'string' } },
      ]),
    );
  }
  return out;
}

/** The error answer at `status` with its codes, merged into what the route answers there already. */
function mergeError(
  existing: unknown,
  status: number,
  codes: ErrorCode[],
  errorMedia: readonly string[] = [],
): Record<string, unknown> {
  const schema = {
    allOf: [ref('Error'), { properties: { error: { properties: { code: { enum: codes } } } } }],
  };
  const media: Record<string, unknown> = { [JSON_TYPE]: { schema } };
  for (const type of errorMedia) media[type] = {};
  const described = `${codes.map((c) => `\`${c}\``).join(', ')}`;
  const headers =
    status === 429 || status === 503
      ? {
          'retry-after': {
            description: 'Seconds to wait before retrying',
            schema: { type: 'string' },
          },
        }
      : undefined;
  return merge(existing, {
    description: described,
    content: media,
    ...(headers ? { headers } : {}),
  });
}

function mergeCompat(
  existing: unknown,
  status: number,
  errorMedia: readonly string[] = [],
): Record<string, unknown> {
  const content: Record<string, unknown> = { [JSON_TYPE]: { schema: ref('CompatError') } };
  for (const type of errorMedia) content[type] = {};
  return merge(existing, { description: `The compatible API's error (${status})`, content });
}

/** Two descriptions of one status: their media types' schemas become alternatives. */
function merge(existing: unknown, added: Record<string, unknown>): Record<string, unknown> {
  if (existing === undefined) return added;
  const a = existing as {
    description: string;
    content?: Record<string, { schema?: unknown }>;
    headers?: object;
  };
  const b = added as {
    description: string;
    content?: Record<string, { schema?: unknown }>;
    headers?: object;
  };
  const content: Record<string, { schema?: unknown }> = { ...(a.content ?? {}) };
  for (const [type, m] of Object.entries(b.content ?? {})) {
    const had = content[type];
    if (had === undefined) content[type] = m;
    else if (had.schema === undefined || m.schema === undefined) content[type] = {};
    else content[type] = { schema: { anyOf: [had.schema, m.schema] } };
  }
  return {
    description: `${a.description}; or ${b.description}`,
    content,
    ...(a.headers || b.headers ? { headers: { ...(a.headers ?? {}), ...(b.headers ?? {}) } } : {}),
  };
}

/** `GET /api/v1/counters/{name}/increment` → `getApiV1CountersNameIncrement`. */
function operationId(method: string, path: string): string {
  const words = path
    .split(/[^A-Za-z0-9]+/)
    .filter((w) => w !== '')
    .map((w) => w[0]?.toUpperCase() + w.slice(1));
  return method.toLowerCase() + words.join('');
}
