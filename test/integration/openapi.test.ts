// The OpenAPI document: valid OpenAPI 3.1, built from every route (none undescribed), and true of
// every route: this file calls each operation (a success and its refusals), and testApp checks
// each answer against the document (helpers/openapi-check.ts; every other HTTP test file is
// checked the same way). The live streams are hijacked, so their answers are checked here.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Validator } from '@seriousme/openapi-schema-validator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tally } from '../../src/app.js';
import { ADMIN_TOKEN, testApp } from '../helpers/app.js';
import { ContractChecker, seen, violations } from '../helpers/openapi-check.js';
import { MAIN } from '../helpers/server-process.js';

const run = promisify(execFile);

let tally: Tally;
let doc: {
  paths: Record<string, Record<string, { summary: string; responses: Record<string, unknown> }>>;
};
beforeAll(async () => {
  tally = await testApp({ adminToken: ADMIN_TOKEN, benchRoutes: true, uniques: true });
  const res = await tally.app.inject('/openapi.json');
  expect(res.statusCode).toBe(200);
  doc = res.json();
});
afterAll(async () => {
  await tally.close();
});

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
type Call = [method: string, url: string, body?: unknown, headers?: Record<string, string>];

async function call(...[method, url, body, headers = {}]: Call) {
  return tally.app.inject({
    method: method as 'GET',
    url,
    headers,
    ...(body === undefined ? {} : { payload: body as object }),
  });
}

describe('the document', () => {
  it('is valid OpenAPI 3.1', async () => {
    const result = await new Validator().validate(doc as unknown as Record<string, unknown>);
    expect(result).toEqual({ valid: true });
    expect((doc as unknown as { openapi: string }).openapi).toBe('3.1.0');
  });

  it('describes every route the server has', () => {
    const undescribed = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.entries(item)
        .filter(([, op]) => op.summary === 'Undocumented')
        .map(([method]) => `${method} ${path}`),
    );
    expect(undescribed).toEqual([]);
    // Every route of the app is in it: printRoutes lists what Fastify would answer.
    const operations = Object.values(doc.paths).reduce(
      (n, item) => n + Object.keys(item).length,
      0,
    );
    expect(operations).toBeGreaterThanOrEqual(60);
  });
});

// A success and the refusals of every operation, with the answers checked by testApp's hook.
const CALLS: Call[] = [
  ['GET', '/healthz'],
  ['GET', '/readyz'],
  ['GET', '/metrics'],
  ['GET', '/openapi.json'],
  ['GET', '/docs'],
  ['POST', '/api/v1/noop'],
  // counters, flat
  ['POST', '/api/v1/counters/oa/increment'],
  ['POST', '/api/v1/counters/oa/increment?consistency=strong', { by: 1 }, admin],
  ['POST', '/api/v1/counters/oa/increment', { by: 'x' }],
  ['POST', '/api/v1/counters/oa/increment', { by: 1e16 }],
  ['POST', '/api/v1/counters/oa/increment', { by: 5 }],
  ['POST', '/api/v1/counters/oa/increment', { what: 1 }],
  ['POST', '/api/v1/counters/oa/increment?consistency=maybe'],
  ['POST', '/api/v1/counters/oa/increment', '{"by":', { 'content-type': 'application/json' }],
  ['POST', '/api/v1/counters/oa/increment', 'by=1', { 'content-type': 'text/plain' }],
  ['POST', '/api/v1/counters/bad name/increment'],
  ['POST', '/api/v1/counters/oa/increment', {}, { 'idempotency-key': 'k-1' }],
  ['POST', '/api/v1/counters/oa/increment', {}, { 'idempotency-key': 'k-1' }],
  ['POST', '/api/v1/counters/oa/increment', { by: 2 }, { 'idempotency-key': 'k-1' }],
  ['POST', '/api/v1/counters/oa/increment', {}, { 'idempotency-key': '' }],
  ['GET', '/api/v1/counters/oa'],
  ['GET', '/api/v1/counters/oa?consistency=strong'],
  ['GET', '/api/v1/counters/oa?consistency=x'],
  ['GET', '/api/v1/counters/-bad'],
  ['PUT', '/api/v1/counters/oa', { value: 10 }, admin],
  ['PUT', '/api/v1/counters/oa', { value: 10 }],
  ['PUT', '/api/v1/counters/oa', { value: 1.5 }, admin],
  ['PUT', '/api/v1/counters/oa', {}, admin],
  ['PUT', '/api/v1/counters/oa', { value: 10 }, { authorization: 'Bearer wrong' }],
  ['GET', '/api/v1/counters/oa/info'],
  ['GET', '/api/v1/counters/never-made/info'],
  ['DELETE', '/api/v1/counters/oa', undefined, admin],
  ['DELETE', '/api/v1/counters/oa'],
  ['DELETE', '/api/v1/counters/oa', '{"x":', { ...admin, 'content-type': 'application/json' }],
  ['DELETE', '/api/v1/namespaces/oa-open/counters/x', 'x', { 'content-type': 'text/plain' }],
  // namespaces
  ['POST', '/api/v1/namespaces/oa-ns', {}, {}],
  ['POST', '/api/v1/namespaces/oa-ns', {}, {}],
  ['POST', '/api/v1/namespaces/default', {}, {}],
  ['POST', '/api/v1/namespaces/oa-open/counters/made', { value: 5, update_upperbound: 3 }],
  ['POST', '/api/v1/namespaces/oa-open/counters/made', {}],
  [
    'POST',
    '/api/v1/namespaces/oa-open/counters/bad',
    { update_lowerbound: 5, update_upperbound: 1 },
  ],
  ['POST', '/api/v1/namespaces/oa-ns/counters/theirs', {}],
  ['POST', '/api/v1/namespaces/oa-open/counters/made/increment', { by: 3 }],
  ['POST', '/api/v1/namespaces/oa-open/counters/made/increment', { by: 4 }],
  ['POST', '/api/v1/namespaces/b@d/counters/made/increment'],
  ['GET', '/api/v1/namespaces/oa-open/counters/made'],
  ['GET', '/api/v1/namespaces/oa-open/counters/made/info'],
  ['GET', '/api/v1/namespaces/oa-open/counters/none/info'],
  ['PUT', '/api/v1/namespaces/oa-open/counters/made', { value: 1 }, admin],
  ['PUT', '/api/v1/namespaces/oa-open/counters/made', { value: 1 }],
  ['DELETE', '/api/v1/namespaces/oa-open/counters/made', undefined, admin],
  ['DELETE', '/api/v1/namespaces/oa-open/counters/made', undefined, { authorization: 'Bearer x' }],
  [
    'POST',
    '/api/v1/increments',
    { increments: [{ name: 'oa-b' }, { name: 'blog/x', by: 2 }] },
    admin,
  ],
  ['POST', '/api/v1/increments?consistency=strong', { increments: [{ name: 'oa-b' }] }, admin],
  ['POST', '/api/v1/increments', { increments: [] }, admin],
  ['POST', '/api/v1/increments', { increments: [{ name: 'bad name' }] }, admin],
  [
    'POST',
    '/api/v1/increments',
    { increments: Array.from({ length: 1001 }, () => ({ name: 'a' })) },
    admin,
  ],
  ['POST', '/api/v1/increments', { increments: [{ name: 'oa-b' }] }],
  ['GET', '/api/v1/counters?limit=2'],
  ['GET', '/api/v1/counters?prefix=oa'],
  ['GET', '/api/v1/counters?limit=0'],
  ['GET', '/api/v1/counters?cursor=zzz'],
  ['GET', '/api/v1/namespaces/blog/counters'],
  ['GET', '/api/v1/namespaces/default/counters?limit=1'],
  ['GET', '/api/v1/namespaces/b@d/counters'],
  // history
  ['GET', '/api/v1/counters/oa-b/history'],
  ['GET', '/api/v1/counters/oa-b/history?granularity=day&format=csv'],
  ['GET', '/api/v1/counters/oa-b/history?granularity=day'],
  ['GET', '/api/v1/counters/oa-b/history?granularity=week'],
  ['GET', '/api/v1/namespaces/blog/counters/x/history?granularity=minute'],
  ['GET', '/api/v1/namespaces/blog/counters/x/history?from=2020-01-01&granularity=minute'],
  ['GET', '/api/v1/namespaces/blog/top'],
  ['GET', '/api/v1/namespaces/blog/top?by=day&limit=3'],
  ['GET', '/api/v1/namespaces/blog/top?by=week'],
  // badges
  ['GET', '/badge/blog/post.svg'],
  ['GET', '/badge/blog/post.json?show=uniques'],
  ['GET', '/badge/home.svg?count=false&style=social'],
  ['GET', '/badge/home.svg?style=round'],
  ['GET', '/badge/home.json?color=notacolor'],
  ['GET', '/badge/home.png'],
  // CountAPI
  ['GET', '/countapi/hit/oa-key'],
  ['GET', '/countapi/hit/oa-ns/oa-key?callback=cb'],
  ['GET', '/countapi/hit/oa-ns/oa-key?img'],
  ['GET', '/countapi/hit/ab'],
  ['GET', '/countapi/hit/ab?callback=cb'],
  ['GET', '/countapi/get/oa-key'],
  ['GET', '/countapi/get/oa-ns/none-such'],
  ['GET', '/countapi/set/oa-key?value=5'],
  ['GET', '/countapi/set/oa-ns/none-such?value=5'],
  ['GET', '/countapi/set/oa-key?value=x'],
  ['GET', '/countapi/update/oa-key?amount=1'],
  ['GET', '/countapi/update/oa-ns/oa-key?amount=50'],
  ['GET', '/countapi/update/oa-ns/none-such?amount=1'],
  ['GET', '/countapi/info/oa-key'],
  ['GET', '/countapi/info/oa-ns/none-such'],
  ['GET', '/countapi/create?namespace=oa-ns&key=made&value=3'],
  ['GET', '/countapi/create?namespace=oa-ns&key=made'],
  ['GET', '/countapi/create?update_upperbound=-1'],
  ['GET', '/countapi/stats'],
  // Abacus
  ['GET', '/abacus/hit/oa-ns/oa-key'],
  ['GET', '/abacus/hit/oa-ns/oa-key?callback=cb'],
  ['GET', '/abacus/hit/oa/oa-key'],
  ['GET', '/abacus/get/oa-ns/oa-key'],
  ['GET', '/abacus/get/oa-ns/none-such'],
  ['GET', '/abacus/create/ab-ns/ab-made?initializer=4'],
  ['POST', '/abacus/create/ab-ns/ab-made'],
  ['GET', '/abacus/create/ab-made2'],
  ['POST', '/abacus/create/ab-made3?initializer=x'],
  ['GET', '/abacus/info/ab-ns/ab-made'],
  ['GET', '/abacus/info/none-such'],
  ['POST', '/abacus/set/ab-ns/ab-made?value=9', undefined, admin],
  ['POST', '/abacus/set/ab-ns/ab-made?value=9'],
  ['POST', '/abacus/set/ab-made2?value=9&token=wrong'],
  ['POST', '/abacus/reset/ab-ns/ab-made', undefined, admin],
  ['POST', '/abacus/reset/ab-made2', undefined, admin],
  ['POST', '/abacus/update/ab-ns/ab-made?value=2', undefined, admin],
  ['POST', '/abacus/update/ab-made2?value=0', undefined, admin],
  ['POST', '/abacus/delete/ab-ns/ab-made', undefined, admin],
  ['POST', '/abacus/delete/ab-made2', undefined, admin],
  ['POST', '/abacus/delete/oa-key', undefined, { authorization: 'Bearer nope' }],
  ['POST', '/abacus/set/oa-key?value=1', 'x', { 'content-type': 'text/plain' }],
  ['GET', '/abacus/hit/oa-ns/oa-key/shield?text=views'],
  ['GET', '/abacus/get/oa-ns/oa-key/shield?bgcolor=nope'],
  ['GET', '/abacus/get/oa-ns/none-such/shield'],
  ['GET', '/abacus/stream/x'],
  ['GET', '/abacus/stats'],
  ['GET', '/abacus/healthcheck'],
  // pages
  ['GET', '/favicon.ico'],
  ['GET', '/'],
  ['GET', '/dashboard'],
  ['GET', '/c/blog/post'],
  ['GET', '/c/-nope'],
  ['GET', '/embed.js'],
  ['GET', '/embed/blog/post?mode=like'],
  ['GET', '/embed/blog/post?mode=dance'],
  ['GET', '/assets/tally.css'],
  ['GET', '/assets/nope.css'],
  ['GET', '/api/v1/counters/-bad/events'],
];

describe('tally openapi', () => {
  it('prints the document the server answers, without a server', async () => {
    const { stdout } = await run(process.execPath, [MAIN, 'openapi'], {
      env: { ...process.env, TALLY_BENCH_ROUTES: 'true' },
    });
    const printed = JSON.parse(stdout) as typeof doc;
    expect(printed).toEqual(doc);
  });
});

describe('every operation', () => {
  it('answers only what the document describes, for every route', async () => {
    for (const c of CALLS) await call(...c);
    // Revalidation: pages and assets answer 304 to their own ETag.
    for (const url of [
      '/',
      '/dashboard',
      '/docs',
      '/c/blog/post',
      '/embed.js',
      '/embed/blog/post',
      '/assets/tally.css',
    ]) {
      const first = await call('GET', url);
      await call('GET', url, undefined, { 'if-none-match': String(first.headers.etag) });
    }
    if (process.env.OA_DUMP) console.log([...seen].join('\n'));
    expect(violations).toEqual([]);
  });

  it('answers the live streams as documented', async () => {
    const checker = new ContractChecker(doc);
    const address = await tally.app.listen({ port: 0, host: '127.0.0.1' });
    for (const [route, url] of [
      ['/api/v1/counters/:name/events', '/api/v1/counters/oa-b/events'],
      ['/api/v1/namespaces/:ns/counters/:key/events', '/api/v1/namespaces/blog/counters/x/events'],
      ['/abacus/stream/:ns/:key', '/abacus/stream/oa-ns/oa-key'],
      ['/abacus/stream/:key', '/abacus/stream/oa-key'],
    ] as const) {
      const ac = new AbortController();
      const res = await fetch(`${address}${url}`, { signal: ac.signal });
      expect(
        checker.check('GET', route, res.status, res.headers.get('content-type') ?? '', 'x'),
      ).toBe(undefined);
      ac.abort();
    }
  });

  it('reached every operation of the document', () => {
    const reached = new Set([...seen].map((s) => s.split(' ').slice(0, 2).join(' ')));
    for (const s of [
      '/api/v1/counters/{name}/events',
      '/api/v1/namespaces/{ns}/counters/{key}/events',
      '/abacus/stream/{ns}/{key}',
      '/abacus/stream/{key}',
    ]) {
      reached.add(`GET ${s}`);
    }
    const missing = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.keys(item)
        .map((m) => `${m.toUpperCase()} ${path}`)
        .filter((op) => !reached.has(op)),
    );
    expect(missing).toEqual([]);
  });
});
