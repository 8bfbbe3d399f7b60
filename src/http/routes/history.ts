/**
 * @module http/routes/history — a counter's time buckets (JSON or CSV) and a namespace's top
 * counters.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { CounterService, HistoryBucket, TopBy } from '../../counters/service.js';
import { splitName } from '../../domain.js';
import { TallyError } from '../../errors.js';
import { type Granularity, MAX_BUCKETS, RETENTION_MS } from '../../store/history.js';
import type { CorsPolicy } from '../cors.js';
import { json, object, PARAMS, type RouteDoc, ref } from '../openapi.js';
import { assertPart, queryInteger } from '../parse.js';
import { type Family, flat, namespaced } from './counters.js';

export interface HistoryRoutesOptions {
  readonly counters: CounterService;
  readonly cors: CorsPolicy;
}

type Query = Record<string, unknown>;

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** The range asked for when `from` is not given, per granularity. */
const DEFAULT_SPAN: Record<Granularity, number> = { minute: HOUR, hour: 48 * HOUR, day: 30 * DAY };
const SPAN_LIMIT: Record<Granularity, number> = {
  minute: RETENTION_MS.minute,
  hour: RETENTION_MS.hour,
  day: (MAX_BUCKETS - 1) * DAY,
};
const TOP_MAX = 100;

function bad(message: string): TallyError {
  return new TallyError('INVALID_QUERY', message);
}

/** A time as ms since the epoch or an ISO 8601 date or date-time; undefined when absent. */
function parseTime(raw: unknown, field: string): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (typeof raw === 'string') {
    if (/^\d{1,15}$/.test(raw)) return Number(raw);
    if (
      /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(raw)
    ) {
      // A date or a time without a zone is UTC, as the buckets are.
      const zoned = /T|\s/.test(raw) && !/(Z|[+-]\d{2}:?\d{2})$/.test(raw) ? `${raw}Z` : raw;
      const t = Date.parse(zoned.replace(' ', 'T'));
      if (Number.isFinite(t)) return t;
    }
  }
  throw bad(`"${field}" must be an ISO 8601 date or time, or ms since the epoch`);
}

export interface HistoryQuery {
  readonly granularity: Granularity;
  readonly from: number;
  readonly to: number;
  readonly format: 'json' | 'csv';
}

/** Reads `granularity`, `from`, `to` and `format`, checking the range against retention. */
export function parseHistoryQuery(query: Query, now = Date.now()): HistoryQuery {
  const g = query.granularity ?? 'hour';
  if (g !== 'minute' && g !== 'hour' && g !== 'day') {
    throw bad('"granularity" must be minute, hour or day');
  }
  const format = query.format ?? 'json';
  if (format !== 'json' && format !== 'csv') throw bad('"format" must be json or csv');
  const to = parseTime(query.to, 'to') ?? now;
  const from = parseTime(query.from, 'from') ?? to - DEFAULT_SPAN[g];
  if (from > to) throw bad('"from" must not be after "to"');
  if (to - from > SPAN_LIMIT[g]) {
    const limit = g === 'minute' ? '48 hours' : g === 'hour' ? '90 days' : `${MAX_BUCKETS} days`;
    throw bad(`A ${g} range spans at most ${limit}`);
  }
  return { granularity: g, from, to, format };
}

/** Buckets as CSV: `start,count` (and `uniques`), ISO times, one row per bucket. */
export function historyCsv(buckets: readonly HistoryBucket[], uniques: boolean): string {
  let out = uniques ? 'start,count,uniques\n' : 'start,count\n';
  for (const b of buckets) {
    out += `${new Date(b.start).toISOString()},${b.count}`;
    out += uniques ? `,${b.uniques ?? 0}\n` : '\n';
  }
  return out;
}

export async function historyRoutes(
  app: FastifyInstance,
  opts: HistoryRoutesOptions,
): Promise<void> {
  const { counters, cors } = opts;

  async function answer(name: string, query: Query, reply: FastifyReply): Promise<unknown> {
    const q = parseHistoryQuery(query);
    const buckets = await counters.history(name, q.granularity, q.from, q.to);
    const withUniques = counters.countsUniques && q.granularity === 'day';
    if (q.format === 'csv') {
      const { key } = splitName(name);
      reply
        .type('text/csv; charset=utf-8')
        .header('content-disposition', `attachment; filename="${key}-${q.granularity}.csv"`);
      return historyCsv(buckets, withUniques);
    }
    return {
      name,
      ...splitName(name),
      granularity: q.granularity,
      from: new Date(buckets[0]?.start ?? q.from).toISOString(),
      to: new Date(q.to).toISOString(),
      buckets: buckets.map((b) => ({
        start: new Date(b.start).toISOString(),
        count: b.count,
        ...(b.uniques === undefined ? {} : { uniques: b.uniques }),
      })),
    };
  }

  const topPath = '/api/v1/namespaces/:ns/top';
  cors.preflight(app, topPath, ['GET']);
  // Both families of counter routes, named as the counters routes name them.
  for (const family of [flat, namespaced]) {
    const path = `${family.path}/history`;
    cors.preflight(app, path, ['GET']);
    app.get<{ Params: Record<string, string | undefined>; Querystring: Query }>(
      path,
      { config: { cors: true, doc: historyDoc(family) } },
      (request, reply) => answer(family.name(request.params), request.query, reply),
    );
  }

  const top = { config: { cors: true, doc: TOP_DOC } } as const;
  app.get<{ Params: { ns: string }; Querystring: Query }>(topPath, top, async (request) => {
    const namespace = assertPart(request.params.ns);
    const q = request.query;
    const by = q.by ?? 'total';
    if (by !== 'total' && by !== 'day') throw bad('"by" must be total or day');
    const limit = q.limit === undefined ? 10 : queryInteger(q.limit, TOP_MAX);
    if (limit === undefined || limit < 1)
      throw bad(`"limit" must be an integer from 1 to ${TOP_MAX}`);
    const day = parseTime(q.day, 'day') ?? Date.now();
    const ranking: TopBy = by === 'total' ? 'total' : { day };
    const top = await counters.top(namespace, ranking, limit);
    return {
      namespace,
      by,
      ...(by === 'day' ? { day: new Date(day).toISOString().slice(0, 10) } : {}),
      items: top.map((t) => ({ ...splitName(t.name), name: t.name, value: t.value })),
    };
  });
}

const TIME = {
  anyOf: [
    { type: 'string', pattern: '^\\d{1,15}$', description: 'ms since the epoch' },
    { type: 'string', description: 'An ISO 8601 date or date-time (UTC unless it has a zone)' },
  ],
};

function historyDoc(family: Family): RouteDoc {
  return {
    summary: 'History in buckets',
    description:
      'The sums of increments per minute (kept 48 hours), hour (90 days) or day (TALLY_HISTORY_DAYS), every bucket of the range, zeros included. Buckets are UTC and land at the time their batch was cut.',
    tag: 'History',
    params: family.params,
    query: {
      granularity: {
        description: 'Bucket size',
        schema: { type: 'string', enum: ['minute', 'hour', 'day'], default: 'hour' },
      },
      from: {
        description: 'Start (default: an hour, 48 hours or 30 days before `to`)',
        schema: TIME,
      },
      to: { description: 'End (default: now)', schema: TIME },
      format: {
        description: 'JSON or CSV (`start,count[,uniques]`)',
        schema: { type: 'string', enum: ['json', 'csv'], default: 'json' },
      },
    },
    responses: {
      200: {
        description: 'The buckets',
        content: { 'application/json': ref('History'), 'text/csv': null },
      },
    },
    errors: [family.badName, 'INVALID_QUERY', 'STORE_UNAVAILABLE'],
  };
}

const TOP_DOC: RouteDoc = {
  summary: "A namespace's top counters",
  description: 'Ranked by value, or by the sum of one UTC day’s increments.',
  tag: 'History',
  params: { ns: PARAMS.ns },
  query: {
    by: {
      description: 'Rank by total value or by one day',
      schema: { type: 'string', enum: ['total', 'day'], default: 'total' },
    },
    limit: {
      description: 'How many, 1-100',
      schema: { type: 'integer', minimum: 1, maximum: 100, default: 10 },
    },
    day: { description: 'The day for `by=day` (default today)', schema: TIME },
  },
  responses: {
    200: json(
      'The ranking',
      object(
        {
          namespace: { type: 'string' },
          by: { enum: ['total', 'day'] },
          day: { type: 'string', description: 'YYYY-MM-DD (by=day)' },
          items: {
            type: 'array',
            items: object({
              name: { type: 'string' },
              namespace: { type: 'string' },
              key: { type: 'string' },
              value: { type: 'integer' },
            }),
          },
        },
        ['day'],
      ),
    ),
  },
  errors: ['INVALID_NAMESPACE', 'INVALID_QUERY', 'STORE_UNAVAILABLE'],
};
