/** @module http/routes/counters — the counters API under /api/v1. */
import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Consistency, CounterService } from '../../counters/service.js';
import { hashKey, newKey } from '../../counters/settings.js';
import {
  counterName,
  DEFAULT_NAMESPACE,
  type Increment,
  isDefaultKey,
  MAX_BATCH_ITEMS,
  parseCounterRef,
  splitName,
} from '../../domain.js';
import { TallyError } from '../../errors.js';
import { type Logger, requestLog } from '../../obs/logger.js';
import type { Metrics } from '../../obs/metrics.js';
import { decodeCursor, encodeCursor } from '../../store/interface.js';
import { type Access, bearerOf } from '../access.js';
import type { CorsPolicy } from '../cors.js';
import { type IdempotencyKeys, parseIdempotencyKey, type SavedAnswer } from '../idempotency.js';
import {
  COMPONENTS,
  CONSISTENCY,
  IDEMPOTENCY_ERRORS,
  IDEMPOTENCY_KEY,
  json,
  NAMING,
  OWNER_ERRORS,
  object,
  PARAMS,
  type ParamDoc,
  type RouteDoc,
  ref,
  WRITE_ERRORS,
} from '../openapi.js';
import { asObject, assertBy, assertKey, assertName, assertPart, assertValue } from '../parse.js';
import type { ClientLimiter, LimitedRequest } from '../rate-limit.js';

export interface CounterRoutesOptions {
  readonly counters: CounterService;
  readonly keys: IdempotencyKeys;
  readonly metrics: Metrics;
  /** Who may write which counter (admin token, counter keys, namespace keys, public writes). */
  readonly access: Access;
  /** Admin writes are logged, each line with its request's id. */
  readonly logger: Logger;
  /** Cross-origin access to the public routes (reads and increments). */
  readonly cors: CorsPolicy;
  /** Per-client limit on public increments (TALLY_RATE_LIMIT); none when off. */
  readonly limiter?: ClientLimiter;
  /** Per-client limit on creating counters and claiming namespaces; none when off. */
  readonly createLimiter?: ClientLimiter;
  /** Counters expire after this long without a write (TALLY_EXPIRE_IDLE); undefined: never. */
  readonly expireIdleMs?: number;
  /** The client address a visit counts for (unique visitors). */
  readonly clientOf: (request: LimitedRequest) => string;
}

/** Route params as Fastify hands them over: strings by name. */
type Params = Record<string, string | undefined>;
type KeyParams = { Params: { ns: string; key: string }; Querystring: Record<string, unknown> };

const PREFIX_RE = /^[A-Za-z0-9_.:-]{0,128}$/;

// The fields each body may have, built once rather than per request.
const BY_FIELDS = ['by'];
const BATCH_FIELDS = ['increments'];
const SET_FIELDS = ['value'];
const ITEM_FIELDS = ['name', 'by'];
const CREATE_FIELDS = ['value', 'enable_reset', 'update_lowerbound', 'update_upperbound'];

// The reading's schema lets fast-json-stringify serialise the hot routes; the same schema is
// the OpenAPI document's `Reading`.
export const valueReply = COMPONENTS.Reading;

/**
 * How one family of routes names a counter: the flat routes (`/api/v1/counters/:name`, names in
 * the default namespace) and the namespaced ones (`/api/v1/namespaces/:ns/counters/:key`). Each
 * reads the stored name from its params and shapes the reply's naming fields.
 */
export interface Family {
  readonly path: string;
  /** The path parameters, for the OpenAPI document. */
  readonly params: Readonly<Record<string, ParamDoc>>;
  /** The error code of a bad name in these params. */
  readonly badName: 'INVALID_NAME' | 'INVALID_NAMESPACE';
  /** How the document speaks of the counter, `counter "name"` or `key of a namespace`. */
  readonly what: string;
  name(params: Params): string;
  /** The reply's fields naming the counter. */
  naming(name: string): Record<string, unknown>;
  /** `naming` plus the value, built in one step: the increment route's reply. */
  valued(name: string, value: number): Record<string, unknown>;
}

export const flat: Family = {
  path: '/api/v1/counters/:name',
  params: { name: PARAMS.name },
  badName: 'INVALID_NAME',
  what: 'a counter by its flat name',
  name: (params) => assertName(params.name),
  naming: (name) => ({ name }),
  valued: (name, value) => ({ name, value }),
};

export const namespaced: Family = {
  path: '/api/v1/namespaces/:ns/counters/:key',
  params: { ns: PARAMS.ns, key: PARAMS.key },
  badName: 'INVALID_NAMESPACE',
  what: 'a counter by namespace and key',
  name: (params) => {
    const namespace = assertPart(params.ns);
    return counterName(namespace, assertKey(namespace, params.key));
  },
  naming: (name) => ({ name, ...splitName(name) }),
  valued: (name, value) => ({ name, ...splitName(name), value }),
};

export async function counterRoutes(
  app: FastifyInstance,
  opts: CounterRoutesOptions,
): Promise<void> {
  const { counters, metrics, keys, access, logger, cors, limiter, createLimiter, clientOf } = opts;
  if (limiter !== undefined) app.addHook('onClose', async () => limiter.close());
  if (createLimiter !== undefined) app.addHook('onClose', async () => createLimiter.close());
  // Reads and increments are public: pages on allowed origins may call them. Set and delete
  // are not, so their preflight names GET only and browsers refuse them cross-origin.
  for (const family of [flat.path, namespaced.path]) {
    cors.preflight(app, `${family}/increment`, ['POST']);
    cors.preflight(app, family, ['GET']);
  }
  cors.preflight(app, '/api/v1/increments', ['POST']);
  cors.preflight(app, '/api/v1/counters', ['GET']);
  cors.preflight(app, '/api/v1/namespaces/:ns/counters', ['GET']);

  /**
   * Runs `work` once per Idempotency-Key (when the request has one) and sends its answer. The
   * fingerprint is computed only for requests that carry a key.
   */
  async function once(
    request: FastifyRequest,
    reply: FastifyReply,
    fingerprint: () => string,
    work: () => Promise<SavedAnswer>,
    accepted: () => SavedAnswer,
  ): Promise<unknown> {
    const key = parseIdempotencyKey(request.headers['idempotency-key']);
    const answer =
      key === undefined ? await work() : await keys.run(key, fingerprint(), work, accepted);
    if ('replayed' in answer && answer.replayed) reply.header('idempotent-replayed', 'true');
    reply.code(answer.status);
    return answer.body;
  }

  function routes(family: Family): void {
    type Req = { Params: Params; Querystring: Record<string, unknown>; Body: unknown };
    const docs = familyDocs(family);

    app.post<Req>(
      `${family.path}/increment`,
      {
        schema: { response: { 200: valueReply, 202: valueReply } },
        config: { cors: true, doc: docs.increment },
      },
      async (request, reply) => {
        const key = request.headers.authorization === undefined ? undefined : bearerOf(request);
        // First: a flood is refused before it costs any parsing, and nothing changes. Requests
        // with a key are limited only if the key proves nothing (below).
        if (key === undefined) limiter?.take(request);
        const name = family.name(request.params);
        const body = asObject(request.body, BY_FIELDS);
        const by = body.by === undefined ? 1 : assertBy(body.by);
        const consistency = parseConsistency(request.query);
        // A keyless +1 is decided without a promise; anything else may read settings.
        const allowed = access.increment(key, name, by);
        if (allowed !== undefined && !(await allowed) && key !== undefined) limiter?.take(request);
        if (request.headers['idempotency-key'] === undefined) {
          // The common case, without the closures `once` needs: this is the hot route.
          let value: number;
          if (consistency === 'eventual') {
            await counters.add(name, by);
            value = counters.estimate(name);
          } else value = await counters.increment(name, by, consistency);
          metrics.accepted(consistency);
          if (counters.countsUniques && by > 0) {
            counters.visit(name, clientOf(request), request.headers['user-agent']);
          }
          reply.code(consistency === 'strong' ? 200 : 202);
          return family.valued(name, value);
        }
        return once(
          request,
          reply,
          () => `inc ${name} ${by} ${consistency}`,
          async () => {
            const value = await counters.increment(name, by, consistency);
            metrics.accepted(consistency);
            if (counters.countsUniques && by > 0) {
              counters.visit(name, clientOf(request), request.headers['user-agent']);
            }
            return {
              status: consistency === 'strong' ? 200 : 202,
              body: family.valued(name, value),
            };
          },
          // Held but unconfirmed: a retry is told it was accepted (202), and is not counted again.
          () => ({ status: 202, body: family.valued(name, counters.estimate(name)) }),
        );
      },
    );

    app.get<Req>(
      family.path,
      { schema: { response: { 200: valueReply } }, config: { cors: true, doc: docs.get } },
      async (request) => {
        const name = family.name(request.params);
        const consistency = parseConsistency(request.query);
        const reading = await counters.get(name, consistency);
        const answer = family.valued(name, reading.value);
        if (reading.stale === true) answer.stale = true;
        if (counters.countsUniques) answer.uniques = await counters.uniques(name, consistency);
        return answer;
      },
    );

    app.put<Req>(family.path, { config: { doc: docs.set } }, async (request) => {
      const name = family.name(request.params);
      await access.owner(bearerOf(request), name, true);
      const body = asObject(request.body, SET_FIELDS);
      if (body.value === undefined) throw new TallyError('INVALID_BODY', 'The body needs "value"');
      const value = assertValue(body.value);
      await counters.set(name, value);
      requestLog(logger, request).info({ counter: name, value }, 'counter set');
      return family.valued(name, value);
    });

    app.delete<Req>(family.path, { config: { doc: docs.delete } }, async (request) => {
      const name = family.name(request.params);
      await access.owner(bearerOf(request), name);
      const deleted = await counters.delete(name);
      requestLog(logger, request).info({ counter: name, deleted }, 'counter deleted');
      return { ...family.naming(name), deleted };
    });

    app.get<Req>(
      `${family.path}/info`,
      { config: { cors: true, doc: docs.info } },
      async (request) => {
        const name = family.name(request.params);
        const found = await counters.describe(name);
        if (found === undefined) throw new TallyError('COUNTER_NOT_FOUND');
        const s = found.settings;
        return {
          ...family.naming(name),
          value: found.value,
          created: s?.created ?? null,
          updated: found.touchedAt,
          expires:
            opts.expireIdleMs === undefined || found.touchedAt === null
              ? null
              : found.touchedAt + opts.expireIdleMs,
          enable_reset: s?.enableReset ?? false,
          update_lowerbound: s?.lowerBound ?? 1,
          update_upperbound: s?.upperBound ?? 1,
          has_key: s !== null,
        };
      },
    );
  }

  routes(flat);
  routes(namespaced);

  app.post<KeyParams & { Body: unknown }>(
    namespaced.path,
    { config: { doc: CREATE_DOC } },
    async (request, reply) => {
      createLimiter?.take(request);
      const namespace = assertPart(request.params.ns);
      const key = assertKey(namespace, request.params.key);
      const body = asObject(request.body, CREATE_FIELDS);
      const options = parseCreate(body, 0, { lowerBound: 1, upperBound: 1 });
      await access.create(bearerOf(request), namespace);
      const name = counterName(namespace, key);
      const created = await createCounter(counters, name, options);
      if (created === undefined) throw new TallyError('COUNTER_EXISTS');
      requestLog(logger, request).info({ counter: name }, 'counter created');
      // The admin key is in this answer: no cache may keep it.
      reply.code(201).header('cache-control', 'no-store');
      return {
        name,
        namespace,
        key,
        value: options.value,
        admin_key: created,
        enable_reset: options.enableReset,
        update_lowerbound: options.lowerBound,
        update_upperbound: options.upperBound,
      };
    },
  );

  app.post<{ Params: { ns: string }; Body: unknown }>(
    '/api/v1/namespaces/:ns',
    { config: { doc: CLAIM_DOC } },
    async (request, reply) => {
      createLimiter?.take(request);
      const namespace = assertPart(request.params.ns);
      asObject(request.body, []);
      const key = bearerOf(request);
      // Claiming hands over every counter of the namespace: only the admin may claim `default`
      // or a namespace that already has counters (someone else's, perhaps).
      // Claimed already: 409 whoever asks, before any check that flushes.
      if ((await counters.settings.namespace(namespace)) !== null) {
        throw new TallyError('NAMESPACE_TAKEN');
      }
      if (!access.isAdmin(key)) {
        if (namespace === DEFAULT_NAMESPACE) {
          throw new TallyError('FORBIDDEN', 'Only the admin token may claim "default"');
        }
        if (await counters.namespaceInUse(namespace)) {
          throw new TallyError(
            'FORBIDDEN',
            'The namespace has counters already; only the admin token may claim it',
          );
        }
      }
      const namespaceKey = newKey();
      const ok = await counters.claimNamespace(namespace, {
        created: Date.now(),
        keyHash: hashKey(namespaceKey),
      });
      if (!ok) throw new TallyError('NAMESPACE_TAKEN');
      requestLog(logger, request).info({ namespace }, 'namespace claimed');
      reply.code(201).header('cache-control', 'no-store');
      return { namespace, namespace_key: namespaceKey };
    },
  );

  app.post<{ Body: unknown; Querystring: Record<string, unknown> }>(
    '/api/v1/increments',
    { config: { cors: true, doc: BATCH_DOC } },
    async (request, reply) => {
      const key = bearerOf(request);
      if (key === undefined) limiter?.take(request);
      const body = asObject(request.body, BATCH_FIELDS);
      const items = parseBatch(body.increments);
      const consistency = parseConsistency(request.query);
      const owned = await access.batch(
        key,
        items.map((i) => i.name),
      );
      if (!owned && key !== undefined) limiter?.take(request);
      return once(
        request,
        reply,
        () =>
          `batch ${consistency} ${createHash('sha256').update(JSON.stringify(items)).digest('base64url')}`,
        async () => {
          const n = await counters.incrementMany(items, consistency);
          metrics.accepted(consistency, n);
          return { status: consistency === 'strong' ? 200 : 202, body: { accepted: n } };
        },
        () => ({ status: 202, body: { accepted: items.length } }),
      );
    },
  );

  app.get<{ Querystring: Record<string, unknown> }>(
    '/api/v1/counters',
    { config: { cors: true, doc: LIST_DOC } },
    async (request) => {
      const q = request.query;
      const prefix = q.prefix === undefined ? '' : q.prefix;
      if (typeof prefix !== 'string' || !PREFIX_RE.test(prefix)) {
        throw new TallyError(
          'INVALID_QUERY',
          '"prefix" must be up to 128 characters of A-Za-z0-9_.:-',
        );
      }
      return counters.list({ prefix, ...parsePage(q) });
    },
  );

  app.get<{ Params: { ns: string }; Querystring: Record<string, unknown> }>(
    '/api/v1/namespaces/:ns/counters',
    { config: { cors: true, doc: NAMESPACE_LIST_DOC } },
    async (request) => {
      const namespace = assertPart(request.params.ns);
      // Default-namespace names are the flat ones: the whole index, without namespaced names
      // (so a page may hold fewer than `limit`; follow nextCursor).
      const prefix = namespace === DEFAULT_NAMESPACE ? '' : `${namespace}/`;
      const page = await counters.list({ prefix, ...parsePage(request.query) });
      const items = page.items
        .filter((i) => namespace !== DEFAULT_NAMESPACE || !i.name.includes('/'))
        .map((i) => ({ ...namespaced.naming(i.name), value: i.value }));
      return { items, nextCursor: page.nextCursor };
    },
  );
}

/** What a create asks for, checked. */
export interface CreateOptions {
  readonly value: number;
  readonly enableReset: boolean;
  readonly lowerBound: number;
  readonly upperBound: number;
}

/**
 * Reads create options from a body or a query (`value`, `enable_reset`, `update_lowerbound`,
 * `update_upperbound`); numbers may come as query strings.
 */
export function parseCreate(
  input: Record<string, unknown>,
  defaultValue: number,
  bounds: { lowerBound: number; upperBound: number },
): CreateOptions {
  const num = (v: unknown, field: string, fallback: number, check: typeof assertBy) =>
    v === undefined
      ? fallback
      : check(typeof v === 'string' && /^-?\d{1,16}$/.test(v) ? Number(v) : v, field);
  const value = num(input.value, 'value', defaultValue, (v) => assertValue(v));
  const lowerBound = num(input.update_lowerbound, 'update_lowerbound', bounds.lowerBound, assertBy);
  const upperBound = num(input.update_upperbound, 'update_upperbound', bounds.upperBound, assertBy);
  if (lowerBound > upperBound) {
    throw new TallyError(
      'INVALID_BODY',
      '"update_lowerbound" must not be above "update_upperbound"',
    );
  }
  const r = input.enable_reset;
  if (
    r !== undefined &&
    typeof r !== 'boolean' &&
    r !== 'true' &&
    r !== 'false' &&
    r !== '1' &&
    r !== '0'
  ) {
    throw new TallyError('INVALID_BODY', '"enable_reset" must be true or false');
  }
  return { value, enableReset: r === true || r === 'true' || r === '1', lowerBound, upperBound };
}

/** Creates a counter with a fresh admin key; the key, or undefined when it exists. */
export async function createCounter(
  counters: CounterService,
  name: string,
  options: CreateOptions,
): Promise<string | undefined> {
  const adminKey = newKey();
  const ok = await counters.create(name, options.value, {
    created: Date.now(),
    enableReset: options.enableReset,
    lowerBound: options.lowerBound,
    upperBound: options.upperBound,
    keyHash: hashKey(adminKey),
  });
  return ok ? adminKey : undefined;
}

/** `limit` (1-1000, default 100) and `cursor` of a list query. */
function parsePage(q: Record<string, unknown>): { limit: number; cursor?: string } {
  let limit = 100;
  if (q.limit !== undefined) {
    limit = typeof q.limit === 'string' && /^\d{1,4}$/.test(q.limit) ? Number(q.limit) : 0;
    if (limit < 1 || limit > 1000)
      throw new TallyError('INVALID_QUERY', '"limit" must be an integer from 1 to 1000');
  }
  const cursor = q.cursor;
  if (cursor === undefined) return { limit };
  // Ours: the base64url of a stored counter name, exactly as encodeCursor writes it.
  const name =
    typeof cursor === 'string' && /^[A-Za-z0-9_-]{0,300}$/.test(cursor)
      ? decodeCursor(cursor)
      : undefined;
  if (cursor === '') return { limit };
  const stored = name !== undefined && (parseCounterRef(name) === name || isDefaultKey(name));
  if (!stored || encodeCursor(name) !== cursor) {
    throw new TallyError('INVALID_QUERY', '"cursor" is not a cursor this API returned');
  }
  return { limit, cursor };
}

function parseConsistency(query: Record<string, unknown>): Consistency {
  const c = query.consistency;
  if (c === undefined || c === 'eventual') return 'eventual';
  if (c === 'strong') return 'strong';
  throw new TallyError('INVALID_QUERY', '"consistency" must be "eventual" or "strong"');
}

function parseBatch(raw: unknown): Increment[] {
  if (!Array.isArray(raw)) throw new TallyError('INVALID_BODY', '"increments" must be an array');
  if (raw.length === 0) {
    throw new TallyError('INVALID_BODY', '"increments" must hold at least one increment');
  }
  if (raw.length > MAX_BATCH_ITEMS) throw new TallyError('BATCH_TOO_LARGE');
  const items: Increment[] = new Array(raw.length);
  for (let i = 0; i < raw.length; i++) {
    try {
      const entry = raw[i];
      if (entry === null || typeof entry !== 'object') {
        throw new TallyError('INVALID_BODY', 'each increment must be an object');
      }
      const item = asObject(entry, ITEM_FIELDS);
      const name = parseCounterRef(item.name);
      if (name === undefined) {
        throw new TallyError('INVALID_NAME', '"name" must be a counter name or "namespace/key"');
      }
      items[i] = { name, by: item.by === undefined ? 1 : assertBy(item.by) };
    } catch (err) {
      if (err instanceof TallyError)
        throw new TallyError(err.code, `increments[${i}]: ${err.message}`);
      throw err;
    }
  }
  return items;
}

// -- the OpenAPI descriptions of these routes (http/openapi.ts) --

const KEY_AUTH =
  'A keyless client may add what the counter allows (1 unless it was created with other update bounds; TALLY_PUBLIC_WRITES). ' +
  "Anything else needs `Authorization: Bearer` with the counter's admin key, its namespace key or the admin token.";

/** The descriptions of one family's routes. */
function familyDocs(
  family: Family,
): Record<'increment' | 'get' | 'set' | 'delete' | 'info', RouteDoc> {
  const reading = ref('Reading');
  const base = { tag: 'Counters', params: family.params } as const;
  const bad = family.badName;
  return {
    increment: {
      ...base,
      summary: `Increment ${family.what}`,
      description: `Adds \`by\` (default 1) to the counter, creating it at 0 first if it does not exist. ${KEY_AUTH} Send an \`Idempotency-Key\` to retry safely.`,
      auth: 'optional',
      query: { consistency: CONSISTENCY },
      headers: { 'Idempotency-Key': IDEMPOTENCY_KEY },
      body: object({ by: { type: 'integer', minimum: -1e15, maximum: 1e15, default: 1 } }, ['by']),
      bodyOptional: true,
      responses: {
        200: json('Stored (`consistency=strong`): the value after this increment', reading),
        202: json(
          "Accepted (eventual): this instance's estimate of the value, stored within the flush interval",
          reading,
        ),
      },
      errors: [
        bad,
        'INVALID_NUMBER',
        'NUMBER_OUT_OF_RANGE',
        'INVALID_QUERY',
        'RATE_LIMITED',
        ...OWNER_ERRORS,
        ...WRITE_ERRORS,
        ...IDEMPOTENCY_ERRORS,
      ],
    },
    get: {
      ...base,
      summary: `Read ${family.what}`,
      description:
        'Eventual (default): the last stored value plus what this host has accepted and not yet stored. Strong: stores what this host holds first, then reads the store. A counter never written reads 0.',
      query: { consistency: CONSISTENCY },
      responses: { 200: json('The value', reading) },
      errors: [bad, 'INVALID_QUERY', 'STORE_UNAVAILABLE', 'NOT_CONFIRMED', 'OVERLOADED'],
    },
    set: {
      ...base,
      summary: `Set ${family.what}`,
      description:
        'Sets the value. Increments acknowledged before the set are applied before it. Needs the admin token, or the key of a counter created with `enable_reset`.',
      auth: 'key',
      body: object({ value: { type: 'integer', minimum: -(2 ** 53 - 1), maximum: 2 ** 53 - 1 } }),
      responses: { 200: json('The value set', reading) },
      errors: [bad, 'INVALID_NUMBER', 'NUMBER_OUT_OF_RANGE', ...OWNER_ERRORS, ...WRITE_ERRORS],
    },
    delete: {
      ...base,
      summary: `Delete ${family.what}`,
      description:
        'Deletes the counter, its settings and its history. Needs the admin token or its key.',
      auth: 'key',
      responses: {
        200: json(
          'Done; `deleted` says whether it existed',
          object({ ...NAMING, deleted: { type: 'boolean' } }, ['namespace', 'key']),
        ),
      },
      errors: [bad, ...OWNER_ERRORS, ...WRITE_ERRORS],
    },
    info: {
      ...base,
      summary: `Describe ${family.what}`,
      description: 'The value and settings of a counter that exists (404 otherwise).',
      responses: { 200: json('The counter', ref('CounterInfo')) },
      errors: [bad, 'COUNTER_NOT_FOUND', 'STORE_UNAVAILABLE'],
    },
  };
}

const CREATE_DOC: RouteDoc = {
  summary: 'Create a counter with an admin key',
  description:
    'Creates `namespace/key` with its settings and answers its admin key, once (keep it). In a claimed namespace, only its key or the admin token may create.',
  tag: 'Namespaces',
  params: { ns: PARAMS.ns, key: PARAMS.key },
  auth: 'optional',
  body: object(
    {
      value: { type: 'integer', default: 0, description: 'The starting value' },
      enable_reset: { type: 'boolean', default: false, description: 'Whether its key may set it' },
      update_lowerbound: { type: 'integer', default: 1, description: 'Smallest keyless increment' },
      update_upperbound: { type: 'integer', default: 1, description: 'Largest keyless increment' },
    },
    ['value', 'enable_reset', 'update_lowerbound', 'update_upperbound'],
  ),
  bodyOptional: true,
  responses: {
    201: json(
      'Created',
      object({
        ...NAMING,
        value: { type: 'integer' },
        admin_key: { type: 'string', description: "The counter's key: shown once" },
        enable_reset: { type: 'boolean' },
        update_lowerbound: { type: 'integer' },
        update_upperbound: { type: 'integer' },
      }),
    ),
  },
  errors: [
    'INVALID_NAMESPACE',
    'INVALID_NUMBER',
    'NUMBER_OUT_OF_RANGE',
    'COUNTER_EXISTS',
    'RATE_LIMITED',
    ...OWNER_ERRORS,
    'STORE_UNAVAILABLE',
    'SHUTTING_DOWN',
  ],
};

const CLAIM_DOC: RouteDoc = {
  summary: 'Claim a namespace',
  description:
    'Claims an unused namespace and answers its key, once: from then on only that key (or the admin token) may create, set or delete its counters. Only the admin token may claim `default` or a namespace with counters.',
  tag: 'Namespaces',
  params: { ns: PARAMS.ns },
  auth: 'optional',
  body: object({}, [], 'No fields'),
  bodyOptional: true,
  responses: {
    201: json(
      'Claimed',
      object({
        namespace: { type: 'string' },
        namespace_key: { type: 'string', description: 'Shown once' },
      }),
    ),
  },
  errors: [
    'INVALID_NAMESPACE',
    'NAMESPACE_TAKEN',
    'FORBIDDEN',
    'RATE_LIMITED',
    'STORE_UNAVAILABLE',
  ],
};

const BATCH_DOC: RouteDoc = {
  summary: 'Increment many counters at once',
  description:
    'Up to 1000 increments in one request, applied together. Needs a key covering every counter unless TALLY_PUBLIC_WRITES=open.',
  tag: 'Counters',
  auth: 'key',
  query: { consistency: CONSISTENCY },
  headers: { 'Idempotency-Key': IDEMPOTENCY_KEY },
  body: object({
    increments: {
      type: 'array',
      minItems: 1,
      maxItems: 1000,
      items: object(
        {
          name: { type: 'string', description: 'A flat name or `namespace/key`' },
          by: { type: 'integer', default: 1 },
        },
        ['by'],
      ),
    },
  }),
  responses: {
    200: json('Stored (strong)', object({ accepted: { type: 'integer' } })),
    202: json('Accepted (eventual)', object({ accepted: { type: 'integer' } })),
  },
  errors: [
    'INVALID_NAME',
    'INVALID_NUMBER',
    'NUMBER_OUT_OF_RANGE',
    'INVALID_QUERY',
    'BATCH_TOO_LARGE',
    'RATE_LIMITED',
    ...OWNER_ERRORS,
    ...WRITE_ERRORS,
    ...IDEMPOTENCY_ERRORS,
  ],
};

const PAGE_QUERY: Record<string, ParamDoc> = {
  limit: {
    description: 'Page size, 1-1000',
    schema: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
  },
  cursor: { description: "The previous page's `nextCursor`", schema: { type: 'string' } },
};

const LIST_DOC: RouteDoc = {
  summary: 'List counters',
  description: 'Every counter in name order, a page at a time.',
  tag: 'Counters',
  query: {
    prefix: {
      description: 'Only names starting with this',
      schema: { type: 'string', maxLength: 128 },
    },
    ...PAGE_QUERY,
  },
  responses: { 200: json('A page of counters', ref('CounterPage')) },
  errors: ['INVALID_QUERY', 'STORE_UNAVAILABLE'],
};

const NAMESPACE_LIST_DOC: RouteDoc = {
  summary: "List a namespace's counters",
  tag: 'Namespaces',
  params: { ns: PARAMS.ns },
  query: PAGE_QUERY,
  responses: { 200: json('A page of counters', ref('CounterPage')) },
  errors: ['INVALID_NAMESPACE', 'INVALID_QUERY', 'STORE_UNAVAILABLE'],
};
