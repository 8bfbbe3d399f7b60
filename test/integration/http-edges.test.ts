// The HTTP edge as a new user meets it: errors and traced requests carry x-request-id (a
// client's own id is kept), a known path with the wrong method answers 405 with Allow, unknown
// paths answer a page to a browser and JSON to everyone else, /favicon.ico leads to the icon,
// and a cursor that is not one of ours is refused rather than read as "from the start".
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tally } from '../../src/app.js';
import { testApp } from '../helpers/app.js';

let tally: Tally;
beforeAll(async () => {
  tally = await testApp();
});
afterAll(async () => {
  await tally.close();
});

const request = (
  method: string,
  url: string,
  headers: Record<string, string> = {},
  payload?: string,
) =>
  tally.app.inject({
    method: method as 'GET',
    url,
    headers,
    ...(payload === undefined ? {} : { payload }),
  });

describe('request ids', () => {
  it('names every error, and every answer to a client that sent an id', async () => {
    const errors = [
      await request('GET', '/api/v1/counters/bad name'),
      await request('GET', '/nope'),
      await request('GET', '/nope', { accept: 'text/html' }),
      await request('DELETE', '/api/v1/counters'),
      await request(
        'POST',
        '/api/v1/counters/ids/increment',
        { 'content-type': 'application/json' },
        '{',
      ),
    ];
    const ids = errors.map((a) => a.headers['x-request-id']);
    for (const [i, id] of ids.entries()) expect(id, String(i)).toMatch(/^[0-9a-f]{8}-[0-9a-z]+$/);
    expect(new Set(ids).size).toBe(ids.length);
    const bad = await request('GET', '/api/v1/counters/bad name');
    expect(bad.json().error.requestId).toBe(bad.headers['x-request-id']);

    for (const [method, url] of [
      ['POST', '/api/v1/counters/ids/increment'],
      ['GET', '/api/v1/counters/ids'],
      ['GET', '/'],
    ] as const) {
      const own = await request(method, url, { 'x-request-id': 'trace-42' });
      expect(own.statusCode, url).toBeLessThan(400);
      expect(own.headers['x-request-id'], url).toBe('trace-42');
      // An id it cannot use is replaced, and the answer says by which.
      const spaced = await request(method, url, { 'x-request-id': 'two words' });
      expect(spaced.headers['x-request-id'], url).toMatch(/^[0-9a-f]{8}-[0-9a-z]+$/);
      // A success nobody asked to trace names nothing a log holds.
      const plain = await request(method, url);
      expect(plain.statusCode, url).toBeLessThan(400);
      expect(plain.headers['x-request-id'], url).toBeUndefined();
    }
  });

  it('names every answer when request lines are logged (debug)', async () => {
    const debug = await testApp({ logLevel: 'debug' });
    try {
      const answers = [
        await debug.app.inject({ method: 'POST', url: '/api/v1/counters/ids/increment' }),
        await debug.app.inject({ method: 'GET', url: '/api/v1/counters/ids' }),
      ];
      for (const a of answers) {
        expect(a.statusCode).toBeLessThan(400);
        expect(a.headers['x-request-id']).toMatch(/^[0-9a-f]{8}-[0-9a-z]+$/);
      }
    } finally {
      await debug.close();
    }
  });
});

describe('methods', () => {
  it.each([
    ['DELETE', '/api/v1/counters', 'GET, HEAD, OPTIONS'],
    ['GET', '/api/v1/counters/page/increment', 'OPTIONS, POST'],
    ['PATCH', '/api/v1/counters/page', 'DELETE, GET, HEAD, OPTIONS, PUT'],
    ['POST', '/healthz', 'GET, HEAD'],
  ])('%s %s answers 405 with Allow: %s', async (method, url, allow) => {
    const res = await request(method, url);
    expect(res.statusCode).toBe(405);
    expect(res.headers.allow).toBe(allow);
    expect(res.json().error.code).toBe('METHOD_NOT_ALLOWED');
  });
});

describe('unknown paths', () => {
  it('answers a browser with the 404 page and everyone else with JSON', async () => {
    const browser = await request('GET', '/nope/deeper', {
      accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
    });
    expect(browser.statusCode).toBe(404);
    expect(browser.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(browser.headers['content-security-policy']).toContain("default-src 'self'");
    expect(browser.body).toContain('There is no page here');
    expect(browser.body).toContain('/nope/deeper');
    for (const accept of [undefined, 'application/json', '*/*']) {
      const res = await request('GET', '/nope', accept === undefined ? {} : { accept });
      expect(res.statusCode).toBe(404);
      expect(res.json().error.code).toBe('NOT_FOUND');
    }
    // A path in the page is escaped, never markup.
    const sneaky = await request('GET', '/%3Cscript%3Ex', { accept: 'text/html' });
    expect(sneaky.body).not.toContain('<script>x');
  });

  it('sends /favicon.ico to the icon', async () => {
    const res = await request('GET', '/favicon.ico');
    expect(res.statusCode).toBe(301);
    const location = res.headers.location as string;
    expect(location).toMatch(/^\/assets\/favicon\.svg\?v=/);
    const icon = await request('GET', location);
    expect(icon.statusCode).toBe(200);
    expect(icon.headers['content-type']).toBe('image/svg+xml');
  });
});

describe('cursors', () => {
  it('refuses a cursor that is not one of ours, and follows one that is', async () => {
    for (const name of ['a1', 'a2', 'a3'])
      await request('POST', `/api/v1/counters/${name}/increment`);
    await request('GET', '/api/v1/counters/a3?consistency=strong');
    const first = (await request('GET', '/api/v1/counters?limit=2')).json();
    expect(first.nextCursor).toEqual(expect.any(String));
    const next = await request('GET', `/api/v1/counters?limit=2&cursor=${first.nextCursor}`);
    expect(next.statusCode).toBe(200);
    for (const cursor of [
      '____',
      'not a cursor',
      '%FF',
      Buffer.from('bad name').toString('base64url'),
    ]) {
      const res = await request('GET', `/api/v1/counters?cursor=${encodeURIComponent(cursor)}`);
      expect(res.statusCode, cursor).toBe(400);
      expect(res.json().error.code, cursor).toBe('INVALID_QUERY');
    }
  });
});
