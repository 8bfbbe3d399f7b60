import { afterEach, describe, expect, it } from 'vitest';
import type { Tally } from '../../src/app.js';
import { ADMIN_TOKEN, testApp } from '../helpers/app.js';

let tally: Tally | undefined;
afterEach(async () => {
  await tally?.close();
  tally = undefined;
});

async function make(overrides = {}) {
  tally = await testApp(overrides);
  return tally;
}

function inc(t: Tally, name: string, body?: unknown, query = '') {
  return t.app.inject({
    method: 'POST',
    url: `/api/v1/counters/${name}/increment${query}`,
    ...(body === undefined
      ? {}
      : { payload: body as object, headers: { 'content-type': 'application/json' } }),
  });
}

describe('increments and reads', () => {
  it('increments by 1 with no body and answers 202 with the estimate', async () => {
    const t = await make();
    const r = await inc(t, 'clicks');
    expect(r.statusCode).toBe(202);
    expect(r.json()).toEqual({ name: 'clicks', value: 1 });
    const r2 = await inc(t, 'clicks', { by: 41 });
    expect(r2.json()).toEqual({ name: 'clicks', value: 42 });
  });

  it('decrements with a negative by', async () => {
    const t = await make();
    await inc(t, 'v', { by: 10 });
    const r = await inc(t, 'v', { by: -3 });
    expect(r.json().value).toBe(7);
  });

  it('strong increments answer 200 with the stored value', async () => {
    const t = await make();
    await inc(t, 's', { by: 2 });
    const r = await inc(t, 's', { by: 3 }, '?consistency=strong');
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({ name: 's', value: 5 });
    expect(await t.store.get('s')).toBe(5);
  });

  it('reads 0 for a counter never written', async () => {
    const t = await make();
    const r = await t.app.inject({ method: 'GET', url: '/api/v1/counters/nothing' });
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({ name: 'nothing', value: 0 });
  });

  it('strong reads flush pending increments first (read-your-writes)', async () => {
    const t = await make({ flushIntervalMs: 60_000 });
    for (let i = 0; i < 5; i++) await inc(t, 'ryw');
    expect(await t.store.get('ryw')).toBe(0);
    const r = await t.app.inject({ method: 'GET', url: '/api/v1/counters/ryw?consistency=strong' });
    expect(r.json()).toEqual({ name: 'ryw', value: 5 });
    expect(await t.store.get('ryw')).toBe(5);
  });

  it('eventual reads include this instance’s pending increments', async () => {
    const t = await make({ flushIntervalMs: 60_000 });
    await inc(t, 'p', { by: 4 });
    const r = await t.app.inject({ method: 'GET', url: '/api/v1/counters/p' });
    expect(r.json().value).toBe(4);
  });

  it('accepts a batch of increments all-or-nothing', async () => {
    const t = await make();
    const ok = await t.app.inject({
      method: 'POST',
      url: '/api/v1/increments',
      payload: { increments: [{ name: 'a', by: 2 }, { name: 'b' }, { name: 'a', by: 3 }] },
    });
    expect(ok.statusCode).toBe(202);
    expect(ok.json()).toEqual({ accepted: 3 });
    const bad = await t.app.inject({
      method: 'POST',
      url: '/api/v1/increments',
      payload: {
        increments: [
          { name: 'a', by: 1 },
          { name: 'bad name', by: 1 },
        ],
      },
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.code).toBe('INVALID_NAME');
    expect(bad.json().error.message).toContain('increments[1]');
    const r = await t.app.inject({ method: 'GET', url: '/api/v1/counters/a?consistency=strong' });
    expect(r.json().value).toBe(5);
  });

  it('lists counters by prefix with pagination', async () => {
    const t = await make();
    const names = ['page:a', 'page:b', 'page:c', 'other'];
    await t.app.inject({
      method: 'POST',
      url: '/api/v1/increments?consistency=strong',
      payload: { increments: names.map((name) => ({ name, by: 1 })) },
    });
    const p1 = await t.app.inject({ method: 'GET', url: '/api/v1/counters?prefix=page:&limit=2' });
    expect(p1.statusCode).toBe(200);
    const j1 = p1.json();
    expect(j1.items.map((i: { name: string }) => i.name)).toEqual(['page:a', 'page:b']);
    expect(j1.nextCursor).toEqual(expect.any(String));
    const p2 = await t.app.inject({
      method: 'GET',
      url: `/api/v1/counters?prefix=page:&limit=2&cursor=${j1.nextCursor}`,
    });
    expect(p2.json()).toEqual({ items: [{ name: 'page:c', value: 1 }], nextCursor: null });
  });
});

describe('admin routes', () => {
  it('are closed (403) when no admin token is configured', async () => {
    const t = await make();
    const put = await t.app.inject({
      method: 'PUT',
      url: '/api/v1/counters/x',
      payload: { value: 1 },
    });
    expect(put.statusCode).toBe(403);
    expect(put.json().error.code).toBe('ADMIN_DISABLED');
    const del = await t.app.inject({ method: 'DELETE', url: '/api/v1/counters/x' });
    expect(del.statusCode).toBe(403);
  });

  it('need the right bearer token', async () => {
    const t = await make({ adminToken: ADMIN_TOKEN });
    for (const authorization of [
      undefined,
      'Bearer wrong-token-000000000',
      ADMIN_TOKEN,
      `Basic ${ADMIN_TOKEN}`,
    ]) {
      const r = await t.app.inject({
        method: 'PUT',
        url: '/api/v1/counters/x',
        payload: { value: 1 },
        headers: authorization ? { authorization } : {},
      });
      expect(r.statusCode).toBe(401);
      expect(r.json().error.code).toBe('UNAUTHORIZED');
      expect(r.headers['www-authenticate']).toBe('Bearer');
    }
    expect(await t.store.get('x')).toBe(0);
  });

  it('set applies earlier increments first, later ones after', async () => {
    const t = await make({ adminToken: ADMIN_TOKEN, flushIntervalMs: 60_000 });
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
    await inc(t, 'x', { by: 5 });
    const put = await t.app.inject({
      method: 'PUT',
      url: '/api/v1/counters/x',
      payload: { value: 100 },
      headers: auth,
    });
    expect(put.statusCode).toBe(200);
    expect(put.json()).toEqual({ name: 'x', value: 100 });
    await inc(t, 'x', { by: 2 });
    const r = await t.app.inject({ method: 'GET', url: '/api/v1/counters/x?consistency=strong' });
    expect(r.json().value).toBe(102);
    const del = await t.app.inject({ method: 'DELETE', url: '/api/v1/counters/x', headers: auth });
    expect(del.json()).toEqual({ name: 'x', deleted: true });
    const after = await t.app.inject({
      method: 'GET',
      url: '/api/v1/counters/x?consistency=strong',
    });
    expect(after.json().value).toBe(0);
    const again = await t.app.inject({
      method: 'DELETE',
      url: '/api/v1/counters/x',
      headers: auth,
    });
    expect(again.json()).toEqual({ name: 'x', deleted: false });
  });
});

describe('bad input: 4xx with a stable code, nothing changes', () => {
  const cases: Array<
    [
      string,
      { url: string; method?: 'POST' | 'GET' | 'PUT'; payload?: string; type?: string },
      number,
      string,
    ]
  > = [
    ['invalid name', { url: '/api/v1/counters/-bad/increment' }, 400, 'INVALID_NAME'],
    ['name with a space', { url: '/api/v1/counters/a%20b/increment' }, 400, 'INVALID_NAME'],
    [
      'name too long',
      { url: `/api/v1/counters/${'a'.repeat(129)}/increment` },
      400,
      'INVALID_NAME',
    ],
    ['unicode name', { url: '/api/v1/counters/%C3%A9t%C3%A9/increment' }, 400, 'INVALID_NAME'],
    [
      'malformed JSON',
      { url: '/api/v1/counters/ok/increment', payload: '{"by":' },
      400,
      'INVALID_JSON',
    ],
    [
      'body not an object',
      { url: '/api/v1/counters/ok/increment', payload: '[1]' },
      400,
      'INVALID_BODY',
    ],
    [
      'string by',
      { url: '/api/v1/counters/ok/increment', payload: '{"by":"1"}' },
      400,
      'INVALID_NUMBER',
    ],
    [
      'fractional by',
      { url: '/api/v1/counters/ok/increment', payload: '{"by":1.5}' },
      400,
      'INVALID_NUMBER',
    ],
    [
      'null by',
      { url: '/api/v1/counters/ok/increment', payload: '{"by":null}' },
      400,
      'INVALID_NUMBER',
    ],
    [
      'huge by',
      { url: '/api/v1/counters/ok/increment', payload: '{"by":1000000001}' },
      400,
      'NUMBER_OUT_OF_RANGE',
    ],
    [
      '1e400 by',
      { url: '/api/v1/counters/ok/increment', payload: '{"by":1e400}' },
      400,
      'INVALID_NUMBER',
    ],
    [
      'unknown field',
      { url: '/api/v1/counters/ok/increment', payload: '{"by":1,"x":1}' },
      400,
      'UNKNOWN_FIELD',
    ],
    [
      '__proto__ field',
      { url: '/api/v1/counters/ok/increment', payload: '{"__proto__":{"by":5}}' },
      400,
      'UNKNOWN_FIELD',
    ],
    [
      'wrong content type',
      {
        url: '/api/v1/counters/ok/increment',
        payload: 'by=1',
        type: 'application/x-www-form-urlencoded',
      },
      415,
      'UNSUPPORTED_MEDIA_TYPE',
    ],
    [
      'bad consistency',
      { url: '/api/v1/counters/ok/increment?consistency=maybe' },
      400,
      'INVALID_QUERY',
    ],
    [
      'empty batch',
      { url: '/api/v1/increments', payload: '{"increments":[]}' },
      400,
      'INVALID_BODY',
    ],
    [
      'batch of 1001',
      {
        url: '/api/v1/increments',
        payload: JSON.stringify({
          increments: Array.from({ length: 1001 }, () => ({ name: 'ok' })),
        }),
      },
      400,
      'BATCH_TOO_LARGE',
    ],
    [
      'batch not an array',
      { url: '/api/v1/increments', payload: '{"increments":{}}' },
      400,
      'INVALID_BODY',
    ],
    [
      'batch item not an object',
      { url: '/api/v1/increments', payload: '{"increments":[1]}' },
      400,
      'INVALID_BODY',
    ],
    [
      'oversized body',
      {
        url: '/api/v1/increments',
        payload: JSON.stringify({ increments: [{ name: 'ok', by: 1, pad: 'x'.repeat(300_000) }] }),
      },
      413,
      'BODY_TOO_LARGE',
    ],
    ['bad list limit', { method: 'GET', url: '/api/v1/counters?limit=0' }, 400, 'INVALID_QUERY'],
    [
      'bad list prefix',
      { method: 'GET', url: '/api/v1/counters?prefix=%00' },
      400,
      'INVALID_QUERY',
    ],
    ['unknown route', { method: 'GET', url: '/api/v1/nope' }, 404, 'NOT_FOUND'],
  ];

  it.each(cases)('%s', async (_label, req, status, code) => {
    const t = await make({ adminToken: ADMIN_TOKEN });
    const r = await t.app.inject({
      method: req.method ?? 'POST',
      url: req.url,
      ...(req.payload === undefined
        ? {}
        : { payload: req.payload, headers: { 'content-type': req.type ?? 'application/json' } }),
    });
    expect(r.statusCode).toBe(status);
    const body = r.json();
    expect(body.error.code).toBe(code);
    expect(body.error.message).toEqual(expect.any(String));
    expect(body.error.requestId).toEqual(expect.any(String));
    const list = await t.app.inject({ method: 'GET', url: '/api/v1/counters?consistency=strong' });
    expect(list.json().items).toEqual([]);
    expect(t.aggregator.pendingIncrements()).toBe(0);
  });

  it('refuses an increment that would leave ±(2^53-1) and keeps the value', async () => {
    const t = await make({ adminToken: ADMIN_TOKEN });
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
    await t.app.inject({
      method: 'PUT',
      url: '/api/v1/counters/edge',
      payload: { value: Number.MAX_SAFE_INTEGER - 1 },
      headers: auth,
    });
    expect((await inc(t, 'edge', { by: 1 })).statusCode).toBe(202);
    const r = await inc(t, 'edge', { by: 1 });
    expect(r.statusCode).toBe(422);
    expect(r.json().error.code).toBe('COUNTER_OVERFLOW');
    const v = await t.app.inject({
      method: 'GET',
      url: '/api/v1/counters/edge?consistency=strong',
    });
    expect(v.json().value).toBe(Number.MAX_SAFE_INTEGER);
    const setTooBig = await t.app.inject({
      method: 'PUT',
      url: '/api/v1/counters/edge',
      payload: { value: 2 ** 53 },
      headers: auth,
    });
    expect(setTooBig.json().error.code).toBe('NUMBER_OUT_OF_RANGE');
  });
});

describe('health and metrics', () => {
  it('healthz, readyz and metrics answer', async () => {
    const t = await make();
    await inc(t, 'm');
    expect((await t.app.inject({ url: '/healthz' })).json()).toEqual({ status: 'ok' });
    const ready = await t.app.inject({ url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json().status).toBe('ready');
    await t.app.inject({ url: '/api/v1/counters/m?consistency=strong' });
    const m = await t.app.inject({ url: '/metrics' });
    expect(m.statusCode).toBe(200);
    const text = m.body;
    expect(text).toMatch(/tally_increments_accepted_total\{consistency="eventual"\} 1/);
    expect(text).toMatch(/tally_batches_flushed_total [1-9]/);
    expect(text).toContain('tally_flush_duration_seconds_bucket');
    expect(text).toContain('tally_pending_deltas');
    expect(text).toContain('tally_flush_failures_total 0');
    expect(text).toContain('tally_sse_clients');
    expect(text).toMatch(
      /tally_http_requests_total\{route="\/api\/v1\/counters\/:name\/increment",method="POST",status="202"\} 1/,
    );
    // Counted on the hot path, copied at scrape time: totals keep growing, never doubled.
    await inc(t, 'm');
    await inc(t, 'm');
    const again = (await t.app.inject({ url: '/metrics' })).body;
    expect(again).toMatch(/tally_increments_accepted_total\{consistency="eventual"\} 3\n/);
    expect(again).toMatch(
      /tally_http_requests_total\{route="\/api\/v1\/counters\/:name\/increment",method="POST",status="202"\} 3\n/,
    );
    expect(again).toMatch(
      /tally_http_requests_total\{route="\/metrics",method="GET",status="200"\} 1\n/,
    );
    // Errors are counted under their route with their final status, unmatched paths as such.
    await t.app.inject({
      method: 'POST',
      url: '/api/v1/counters/m/increment',
      headers: { 'content-type': 'application/json' },
      payload: '{"by":',
    });
    await t.app.inject({ url: '/nope' });
    const errors = (await t.app.inject({ url: '/metrics' })).body;
    expect(errors).toMatch(
      /tally_http_requests_total\{route="\/api\/v1\/counters\/:name\/increment",method="POST",status="400"\} 1\n/,
    );
    expect(errors).toMatch(
      /tally_http_requests_total\{route="unmatched",method="GET",status="404"\} 1\n/,
    );
  });

  it('readyz answers 503 when the store is unreachable', async () => {
    const t = await make();
    t.store.ping = async () => {
      throw new Error('connection refused');
    };
    const r = await t.app.inject({ url: '/readyz' });
    expect(r.statusCode).toBe(503);
    expect(r.json().problems[0]).toContain('store unreachable');
  });
});

describe('server-sent events', () => {
  it('sends the current value, then changes, and cleans up on disconnect', async () => {
    const t = await make();
    await inc(t, 'live', { by: 7 }, '?consistency=strong');
    const address = await t.app.listen({ port: 0, host: '127.0.0.1' });
    const ac = new AbortController();
    const res = await fetch(`${address}/api/v1/counters/live/events`, { signal: ac.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    const waitFor = async (needle: string) => {
      const deadline = Date.now() + 5000;
      while (!text.includes(needle)) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${needle} in ${text}`);
        const { value, done } = await reader.read();
        if (done) throw new Error('stream ended');
        text += decoder.decode(value);
      }
    };
    await waitFor('"value":7');
    expect(t.hub.size).toBe(1);
    await fetch(`${address}/api/v1/counters/live/increment`, { method: 'POST' });
    await waitFor('"value":8');
    expect(text).toMatch(/event: value\ndata: \{"name":"live","value":8\}/);
    ac.abort();
    const deadline = Date.now() + 2000;
    while (t.hub.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(t.hub.size).toBe(0);
  });

  it('sends heartbeat comments', async () => {
    const t = await make({ sseHeartbeatMs: 100 });
    const address = await t.app.listen({ port: 0, host: '127.0.0.1' });
    const ac = new AbortController();
    const res = await fetch(`${address}/api/v1/counters/hb/events`, { signal: ac.signal });
    const reader = res.body!.getReader();
    let text = '';
    const deadline = Date.now() + 3000;
    while (!text.includes(': heartbeat') && Date.now() < deadline) {
      const { value } = await reader.read();
      text += new TextDecoder().decode(value);
    }
    ac.abort();
    expect(text).toContain(': heartbeat');
  });

  it('refuses streams past the per-instance limit', async () => {
    const t = await make({ maxSseClients: 1 });
    const address = await t.app.listen({ port: 0, host: '127.0.0.1' });
    const ac = new AbortController();
    const first = await fetch(`${address}/api/v1/counters/a/events`, { signal: ac.signal });
    expect(first.status).toBe(200);
    const second = await fetch(`${address}/api/v1/counters/a/events`);
    expect(second.status).toBe(503);
    expect((await second.json()).error.code).toBe('TOO_MANY_SSE_CLIENTS');
    ac.abort();
  });
});
