// Per-client limits on public increments (issue 13), over real HTTP: past TALLY_RATE_LIMIT a
// client gets 429 RATE_LIMITED with Retry-After and RateLimit headers and nothing is counted;
// other clients keep their own budget; reads are not limited; `auto` is off on loopback. The
// token bucket itself runs on a fake clock.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTallyError } from '../../src/errors.js';
import { publicWritesFor } from '../../src/http/access.js';
import {
  AUTO_HIT_LIMIT,
  ClientLimiter,
  clientAddressOf,
  rateLimitFor,
} from '../../src/http/rate-limit.js';
import { type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('tally-rate');
let limited: ServerProcess;
let loopback: ServerProcess;
let direct: ServerProcess;

beforeAll(async () => {
  limited = await startServer({
    TALLY_STORE: 'memory',
    TALLY_DATA_DIR: join(dir.path, 'limited'),
    TALLY_RATE_LIMIT: '5/10',
    // Each test client names itself in X-Forwarded-For, as browsers behind a balancer do.
    TALLY_TRUST_PROXY: 'true',
  });
  loopback = await startServer({ TALLY_STORE: 'memory', TALLY_DATA_DIR: join(dir.path, 'auto') });
  // No trusted proxy: the socket's peer is the client, whatever X-Forwarded-For claims.
  direct = await startServer({
    TALLY_STORE: 'memory',
    TALLY_DATA_DIR: join(dir.path, 'direct'),
    TALLY_RATE_LIMIT: '3/10',
  });
});
afterAll(async () => {
  await limited?.stop('SIGTERM');
  await loopback?.stop('SIGTERM');
  await direct?.stop('SIGTERM');
  dir.remove();
});

function hit(server: ServerProcess, name: string, client: string): Promise<Response> {
  return fetch(`${server.url}/api/v1/counters/${name}/increment`, {
    method: 'POST',
    headers: { 'x-forwarded-for': client },
  });
}

async function strong(server: ServerProcess, name: string): Promise<number> {
  const res = await fetch(`${server.url}/api/v1/counters/${name}?consistency=strong`);
  return ((await res.json()) as { value: number }).value;
}

describe('rate limits', () => {
  it('answers 429 past the limit, counting nothing, with Retry-After and RateLimit headers', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await hit(limited, 'rl-a', '10.0.0.1')).status);
    expect(statuses).toEqual([202, 202, 202, 202, 202]);
    const refused = await hit(limited, 'rl-a', '10.0.0.1');
    expect(refused.status).toBe(429);
    expect((await refused.json()) as unknown).toMatchObject({ error: { code: 'RATE_LIMITED' } });
    // 5 per 10 s: one more request in 2 s.
    expect(refused.headers.get('retry-after')).toBe('2');
    expect(refused.headers.get('ratelimit-limit')).toBe('5');
    expect(refused.headers.get('ratelimit-remaining')).toBe('0');
    expect(refused.headers.get('ratelimit-policy')).toBe('5;w=10');
    // A batch from the same client is refused too.
    const batch = await fetch(`${limited.url}/api/v1/increments`, {
      method: 'POST',
      headers: { 'x-forwarded-for': '10.0.0.1', 'content-type': 'application/json' },
      body: JSON.stringify({ increments: [{ name: 'rl-a', by: 1 }] }),
    });
    expect(batch.status).toBe(429);
    expect(await strong(limited, 'rl-a')).toBe(5);
  });

  it('keeps a budget per client, and never limits reads', async () => {
    expect((await hit(limited, 'rl-b', '10.0.0.2')).status).toBe(202);
    for (let i = 0; i < 20; i++) {
      expect((await fetch(`${limited.url}/api/v1/counters/rl-b`)).status).toBe(200);
    }
    expect(await strong(limited, 'rl-b')).toBe(1);
  });

  it('without a trusted proxy, limits the connection peer and ignores X-Forwarded-For', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await hit(direct, 'rl-d', `10.0.1.${i}`)).status);
    expect(statuses).toEqual([202, 202, 202, 429]);
    expect(await strong(direct, 'rl-d')).toBe(3);
  });

  it('is off by default on a loopback-only server', async () => {
    const statuses = await Promise.all(
      Array.from({ length: 150 }, () => hit(loopback, 'rl-c', '10.0.0.3').then((r) => r.status)),
    );
    expect(statuses.every((s) => s === 202)).toBe(true);
    expect(rateLimitFor('auto', '127.0.0.1', AUTO_HIT_LIMIT)).toBeUndefined();
    // Behind a proxy it trusts, loopback is the internet's way in: limited, and hits only.
    expect(rateLimitFor('auto', '127.0.0.1', AUTO_HIT_LIMIT, 1)).toEqual(AUTO_HIT_LIMIT);
    expect(publicWritesFor('auto', '127.0.0.1', false)).toBe('open');
    expect(publicWritesFor('auto', '127.0.0.1', 1)).toBe('hits');
    expect(publicWritesFor('auto', '::1', ['10.0.0.0/8'])).toBe('hits');
    // A host name that merely starts with 127. is no loopback address.
    expect(publicWritesFor('auto', '127.evil.example', false)).toBe('hits');
    expect(rateLimitFor('auto', '127.evil.example', AUTO_HIT_LIMIT)).toEqual(AUTO_HIT_LIMIT);
    expect(rateLimitFor('auto', '0.0.0.0', AUTO_HIT_LIMIT)).toEqual({ requests: 100, seconds: 10 });
    expect(rateLimitFor('30/1', '127.0.0.1', AUTO_HIT_LIMIT)).toEqual({ requests: 30, seconds: 1 });
    expect(rateLimitFor('off', '0.0.0.0', AUTO_HIT_LIMIT)).toBeUndefined();
  });
});

describe('ClientLimiter', () => {
  it('refills continuously up to the burst, and forgets full buckets', () => {
    let now = 1_000_000;
    const limiter = new ClientLimiter(
      { requests: 3, seconds: 1 },
      clientAddressOf(false),
      () => now,
    );
    for (let i = 0; i < 3; i++) limiter.takeFor('a');
    const refused = (() => {
      try {
        limiter.takeFor('a');
        return undefined;
      } catch (err) {
        return err;
      }
    })();
    expect(isTallyError(refused) && refused.code).toBe('RATE_LIMITED');
    now += 340; // 3/s: 1.02 tokens back
    limiter.takeFor('a');
    expect(() => limiter.takeFor('a')).toThrow();
    now += 60_000; // long idle: back to the burst of 3, not more
    for (let i = 0; i < 3; i++) limiter.takeFor('a');
    expect(() => limiter.takeFor('a')).toThrow();
    limiter.takeFor('b');
    expect(limiter.size()).toBe(2);
    limiter.close();
  });
});
