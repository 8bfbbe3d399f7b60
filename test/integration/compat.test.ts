// CountAPI- and Abacus-compatible routes over real HTTP (a listening server, fetch): every route
// and every status code each API documents (docs/compat.md), and TALLY_COMPAT_ROOT.
import { afterEach, describe, expect, it } from 'vitest';
import type { Tally } from '../../src/app.js';
import type { ConfigInput } from '../../src/config.js';
import { ADMIN_TOKEN, testApp } from '../helpers/app.js';
import { sseReader } from '../helpers/sse.js';

let tally: Tally | undefined;
let base = '';
afterEach(async () => {
  await tally?.close();
  tally = undefined;
});

async function serve(overrides: ConfigInput = {}): Promise<string> {
  // Public writes as on a server others reach: keyless clients may only add 1.
  tally = await testApp({ adminToken: ADMIN_TOKEN, publicWrites: 'hits', ...overrides });
  const address = await tally.app.listen({ port: 0, host: '127.0.0.1' });
  base = address;
  return address;
}

async function get(path: string, headers: Record<string, string> = {}) {
  const r = await fetch(`${base}${path}`, { headers });
  const text = await r.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: r.status, headers: r.headers, text, json: json as Record<string, unknown> };
}

async function post(path: string, headers: Record<string, string> = {}) {
  const r = await fetch(`${base}${path}`, { method: 'POST', headers });
  const text = await r.text();
  return {
    status: r.status,
    headers: r.headers,
    text,
    json: JSON.parse(text) as Record<string, unknown>,
  };
}

describe('CountAPI-compatible API under /countapi', () => {
  it('hit creates and counts, in the default namespace when none is given, with X-Path', async () => {
    await serve();
    const a = await get('/countapi/hit/visits');
    expect(a.status).toBe(200);
    expect(a.json).toEqual({ value: 1 });
    expect(a.headers.get('x-path')).toBe('default/visits');
    const b = await get('/countapi/hit/default/visits');
    expect(b.json).toEqual({ value: 2 });
    const c = await get('/countapi/hit/mysite.com/visits');
    expect(c.json).toEqual({ value: 1 });
    expect(c.headers.get('x-path')).toBe('mysite.com/visits');
    // The same counters through Tally's own API: default names are flat names.
    const native = await get('/api/v1/counters/visits?consistency=strong');
    expect(native.json.value).toBe(2);
    const namespaced = await get('/api/v1/namespaces/mysite.com/counters/visits');
    expect(namespaced.json.value).toBe(1);
  });

  it('get answers the value, and 404 {"value":null} for a missing key', async () => {
    await serve();
    await get('/countapi/hit/ns1/key1');
    expect((await get('/countapi/get/ns1/key1')).json).toEqual({ value: 1 });
    const missing = await get('/countapi/get/ns1/nope');
    expect(missing.status).toBe(404);
    expect(missing.json).toEqual({ value: null });
  });

  it('refuses names outside ^[A-Za-z0-9_\\-.]{3,64}$ with 400, changing nothing', async () => {
    await serve();
    for (const path of [
      '/countapi/hit/ab',
      '/countapi/hit/ns1/ab',
      `/countapi/hit/${'x'.repeat(65)}`,
      '/countapi/hit/a%20bc',
    ]) {
      const r = await get(path);
      expect(r.status, path).toBe(400);
      expect(r.json).toEqual({ error: 'Malformed Namespace/Key' });
    }
    expect((await get('/api/v1/counters?limit=10')).json.items).toEqual([]);
  });

  it('create: defaults, options, 200 {namespace,key,value}, 409 when taken, 400 on bad bounds', async () => {
    await serve();
    const r = await get('/countapi/create?namespace=shop&key=sales&value=40&enable_reset=1');
    expect(r.status).toBe(200);
    expect(r.json).toEqual({ namespace: 'shop', key: 'sales', value: 40 });
    expect(r.headers.get('x-admin-key')).toMatch(/^tk_/);
    expect((await get('/countapi/hit/shop/sales')).json).toEqual({ value: 41 });

    const random = await get('/countapi/create');
    expect(random.status).toBe(200);
    expect(random.json.namespace).toBe('default');
    expect(random.json.key).toMatch(/^[0-9a-f-]{36}$/);
    expect(random.json.value).toBe(0);

    const taken = await get('/countapi/create?namespace=shop&key=sales');
    expect(taken.status).toBe(409);
    expect(taken.json).toEqual({ namespace: null, key: null, value: null });
    // A counter made by hits is taken too.
    await get('/countapi/hit/shop/hits');
    expect((await get('/countapi/create?namespace=shop&key=hits')).status).toBe(409);

    expect((await get('/countapi/create?key=ab')).json).toEqual({
      error: 'Malformed Namespace/Key',
    });
    const up = await get('/countapi/create?key=bounds1&update_upperbound=-1');
    expect(up.status).toBe(400);
    expect(up.json).toEqual({ error: 'update_upperbound must be positive' });
    const low = await get('/countapi/create?key=bounds2&update_lowerbound=1');
    expect(low.json).toEqual({ error: 'update_lowerbound must be negative' });
    expect((await get('/countapi/get/bounds1')).status).toBe(404);
  });

  it('set: 200 {old_value,value} with enable_reset, 403 unchanged without, 404 missing', async () => {
    await serve();
    await get('/countapi/create?key=resettable&value=5&enable_reset=true');
    const ok = await get('/countapi/set/resettable?value=100');
    expect(ok.status).toBe(200);
    expect(ok.json).toEqual({ old_value: 5, value: 100 });
    expect((await get('/countapi/get/resettable')).json).toEqual({ value: 100 });

    await get('/countapi/create?key=fixed&value=7');
    const refused = await get('/countapi/set/fixed?value=0');
    expect(refused.status).toBe(403);
    expect(refused.json).toEqual({ old_value: 7, value: 7 });
    expect((await get('/countapi/get/fixed')).json).toEqual({ value: 7 });
    // The counter's admin key may set it anyway (Tally's addition).
    const created = await get('/countapi/create?key=keyed&value=1');
    const key = created.headers.get('x-admin-key') ?? '';
    const withKey = await get('/countapi/set/keyed?value=9', { authorization: `Bearer ${key}` });
    expect(withKey.json).toEqual({ old_value: 1, value: 9 });

    const missing = await get('/countapi/set/nothing?value=1');
    expect(missing.status).toBe(404);
    expect(missing.json).toEqual({ old_value: null, value: null });
    expect((await get('/countapi/set/fixed?value=abc')).status).toBe(400);
  });

  it('update: within the bounds 200, outside 403 with the unchanged value, missing 404', async () => {
    await serve();
    await get('/countapi/create?key=votes&update_lowerbound=-2&update_upperbound=5');
    expect((await get('/countapi/update/votes?amount=5')).json).toEqual({ value: 5 });
    expect((await get('/countapi/update/votes?amount=-2')).json).toEqual({ value: 3 });
    const over = await get('/countapi/update/votes?amount=6');
    expect(over.status).toBe(403);
    expect(over.json).toEqual({ value: 3 });
    // A counter made by hits allows 0..1, as CountAPI's did.
    await get('/countapi/hit/plain');
    expect((await get('/countapi/update/plain?amount=1')).json).toEqual({ value: 2 });
    expect((await get('/countapi/update/plain?amount=-1')).status).toBe(403);
    const missing = await get('/countapi/update/nothing?amount=1');
    expect(missing.status).toBe(404);
    expect(missing.json).toEqual({ value: null });
    expect((await get('/countapi/get/votes')).json).toEqual({ value: 3 });
  });

  it('info: the fields with ttl and created in ms; 404 with nulls', async () => {
    await serve({ expireIdle: '180d' });
    const before = Date.now();
    await get('/countapi/create?namespace=blog&key=post1&value=3&enable_reset=1');
    const r = await get('/countapi/info/blog/post1');
    expect(r.status).toBe(200);
    expect(Object.keys(r.json)).toEqual([
      'namespace',
      'key',
      'ttl',
      'created',
      'update_lowerbound',
      'update_upperbound',
      'enable_reset',
      'value',
    ]);
    expect(r.json).toMatchObject({
      namespace: 'blog',
      key: 'post1',
      update_lowerbound: -1,
      update_upperbound: 1,
      enable_reset: true,
      value: 3,
    });
    expect(r.json.created as number).toBeGreaterThanOrEqual(before);
    const sixMonths = 180 * 86_400_000;
    expect(r.json.ttl as number).toBeGreaterThan(sixMonths - 60_000);
    expect(r.json.ttl as number).toBeLessThanOrEqual(sixMonths);
    const missing = await get('/countapi/info/blog/none');
    expect(missing.status).toBe(404);
    expect(missing.json.value).toBeNull();
    expect(missing.json.ttl).toBeNull();
  });

  it('stats counts this instance', async () => {
    await serve();
    await get('/countapi/create?key=statkey');
    await get('/countapi/hit/statkey');
    const r = await get('/countapi/stats');
    expect(r.status).toBe(200);
    expect(Object.keys(r.json)).toEqual(['keys_created', 'keys_updated', 'requests', 'version']);
    expect(r.json.keys_created).toBe(1);
    expect(r.json.keys_updated).toBe(1);
    expect(r.json.requests).toBe(3);
  });

  it(':HOST: and :PATHNAME: come from the page the request is made from', async () => {
    await serve();
    const headers = { origin: 'https://mysite.com', referer: 'https://mysite.com/example/page' };
    const r = await get('/countapi/hit/:HOST:/:PATHNAME:', headers);
    expect(r.json).toEqual({ value: 1 });
    expect(r.headers.get('x-path')).toBe('mysite.com/examplepage');
    // A short path is padded with dots to three characters.
    const root = await get('/countapi/hit/:HOST:/:PATHNAME:', {
      ...headers,
      referer: 'https://mysite.com/',
    });
    expect(root.headers.get('x-path')).toBe('mysite.com/...');
    // Without the headers there is nothing to resolve.
    expect((await get('/countapi/hit/:HOST:/visits')).status).toBe(400);
  });

  it('JSONP via callback always answers 200 with the status inside; ?img answers a 1x1 GIF', async () => {
    await serve();
    const r = await get('/countapi/hit/jsonpkey?callback=handle');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^application\/javascript/);
    expect(r.text).toBe('/**/handle({"value":1,"status":200});');
    const missing = await get('/countapi/get/jsonpnone?callback=cb.done');
    expect(missing.status).toBe(200);
    expect(missing.text).toBe('/**/cb.done({"value":null,"status":404});');
    const bad = await get('/countapi/get/ab?callback=cb');
    expect(bad.status).toBe(200);
    expect(bad.text).toBe('/**/cb({"error":"Malformed Namespace/Key","status":400});');
    // A callback that is not an identifier is ignored: plain JSON.
    const evil = await get('/countapi/get/jsonpkey?callback=alert(1)//');
    expect(evil.headers.get('content-type')).toMatch(/^application\/json/);

    const img = await fetch(`${base}/countapi/hit/pixel?img`);
    expect(img.status).toBe(200);
    expect(img.headers.get('content-type')).toBe('image/gif');
    const bytes = Buffer.from(await img.arrayBuffer());
    expect(bytes.subarray(0, 6).toString('latin1')).toBe('GIF89a');
    expect(bytes.readUInt16LE(6)).toBe(1);
    expect(bytes.readUInt16LE(8)).toBe(1);
    expect((await get('/countapi/get/pixel')).json).toEqual({ value: 1 });
  });

  it('answers CORS for any origin by default and exposes X-Path', async () => {
    await serve();
    const r = await get('/countapi/hit/corskey', { origin: 'https://elsewhere.example' });
    expect(r.headers.get('access-control-allow-origin')).toBe('*');
    expect(r.headers.get('access-control-expose-headers')).toContain('x-path');
  });
});

describe('Abacus-compatible API under /abacus', () => {
  it('hit and get; get of a missing key is 404 {"error":"Key not found"}; JSONP on hit/get', async () => {
    await serve();
    expect((await get('/abacus/hit/site/views')).json).toEqual({ value: 1 });
    const g = await get('/abacus/get/site/views');
    expect(g.status).toBe(200);
    expect(g.json).toEqual({ value: 1 });
    const missing = await get('/abacus/get/site/none');
    expect(missing.status).toBe(404);
    expect(missing.json).toEqual({ error: 'Key not found' });
    const jsonp = await get('/abacus/hit/site/views?callback=show');
    expect(jsonp.text).toBe('/**/show({"value":2});');
  });

  it('validates names with its own messages', async () => {
    await serve();
    const short = await get('/abacus/hit/ab/views');
    expect(short.status).toBe(400);
    expect(short.json).toEqual({
      error: 'Invalid namespace: length must be between 3 and 64 characters inclusive',
    });
    const bad = await get('/abacus/hit/site/vi%20ews');
    expect(bad.json).toEqual({
      error: 'Invalid key: must match the pattern ^[A-Za-z0-9_\\-.]{3,64}$',
    });
  });

  it('create: 201 with admin_key, 409 when taken, 400 for a bad initializer; the default namespace', async () => {
    await serve();
    const r = await get('/abacus/create/site/likes?initializer=10');
    expect(r.status).toBe(201);
    expect(Object.keys(r.json)).toEqual(['admin_key', 'key', 'namespace', 'value']);
    expect(r.json).toMatchObject({ key: 'likes', namespace: 'site', value: 10 });
    const taken = await post('/abacus/create/site/likes');
    expect(taken.status).toBe(409);
    expect(taken.json).toEqual({ error: 'Key already exists, please use a different key.' });
    const bad = await get('/abacus/create/site/other?initializer=abc');
    expect(bad.status).toBe(400);
    expect(bad.json).toEqual({ error: 'initializer must be a number' });
    const single = await get('/abacus/create/solo');
    expect(single.status).toBe(201);
    expect(single.json.namespace).toBe('default');
  });

  it('set, reset, update and delete need the admin key (Bearer or ?token=)', async () => {
    await serve();
    const created = await get('/abacus/create/site/stars?initializer=5');
    const key = created.json.admin_key as string;
    const bearer = { authorization: `Bearer ${key}` };

    const none = await post('/abacus/set/site/stars?value=1');
    expect(none.status).toBe(400);
    expect(none.json.error).toMatch(/^Token is required/);
    const wrong = await post('/abacus/set/site/stars?value=1', { authorization: 'Bearer nope' });
    expect(wrong.status).toBe(401);
    expect(wrong.json).toEqual({ error: 'token is invalid' });
    expect((await get('/abacus/get/site/stars')).json).toEqual({ value: 5 });

    expect((await post('/abacus/set/site/stars?value=50', bearer)).json).toEqual({ value: 50 });
    expect((await post(`/abacus/update/site/stars?value=-8&token=${key}`)).json).toEqual({
      value: 42,
    });
    const zero = await post('/abacus/update/site/stars?value=0', bearer);
    expect(zero.status).toBe(400);
    const missingValue = await post('/abacus/set/site/stars', bearer);
    expect(missingValue.status).toBe(400);
    expect(missingValue.json.error).toMatch(/^value is required/);
    expect((await post('/abacus/reset/site/stars', bearer)).json).toEqual({ value: 0 });
    // Tally's admin token may do it too.
    expect(
      (await post('/abacus/set/site/stars?value=3', { authorization: `Bearer ${ADMIN_TOKEN}` }))
        .json,
    ).toEqual({ value: 3 });

    // A counter made by hits has no admin key.
    await get('/abacus/hit/site/genuine');
    const genuine = await post('/abacus/delete/site/genuine', bearer);
    expect(genuine.status).toBe(400);
    expect(genuine.json.error).toMatch(/^This entry is genuine/);

    const del = await post('/abacus/delete/site/stars', bearer);
    expect(del.status).toBe(200);
    expect(del.json).toEqual({ message: 'Deleted key: K:site:stars', status: 'ok' });
    expect((await get('/abacus/get/site/stars')).status).toBe(404);
    // The key went with the counter.
    expect((await post('/abacus/set/site/stars?value=1', bearer)).status).toBe(400);
  });

  it('set, reset and update of a counter that is gone answer 409 for the admin token', async () => {
    await serve();
    const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
    const set = await post('/abacus/set/site/ghost?value=1', admin);
    expect(set.status).toBe(409);
    expect(set.json).toEqual({ error: 'Key does not exist, please use a different key.' });
    expect((await post('/abacus/reset/site/ghost', admin)).status).toBe(409);
    const update = await post('/abacus/update/site/ghost?value=1', admin);
    expect(update.status).toBe(409);
    expect(update.json).toEqual({
      error: 'Key does not exist, please first create it using /create.',
    });
    expect((await get('/abacus/get/site/ghost')).status).toBe(404);
  });

  it('info: exists, expiry, genuine; a missing key answers 200 with value -1', async () => {
    await serve();
    await get('/abacus/hit/site/infokey');
    const r = await get('/abacus/info/site/infokey');
    expect(r.status).toBe(200);
    expect(r.json).toEqual({
      exists: true,
      expires_in: -1e-9,
      expires_str: '-1ns',
      full_key: 'K:site:infokey',
      is_genuine: true,
      value: 1,
    });
    const missing = await get('/abacus/info/site/nokey');
    expect(missing.status).toBe(200);
    expect(missing.json).toMatchObject({ exists: false, value: -1, expires_str: '-2ns' });
    await get('/abacus/create/site/made');
    expect((await get('/abacus/info/site/made')).json.is_genuine).toBe(false);
  });

  it('stream sends data: {"value":N} frames, first the current value, then each change', async () => {
    await serve();
    await get('/abacus/hit/site/live');
    const controller = new AbortController();
    const res = await fetch(`${base}/abacus/stream/site/live`, { signal: controller.signal });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const stream = sseReader(res);
    await stream.until('data: {"value":1}\n\n');
    await get('/abacus/hit/site/live');
    await stream.until('data: {"value":2}\n\n');
    expect(stream.text).not.toContain('event:');
    controller.abort();
  });

  it("streams share the live-stream caps with Tally's own", async () => {
    await serve({ maxSseClientsPerIp: 1 });
    await get('/abacus/hit/site/capped');
    const controller = new AbortController();
    const first = await fetch(`${base}/api/v1/counters/capped/events`, {
      signal: controller.signal,
    });
    expect(first.status).toBe(200);
    const second = await get('/abacus/stream/site/capped');
    expect(second.status).toBe(429);
    expect(second.json.error).toMatch(/too many live streams/);
    controller.abort();
  });

  it('stats and healthcheck', async () => {
    await serve();
    await get('/abacus/hit/site/statx');
    const s = await get('/abacus/stats');
    expect(s.status).toBe(200);
    expect((s.json.commands as Record<string, number>).hit).toBe(1);
    expect(s.json.version).toMatch(/^\d+\.\d+\.\d+/);
    const h = await get('/abacus/healthcheck');
    expect(h.json.status).toBe('ok');
  });
});

describe('what the review of the compatible routes found', () => {
  it('keeps admin keys out of caches, URLs and other origins', async () => {
    await serve();
    const created = await get('/countapi/create?key=cachekey');
    expect(created.headers.get('cache-control')).toBe('no-store');
    expect(created.headers.get('access-control-expose-headers')).toBeNull();
    const fromPage = await get('/countapi/create?key=cachekey2', { origin: 'https://a.example' });
    expect(fromPage.headers.get('access-control-expose-headers')).toContain('x-admin-key');
    const abacus = await get('/abacus/create/site/cachekey');
    expect(abacus.headers.get('cache-control')).toBe('no-store');
    // Tally's admin token is accepted as a Bearer header only, never in the URL.
    const inUrl = await post(`/abacus/set/site/cachekey?value=9&token=${ADMIN_TOKEN}`);
    expect(inUrl.status).toBe(401);
    expect((await get('/abacus/get/site/cachekey')).json).toEqual({ value: 0 });
    // Token routes answer no CORS: a page on another origin cannot read their answers.
    const key = abacus.json.admin_key as string;
    const cross = await post(`/abacus/reset/site/cachekey?token=${key}`, {
      origin: 'https://a.example',
    });
    expect(cross.status).toBe(200);
    expect(cross.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('answers ?img with the pixel on errors too, and checks CountAPI bounds in its order', async () => {
    await serve();
    const bad = await fetch(`${base}/countapi/hit/ab?img`);
    expect(bad.status).toBe(400);
    expect(bad.headers.get('content-type')).toBe('image/gif');
    const low = await get('/countapi/create?key=order1&update_lowerbound=5');
    expect(low.json).toEqual({ error: 'update_lowerbound must be negative' });
    const up = await get('/countapi/create?key=order2&update_upperbound=-5&update_lowerbound=-9');
    expect(up.json).toEqual({ error: 'update_upperbound must be positive' });
  });

  it('resolves :HOST: to the host name, without a port', async () => {
    await serve();
    const r = await get('/countapi/hit/:HOST:/visits', { origin: 'https://site.com:8443' });
    expect(r.status).toBe(200);
    expect(r.headers.get('x-path')).toBe('site.com/visits');
  });

  it('sends an Abacus stream the change made while it read the first value', async () => {
    await serve();
    await get('/abacus/hit/site/racey');
    const controller = new AbortController();
    const res = await fetch(`${base}/abacus/stream/site/racey`, { signal: controller.signal });
    const stream = sseReader(res);
    await get('/abacus/hit/site/racey');
    await stream.until('data: {"value":2}');
    controller.abort();
    expect(stream.text).toContain('data: {"value":2}');
  });
});

describe('TALLY_COMPAT_ROOT', () => {
  it('none (default): /hit is not a route', async () => {
    await serve();
    expect((await get('/hit/default/visits')).status).toBe(404);
  });

  it('countapi answers CountAPI at the root too', async () => {
    await serve({ compatRoot: 'countapi' });
    expect((await get('/hit/visits')).json).toEqual({ value: 1 });
    expect((await get('/countapi/get/visits')).json).toEqual({ value: 1 });
  });

  it('abacus answers Abacus at the root too', async () => {
    await serve({ compatRoot: 'abacus' });
    expect((await get('/hit/site/visits')).json).toEqual({ value: 1 });
    expect((await get('/get/site/none')).json).toEqual({ error: 'Key not found' });
  });
});

describe('abuse limits on the compatible routes', () => {
  it('hits and creates are rate limited per client with RateLimit headers', async () => {
    await serve({ rateLimit: '3/60', createRateLimit: '1/60' });
    for (let i = 0; i < 3; i++) expect((await get('/countapi/hit/limited')).status).toBe(200);
    const r = await get('/abacus/hit/site/limited');
    expect(r.status).toBe(429);
    expect(r.headers.get('retry-after')).not.toBeNull();
    expect(r.headers.get('ratelimit-policy')).toBe('3;w=60');
    expect((await get('/countapi/get/limited')).json).toEqual({ value: 3 });
    expect((await get('/countapi/create?key=first')).status).toBe(200);
    expect((await get('/abacus/create/site/second')).status).toBe(429);
    expect((await get('/abacus/get/site/second')).status).toBe(404);
  });
});
