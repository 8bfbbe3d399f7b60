/**
 * @module http/routes/compat/abacus — the API of Abacus (the most used CountAPI replacement), so
 * its clients keep working by changing only the base URL. Follows Abacus's code where its docs
 * disagree with it (docs/compat.md lists each case). Bodies are written with their keys in
 * alphabetical order, as Abacus's Go maps serialise.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import { counterName, DEFAULT_NAMESPACE, MAX_BY, MAX_VALUE } from '../../../domain.js';
import { type EventStream, openEventStream } from '../../../live/sse.js';
import { VERSION } from '../../../version.js';
import { bearerOf } from '../../access.js';
import { type BadgeLook, parseColor } from '../../badges.js';
import { queryInteger } from '../../parse.js';
import { sendBadge, sendErrorBadge } from '../badges.js';
import { createCounter } from '../counters.js';
import {
  ABACUS_HEALTH_DOC,
  ABACUS_STATS_DOC,
  type AbacusOp,
  abacusDoc,
  abacusShieldDoc,
} from './docs.js';
import {
  COMPAT_NAME_RE,
  CompatError,
  type CompatOptions,
  callbackOf,
  compatErrors,
  goDuration,
  type CompatPath as Path,
  type CompatRequest as Req,
  resolveReserved,
  sendJsonp,
} from './shared.js';

const NAME_PATTERN = '^[A-Za-z0-9_\\-.]{3,64}$';

export async function abacusRoutes(app: FastifyInstance, opts: CompatOptions): Promise<void> {
  const { counters, access, limiter, createLimiter, hub, slots } = opts;
  const started = Date.now();
  const commands = { create: 0, get: 0, hit: 0, total: 0 };
  let created = 0;
  compatErrors(app, false);
  app.addHook('onRequest', async () => {
    commands.total++;
  });

  function pathOf(request: Req): Path {
    const namespace = resolveReserved(request.params.ns ?? DEFAULT_NAMESPACE, request);
    const key = resolveReserved(request.params.key, request);
    check('namespace', namespace);
    check('key', key);
    return { namespace, key, name: counterName(namespace, key) } as Path;
  }

  /** Both forms of a route: `/op/:ns/:key`, and `/op/:key` in the default namespace. */
  function route(
    methods: ('GET' | 'POST')[],
    op: AbacusOp,
    handler: (request: Req, reply: FastifyReply) => Promise<unknown>,
    single = true,
    cors = true,
  ) {
    // Token routes (set, reset, update, delete) answer no CORS: like Tally's own admin routes,
    // a page on another origin cannot call them.
    const config = (namespaced: boolean) => ({
      config: { ...(cors ? { cors: true } : {}), doc: abacusDoc(op, namespaced) },
    });
    for (const method of methods) {
      app.route({ method, url: `/${op}/:ns/:key`, ...config(true), handler: handler as never });
      if (single) {
        app.route({ method, url: `/${op}/:key`, ...config(false), handler: handler as never });
      }
    }
  }

  /** A POST route that needs the counter's token, without CORS. */
  function tokenRoute(op: AbacusOp, handler: (request: Req) => Promise<unknown>) {
    route(['POST'], op, handler, true, false);
  }

  /** JSON, or JSONP when the request names a callback (hit and get, as Abacus). */
  function maybeJsonp(request: Req, reply: FastifyReply, body: unknown): unknown {
    const callback = callbackOf(request.query);
    return callback === undefined ? body : sendJsonp(reply, callback, body);
  }

  /** What `hit` and `get` do, for their JSON and their badge routes alike. */
  const values = {
    hit: async (name: string, request: Req): Promise<number> => {
      commands.hit++;
      const value = await counters.increment(name, 1, 'eventual');
      if (counters.countsUniques) {
        counters.visit(name, opts.clientOf(request), request.headers['user-agent']);
      }
      return value;
    },
    get: async (name: string, _request: Req): Promise<number> => {
      commands.get++;
      const found = await counters.describe(name);
      if (found === undefined) throw new CompatError(404, 'Key not found');
      return found.value;
    },
  };

  // Abacus declares hit and get with both segments only.
  route(
    ['GET'],
    'hit',
    async (request, reply) => {
      limiter?.take(request);
      const path = pathOf(request);
      return maybeJsonp(request, reply, { value: await values.hit(path.name, request) });
    },
    false,
  );

  route(
    ['GET'],
    'get',
    async (request, reply) => {
      const path = pathOf(request);
      return maybeJsonp(request, reply, { value: await values.get(path.name, request) });
    },
    false,
  );

  route(['GET', 'POST'], 'create', async (request, reply) => {
    createLimiter?.take(request);
    const path = pathOf(request);
    commands.create++;
    const raw = request.query.initializer;
    const value = raw === undefined || raw === '' ? 0 : queryInteger(raw, MAX_VALUE);
    if (value === undefined) throw new CompatError(400, 'initializer must be a number');
    await access.create(bearerOf(request), path.namespace);
    const adminKey = await createCounter(counters, path.name, {
      value,
      enableReset: false,
      lowerBound: 1,
      upperBound: 1,
    });
    if (adminKey === undefined) {
      throw new CompatError(409, 'Key already exists, please use a different key.');
    }
    created++;
    reply.code(201).header('cache-control', 'no-store');
    return { admin_key: adminKey, key: path.key, namespace: path.namespace, value };
  });

  route(['GET'], 'info', async (request) => {
    const path = pathOf(request);
    const found = await counters.describe(path.name);
    const fullKey = `K:${path.namespace}:${path.key}`;
    if (found === undefined) {
      // What Abacus answers for a key Redis does not have (TTL -2, kept as nanoseconds).
      return {
        exists: false,
        expires_in: -2e-9,
        expires_str: '-2ns',
        full_key: fullKey,
        is_genuine: true,
        value: -1,
      };
    }
    const idle = opts.expireIdleMs;
    const left =
      idle === undefined
        ? undefined
        : Math.max(0, (found.touchedAt ?? Date.now()) + idle - Date.now());
    return {
      exists: true,
      // Without TALLY_EXPIRE_IDLE: Abacus's answer for a key without a TTL.
      expires_in: left === undefined ? -1e-9 : left / 1000,
      expires_str: left === undefined ? '-1ns' : goDuration(left),
      full_key: fullKey,
      is_genuine: found.settings === null,
      value: found.value,
    };
  });

  tokenRoute('set', async (request) => {
    const value = valueParam(request, 'value must be a number', MAX_VALUE);
    const path = pathOf(request);
    await authorize(request, path);
    await mustExist(path, 'Key does not exist, please use a different key.');
    await counters.set(path.name, value);
    return { value };
  });

  tokenRoute('reset', async (request) => {
    const path = pathOf(request);
    await authorize(request, path);
    await mustExist(path, 'Key does not exist, please use a different key.');
    await counters.set(path.name, 0);
    return { value: 0 };
  });

  tokenRoute('update', async (request) => {
    const by = valueParam(request, 'value must be a number, this means no floats.', MAX_BY);
    if (by === 0) {
      throw new CompatError(
        400,
        'changing value by 0 does nothing, please provide a non-zero value in the fmt of ?value=NEW_VALUE',
      );
    }
    const path = pathOf(request);
    await authorize(request, path);
    await mustExist(path, 'Key does not exist, please first create it using /create.');
    return { value: await counters.increment(path.name, by, 'eventual') };
  });

  tokenRoute('delete', async (request) => {
    const path = pathOf(request);
    await authorize(request, path);
    await counters.delete(path.name);
    return { message: `Deleted key: K:${path.namespace}:${path.key}`, status: 'ok' };
  });

  /**
   * Abacus's badge options: `text` (the label, default "counter"), `bgcolor` (default 007ec6),
   * `style` flat, flat-square or plastic, each also `-simple` (no label; anything else is flat,
   * as Abacus). `textcolor`, `fontsize` and `font` are accepted and ignored: badge-maker picks
   * the text color from the background and draws Verdana 11.
   */
  function shieldLook(query: Record<string, unknown>): BadgeLook {
    const text = typeof query.text === 'string' ? query.text.slice(0, 64) : 'counter';
    const raw = typeof query.style === 'string' ? query.style.toLowerCase() : 'flat';
    const simple = raw.endsWith('-simple');
    const base = simple ? raw.slice(0, -'-simple'.length) : raw;
    const style = base === 'flat-square' || base === 'plastic' ? base : 'flat';
    const bgcolor = typeof query.bgcolor === 'string' ? query.bgcolor : undefined;
    return {
      label: simple ? '' : text,
      color: parseColor('bgcolor', bgcolor, '#007ec6'),
      labelColor: 'grey',
      style,
      logo: undefined,
    };
  }

  // The badges: Tally's renderer with Abacus's options; errors drawn as badges.
  for (const op of ['hit', 'get'] as const) {
    app.get<{ Params: { ns: string; key: string }; Querystring: Record<string, unknown> }>(
      `/${op}/:ns/:key/shield`,
      { config: { cors: true, doc: abacusShieldDoc(op) } },
      async (request, reply) => {
        try {
          if (op === 'hit') limiter?.take(request);
          const path = pathOf(request);
          const look = shieldLook(request.query);
          const value = await values[op](path.name, request);
          return sendBadge(reply, opts.renderer, look, String(value), 'svg');
        } catch (err) {
          // Abacus's own errors (a bad key, a missing counter) answer as Abacus does, in JSON;
          // Tally's (a bad color, a rate limit, an outage) are drawn.
          if (err instanceof CompatError) throw err;
          return sendErrorBadge(reply, opts.renderer, err);
        }
      },
    );
  }

  route(['GET'], 'stream', async (request, reply) => {
    const path = pathOf(request);
    const slot = slots.take(request.ip);
    // Subscribed before the read, so a change during it is not lost; held until the first frame.
    let first = false;
    let latest: number | undefined;
    let stream: EventStream | undefined;
    const unsubscribe = hub.subscribe(path.name, (value) => {
      if (first && stream !== undefined) stream.send('value', { value });
      else latest = value;
    });
    let found: Awaited<ReturnType<typeof counters.describe>>;
    try {
      found = await counters.describe(path.name);
      const origin = request.headers.origin;
      if (origin !== undefined) opts.cors.apply(origin, (n, v) => reply.raw.setHeader(n, v));
      reply.hijack();
      stream = openEventStream(reply.raw, {
        heartbeatMs: opts.heartbeatMs,
        unnamed: true,
        onClose: () => {
          unsubscribe();
          slot.release();
        },
      });
    } catch (err) {
      unsubscribe();
      slot.release();
      throw err;
    }
    slot.add(stream);
    first = true;
    // As Abacus: the first frame only when the counter exists (or changed meanwhile).
    if (found !== undefined) stream.send('value', { value: found.value });
    if (latest !== undefined && latest !== found?.value) stream.send('value', { value: latest });
  });

  app.get('/stats', { config: { cors: true, doc: ABACUS_STATS_DOC } }, async () => ({
    commands: { ...commands },
    db_uptime: '',
    db_version: '',
    expired_keys__since_restart: '',
    key_misses__since_restart: '',
    shard: opts.instanceId,
    // Abacus estimates this too; here: counters created through this instance since it started
    // (`commands.create` counts create requests, refused ones included, as Abacus's does)
    total_keys: created,
    uptime: goDuration(Date.now() - started),
    version: VERSION,
  }));

  app.get('/healthcheck', { config: { cors: true, doc: ABACUS_HEALTH_DOC } }, async () => ({
    status: 'ok',
    uptime: goDuration(Date.now() - started),
  }));

  /**
   * Abacus's ownership check: a token (Bearer, or `?token=`) equal to the counter's admin key.
   * The namespace key counts too, and Tally's admin token as a Bearer header.
   */
  async function authorize(request: Req, path: Path): Promise<void> {
    const query = request.query.token;
    const bearer = bearerOf(request);
    const token = bearer ?? (typeof query === 'string' && query !== '' ? query : undefined);
    if (token === undefined) {
      throw new CompatError(
        400,
        'Token is required, please provide a token in the format of a Bearer token header or ?token=ADMIN_TOKEN',
      );
    }
    // Tally's admin token only in the header: a URL ends up in proxy logs and browser history.
    if (bearer !== undefined && access.isAdmin(bearer)) return;
    const { covered, keyed } = await access.keysOf(token, path.name);
    if (covered) return;
    if (!keyed) {
      throw new CompatError(
        400,
        'This entry is genuine and does not have an admin key. You cannot delete it. If you wanted to delete it, you should have created it with the /create endpoint.',
      );
    }
    throw new CompatError(401, 'token is invalid');
  }

  async function mustExist(path: Path, message: string): Promise<void> {
    if ((await counters.describe(path.name)) === undefined) throw new CompatError(409, message);
  }
}

/** Abacus's name checks, length first, namespace before key. */
function check(what: 'namespace' | 'key', part: string | undefined): asserts part is string {
  if (part === undefined || part.length < 3 || part.length > 64) {
    throw new CompatError(
      400,
      `Invalid ${what}: length must be between 3 and 64 characters inclusive`,
    );
  }
  if (!COMPAT_NAME_RE.test(part)) {
    throw new CompatError(400, `Invalid ${what}: must match the pattern ${NAME_PATTERN}`);
  }
}

function valueParam(request: Req, invalid: string, max: number): number {
  const raw = request.query.value;
  if (raw === undefined || raw === '') {
    throw new CompatError(
      400,
      'value is required, please provide a number in the fmt of ?value=NEW_VALUE',
    );
  }
  const n = queryInteger(raw, max);
  if (n === undefined) throw new CompatError(400, invalid);
  return n;
}
