// Ten thousand malformed or hostile requests: every one answers 4xx, the server stays up and no
// counter changes.
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tally } from '../../src/app.js';
import { ADMIN_TOKEN, testApp } from '../helpers/app.js';

let t: Tally;
let base: string;
beforeAll(async () => {
  t = await testApp({ adminToken: ADMIN_TOKEN, requestTimeoutMs: 500, bodyLimitBytes: 64 * 1024 });
  base = await t.app.listen({ port: 0, host: '127.0.0.1' });
});
afterAll(async () => {
  await t.close();
});

/** A small deterministic PRNG so a failure can be reproduced from its seed. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

// Control characters are percent-encoded: fetch's URL parser strips raw tabs and newlines.
const BAD_NAMES = [
  '__proto__',
  '_x',
  '-x',
  '.x',
  ':x',
  'a b',
  'a/b',
  'a%00b',
  'é',
  '日本',
  'a%0Ab',
  'a%0D%0Ab',
  'a%09b',
  'a%7F',
  '%E2%80%AE',
  'x'.repeat(129),
  '%2e%2e',
  '..',
  'a%3Fb',
  'a%23b',
  'a"b',
  "a'b",
  'a<b>',
  '%F0%9F%98%80',
];
const BAD_BODIES = [
  '{',
  '}',
  '[',
  'null',
  'true',
  '1',
  '"by"',
  '[{"by":1}]',
  '{"by":"1"}',
  '{"by":1.5}',
  '{"by":-0.1}',
  '{"by":1e400}',
  '{"by":-1e400}',
  '{"by":9007199254740993}',
  '{"by":1000000001}',
  '{"by":-1000000001}',
  '{"by":null}',
  '{"by":true}',
  '{"by":[1]}',
  '{"by":{"$gt":1}}',
  '{"__proto__":{"by":2}}',
  '{"constructor":{"prototype":{"x":1}}}',
  '{"by":1,"extra":1}',
  '{"By":1}',
  '{"by":0x10}',
  '{"by":1,}',
  '\u0000',
  '{"by":NaN}',
  '{"by":Infinity}',
  '{"by":"9"}',
  `{"by":${'9'.repeat(400)}}`,
];
const BAD_BATCHES = [
  '{"increments":[]}',
  '{"increments":null}',
  '{"increments":"a"}',
  '{"increments":[null]}',
  '{"increments":[{"name":"__proto__"}]}',
  '{"increments":[{"name":"ok","by":1.5}]}',
  '{"increments":[{"name":"ok","by":1},{"name":"bad name"}]}',
  '{"increments":[{"name":"ok","x":1}]}',
  '{"increments":[{"by":1}]}',
  '{"increments":[{"name":1}]}',
  '{"incs":[]}',
  '[]',
  `{"increments":[${Array.from({ length: 1001 }, () => '{"name":"ok"}').join(',')}]}`,
];
const BAD_TYPES = [
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/xml',
  'application/jsonx',
];

interface Req {
  method: string;
  path: string;
  body?: string;
  type?: string;
  headers?: Record<string, string>;
}

function hostile(r: () => number): Req {
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(r() * xs.length)] as T;
  switch (Math.floor(r() * 10)) {
    case 0:
      return { method: 'POST', path: `/api/v1/counters/${pick(BAD_NAMES)}/increment` };
    case 1:
      return { method: 'GET', path: `/api/v1/counters/${pick(BAD_NAMES)}` };
    case 2:
    case 3:
      return {
        method: 'POST',
        path: '/api/v1/counters/ok/increment',
        body: pick(BAD_BODIES),
        type: 'application/json',
      };
    case 4:
      return {
        method: 'POST',
        path: '/api/v1/increments',
        body: pick(BAD_BATCHES),
        type: 'application/json',
      };
    case 5:
      return {
        method: 'POST',
        path: '/api/v1/counters/ok/increment',
        body: '{"by":1}',
        type: pick(BAD_TYPES),
      };
    case 6:
      return {
        method: 'POST',
        path: '/api/v1/counters/ok/increment',
        body: `{"by":1,"pad":"${'x'.repeat(70_000)}"}`,
        type: 'application/json',
      };
    case 7:
      return {
        method: 'PUT',
        path: '/api/v1/counters/ok',
        body: '{"value":5}',
        type: 'application/json',
        headers: pick<Record<string, string>>([
          {},
          { authorization: 'Bearer nope-nope-nope-nope' },
          { authorization: 'Basic eA==' },
        ]),
      };
    case 8:
      return {
        method: 'POST',
        path: `/api/v1/counters/ok/increment?consistency=${pick(['', 'STRONG', 'maybe', '1', '%00'])}`,
      };
    default:
      return {
        method: 'POST',
        path: '/api/v1/counters/ok/increment',
        headers: { 'idempotency-key': pick(['', 'x'.repeat(300), 'tab\there']) },
        body: '{"by":1}',
        type: 'application/json',
      };
  }
}

/** Writes raw bytes on a fresh connection and resolves with everything the server sent back. */
function raw(url: URL, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname, () => socket.write(text));
    let data = '';
    socket.on('data', (d) => {
      data += d;
    });
    socket.on('close', () => resolve(data));
    socket.on('error', reject);
    setTimeout(() => {
      socket.destroy();
      resolve(data);
    }, 5000);
  });
}

/** Sends headers and half a body, then stalls: the server must time the request out. */
function slowBody(url: URL): Promise<string> {
  return raw(
    url,
    'POST /api/v1/counters/slow/increment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"by":',
  );
}

describe('fuzz', () => {
  it('answers 10,000 hostile requests with 4xx and changes nothing', async () => {
    const r = rng(20261128);
    const requests = Array.from({ length: 10_000 }, () => hostile(r));
    const byStatus = new Map<number, number>();
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < requests.length) {
          const req = requests[next++] as Req;
          const res = await fetch(base + req.path, {
            method: req.method,
            body: req.body,
            headers: { ...(req.type ? { 'content-type': req.type } : {}), ...req.headers },
          });
          const text = await res.text();
          byStatus.set(res.status, (byStatus.get(res.status) ?? 0) + 1);
          if (res.status < 400 || res.status >= 500) {
            throw new Error(
              `${req.method} ${req.path} ${req.body?.slice(0, 80)} → ${res.status} ${text}`,
            );
          }
          if (res.status !== 404 || req.path.startsWith('/api/')) {
            expect(JSON.parse(text).error.code).toMatch(/^[A-Z_]+$/);
          }
        }
      }),
    );
    const total = [...byStatus.values()].reduce((a, b) => a + b, 0);
    expect(total).toBe(10_000);
    const slow = await Promise.all([slowBody(new URL(base)), slowBody(new URL(base))]);
    for (const answer of slow) {
      expect(answer).toMatch(/^HTTP\/1\.1 408/);
      expect(answer).toContain('"code":"REQUEST_TIMEOUT"');
    }
    // Errors Node's parser raises before a request exists answer in the same JSON shape.
    const url = new URL(base);
    const huge = await raw(
      url,
      `GET /api/v1/counters/x HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    );
    expect(huge).toMatch(/^HTTP\/1\.1 431/);
    expect(huge).toContain('"code":"HEADERS_TOO_LARGE"');
    const garbage = await raw(url, 'HELLO THERE\r\n\r\n');
    expect(garbage).toMatch(/^HTTP\/1\.1 400/);
    expect(garbage).toContain('"code":"BAD_REQUEST"');

    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    const list = await (await fetch(`${base}/api/v1/counters?limit=1000`)).json();
    expect(list.items).toEqual([]);
    expect(t.aggregator.pendingIncrements()).toBe(0);
    expect(Object.getPrototypeOf({})).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).by).toBeUndefined();
  }, 120_000);

  it('treats names like constructor and hasOwnProperty as ordinary counters', async () => {
    for (const name of ['constructor', 'hasOwnProperty', 'toString', 'prototype']) {
      const res = await fetch(`${base}/api/v1/counters/${name}/increment?consistency=strong`, {
        method: 'POST',
      });
      expect(await res.json()).toEqual({ name, value: 1 });
    }
    const list = await (await fetch(`${base}/api/v1/counters`)).json();
    expect(list.items.map((i: { name: string }) => i.name)).toEqual([
      'constructor',
      'hasOwnProperty',
      'prototype',
      'toString',
    ]);
  });
});
