/**
 * @module bench/sections/throughput — single increments against the ceiling route and the
 * baselines: every Tally variant (store × aggregator × write-ahead log), strong increments, and
 * Express/Fastify + one INCRBY per request, all interleaved in one comparison.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { AutocannonRequest } from 'autocannon';
import { type BenchContext, walEnv, walLabel } from '../lib/context.js';
import { storedSum } from '../lib/http.js';
import { compare, type Meter, type Target } from '../lib/load.js';
import { benchDatabase, metricTotal } from '../lib/postgres.js';
import { type Service, startBaseline, startRedis, startTally } from '../lib/procs.js';
import { totals } from '../lib/redis.js';
import { check, type ThroughputRow } from '../lib/results.js';

const JSON_HEADERS = { 'content-type': 'application/json' };
const BODY = '{"by":1}';

/** One Tally configuration under test. */
interface Variant {
  readonly id: string;
  readonly store: 'sqlite' | 'redis' | 'postgres';
  readonly aggregator: 'accumulate' | 'queue';
  readonly wal: boolean | null;
  /** TALLY_REDIS_WAIT_REPLICAS, on a Redis of its own with one replica (issue 12). */
  readonly waitReplicas?: 0 | 1;
  /** TALLY_RATE_LIMIT on, far above the load: what checking it costs (issue 13). */
  readonly rateLimited?: boolean;
  /** TALLY_UNIQUES on: every increment also hashes its visitor (issue 14). */
  readonly uniques?: boolean;
}

interface Plan {
  readonly target: Target;
  readonly row: Omit<
    ThroughputRow,
    | 'reqPerSec'
    | 'p50Ms'
    | 'p99Ms'
    | 'requests'
    | 'non2xx'
    | 'errors'
    | 'vsCeiling'
    | 'check'
    | 'commandsPerIncrement'
    | 'scriptCallsPerIncrement'
    | 'commandsByName'
    | 'vsExpress'
    | 'vsFastify'
    | 'coresUsed'
  >;
  /** Reads back what the store holds for this target's counters; absent for the ceiling. */
  readonly stored?: () => Promise<{ sum: number; count: number; what: string }>;
  /** Counts Redis commands during its slices. */
  readonly redis: boolean;
}

/** Counter names a target cycles through: `<id>.0` … `<id>.<n-1>`. */
export function incrementRequests(id: string, n: number, query = ''): AutocannonRequest[] {
  return Array.from({ length: n }, (_, i) => ({
    method: 'POST',
    path: `/api/v1/counters/${id}.${i}/increment${query}`,
    headers: JSON_HEADERS,
    body: BODY,
  }));
}

export async function throughput(ctx: BenchContext): Promise<ThroughputRow[]> {
  const { settings } = ctx;
  const walModes: (boolean | null)[] = ctx.walSupported ? [false, true] : [null];
  // Strong increments and the headline comparisons use the default configuration.
  const defaultWal = ctx.walSupported ? true : null;
  const variants: Variant[] = [];
  for (const store of ['sqlite', 'redis'] as const) {
    for (const aggregator of ['accumulate', 'queue'] as const) {
      for (const wal of walModes) {
        variants.push({ id: `${store}-${aggregator}${walId(wal)}`, store, aggregator, wal });
      }
    }
  }

  // What waiting for a replica costs: the same configuration twice on a primary with one
  // replica, once with TALLY_REDIS_WAIT_REPLICAS=1; without it the replica is attached but unused.
  const replicated: Variant[] = ([0, 1] as const).map((waitReplicas) => ({
    id: `redis-accumulate${walId(defaultWal)}-wait${waitReplicas}`,
    store: 'redis',
    aggregator: 'accumulate',
    wal: defaultWal,
    waitReplicas,
  }));
  const limited: Variant = {
    id: `sqlite-accumulate${walId(defaultWal)}-limited`,
    store: 'sqlite',
    aggregator: 'accumulate',
    wal: defaultWal,
    rateLimited: true,
  };
  const counted: Variant = {
    id: `sqlite-accumulate${walId(defaultWal)}-uniques`,
    store: 'sqlite',
    aggregator: 'accumulate',
    wal: defaultWal,
    uniques: true,
  };

  // PostgreSQL (issue 16): the default design on a database of the bench's own, when the
  // machine's server answers; a bench without one reports the rows as not measured.
  const database = await benchDatabase();
  const onPostgres: Variant | undefined =
    'url' in database
      ? {
          id: `postgres-accumulate${walId(defaultWal)}`,
          store: 'postgres',
          aggregator: 'accumulate',
          wal: defaultWal,
        }
      : undefined;
  if ('missing' in database) ctx.log(`no PostgreSQL rows: ${database.missing}`);

  const services: Service[] = [];
  const servers = new Map<string, Service>();
  try {
    ctx.log('starting a redis primary with one replica');
    const primary = await startRedis();
    services.push(primary);
    services.push(await startRedis(primary));
    const redisOf = (v: Variant): Service => (v.waitReplicas === undefined ? ctx.redis : primary);
    for (const v of [
      ...variants,
      ...replicated,
      limited,
      counted,
      ...(onPostgres ? [onPostgres] : []),
    ]) {
      ctx.log(`starting tally ${v.id}`);
      const server = await startTally({
        name: v.id,
        env: {
          TALLY_STORE: v.store,
          TALLY_AGGREGATOR: v.aggregator,
          TALLY_REDIS_URL: redisOf(v).url,
          TALLY_REDIS_PREFIX: `bench:${v.id}:`,
          ...('url' in database ? { TALLY_POSTGRES_URL: database.url } : {}),
          ...(v.waitReplicas === undefined
            ? {}
            : { TALLY_REDIS_WAIT_REPLICAS: String(v.waitReplicas) }),
          // One client (the generator) at any rate: the limit is checked, never reached.
          ...(v.rateLimited ? { TALLY_RATE_LIMIT: '999999999/1' } : {}),
          ...(v.uniques ? { TALLY_UNIQUES: 'true' } : {}),
          ...walEnv(ctx, v.wal),
        },
        ...ctx.spawn(v.id),
      });
      services.push(server);
      servers.set(v.id, server);
    }
    ctx.log('starting baselines');
    const express = await startBaseline('express-incr', ctx.redis.url, 'bench:express:');
    services.push(express);
    const fastify = await startBaseline('fastify-incr', ctx.redis.url, 'bench:fastify:');
    services.push(fastify);

    const n = settings.countersPerTarget;
    const plans: Plan[] = [];
    // The ceiling runs on the default configuration's server, the one the headline eventual row
    // measures: one process for both sides of the target's ratio, so the few percent two
    // processes of the same build differ by stay out of it.
    const ceilingHost = servers.get(`sqlite-accumulate${walId(defaultWal)}`) as Service;
    plans.push({
      target: {
        id: 'ceiling',
        label: 'ceiling: POST /api/v1/noop',
        url: ceilingHost.url,
        connections: settings.connections,
        processes: { server: ceilingHost.pid },
        requests: [{ method: 'POST', path: '/api/v1/noop', headers: JSON_HEADERS, body: BODY }],
      },
      row: { id: 'ceiling', label: 'ceiling: no-op route (same server)', kind: 'ceiling' },
      redis: false,
    });
    /** `origin`: every request comes from a page on that origin (CORS answered). */
    const tallyPlan = (v: Variant, consistency: 'eventual' | 'strong', origin?: string): Plan => {
      const server = servers.get(v.id) as Service;
      const id = `${v.id}-${consistency}${origin === undefined ? '' : '-cors'}`;
      const query = consistency === 'strong' ? '?consistency=strong' : '';
      const requests = incrementRequests(id, n, query);
      return {
        target: {
          id,
          label: id,
          url: server.url,
          connections: settings.connections,
          processes:
            v.store === 'redis'
              ? { server: server.pid, redis: redisOf(v).pid }
              : { server: server.pid },
          requests:
            origin === undefined
              ? requests
              : requests.map((r) => ({ ...r, headers: { ...r.headers, origin } })),
        },
        row: {
          id,
          label: `${consistency} · ${v.store} · ${v.aggregator}${walLabel(v.wal)}${v.waitReplicas === undefined ? '' : ` · 1 replica, WAIT ${v.waitReplicas}`}${v.rateLimited ? ' · rate limit on' : ''}${origin === undefined ? '' : ' · with Origin (CORS)'}`,
          kind: consistency,
          store: v.store,
          aggregator: v.aggregator,
          wal: v.wal,
        },
        stored: async () => ({
          ...(await storedSum(server.url, `${id}.`)),
          what: `sum of ${n} counters read back through the API after a strong read`,
        }),
        // Commands are counted on the bench's shared Redis only.
        redis: v.store === 'redis' && v.waitReplicas === undefined,
      };
    };
    for (const v of variants) plans.push(tallyPlan(v, 'eventual'));
    for (const v of variants) if (v.wal === defaultWal) plans.push(tallyPlan(v, 'strong'));
    for (const v of replicated) plans.push(tallyPlan(v, 'eventual'), tallyPlan(v, 'strong'));
    plans.push(tallyPlan(limited, 'eventual'));
    {
      // Unique counting: each request a visitor of its own (its own User-Agent), so every flush
      // carries a hash per counter as well as the deltas.
      const plan = tallyPlan(counted, 'eventual');
      plans.push({
        ...plan,
        target: {
          ...plan.target,
          requests: plan.target.requests.map((r, i) => ({
            ...r,
            headers: { ...r.headers, 'user-agent': `bench-visitor/${i}` },
          })),
        },
        row: { ...plan.row, label: `${plan.row.label} · unique visitors on` },
      });
    }
    if (onPostgres !== undefined) {
      plans.push(tallyPlan(onPostgres, 'eventual'), tallyPlan(onPostgres, 'strong'));
    }
    // What CORS costs a public increment: the default configuration, every request from a page
    // on another origin (`Origin` sent, CORS headers answered).
    const fromPage = variants.find(
      (v) => v.store === 'sqlite' && v.aggregator === 'accumulate' && v.wal === defaultWal,
    );
    if (fromPage !== undefined) plans.push(tallyPlan(fromPage, 'eventual', 'https://blog.example'));

    // Counting badge hits (issue 14): GET /badge/<name>.svg on the default configuration's
    // server, each drawing an SVG from its template, against the ceiling on the same process.
    {
      const id = `sqlite-accumulate${walId(defaultWal)}-badge`;
      plans.push({
        target: {
          id,
          label: id,
          url: ceilingHost.url,
          connections: settings.connections,
          processes: { server: ceilingHost.pid },
          requests: Array.from({ length: n }, (_, i) => ({
            method: 'GET',
            path: `/badge/${id}.${i}.svg`,
          })),
        },
        // No aggregator field: the headline eventual row is the increment route's.
        row: {
          id,
          label: `badge hits · GET /badge/:key.svg${walLabel(defaultWal)}`,
          kind: 'eventual',
          store: 'sqlite',
          wal: defaultWal,
        },
        stored: async () => ({
          ...(await storedSum(ceilingHost.url, `${id}.`)),
          what: `sum of ${n} counters read back through the API after a strong read`,
        }),
        redis: false,
      });
    }

    for (const [service, label] of [
      [express, 'baseline: Express 5 + INCRBY per request'],
      [fastify, 'baseline: Fastify 5 + INCRBY per request (auto-pipelined)'],
    ] as const) {
      const id = service.name;
      const keyPrefix = `bench:${id === 'express-incr' ? 'express' : 'fastify'}:`;
      plans.push({
        target: {
          id,
          label: id,
          url: service.url,
          connections: settings.connections,
          processes: { server: service.pid, redis: ctx.redis.pid },
          requests: incrementRequests(id, n),
        },
        row: { id, label, kind: 'baseline', store: 'redis' },
        stored: async () => ({
          ...(await ctx.probe.sumKeys(`${keyPrefix}${id}.*`)),
          what: `sum of ${n} Redis keys read directly`,
        }),
        redis: true,
      });
    }

    // What Fastify alone does on this machine: bounds any Fastify-based server, Tally included.
    plans.push({
      target: {
        id: 'fastify-noop',
        label: 'fastify-noop',
        url: fastify.url,
        connections: settings.connections,
        processes: { server: fastify.pid },
        requests: [{ method: 'POST', path: '/api/v1/noop', headers: JSON_HEADERS, body: BODY }],
      },
      row: {
        id: 'fastify-noop',
        label: 'reference: bare Fastify 5 no-op route',
        kind: 'reference',
      },
      redis: false,
    });

    // Redis command counts per target, read around each of its slices.
    const commands = new Map<
      string,
      { all: number; scripts: number; increments: number; byCommand: Map<string, number> }
    >();
    for (const plan of plans) {
      if (!plan.redis) continue;
      const tally = { all: 0, scripts: 0, increments: 0, byCommand: new Map<string, number>() };
      commands.set(plan.target.id, tally);
      const flushWaitMs = plan.row.kind === 'baseline' ? 0 : 150;
      Object.assign(plan.target, {
        before: () => ctx.probe.resetStats(),
        after: async (slice: { ok: number }) => {
          // Let the slice's last batch land so it is counted with the slice that caused it.
          await sleep(flushWaitMs);
          const counts = await ctx.probe.commandCounts();
          for (const [name, calls] of counts) {
            tally.byCommand.set(name, (tally.byCommand.get(name) ?? 0) + calls);
          }
          const t = totals(counts);
          tally.all += t.all;
          tally.scripts += t.scripts;
          tally.increments += slice.ok;
        },
      });
    }

    // Store round trips of the PostgreSQL targets: batches flushed (one statement each, as the
    // store sends them) per acknowledged increment, from the server's own counters.
    const roundTrips = new Map<string, { batches: number; increments: number }>();
    for (const plan of plans) {
      if (plan.row.store !== 'postgres') continue;
      const server = plan.target.url;
      const tally = { batches: 0, increments: 0 };
      roundTrips.set(plan.target.id, tally);
      let before = 0;
      Object.assign(plan.target, {
        before: async () => {
          before = await metricTotal(server, 'tally_batches_flushed_total');
        },
        after: async (slice: { ok: number }) => {
          await sleep(150);
          tally.batches += (await metricTotal(server, 'tally_batches_flushed_total')) - before;
          tally.increments += slice.ok;
        },
      });
    }

    // Two comparisons: the headline one (what the issue's targets compare) with many short
    // slices, then every other configuration, each against the ceiling again. A target's process
    // is only warmed up for its own comparison (settings.warmupSeconds), and processes first
    // loaded in the shorter variants comparison measured up to 0.15× lower than the same code
    // warmed by the headline one: every target with a goal is in the headline.
    const headlineIds = new Set([
      'ceiling',
      `sqlite-accumulate${walId(defaultWal)}-eventual`,
      `redis-accumulate${walId(defaultWal)}-eventual`,
      // Public hits with the rate limit on have a goal of their own (issue 13), as badges (14).
      `${limited.id}-eventual`,
      `${counted.id}-eventual`,
      `sqlite-accumulate${walId(defaultWal)}-badge`,
      'express-incr',
      'fastify-incr',
      'fastify-noop',
    ]);
    const ceiling = plans[0] as Plan;
    const groups = [
      {
        name: 'headline',
        plans: plans.filter((p) => headlineIds.has(p.target.id)),
        headline: true,
      },
      {
        name: 'variants',
        plans: [
          { ...ceiling, target: { ...ceiling.target, id: 'ceiling-variants' } },
          ...plans.filter((p) => !headlineIds.has(p.target.id)),
        ],
        headline: false,
      },
    ];
    const meters = new Map<string, Meter>();
    const ratios = new Map<
      string,
      Partial<Record<'vsCeiling' | 'vsExpress' | 'vsFastify', number>>
    >();
    for (const group of groups) {
      const seconds = group.headline ? settings.headlineSeconds : settings.variantSeconds;
      const rounds = group.headline ? settings.headlineRounds : settings.variantRounds;
      ctx.log(
        `throughput (${group.name}): ${group.plans.length} targets × ${seconds} s in ${rounds} interleaved rounds`,
      );
      const found = await compare(
        group.plans.map((p) => p.target),
        {
          secondsPerTarget: seconds,
          rounds,
          warmupSeconds: settings.warmupSeconds,
          progress: (t, s, round) => {
            if (!ctx.verbose) return;
            ctx.log(
              `  r${round + 1} ${t.id.padEnd(34)} ${Math.round((s.ok * 1000) / s.ms)
                .toString()
                .padStart(
                  7,
                )} req/s${s.non2xx + s.errors > 0 ? `  (${s.non2xx} non-2xx, ${s.errors} errors)` : ''}`,
            );
          },
        },
      );
      const ref = found.get(group.headline ? 'ceiling' : 'ceiling-variants') as Meter;
      const express = found.get('express-incr');
      const fastify = found.get('fastify-incr');
      for (const [id, meter] of found) {
        if (id === 'ceiling-variants') continue;
        meters.set(id, meter);
        ratios.set(id, {
          vsCeiling: meter.ratioTo(ref),
          ...(express && id !== 'express-incr' ? { vsExpress: meter.ratioTo(express) } : {}),
          ...(fastify && id !== 'fastify-incr' ? { vsFastify: meter.ratioTo(fastify) } : {}),
        });
      }
    }

    const rows: ThroughputRow[] = [];
    for (const plan of plans) {
      const meter = meters.get(plan.target.id);
      if (meter === undefined) continue;
      let result = null;
      if (plan.stored) {
        const stored = await plan.stored();
        result = check(stored.what, meter.acknowledged, stored.sum, meter.uncertain);
        if (!result.ok) {
          ctx.fail(
            `${plan.row.label}: stored ${stored.sum}, acknowledged ${meter.acknowledged}` +
              (meter.uncertain > 0 ? ` (+${meter.uncertain} uncertain)` : ''),
          );
        }
      }
      const cmd = commands.get(plan.target.id);
      rows.push({
        ...plan.row,
        reqPerSec: meter.rate,
        p50Ms: meter.percentile(0.5),
        p99Ms: meter.percentile(0.99),
        requests: meter.ok + meter.non2xx,
        non2xx: meter.non2xx,
        errors: meter.errors,
        vsCeiling: ratios.get(plan.target.id)?.vsCeiling ?? null,
        ...(ratios.get(plan.target.id)?.vsExpress === undefined
          ? {}
          : { vsExpress: ratios.get(plan.target.id)?.vsExpress }),
        ...(ratios.get(plan.target.id)?.vsFastify === undefined
          ? {}
          : { vsFastify: ratios.get(plan.target.id)?.vsFastify }),
        ...(roundTrips.get(plan.target.id)?.increments
          ? {
              storeRoundTripsPerIncrement:
                (roundTrips.get(plan.target.id)?.batches ?? 0) /
                (roundTrips.get(plan.target.id)?.increments ?? 1),
            }
          : {}),
        ...(cmd && cmd.increments > 0
          ? {
              commandsPerIncrement: cmd.all / cmd.increments,
              scriptCallsPerIncrement: cmd.scripts / cmd.increments,
              commandsByName: Object.fromEntries(
                [...cmd.byCommand].sort((a, b) => b[1] - a[1]).map(([k, v]) => [k, v]),
              ),
            }
          : {}),
        coresUsed: meter.coresUsed(),
        check: result,
      });
    }
    // A server that logged errors or did not stop cleanly is a failure even if the sums match.
    for (const service of services) {
      const code = await service.stop('SIGTERM');
      if (code !== 0) ctx.fail(`${service.name} exited with ${code} after SIGTERM`);
      if (/"level":(50|60)/.test(service.output())) {
        ctx.fail(`${service.name} logged errors:\n${service.output().slice(-2000)}`);
      }
    }
    return rows;
  } finally {
    await Promise.all(services.map((s) => s.stop()));
    if ('url' in database) await database.drop();
  }
}

function walId(wal: boolean | null): string {
  return wal === null ? '' : wal ? '-wal' : '-nowal';
}
