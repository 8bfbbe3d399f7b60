// Namespaces and keys over HTTP (app.inject) on SQLite, with the policy of a server reachable
// by anyone (TALLY_PUBLIC_WRITES=hits set explicitly, an admin token): created counters and their
// admin keys, keyless writes within bounds, namespace claims and their keys, the flat routes as
// the default namespace, and the create rate limit. Every refused write is shown to change
// nothing.
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Tally } from '../../src/app.js';
import type { ConfigInput } from '../../src/config.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import { ADMIN_TOKEN, testApp } from '../helpers/app.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('tally-namespaces');
let n = 0;
afterAll(() => dir.remove());

let tally: Tally | undefined;
afterEach(async () => {
  await tally?.close();
  tally = undefined;
});

/** A fresh app on its own SQLite file: public writes `hits`, an admin token, no create limit. */
async function make(overrides: ConfigInput = {}): Promise<Tally> {
  tally = await testApp(
    { publicWrites: 'hits', adminToken: ADMIN_TOKEN, createRateLimit: 'off', ...overrides },
    new SqliteStore({ path: join(dir.path, `t${n++}.db`) }),
  );
  return tally;
}

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

function call(t: Tally, method: Method, url: string, opts: { body?: unknown; key?: string } = {}) {
  return t.app.inject({
    method,
    url,
    ...(opts.body === undefined ? {} : { payload: opts.body as object }),
    headers: opts.key === undefined ? {} : { authorization: `Bearer ${opts.key}` },
  });
}

const path = (ns: string, key: string) => `/api/v1/namespaces/${ns}/counters/${key}`;

/** Creates `ns/key` (201 expected) and returns the answer's body. */
async function create(t: Tally, ns: string, key: string, body?: unknown, auth?: string) {
  const r = await call(t, 'POST', path(ns, key), {
    ...(body === undefined ? {} : { body }),
    ...(auth === undefined ? {} : { key: auth }),
  });
  expect(r.statusCode, r.body).toBe(201);
  return r.json() as { admin_key: string; [k: string]: unknown };
}

function inc(t: Tally, ns: string, key: string, by?: number, auth?: string) {
  return call(t, 'POST', `${path(ns, key)}/increment`, {
    ...(by === undefined ? {} : { body: { by } }),
    ...(auth === undefined ? {} : { key: auth }),
  });
}

/** The stored value (a strong read: this instance's pending increments are flushed first). */
async function value(t: Tally, ns: string, key: string): Promise<number> {
  const r = await call(t, 'GET', `${path(ns, key)}?consistency=strong`);
  expect(r.statusCode, r.body).toBe(200);
  return r.json().value as number;
}

/** Asserts a refusal: status and error code. */
function refused(r: { statusCode: number; body: string }, status: number, code: string): void {
  expect(r.statusCode, r.body).toBe(status);
  expect(JSON.parse(r.body).error.code).toBe(code);
}

const KEY_RE = /^tk_[A-Za-z0-9_-]{43}$/;
/** A well-formed key that nothing was ever given. */
const STRANGER = `tk_${'x'.repeat(43)}`;

describe('created counters', () => {
  it('creates a counter with an admin key and its settings, once', async () => {
    const t = await make();
    const created = await create(t, 'blog', 'visits');
    expect(created).toEqual({
      name: 'blog/visits',
      namespace: 'blog',
      key: 'visits',
      value: 0,
      admin_key: expect.stringMatching(KEY_RE),
      enable_reset: false,
      update_lowerbound: 1,
      update_upperbound: 1,
    });
    const withValue = await create(t, 'blog', 'likes', {
      value: 40,
      enable_reset: true,
      update_lowerbound: -2,
      update_upperbound: 5,
    });
    expect(withValue).toMatchObject({
      name: 'blog/likes',
      value: 40,
      enable_reset: true,
      update_lowerbound: -2,
      update_upperbound: 5,
    });
    expect(withValue.admin_key).toMatch(KEY_RE);
    expect(withValue.admin_key).not.toBe(created.admin_key);

    const info = (await call(t, 'GET', `${path('blog', 'visits')}/info`)).json();
    // A second create changes nothing: value, settings and the first admin key stay.
    const again = await call(t, 'POST', path('blog', 'visits'), {
      body: { value: 100, enable_reset: true },
    });
    refused(again, 409, 'COUNTER_EXISTS');
    expect(await value(t, 'blog', 'visits')).toBe(0);
    expect((await call(t, 'GET', `${path('blog', 'visits')}/info`)).json()).toEqual(info);
    expect((await inc(t, 'blog', 'visits', 5, created.admin_key)).statusCode).toBe(202);
    expect(await value(t, 'blog', 'visits')).toBe(5);
    // A counter that exists from increments alone cannot be created (and taken over) either.
    expect((await inc(t, 'blog', 'hits')).statusCode).toBe(202);
    expect(await value(t, 'blog', 'hits')).toBe(1);
    refused(
      await call(t, 'POST', path('blog', 'hits'), { body: { value: 0 } }),
      409,
      'COUNTER_EXISTS',
    );
    expect(await value(t, 'blog', 'hits')).toBe(1);
    expect((await call(t, 'GET', `${path('blog', 'hits')}/info`)).json().has_key).toBe(false);
  });

  it('counts increments accepted but not stored yet: such a counter exists', async () => {
    const t = await make({ flushIntervalMs: 60_000 });
    expect((await inc(t, 'blog', 'pending')).statusCode).toBe(202);
    expect(await t.store.get('blog/pending')).toBe(0);
    refused(
      await call(t, 'POST', path('blog', 'pending'), { body: { value: 50 } }),
      409,
      'COUNTER_EXISTS',
    );
    expect(await value(t, 'blog', 'pending')).toBe(1);
    expect(await t.store.describe('blog/pending')).toMatchObject({ value: 1, meta: null });
  });

  it('reads a counter with its name, namespace and key', async () => {
    const t = await make();
    await create(t, 'blog', 'visits', { value: 3 });
    const r = await call(t, 'GET', path('blog', 'visits'));
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({ name: 'blog/visits', namespace: 'blog', key: 'visits', value: 3 });
    const never = await call(t, 'GET', path('blog', 'never'));
    expect(never.json()).toEqual({ name: 'blog/never', namespace: 'blog', key: 'never', value: 0 });
  });

  it('refuses bad create bodies and creates nothing', async () => {
    const t = await make();
    const cases: Array<[unknown, string]> = [
      [{ update_lowerbound: 3, update_upperbound: 1 }, 'INVALID_BODY'],
      [{ value: 1.5 }, 'INVALID_NUMBER'],
      [{ value: 2 ** 53 }, 'NUMBER_OUT_OF_RANGE'],
      [{ enable_reset: 'maybe' }, 'INVALID_BODY'],
      [{ colour: 'red' }, 'UNKNOWN_FIELD'],
    ];
    for (const [body, code] of cases) {
      refused(await call(t, 'POST', path('blog', 'bad'), { body }), 400, code);
    }
    refused(await call(t, 'GET', `${path('blog', 'bad')}/info`), 404, 'COUNTER_NOT_FOUND');
    expect((await t.store.list()).items).toEqual([]);
  });

  it('lets keyless clients add 1 and the admin key anything; other keys are refused', async () => {
    const t = await make();
    const { admin_key } = await create(t, 'blog', 'visits');
    const other = await create(t, 'blog', 'other');

    const hit = await inc(t, 'blog', 'visits');
    expect(hit.statusCode).toBe(202);
    expect(hit.json()).toEqual({ name: 'blog/visits', namespace: 'blog', key: 'visits', value: 1 });
    expect(await value(t, 'blog', 'visits')).toBe(1);

    refused(await inc(t, 'blog', 'visits', 5), 401, 'KEY_REQUIRED');
    refused(await inc(t, 'blog', 'visits', -1), 401, 'KEY_REQUIRED');
    refused(await inc(t, 'blog', 'visits', 2), 401, 'KEY_REQUIRED');
    expect(await value(t, 'blog', 'visits')).toBe(1);

    const keyed = await inc(t, 'blog', 'visits', 5, admin_key);
    expect(keyed.statusCode).toBe(202);
    expect(keyed.json().value).toBe(6);
    expect((await inc(t, 'blog', 'visits', -2, admin_key)).statusCode).toBe(202);
    expect(await value(t, 'blog', 'visits')).toBe(4);

    // A key that is not this counter's: 403 for what needs a key, made up or another counter's.
    refused(await inc(t, 'blog', 'visits', 5, STRANGER), 403, 'FORBIDDEN');
    // A key that covers nothing leaves what anyone may do: a +1 counts, as a keyless hit.
    const stranger = await inc(t, 'blog', 'visits', 1, STRANGER);
    expect(stranger.statusCode).toBe(202);
    expect(stranger.json().value).toBe(5);
    refused(await inc(t, 'blog', 'visits', 5, other.admin_key), 403, 'FORBIDDEN');
    expect(await value(t, 'blog', 'visits')).toBe(5);
    // …and the admin key covers only its own counter.
    refused(await inc(t, 'blog', 'other', 5, admin_key), 403, 'FORBIDDEN');
    expect(await value(t, 'blog', 'other')).toBe(0);

    // A counter never created: keyless +1 only, and a refused increment makes no counter.
    refused(await inc(t, 'blog', 'plain', 5), 401, 'KEY_REQUIRED');
    refused(await call(t, 'GET', `${path('blog', 'plain')}/info`), 404, 'COUNTER_NOT_FOUND');
    expect(await value(t, 'blog', 'plain')).toBe(0);
  });

  it('allows keyless increments within the update bounds given at creation', async () => {
    const t = await make();
    const created = await create(t, 'blog', 'votes', {
      update_lowerbound: -1,
      update_upperbound: 3,
    });
    expect(created).toMatchObject({ update_lowerbound: -1, update_upperbound: 3 });
    expect((await inc(t, 'blog', 'votes', 3)).statusCode).toBe(202);
    expect((await inc(t, 'blog', 'votes', -1)).statusCode).toBe(202);
    expect((await inc(t, 'blog', 'votes')).statusCode).toBe(202);
    expect((await inc(t, 'blog', 'votes', 2)).statusCode).toBe(202);
    expect(await value(t, 'blog', 'votes')).toBe(5);
    refused(await inc(t, 'blog', 'votes', 4), 401, 'KEY_REQUIRED');
    refused(await inc(t, 'blog', 'votes', -2), 401, 'KEY_REQUIRED');
    refused(await inc(t, 'blog', 'votes', 1_000_000), 401, 'KEY_REQUIRED');
    expect(await value(t, 'blog', 'votes')).toBe(5);
    // Beyond the bounds, the admin key may.
    expect((await inc(t, 'blog', 'votes', 4, created.admin_key)).statusCode).toBe(202);
    expect(await value(t, 'blog', 'votes')).toBe(9);
  });

  it('sets with the admin key; keyless only when created with enable_reset', async () => {
    const t = await make();
    const { admin_key } = await create(t, 'blog', 'visits', { value: 10 });
    const resettable = await create(t, 'blog', 'reset', { value: 10, enable_reset: true });

    refused(
      await call(t, 'PUT', path('blog', 'visits'), { body: { value: 0 } }),
      401,
      'KEY_REQUIRED',
    );
    refused(
      await call(t, 'PUT', path('blog', 'visits'), { body: { value: 0 }, key: STRANGER }),
      403,
      'FORBIDDEN',
    );
    expect(await value(t, 'blog', 'visits')).toBe(10);
    const set = await call(t, 'PUT', path('blog', 'visits'), {
      body: { value: 77 },
      key: admin_key,
    });
    expect(set.statusCode).toBe(200);
    expect(set.json()).toEqual({
      name: 'blog/visits',
      namespace: 'blog',
      key: 'visits',
      value: 77,
    });
    expect(await value(t, 'blog', 'visits')).toBe(77);

    const reset = await call(t, 'PUT', path('blog', 'reset'), { body: { value: 0 } });
    expect(reset.statusCode, reset.body).toBe(200);
    expect(await value(t, 'blog', 'reset')).toBe(0);
    // enable_reset allows a keyless set, never a keyless delete or a larger increment.
    refused(await call(t, 'DELETE', path('blog', 'reset')), 401, 'KEY_REQUIRED');
    refused(await inc(t, 'blog', 'reset', 5), 401, 'KEY_REQUIRED');
    expect(await value(t, 'blog', 'reset')).toBe(0);
    expect((await call(t, 'GET', `${path('blog', 'reset')}/info`)).statusCode).toBe(200);
    // The settings survive a set.
    const info = (await call(t, 'GET', `${path('blog', 'reset')}/info`)).json();
    expect(info).toMatchObject({ enable_reset: true, has_key: true });
    expect(resettable.admin_key).toMatch(KEY_RE);
  });

  it('deletes with the admin key; the name can then be created afresh with a new key', async () => {
    const t = await make();
    const { admin_key } = await create(t, 'blog', 'visits', { value: 9 });
    refused(await call(t, 'DELETE', path('blog', 'visits')), 401, 'KEY_REQUIRED');
    refused(await call(t, 'DELETE', path('blog', 'visits'), { key: STRANGER }), 403, 'FORBIDDEN');
    expect(await value(t, 'blog', 'visits')).toBe(9);

    const del = await call(t, 'DELETE', path('blog', 'visits'), { key: admin_key });
    expect(del.statusCode).toBe(200);
    expect(del.json()).toEqual({
      name: 'blog/visits',
      namespace: 'blog',
      key: 'visits',
      deleted: true,
    });
    expect(await value(t, 'blog', 'visits')).toBe(0);
    refused(await call(t, 'GET', `${path('blog', 'visits')}/info`), 404, 'COUNTER_NOT_FOUND');
    expect(await t.store.describe('blog/visits')).toBeUndefined();

    // Created again: the old admin key no longer covers it.
    const fresh = await create(t, 'blog', 'visits', { value: 1 });
    expect(fresh.admin_key).not.toBe(admin_key);
    refused(await inc(t, 'blog', 'visits', 5, admin_key), 403, 'FORBIDDEN');
    refused(await call(t, 'DELETE', path('blog', 'visits'), { key: admin_key }), 403, 'FORBIDDEN');
    expect(await value(t, 'blog', 'visits')).toBe(1);
    expect((await inc(t, 'blog', 'visits', 5, fresh.admin_key)).statusCode).toBe(202);
    expect(await value(t, 'blog', 'visits')).toBe(6);
  });

  it('lets the server admin token do everything', async () => {
    const t = await make();
    const claim = await call(t, 'POST', '/api/v1/namespaces/shop');
    expect(claim.statusCode).toBe(201);
    // Create in a claimed namespace, increment by any amount, set, delete, batch.
    const created = await call(t, 'POST', path('shop', 'cart'), {
      body: { value: 2 },
      key: ADMIN_TOKEN,
    });
    expect(created.statusCode, created.body).toBe(201);
    expect((await inc(t, 'shop', 'cart', 1000, ADMIN_TOKEN)).statusCode).toBe(202);
    expect((await inc(t, 'blog', 'plain', -7, ADMIN_TOKEN)).statusCode).toBe(202);
    expect(await value(t, 'shop', 'cart')).toBe(1002);
    expect(await value(t, 'blog', 'plain')).toBe(-7);
    const set = await call(t, 'PUT', path('shop', 'cart'), {
      body: { value: 5 },
      key: ADMIN_TOKEN,
    });
    expect(set.statusCode).toBe(200);
    const batch = await call(t, 'POST', '/api/v1/increments', {
      body: {
        increments: [
          { name: 'shop/cart', by: 10 },
          { name: 'blog/plain', by: 7 },
        ],
      },
      key: ADMIN_TOKEN,
    });
    expect(batch.statusCode, batch.body).toBe(202);
    expect(await value(t, 'shop', 'cart')).toBe(15);
    expect(await value(t, 'blog', 'plain')).toBe(0);
    const del = await call(t, 'DELETE', path('shop', 'cart'), { key: ADMIN_TOKEN });
    expect(del.json().deleted).toBe(true);
    refused(await call(t, 'GET', `${path('shop', 'cart')}/info`), 404, 'COUNTER_NOT_FOUND');
    // Claim `default`, and a namespace that has counters.
    expect(
      (await call(t, 'POST', '/api/v1/namespaces/default', { key: ADMIN_TOKEN })).statusCode,
    ).toBe(201);
    await create(t, 'news', 'a');
    expect(
      (await call(t, 'POST', '/api/v1/namespaces/news', { key: ADMIN_TOKEN })).statusCode,
    ).toBe(201);
  });
});

describe('batches', () => {
  it('need a key under hits; counters may be named namespace/key', async () => {
    const t = await make();
    const { admin_key } = await create(t, 'blog', 'visits');
    const body = { increments: [{ name: 'blog/visits' }, { name: 'flat' }] };
    const keyless = await call(t, 'POST', '/api/v1/increments', { body });
    refused(keyless, 401, 'KEY_REQUIRED');
    expect(await value(t, 'blog', 'visits')).toBe(0);
    expect(await value(t, 'default', 'flat')).toBe(0);

    // The counter's admin key covers a batch of its own counter only; all or nothing.
    const own = await call(t, 'POST', '/api/v1/increments', {
      body: { increments: [{ name: 'blog/visits', by: 3 }, { name: 'blog/visits' }] },
      key: admin_key,
    });
    expect(own.statusCode, own.body).toBe(202);
    expect(own.json()).toEqual({ accepted: 2 });
    expect(await value(t, 'blog', 'visits')).toBe(4);
    // 'flat' was never created and its namespace is unclaimed: as before namespaces, only the
    // admin token covers it.
    const mixed = await call(t, 'POST', '/api/v1/increments', { body, key: admin_key });
    refused(mixed, 401, 'UNAUTHORIZED');
    expect(await value(t, 'blog', 'visits')).toBe(4);
    expect(await value(t, 'default', 'flat')).toBe(0);

    const admin = await call(t, 'POST', '/api/v1/increments', { body, key: ADMIN_TOKEN });
    expect(admin.statusCode).toBe(202);
    expect(await value(t, 'blog', 'visits')).toBe(5);
    expect(await value(t, 'default', 'flat')).toBe(1);

    // Bad references are refused as a whole.
    for (const name of ['blog/', '/visits', 'a b/visits', 'blog/a/b', `${'n'.repeat(65)}/x`]) {
      const bad = await call(t, 'POST', '/api/v1/increments', {
        body: { increments: [{ name: 'blog/visits' }, { name }] },
        key: ADMIN_TOKEN,
      });
      refused(bad, 400, 'INVALID_NAME');
    }
    expect(await value(t, 'blog', 'visits')).toBe(5);
  });

  it('need no key under open', async () => {
    const t = await make({ publicWrites: 'open' });
    await create(t, 'blog', 'visits');
    const r = await call(t, 'POST', '/api/v1/increments', {
      body: {
        increments: [
          { name: 'blog/visits', by: 4 },
          { name: 'flat', by: 2 },
        ],
      },
    });
    expect(r.statusCode, r.body).toBe(202);
    expect(r.json()).toEqual({ accepted: 2 });
    expect(await value(t, 'blog', 'visits')).toBe(4);
    expect(await value(t, 'default', 'flat')).toBe(2);
  });
});

describe('the default namespace', () => {
  it('is the flat routes: the same counters under both paths', async () => {
    const t = await make();
    expect((await call(t, 'POST', '/api/v1/counters/visits/increment')).statusCode).toBe(202);
    expect((await inc(t, 'default', 'visits')).statusCode).toBe(202);
    const flatRead = await call(t, 'GET', '/api/v1/counters/visits?consistency=strong');
    expect(flatRead.json()).toEqual({ name: 'visits', value: 2 });
    const nsRead = await call(t, 'GET', `${path('default', 'visits')}?consistency=strong`);
    expect(nsRead.json()).toEqual({
      name: 'visits',
      namespace: 'default',
      key: 'visits',
      value: 2,
    });
    expect(await t.store.get('visits')).toBe(2);
    expect(await t.store.get('default/visits')).toBe(0);

    // Created in `default`: stored under the flat name, governed the same on the flat routes.
    const created = await create(t, 'default', 'hello', { value: 5 });
    expect(created).toMatchObject({ name: 'hello', namespace: 'default', key: 'hello', value: 5 });
    const info = (await call(t, 'GET', '/api/v1/counters/hello/info')).json();
    expect(info).toMatchObject({ name: 'hello', value: 5, has_key: true });
    refused(
      await call(t, 'POST', '/api/v1/counters/hello/increment', { body: { by: 5 } }),
      401,
      'KEY_REQUIRED',
    );
    const keyed = await call(t, 'POST', '/api/v1/counters/hello/increment', {
      body: { by: 5 },
      key: created.admin_key,
    });
    expect(keyed.statusCode).toBe(202);
    const put = await call(t, 'PUT', '/api/v1/counters/hello', {
      body: { value: 1 },
      key: created.admin_key,
    });
    expect(put.json()).toEqual({ name: 'hello', value: 1 });
    // Creating is namespaced only: the flat path answers the methods it has.
    const post = await call(t, 'POST', '/api/v1/counters/hello', { body: {} });
    refused(post, 405, 'METHOD_NOT_ALLOWED');
    expect(post.headers.allow).toBe('DELETE, GET, HEAD, OPTIONS, PUT');
    expect(await value(t, 'default', 'hello')).toBe(1);
    // A flat name cannot reach into a namespace.
    refused(await call(t, 'GET', '/api/v1/counters/blog%2Fvisits'), 400, 'INVALID_NAME');
  });
});

describe('namespace and key names', () => {
  it('refuses an invalid namespace or key with 400 INVALID_NAMESPACE and changes nothing', async () => {
    const t = await make();
    const long = 'a'.repeat(65);
    const bad = ['a%20b', long, 'a%2Fb', 'caf%C3%A9', 'a:b'];
    for (const ns of bad) {
      for (const [ns2, key] of [
        [ns, 'visits'],
        ['blog', ns],
      ] as const) {
        refused(await call(t, 'POST', path(ns2, key)), 400, 'INVALID_NAMESPACE');
        refused(await call(t, 'POST', `${path(ns2, key)}/increment`), 400, 'INVALID_NAMESPACE');
        refused(await call(t, 'GET', path(ns2, key)), 400, 'INVALID_NAMESPACE');
        refused(await call(t, 'GET', `${path(ns2, key)}/info`), 400, 'INVALID_NAMESPACE');
        refused(
          await call(t, 'PUT', path(ns2, key), { body: { value: 1 }, key: ADMIN_TOKEN }),
          400,
          'INVALID_NAMESPACE',
        );
        refused(
          await call(t, 'DELETE', path(ns2, key), { key: ADMIN_TOKEN }),
          400,
          'INVALID_NAMESPACE',
        );
      }
      refused(await call(t, 'POST', `/api/v1/namespaces/${ns}`), 400, 'INVALID_NAMESPACE');
      refused(await call(t, 'GET', `/api/v1/namespaces/${ns}/counters`), 400, 'INVALID_NAMESPACE');
    }
    // 64 characters of the allowed set are fine.
    const max = `${'a'.repeat(60)}_.-9`;
    await create(t, max, max);
    expect(await value(t, max, max)).toBe(0);
    expect((await t.store.list()).items).toEqual([{ name: `${max}/${max}`, value: 0 }]);
    expect(await t.store.namespaceRecord('a b')).toBeUndefined();
    expect(await t.store.namespaceRecord(long)).toBeUndefined();
  });
});

describe('info', () => {
  it('describes created and plain counters; 404 for unknown ones', async () => {
    const t = await make();
    const before = Date.now();
    await create(t, 'blog', 'visits', {
      value: 3,
      enable_reset: true,
      update_lowerbound: -1,
      update_upperbound: 2,
    });
    const after = Date.now();
    const info = await call(t, 'GET', `${path('blog', 'visits')}/info`);
    expect(info.statusCode).toBe(200);
    const body = info.json();
    expect(body).toEqual({
      name: 'blog/visits',
      namespace: 'blog',
      key: 'visits',
      value: 3,
      created: expect.any(Number),
      updated: expect.any(Number),
      expires: null,
      enable_reset: true,
      update_lowerbound: -1,
      update_upperbound: 2,
      has_key: true,
    });
    expect(body.created).toBeGreaterThanOrEqual(before);
    expect(body.created).toBeLessThanOrEqual(after);
    expect(body.updated).toBeGreaterThanOrEqual(before);
    expect(body.updated).toBeLessThanOrEqual(after + 50);
    // The admin key is never shown again.
    expect(JSON.stringify(body)).not.toMatch(/tk_/);

    // A counter made by increments: no settings, the hit-only defaults.
    await inc(t, 'blog', 'plain', 4, ADMIN_TOKEN);
    await value(t, 'blog', 'plain');
    const plain = (await call(t, 'GET', `${path('blog', 'plain')}/info`)).json();
    expect(plain).toMatchObject({
      name: 'blog/plain',
      value: 4,
      created: null,
      updated: expect.any(Number),
      enable_reset: false,
      update_lowerbound: 1,
      update_upperbound: 1,
      has_key: false,
    });

    refused(await call(t, 'GET', `${path('blog', 'unknown')}/info`), 404, 'COUNTER_NOT_FOUND');
    refused(await call(t, 'GET', '/api/v1/counters/unknown/info'), 404, 'COUNTER_NOT_FOUND');
  });
});

describe('namespace claims', () => {
  it('claims a namespace once, with a namespace key', async () => {
    const t = await make();
    const claim = await call(t, 'POST', '/api/v1/namespaces/shop');
    expect(claim.statusCode).toBe(201);
    expect(claim.json()).toEqual({
      namespace: 'shop',
      namespace_key: expect.stringMatching(KEY_RE),
    });
    const record = await t.store.namespaceRecord('shop');
    expect(record).toBeDefined();
    expect(record).not.toContain(claim.json().namespace_key);
    refused(await call(t, 'POST', '/api/v1/namespaces/shop'), 409, 'NAMESPACE_TAKEN');
    refused(
      await call(t, 'POST', '/api/v1/namespaces/shop', { key: ADMIN_TOKEN }),
      409,
      'NAMESPACE_TAKEN',
    );
    expect(await t.store.namespaceRecord('shop')).toBe(record);
    refused(
      await call(t, 'POST', '/api/v1/namespaces/shop', { body: { x: 1 } }),
      400,
      'UNKNOWN_FIELD',
    );
  });

  it('needs the namespace key to create in a claimed namespace', async () => {
    const t = await make();
    const nsKey = (await call(t, 'POST', '/api/v1/namespaces/shop')).json().namespace_key as string;
    refused(await call(t, 'POST', path('shop', 'cart')), 401, 'KEY_REQUIRED');
    refused(await call(t, 'POST', path('shop', 'cart'), { key: STRANGER }), 403, 'FORBIDDEN');
    refused(await call(t, 'GET', `${path('shop', 'cart')}/info`), 404, 'COUNTER_NOT_FOUND');
    const created = await create(t, 'shop', 'cart', { value: 2 }, nsKey);
    expect(created).toMatchObject({
      name: 'shop/cart',
      value: 2,
      admin_key: expect.stringMatching(KEY_RE),
    });
    expect(created.admin_key).not.toBe(nsKey);
    // Other namespaces stay open.
    await create(t, 'blog', 'visits');
  });

  it('lets the namespace key write every counter in it, and only there', async () => {
    const t = await make();
    const blog = await create(t, 'blog', 'visits');
    const nsKey = (await call(t, 'POST', '/api/v1/namespaces/shop')).json().namespace_key as string;
    const cart = await create(t, 'shop', 'cart', undefined, nsKey);
    // A counter made by keyless hits in the claimed namespace.
    expect((await inc(t, 'shop', 'hits')).statusCode).toBe(202);
    expect(await value(t, 'shop', 'hits')).toBe(1);
    refused(await inc(t, 'shop', 'hits', 5), 401, 'KEY_REQUIRED');
    refused(
      await call(t, 'PUT', path('shop', 'hits'), { body: { value: 9 } }),
      401,
      'KEY_REQUIRED',
    );
    expect(await value(t, 'shop', 'hits')).toBe(1);

    for (const key of ['cart', 'hits', 'never']) {
      const set = await call(t, 'PUT', path('shop', key), { body: { value: 50 }, key: nsKey });
      expect(set.statusCode, `${key}: ${set.body}`).toBe(200);
      expect(await value(t, 'shop', key)).toBe(50);
      expect((await inc(t, 'shop', key, 7, nsKey)).statusCode).toBe(202);
      expect(await value(t, 'shop', key)).toBe(57);
    }
    const batch = await call(t, 'POST', '/api/v1/increments', {
      body: {
        increments: [
          { name: 'shop/cart', by: 3 },
          { name: 'shop/hits', by: 3 },
        ],
      },
      key: nsKey,
    });
    expect(batch.statusCode, batch.body).toBe(202);
    expect(await value(t, 'shop', 'cart')).toBe(60);
    const del = await call(t, 'DELETE', path('shop', 'cart'), { key: nsKey });
    expect(del.json()).toMatchObject({ deleted: true });
    expect(await value(t, 'shop', 'cart')).toBe(0);
    // Deleted: its admin key covers nothing any more.
    refused(await inc(t, 'shop', 'cart', 5, cart.admin_key), 403, 'FORBIDDEN');

    // Not outside the namespace: nothing there changes.
    refused(await inc(t, 'blog', 'visits', 5, nsKey), 403, 'FORBIDDEN');
    refused(
      await call(t, 'PUT', path('blog', 'visits'), { body: { value: 9 }, key: nsKey }),
      403,
      'FORBIDDEN',
    );
    refused(await call(t, 'DELETE', path('blog', 'visits'), { key: nsKey }), 403, 'FORBIDDEN');
    refused(await call(t, 'POST', '/api/v1/namespaces/blog', { key: nsKey }), 403, 'FORBIDDEN');
    expect(await value(t, 'blog', 'visits')).toBe(0);
    expect((await inc(t, 'blog', 'visits', 5, blog.admin_key)).statusCode).toBe(202);
    const mixed = await call(t, 'POST', '/api/v1/increments', {
      body: {
        increments: [
          { name: 'shop/hits', by: 3 },
          { name: 'blog/visits', by: 3 },
        ],
      },
      key: nsKey,
    });
    refused(mixed, 403, 'FORBIDDEN');
    expect(await value(t, 'shop', 'hits')).toBe(60);
    expect(await value(t, 'blog', 'visits')).toBe(5);
  });

  it('leaves `default` and namespaces that have counters to the admin token', async () => {
    const t = await make();
    refused(await call(t, 'POST', '/api/v1/namespaces/default'), 403, 'FORBIDDEN');
    refused(
      await call(t, 'POST', '/api/v1/namespaces/default', { key: STRANGER }),
      403,
      'FORBIDDEN',
    );
    expect(await t.store.namespaceRecord('default')).toBeUndefined();
    // Flat counters stay open to keyless creates.
    await create(t, 'default', 'still-open');

    // Counters made by increments, or created: the namespace is someone's already.
    await inc(t, 'blog', 'hits');
    await value(t, 'blog', 'hits');
    await create(t, 'news', 'front');
    for (const ns of ['blog', 'news']) {
      refused(await call(t, 'POST', `/api/v1/namespaces/${ns}`), 403, 'FORBIDDEN');
      expect(await t.store.namespaceRecord(ns)).toBeUndefined();
    }
    // Creating there stays open (unclaimed) and existing counters are untouched.
    await create(t, 'blog', 'second');
    expect(await value(t, 'blog', 'hits')).toBe(1);

    const adminClaim = await call(t, 'POST', '/api/v1/namespaces/blog', { key: ADMIN_TOKEN });
    expect(adminClaim.statusCode).toBe(201);
    const nsKey = adminClaim.json().namespace_key as string;
    refused(await call(t, 'POST', path('blog', 'third')), 401, 'KEY_REQUIRED');
    const set = await call(t, 'PUT', path('blog', 'hits'), { body: { value: 8 }, key: nsKey });
    expect(set.statusCode).toBe(200);
    expect(await value(t, 'blog', 'hits')).toBe(8);
  });
});

describe('listing a namespace', () => {
  it('lists its counters with names, namespaces and keys, page by page', async () => {
    const t = await make();
    await create(t, 'blog', 'b', { value: 2 });
    await create(t, 'blog', 'a', { value: 1 });
    await create(t, 'blog', 'c', { value: 3 });
    await create(t, 'blogs', 'x', { value: 9 });
    await create(t, 'default', 'flat', { value: 4 });
    const r = await call(t, 'GET', '/api/v1/namespaces/blog/counters');
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual({
      items: [
        { name: 'blog/a', namespace: 'blog', key: 'a', value: 1 },
        { name: 'blog/b', namespace: 'blog', key: 'b', value: 2 },
        { name: 'blog/c', namespace: 'blog', key: 'c', value: 3 },
      ],
      nextCursor: null,
    });
    const first = (await call(t, 'GET', '/api/v1/namespaces/blog/counters?limit=2')).json();
    expect(first.items.map((i: { key: string }) => i.key)).toEqual(['a', 'b']);
    expect(first.nextCursor).toEqual(expect.any(String));
    const second = (
      await call(t, 'GET', `/api/v1/namespaces/blog/counters?limit=2&cursor=${first.nextCursor}`)
    ).json();
    expect(second).toEqual({
      items: [{ name: 'blog/c', namespace: 'blog', key: 'c', value: 3 }],
      nextCursor: null,
    });
    // `default` lists the flat names only.
    const flat = (await call(t, 'GET', '/api/v1/namespaces/default/counters')).json();
    expect(flat).toEqual({
      items: [{ name: 'flat', namespace: 'default', key: 'flat', value: 4 }],
      nextCursor: null,
    });
    const empty = (await call(t, 'GET', '/api/v1/namespaces/nobody/counters')).json();
    expect(empty).toEqual({ items: [], nextCursor: null });
  });
});

describe('TALLY_CREATE_RATE_LIMIT', () => {
  it('refuses creates past the limit with 429, creating nothing; claims count too', async () => {
    const t = await make({ createRateLimit: '2/60' });
    await create(t, 'blog', 'one');
    await create(t, 'blog', 'two');
    const third = await call(t, 'POST', path('blog', 'three'));
    refused(third, 429, 'RATE_LIMITED');
    expect(Number(third.headers['retry-after'])).toBeGreaterThan(0);
    refused(await call(t, 'GET', `${path('blog', 'three')}/info`), 404, 'COUNTER_NOT_FOUND');
    refused(await call(t, 'POST', '/api/v1/namespaces/shop'), 429, 'RATE_LIMITED');
    expect(await t.store.namespaceRecord('shop')).toBeUndefined();
    // Increments are not creates: still accepted.
    expect((await inc(t, 'blog', 'one')).statusCode).toBe(202);
    expect(await value(t, 'blog', 'one')).toBe(1);
  });

  it('counts namespace claims against the same budget', async () => {
    const t = await make({ createRateLimit: '2/60' });
    expect((await call(t, 'POST', '/api/v1/namespaces/shop')).statusCode).toBe(201);
    await create(t, 'blog', 'one');
    refused(await call(t, 'POST', path('blog', 'two')), 429, 'RATE_LIMITED');
    refused(await call(t, 'POST', '/api/v1/namespaces/news'), 429, 'RATE_LIMITED');
    expect(await t.store.describe('blog/two')).toBeUndefined();
    expect(await t.store.namespaceRecord('news')).toBeUndefined();
  });
});

describe('what the review found', () => {
  it('answers 409 NAMESPACE_TAKEN for a claimed namespace, whoever asks', async () => {
    const t = await make();
    const first = await t.app.inject({ method: 'POST', url: '/api/v1/namespaces/taken' });
    expect(first.statusCode).toBe(201);
    await t.app.inject({
      method: 'POST',
      url: '/api/v1/namespaces/taken/counters/c1',
      headers: { authorization: `Bearer ${first.json().namespace_key}` },
    });
    const again = await t.app.inject({ method: 'POST', url: '/api/v1/namespaces/taken' });
    expect(again.statusCode).toBe(409);
    expect(again.json().error.code).toBe('NAMESPACE_TAKEN');
  });

  it('refuses namespaces and keys made of dots only', async () => {
    const t = await make();
    // Sent as is, over real HTTP: the test client (and fetch) would resolve the dots first.
    const base = await t.app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = new URL(base);
    for (const path of [
      '/api/v1/namespaces/../counters/x/increment',
      '/api/v1/namespaces/./counters/x/increment',
      '/api/v1/namespaces/blog/counters/../increment',
    ]) {
      const status = await new Promise<number>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path, method: 'POST' }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      });
      expect(status, path).toBe(400);
    }
    const r = await t.app.inject({
      method: 'POST',
      url: '/api/v1/namespaces/a..b/counters/x/increment',
    });
    expect(r.statusCode).toBe(202);
  });
});
