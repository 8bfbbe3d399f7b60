// Live values of a namespaced counter over real HTTP: the same stream as a flat name's.
import { afterEach, expect, it } from 'vitest';
import type { Tally } from '../../src/app.js';
import { testApp } from '../helpers/app.js';
import { sseReader } from '../helpers/sse.js';

let tally: Tally | undefined;
afterEach(async () => {
  await tally?.close();
  tally = undefined;
});

it('streams a namespaced counter at /api/v1/namespaces/{ns}/counters/{key}/events', async () => {
  tally = await testApp();
  const base = await tally.app.listen({ port: 0, host: '127.0.0.1' });
  const controller = new AbortController();
  const res = await fetch(`${base}/api/v1/namespaces/blog/counters/live/events`, {
    signal: controller.signal,
  });
  expect(res.status).toBe(200);
  const stream = sseReader(res);
  await stream.until('data: {"name":"blog/live","value":0}');
  await fetch(`${base}/api/v1/namespaces/blog/counters/live/increment`, { method: 'POST' });
  await stream.until('data: {"name":"blog/live","value":1}');
  controller.abort();
  const bad = await fetch(`${base}/api/v1/namespaces/a%20b/counters/live/events`);
  expect(bad.status).toBe(400);
  expect((await bad.json()).error.code).toBe('INVALID_NAMESPACE');
});
