/**
 * @module http/routes/badges — `GET /badge/:ns/:key.svg` (and `.json`, shields.io's endpoint
 * schema): a badge that counts one view and shows the counter. Options in http/badges.ts.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { CounterService } from '../../counters/service.js';
import { counterName, DEFAULT_NAMESPACE } from '../../domain.js';
import { TallyError } from '../../errors.js';
import type { Metrics } from '../../obs/metrics.js';
import type { Access } from '../access.js';
import {
  type BadgeLook,
  type BadgeOptions,
  type BadgeRenderer,
  badgeMessage,
  endpointBadge,
  parseBadgeOptions,
} from '../badges.js';
import { toTallyError } from '../errors.js';
import { object, PARAMS, type ParamDoc, type RouteDoc } from '../openapi.js';
import { assertKey, assertPart } from '../parse.js';
import type { ClientLimiter, LimitedRequest } from '../rate-limit.js';

export interface BadgeRoutesOptions {
  readonly counters: CounterService;
  readonly access: Access;
  readonly metrics: Metrics;
  readonly renderer: BadgeRenderer;
  readonly limiter?: ClientLimiter;
  /** The client address a visit counts for (unique visitors). */
  readonly clientOf: (request: LimitedRequest) => string;
}

/**
 * GitHub's image proxy (camo) keeps an image it may cache; a badge must say it may not, or
 * READMEs show a count from days ago.
 */
const NO_CACHE = {
  'cache-control': 'max-age=0, no-cache, no-store, must-revalidate',
  expires: 'Thu, 01 Jan 1970 00:00:00 GMT',
  pragma: 'no-cache',
} as const;

/** 32-bit FNV-1a, for ETags. */
function fnv(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(36);
}

/**
 * Sends a badge: SVG, or the endpoint JSON. `status` is 200 but for an error drawn as a badge.
 * The ETag hashes the look and the number, so a changed count is a changed tag.
 */
export function sendBadge(
  reply: FastifyReply,
  renderer: BadgeRenderer,
  look: BadgeLook,
  message: string,
  format: 'svg' | 'json',
  status = 200,
): FastifyReply {
  // Logos (up to 8 KiB) are not hashed per request: their length stands for them. No route
  // answers 304, so a shared tag could only cost a proxy a refetch.
  const looks = `${look.style} ${look.label} ${look.color} ${look.labelColor} ${look.logo?.length ?? 0}`;
  const tag = `"${fnv(looks)}-${format}-${fnv(message)}"`;
  reply.code(status).headers(NO_CACHE).header('etag', tag);
  if (format === 'json') return reply.send(endpointBadge(look, message));
  return reply.type('image/svg+xml; charset=utf-8').send(renderer.render(look, message));
}

/**
 * An error as a badge for a client that asked for an image (an `<img>` shows nothing for a JSON
 * body): the error's status, a red badge with its message, and the stable code in
 * `tally-error-code`.
 */
export function sendErrorBadge(
  reply: FastifyReply,
  renderer: BadgeRenderer,
  raw: unknown,
): FastifyReply {
  const err = toTallyError(raw);
  if (err.retryAfterS !== undefined) reply.header('retry-after', String(err.retryAfterS));
  reply.header('tally-error-code', err.code);
  return sendBadge(reply, renderer, ERROR_LOOK, err.message, 'svg', err.status);
}

const ERROR_LOOK: BadgeLook = {
  label: 'tally',
  color: 'red',
  labelColor: 'grey',
  style: 'flat',
  logo: undefined,
};

type BadgeRequest = FastifyRequest<{
  Params: { ns?: string; file: string };
  Querystring: Record<string, unknown>;
}>;

export async function badgeRoutes(app: FastifyInstance, opts: BadgeRoutesOptions): Promise<void> {
  const { counters, access, metrics, renderer, limiter, clientOf } = opts;

  /** The number the badge shows after this view (counted unless `count=false`). */
  async function valueFor(request: BadgeRequest, name: string, options: BadgeOptions) {
    if (options.show !== 'total' && !counters.countsUniques) {
      throw new TallyError('UNIQUES_OFF');
    }
    if (!options.count) {
      if (options.show === 'total') return (await counters.get(name, 'eventual')).value;
    } else {
      limiter?.take(request);
      const allowed = access.increment(undefined, name, 1);
      if (allowed !== undefined) await allowed;
      await counters.add(name, 1);
      metrics.accepted('eventual');
      if (counters.countsUniques) {
        counters.visit(name, clientOf(request), request.headers['user-agent']);
      }
      if (options.show === 'total') return counters.estimate(name);
    }
    const uniques = await counters.uniques(name);
    return options.show === 'uniques' ? (uniques?.total ?? 0) : (uniques?.today ?? 0);
  }

  async function badge(request: BadgeRequest, reply: FastifyReply): Promise<unknown> {
    const { file } = request.params;
    const dot = file.lastIndexOf('.');
    const format = file.slice(dot + 1);
    if (dot < 0 || (format !== 'svg' && format !== 'json')) throw new TallyError('NOT_FOUND');
    try {
      const namespace = assertPart(request.params.ns ?? DEFAULT_NAMESPACE);
      const name = counterName(namespace, assertKey(namespace, file.slice(0, dot)));
      const options = parseBadgeOptions(request.query);
      const value = await valueFor(request, name, options);
      return sendBadge(reply, renderer, options, badgeMessage(value, options), format);
    } catch (err) {
      if (format === 'json') throw err;
      return sendErrorBadge(reply, renderer, err);
    }
  }

  app.get('/badge/:ns/:file', { config: { cors: true, doc: badgeDoc(true) } }, badge);
  // The default namespace, as the flat routes: /badge/page-home.svg.
  app.get('/badge/:file', { config: { cors: true, doc: badgeDoc(false) } }, badge);
}

const option = (description: string, schema: Record<string, unknown>): ParamDoc => ({
  description,
  schema,
});

/** The badge options (http/badges.ts), for the document. */
export const BADGE_QUERY: Record<string, ParamDoc> = {
  label: option('Left-hand text (up to 64 characters; empty for none)', {
    type: 'string',
    default: 'views',
  }),
  color: option('Right-hand color: a name (blue, brightgreen…), hex without #, or rgb()/hsl()', {
    type: 'string',
    default: 'blue',
  }),
  labelColor: option('Left-hand color', { type: 'string', default: 'grey' }),
  style: option('Look', {
    type: 'string',
    enum: ['flat', 'flat-square', 'plastic', 'for-the-badge', 'social'],
    default: 'flat',
  }),
  logo: option('A data:image/svg+xml;base64 or data:image/png;base64 URI', { type: 'string' }),
  count: option('`false`: show the counter without counting this view', {
    type: 'string',
    enum: ['true', 'false', '1', '0'],
    default: 'true',
  }),
  base: option('Added to the number shown (a count carried over from elsewhere)', {
    type: 'integer',
    default: 0,
  }),
  abbreviated: option('`true`: 1234 shows as 1.2k', {
    type: 'string',
    enum: ['true', 'false', '1', '0'],
    default: 'false',
  }),
  show: option('What the number is (uniques need TALLY_UNIQUES)', {
    type: 'string',
    enum: ['total', 'uniques', 'uniques-today'],
    default: 'total',
  }),
};

function badgeDoc(namespaced: boolean): RouteDoc {
  const file: ParamDoc = {
    description:
      'The key and the format: `<key>.svg`, or `<key>.json` for shields.io’s endpoint badge',
    schema: { type: 'string', pattern: '\\.(svg|json)$' },
    example: 'home.svg',
  };
  return {
    summary: namespaced
      ? 'Badge that counts a view'
      : 'Badge that counts a view (default namespace)',
    description:
      'Counts one view (unless `count=false`) and draws the counter. Errors are drawn too (red, with the status and a `tally-error-code` header), so an `<img>` shows them; `.json` answers them as JSON. Never cached (GitHub camo).',
    tag: 'Badges',
    params: namespaced ? { ns: PARAMS.ns, file } : { file },
    query: BADGE_QUERY,
    responses: {
      200: {
        description: 'The badge',
        content: {
          'image/svg+xml': null,
          'application/json': object(
            {
              schemaVersion: { const: 1 },
              label: { type: 'string' },
              message: { type: 'string' },
              color: { type: 'string' },
              labelColor: { type: 'string' },
              style: { type: 'string' },
            },
            [],
            "shields.io's endpoint schema",
          ),
        },
      },
    },
    errors: [
      'NOT_FOUND',
      'INVALID_NAMESPACE',
      'INVALID_QUERY',
      'UNIQUES_OFF',
      'RATE_LIMITED',
      'KEY_REQUIRED',
      'COUNTER_OVERFLOW',
      'OVERLOADED',
      'STORE_UNAVAILABLE',
      'LOG_UNAVAILABLE',
      'IDENTITY_CONFLICT',
      'SHUTTING_DOWN',
    ],
    errorMedia: ['image/svg+xml'],
  };
}
