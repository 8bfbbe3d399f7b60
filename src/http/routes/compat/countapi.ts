/**
 * @module http/routes/compat/countapi — CountAPI's API (api.countapi.xyz, shut down in 2023), so
 * its clients keep working by changing only the base URL. Every route is GET; the namespace may
 * be left out (`default`); names are 3-64 characters of `A-Za-z0-9_-.`. docs/compat.md lists
 * each answer and where Tally had to choose.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { counterName, DEFAULT_NAMESPACE, MAX_VALUE } from '../../../domain.js';
import { TallyError } from '../../../errors.js';
import { VERSION } from '../../../version.js';
import { bearerOf } from '../../access.js';
import { queryInteger } from '../../parse.js';
import { createCounter, parseCreate } from '../counters.js';
import { COUNTAPI_CREATE_DOC, COUNTAPI_STATS_DOC, type CountapiOp, countapiDoc } from './docs.js';
import {
  COMPAT_NAME_RE,
  type CompatOptions,
  callbackOf,
  compatErrors,
  type CompatPath as Path,
  type CompatRequest as Req,
  resolveReserved,
  sendJsonp,
  sendPixel,
} from './shared.js';

export async function countapiRoutes(app: FastifyInstance, opts: CompatOptions): Promise<void> {
  const { counters, access, limiter, createLimiter } = opts;
  compatErrors(app, true);
  // What /stats reports: this instance, since it started.
  const stats = { created: 0, updated: 0, requests: 0 };
  app.addHook('onRequest', async () => {
    stats.requests++;
  });

  /** Answers as CountAPI did: JSON, JSONP (`?callback=`, always 200) or a pixel (`?img`). */
  function answer(
    request: Req,
    reply: FastifyReply,
    status: number,
    body: Record<string, unknown>,
    path?: Path,
  ): FastifyReply {
    if (path !== undefined) reply.header('x-path', `${path.namespace}/${path.key}`);
    const q = request.query;
    if (q.img !== undefined) return sendPixel(reply.code(status));
    const callback = callbackOf(q);
    // "JSONP requests never fail": 200, with the status inside the answer.
    if (callback !== undefined) return sendJsonp(reply.code(200), callback, { ...body, status });
    return reply.code(status).send(body);
  }

  function pathOf(request: Req): Path {
    const namespace = resolveReserved(request.params.ns ?? DEFAULT_NAMESPACE, request);
    const key = resolveReserved(request.params.key, request);
    if (
      namespace === undefined ||
      key === undefined ||
      !COMPAT_NAME_RE.test(namespace) ||
      !COMPAT_NAME_RE.test(key)
    ) {
      throw new TallyError('INVALID_NAMESPACE', 'Malformed Namespace/Key');
    }
    return { namespace, key, name: counterName(namespace, key) };
  }

  /** Both forms of a keyed route: `/op/:key` (default namespace) and `/op/:ns/:key`. */
  function keyed(op: CountapiOp, handler: (request: Req, reply: FastifyReply) => Promise<unknown>) {
    const doc = (namespaced: boolean) => ({
      config: { cors: true, doc: countapiDoc(op, namespaced) },
    });
    app.get(`/${op}/:key`, doc(false), handler as never);
    app.get(`/${op}/:ns/:key`, doc(true), handler as never);
  }

  keyed('hit', async (request, reply) => {
    limiter?.take(request);
    const path = pathOf(request);
    const value = await counters.increment(path.name, 1, 'eventual');
    if (counters.countsUniques) {
      counters.visit(path.name, opts.clientOf(request), request.headers['user-agent']);
    }
    stats.updated++;
    return answer(request, reply, 200, { value }, path);
  });

  keyed('get', async (request, reply) => {
    const path = pathOf(request);
    const found = await counters.describe(path.name);
    if (found === undefined) return answer(request, reply, 404, { value: null }, path);
    return answer(request, reply, 200, { value: found.value }, path);
  });

  keyed('set', async (request, reply) => {
    const path = pathOf(request);
    const value = integer(request.query.value, 'value', MAX_VALUE);
    const found = await counters.describe(path.name);
    if (found === undefined) {
      return answer(request, reply, 404, { old_value: null, value: null }, path);
    }
    if (!(await mayOwn(request, path.name, true))) {
      return answer(request, reply, 403, { old_value: found.value, value: found.value }, path);
    }
    await counters.set(path.name, value);
    stats.updated++;
    return answer(request, reply, 200, { old_value: found.value, value }, path);
  });

  keyed('update', async (request, reply) => {
    limiter?.take(request);
    const path = pathOf(request);
    const amount = integer(request.query.amount, 'amount', 1_000_000_000);
    const found = await counters.describe(path.name);
    if (found === undefined) return answer(request, reply, 404, { value: null }, path);
    // Counters made by a hit allow 0..1, as CountAPI's did; created ones their own bounds.
    const low = found.settings?.lowerBound ?? 0;
    const high = found.settings?.upperBound ?? 1;
    const allowed = (amount >= low && amount <= high) || (await mayOwn(request, path.name));
    if (!allowed) return answer(request, reply, 403, { value: found.value }, path);
    const value =
      amount === 0 ? found.value : await counters.increment(path.name, amount, 'eventual');
    stats.updated++;
    return answer(request, reply, 200, { value }, path);
  });

  keyed('info', async (request, reply) => {
    const path = pathOf(request);
    const found = await counters.describe(path.name);
    if (found === undefined) {
      return answer(
        request,
        reply,
        404,
        {
          namespace: null,
          key: null,
          ttl: null,
          created: null,
          update_lowerbound: null,
          update_upperbound: null,
          enable_reset: null,
          value: null,
        },
        path,
      );
    }
    const s = found.settings;
    const now = Date.now();
    const written = found.touchedAt ?? now;
    return answer(
      request,
      reply,
      200,
      {
        namespace: path.namespace,
        key: path.key,
        // Without TALLY_EXPIRE_IDLE nothing expires: -1, as Redis reports a key without a TTL.
        ttl: opts.expireIdleMs === undefined ? -1 : Math.max(0, written + opts.expireIdleMs - now),
        // Counters made by a hit have no creation record: their last write stands in.
        created: s?.created ?? written,
        update_lowerbound: s?.lowerBound ?? 0,
        update_upperbound: s?.upperBound ?? 1,
        enable_reset: s?.enableReset ?? false,
        value: found.value,
      },
      path,
    );
  });

  app.get(
    '/create',
    { config: { cors: true, doc: COUNTAPI_CREATE_DOC } },
    async (request: Req, reply) => {
      createLimiter?.take(request);
      const q = request.query;
      const namespace = q.namespace === undefined ? DEFAULT_NAMESPACE : q.namespace;
      const key = q.key === undefined ? randomUUID() : q.key;
      if (
        typeof namespace !== 'string' ||
        typeof key !== 'string' ||
        !COMPAT_NAME_RE.test(namespace) ||
        !COMPAT_NAME_RE.test(key)
      ) {
        throw new TallyError('INVALID_NAMESPACE', 'Malformed Namespace/Key');
      }
      // CountAPI's own checks first, with its messages: the upper bound ≥ 0, the lower one ≤ 0.
      if (typeof q.update_upperbound === 'string' && /^-\d/.test(q.update_upperbound)) {
        throw new TallyError('INVALID_QUERY', 'update_upperbound must be positive');
      }
      if (typeof q.update_lowerbound === 'string' && /^\+?[1-9]/.test(q.update_lowerbound)) {
        throw new TallyError('INVALID_QUERY', 'update_lowerbound must be negative');
      }
      const options = parseCreate(q, 0, { lowerBound: -1, upperBound: 1 });
      await access.create(bearerOf(request), namespace);
      const path = { namespace, key, name: counterName(namespace, key) };
      const adminKey = await createCounter(counters, path.name, options);
      if (adminKey === undefined) {
        return answer(request, reply, 409, { namespace: null, key: null, value: null }, path);
      }
      stats.created++;
      // CountAPI's body has exactly these three fields (strict clients parse nothing else), so
      // the counter's admin key travels in a header.
      reply.header('x-admin-key', adminKey).header('cache-control', 'no-store');
      return answer(request, reply, 200, { namespace, key, value: options.value }, path);
    },
  );

  app.get('/stats', { config: { cors: true, doc: COUNTAPI_STATS_DOC } }, async () => ({
    keys_created: stats.created,
    keys_updated: stats.updated,
    requests: stats.requests,
    version: VERSION,
  }));

  /** True when the request's Bearer key may set, reset or change the counter. */
  async function mayOwn(request: Req, name: string, resettable = false): Promise<boolean> {
    try {
      await access.owner(bearerOf(request), name, resettable);
      return true;
    } catch (err) {
      if (err instanceof TallyError && err.status < 500) return false;
      throw err;
    }
  }
}

/** A query integer within ±max, or 400 naming the parameter. */
function integer(raw: unknown, field: string, max: number): number {
  const n = queryInteger(raw, max);
  if (n === undefined) {
    throw new TallyError('INVALID_NUMBER', `${field} must be an integer within ±${max}`);
  }
  return n;
}
