// The typed client (src/client, the package's `tally-counter/client`) against a real server over
// HTTP: reads, increments, lists, admin writes, live values; a retry after a lost answer counts
// once (one Idempotency-Key per logical call); Retry-After is honoured; errors carry the stable
// code and only retryable ones are retried; the batcher coalesces increments into one request.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Tally } from '../../src/app.js';
import { TallyApiError, TallyClient } from '../../src/client/index.js';
import { ADMIN_TOKEN, testApp } from '../helpers/app.js';

let tally: Tally;
let url: string;
beforeAll(async () => {
  tally = await testApp({ adminToken: ADMIN_TOKEN });
  url = await tally.app.listen({ port: 0, host: '127.0.0.1' });
});
afterAll(async () => {
  await tally.close();
});

/** A fetch that records every call and lets a test break some of them. */
function recording(
  breakCall?: (n: number, res: Response | undefined) => Response | 'lose' | undefined,
) {
  const calls: Array<{ url: string; key: string | null }> = [];
  const fetchFn: typeof fetch = async (input, init) => {
    const n = calls.length + 1;
    calls.push({
      url: String(input),
      key: new Headers(init?.headers).get('idempotency-key'),
    });
    const early = breakCall?.(n, undefined);
    if (early instanceof Response) return early;
    const res = await fetch(input, init);
    // The server counted it; the answer is lost on the way back.
    if (breakCall?.(n, res) === 'lose') throw new TypeError('fetch failed');
    return res;
  };
  return { calls, fetchFn };
}

describe('TallyClient', () => {
  it('reads, increments, lists and writes with a token', async () => {
    const client = new TallyClient({ baseUrl: url, token: ADMIN_TOKEN });
    expect(await client.increment('c.one')).toBe(1);
    expect(await client.increment('blog/post', 4, { consistency: 'strong' })).toBe(4);
    expect(await client.get('blog/post')).toMatchObject({
      namespace: 'blog',
      key: 'post',
      value: 4,
    });
    expect(await client.set('c.one', 10)).toBe(10);
    const names: string[] = [];
    for await (const r of client.list({ prefix: 'c.', pageSize: 1 }))
      names.push(`${r.name}=${r.value}`);
    expect(names).toEqual(['c.one=10']);
    expect(await client.delete('c.one')).toBe(true);
    expect((await client.get('c.one', { consistency: 'strong' })).value).toBe(0);
  });

  it('counts a retried increment once when the first answer was lost', async () => {
    const { calls, fetchFn } = recording((n, res) =>
      n === 1 && res !== undefined ? 'lose' : undefined,
    );
    const client = new TallyClient({ baseUrl: url, fetch: fetchFn, retryBaseMs: 10 });
    expect(await client.increment('lost.answer', 1, { consistency: 'strong' })).toBe(1);
    expect(calls).toHaveLength(2);
    expect(calls[0]?.key).toMatch(/^[0-9a-f-]{36}$/);
    expect(calls[1]?.key).toBe(calls[0]?.key);
    expect((await client.get('lost.answer', { consistency: 'strong' })).value).toBe(1);
    // A new logical call gets a new key.
    await client.increment('lost.answer');
    expect(calls[2]?.key).not.toBe(calls[0]?.key);
  });

  it('keeps trying with attempts: Infinity, reports each retry, and retryNow cuts a backoff short', async () => {
    // Six lost attempts: more than the default five, so only `attempts: Infinity` gets through.
    // Bare 5xx answers, as a proxy sends them, and one of Tally's own INTERNAL.
    const internal = JSON.stringify({ error: { code: 'INTERNAL', message: 'Internal error' } });
    const { calls, fetchFn } = recording((n) =>
      n === 6
        ? new Response(internal, { status: 500 })
        : n <= 5
          ? new Response('', { status: n % 2 === 0 ? 500 : 503 })
          : undefined,
    );
    // A 10 s first backoff: without retryNow the call would take minutes.
    const client = new TallyClient({ baseUrl: url, fetch: fetchFn, retryBaseMs: 10_000 });
    const retries: string[] = [];
    const started = Date.now();
    const waking = setInterval(() => client.retryNow(), 20);
    try {
      const value = await client.increment('forever', 2, {
        consistency: 'strong',
        attempts: Number.POSITIVE_INFINITY,
        onRetry: (err, delayMs) => retries.push(`${err.code} ${delayMs > 0}`),
      });
      expect(value).toBe(2);
    } finally {
      clearInterval(waking);
    }
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(calls).toHaveLength(7);
    expect(new Set(calls.map((c) => c.key)).size).toBe(1);
    expect(retries).toEqual([
      'HTTP_503 true',
      'HTTP_500 true',
      'HTTP_503 true',
      'HTTP_500 true',
      'HTTP_503 true',
      'INTERNAL true',
    ]);
  });

  it('waits what Retry-After says, and does not retry what is not retryable', async () => {
    const limited = new Response(
      JSON.stringify({ error: { code: 'RATE_LIMITED', message: 'slow down' } }),
      { status: 429, headers: { 'retry-after': '1', 'content-type': 'application/json' } },
    );
    const { calls, fetchFn } = recording((n, res) =>
      n === 1 && res === undefined ? limited : undefined,
    );
    const client = new TallyClient({ baseUrl: url, fetch: fetchFn, retryBaseMs: 10 });
    const started = Date.now();
    expect(await client.increment('after.wait')).toBe(1);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(calls).toHaveLength(2);

    const bad = recording();
    const strict = new TallyClient({ baseUrl: url, fetch: bad.fetchFn });
    const err = await strict.increment('bad name').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TallyApiError);
    expect(err).toMatchObject({ code: 'INVALID_NAME', status: 400, retryable: false });
    expect(bad.calls).toHaveLength(1);
  });

  it('gives up after its attempts on a server that is not there', async () => {
    const client = new TallyClient({ baseUrl: 'http://127.0.0.1:1', attempts: 2, retryBaseMs: 5 });
    await expect(client.get('x')).rejects.toMatchObject({ code: 'UNREACHABLE', retryable: true });
  });

  it('coalesces increments client-side into one batch request', async () => {
    const { calls, fetchFn } = recording();
    const client = new TallyClient({ baseUrl: url, fetch: fetchFn });
    const batch = client.batcher({ intervalMs: 60_000 });
    for (let i = 0; i < 3; i++) batch.add('co.a');
    batch.add('co.b', 2);
    expect(await batch.close()).toBe(2);
    expect(calls.map((c) => new URL(c.url).pathname)).toEqual(['/api/v1/increments']);
    expect((await client.get('co.a', { consistency: 'strong' })).value).toBe(3);
    expect((await client.get('co.b', { consistency: 'strong' })).value).toBe(2);
  });

  it('follows live values', async () => {
    const client = new TallyClient({ baseUrl: url });
    await client.increment('live.one', 1, { consistency: 'strong' });
    const seen: number[] = [];
    const abort = new AbortController();
    const following = client.subscribe('live.one', (v) => seen.push(v), { signal: abort.signal });
    await expect.poll(() => seen).toEqual([1]);
    await client.increment('live.one', 2);
    await expect.poll(() => seen.at(-1), { timeout: 3000 }).toBe(3);
    abort.abort();
    await following;
  });
});
