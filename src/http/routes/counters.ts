/** @module http/routes/counters — the counters API under /api/v1. */
import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Consistency, CounterService } from '../../counters/service.js';
import { type Increment, MAX_BATCH_ITEMS } from '../../domain.js';
import { TallyError } from '../../errors.js';
import { type Logger, requestLog } from '../../obs/logger.js';
import type { Metrics } from '../../obs/metrics.js';
import type { CorsPolicy } from '../cors.js';
import { type IdempotencyKeys, parseIdempotencyKey, type SavedAnswer } from '../idempotency.js';
import { asObject, assertBy, assertName, assertValue } from '../parse.js';
import type { ClientLimiter } from '../rate-limit.js';

export interface CounterRoutesOptions {
  readonly counters: CounterService;
  readonly keys: IdempotencyKeys;
  readonly metrics: Metrics;
  readonly requireAdmin: (request: FastifyRequest) => void;
  /** Admin writes are logged, each line with its request's id. */
  readonly logger: Logger;
  /** Cross-origin access to the public routes (reads and increments). */
  readonly cors: CorsPolicy;
  /** Per-client limit on public increments (TALLY_RATE_LIMIT); none when off. */
  readonly limiter?: ClientLimiter;
}

type NameParams = { Params: { name: string }; Querystring: Record<string, unknown> };

const PREFIX_RE = /^[A-Za-z0-9_.:-]{0,128}$/;

// The fields each body may have, built once rather than per request.
const BY_FIELDS = ['by'];
const BATCH_FIELDS = ['increments'];
const SET_FIELDS = ['value'];
const ITEM_FIELDS = ['name', 'by'];

// Response schemas let fast-json-stringify serialise the hot routes.
export const valueReply = {
  type: 'object',
  properties: { name: { type: 'string' }, value: { type: 'number' }, stale: { type: 'boolean' } },
  required: ['name', 'value'],
} as const;

export async function counterRoutes(
  app: FastifyInstance,
  opts: CounterRoutesOptions,
): Promise<void> {
  const { counters, metrics, keys, requireAdmin, logger, cors, limiter } = opts;
  if (limiter !== undefined) app.addHook('onClose', async () => limiter.close());
  // Reads and increments are public: pages on allowed origins may call them. Set and delete
  // are not, so their preflight names GET only and browsers refuse them cross-origin.
  cors.preflight(app, '/api/v1/counters/:name/increment', ['POST']);
  cors.preflight(app, '/api/v1/increments', ['POST']);
  cors.preflight(app, '/api/v1/counters/:name', ['GET']);
  cors.preflight(app, '/api/v1/counters', ['GET']);

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

  app.post<NameParams & { Body: unknown }>(
    '/api/v1/counters/:name/increment',
    { schema: { response: { 200: valueReply, 202: valueReply } }, config: { cors: true } },
    async (request, reply) => {
      // First: a flood is refused before it costs any parsing, and nothing changes.
      limiter?.take(request);
      const name = assertName(request.params.name);
      const body = asObject(request.body, BY_FIELDS);
      const by = body.by === undefined ? 1 : assertBy(body.by);
      const consistency = parseConsistency(request.query);
      if (request.headers['idempotency-key'] === undefined) {
        // The common case, without the closures `once` needs: this is the hot route.
        const value = await counters.increment(name, by, consistency);
        metrics.accepted(consistency);
        reply.code(consistency === 'strong' ? 200 : 202);
        return { name, value };
      }
      return once(
        request,
        reply,
        () => `inc ${name} ${by} ${consistency}`,
        async () => {
          const value = await counters.increment(name, by, consistency);
          metrics.accepted(consistency);
          return { status: consistency === 'strong' ? 200 : 202, body: { name, value } };
        },
        // Held but unconfirmed: a retry is told it was accepted (202), and is not counted again.
        () => ({ status: 202, body: { name, value: counters.estimate(name) } }),
      );
    },
  );

  app.post<{ Body: unknown; Querystring: Record<string, unknown> }>(
    '/api/v1/increments',
    { config: { cors: true } },
    async (request, reply) => {
      limiter?.take(request);
      const body = asObject(request.body, BATCH_FIELDS);
      const items = parseBatch(body.increments);
      const consistency = parseConsistency(request.query);
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

  app.get<NameParams>(
    '/api/v1/counters/:name',
    { schema: { response: { 200: valueReply } }, config: { cors: true } },
    async (request) => {
      const name = assertName(request.params.name);
      return counters.get(name, parseConsistency(request.query));
    },
  );

  app.put<NameParams & { Body: unknown }>('/api/v1/counters/:name', async (request) => {
    requireAdmin(request);
    const name = assertName(request.params.name);
    const body = asObject(request.body, SET_FIELDS);
    if (body.value === undefined) throw new TallyError('INVALID_BODY', 'The body needs "value"');
    const value = assertValue(body.value);
    await counters.set(name, value);
    requestLog(logger, request).info({ counter: name, value }, 'counter set');
    return { name, value };
  });

  app.delete<NameParams>('/api/v1/counters/:name', async (request) => {
    requireAdmin(request);
    const name = assertName(request.params.name);
    const deleted = await counters.delete(name);
    requestLog(logger, request).info({ counter: name, deleted }, 'counter deleted');
    return { name, deleted };
  });

  app.get<{ Querystring: Record<string, unknown> }>(
    '/api/v1/counters',
    { config: { cors: true } },
    async (request) => {
      const q = request.query;
      const prefix = q.prefix === undefined ? '' : q.prefix;
      if (typeof prefix !== 'string' || !PREFIX_RE.test(prefix)) {
        throw new TallyError(
          'INVALID_QUERY',
          '"prefix" must be up to 128 characters of A-Za-z0-9_.:-',
        );
      }
      let limit = 100;
      if (q.limit !== undefined) {
        limit = typeof q.limit === 'string' && /^\d{1,4}$/.test(q.limit) ? Number(q.limit) : 0;
        if (limit < 1 || limit > 1000)
          throw new TallyError('INVALID_QUERY', '"limit" must be an integer from 1 to 1000');
      }
      const cursor = q.cursor;
      if (
        cursor !== undefined &&
        (typeof cursor !== 'string' || !/^[A-Za-z0-9_-]{0,200}$/.test(cursor))
      ) {
        throw new TallyError('INVALID_QUERY', '"cursor" is not a cursor this API returned');
      }
      return counters.list({ prefix, limit, cursor });
    },
  );
}

function parseConsistency(query: Record<string, unknown>): Consistency {
  const c = query.consistency;
  if (c === undefined || c === 'eventual') return 'eventual';
  if (c === 'strong') return 'strong';
  throw new TallyError('INVALID_QUERY', '"consistency" must be "eventual" or "strong"');
}

function parseBatch(raw: unknown): Increment[] {
  if (!Array.isArray(raw)) throw new TallyError('INVALID_BODY', '"increments" must be an array');
  if (raw.length < 1 || raw.length > MAX_BATCH_ITEMS) throw new TallyError('BATCH_TOO_LARGE');
  const items: Increment[] = new Array(raw.length);
  for (let i = 0; i < raw.length; i++) {
    try {
      const entry = raw[i];
      if (entry === null || typeof entry !== 'object') {
        throw new TallyError('INVALID_BODY', 'each increment must be an object');
      }
      const item = asObject(entry, ITEM_FIELDS);
      items[i] = { name: assertName(item.name), by: item.by === undefined ? 1 : assertBy(item.by) };
    } catch (err) {
      if (err instanceof TallyError)
        throw new TallyError(err.code, `increments[${i}]: ${err.message}`);
      throw err;
    }
  }
  return items;
}
