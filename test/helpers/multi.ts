// What the multi-instance tests on a shared store (Redis, PostgreSQL) have in common: JSON POSTs,
// a seeded random source, and the check that values made on one instance reach a live client
// of another within about two flush intervals, never stepping back.
import { randomUUID } from 'node:crypto';
import { expect } from 'vitest';
import type { ServerProcess } from './server-process.js';

export /** POSTs JSON and returns status and body; never throws on HTTP errors. */
async function post(url: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

/** A small seeded generator (LCG), so a load's mix is the same every run. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/**
 * Streams counter `name` from instance `b` while `a` takes clicks, eight rounds of three, and
 * checks B shows each total within 2.5 flush intervals (median) and never goes back. Logs the
 * delays under `label`.
 */
export async function expectLiveAcross(
  a: ServerProcess,
  b: ServerProcess,
  flushMs: number,
  label: string,
): Promise<void> {
  const name = `live-${randomUUID().slice(0, 6)}`;
  const controller = new AbortController();
  const res = await fetch(`${b.url}/api/v1/counters/${name}/events`, {
    signal: controller.signal,
  });
  expect(res.status).toBe(200);
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  const values: Array<{ value: number; at: number }> = [];
  let buffered = '';
  const reading = (async () => {
    for (;;) {
      const { done, value } = await reader.read().catch(() => ({ done: true, value: undefined }));
      if (done) return;
      buffered += decoder.decode(value, { stream: true });
      let end = buffered.indexOf('\n\n');
      while (end >= 0) {
        const frame = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        const data = /^data: (.*)$/m.exec(frame);
        if (/^event: value$/m.test(frame) && data?.[1]) {
          values.push({
            value: (JSON.parse(data[1]) as { value: number }).value,
            at: performance.now(),
          });
        }
        end = buffered.indexOf('\n\n');
      }
    }
  })();
  const waitFor = async (value: number, ms: number) => {
    const deadline = performance.now() + ms;
    while (!values.some((v) => v.value === value)) {
      if (performance.now() > deadline)
        throw new Error(
          `B never streamed ${value}; saw ${JSON.stringify(values.map((v) => v.value))}`,
        );
      await new Promise((r) => setTimeout(r, 5));
    }
    return (values.find((v) => v.value === value) as { at: number }).at;
  };
  try {
    await waitFor(0, 5000);
    const delays: number[] = [];
    for (let round = 1; round <= 8; round++) {
      // Three clicks on A, spaced like a person clicking; B must show the total.
      for (let k = 0; k < 3; k++) {
        expect((await post(`${a.url}/api/v1/counters/${name}/increment`)).status).toBe(202);
      }
      const clicked = performance.now();
      const seenAt = await waitFor(round * 3, 5000);
      delays.push(seenAt - clicked);
      await new Promise((r) => setTimeout(r, 30));
    }
    delays.sort((x, y) => x - y);
    const median = delays[Math.floor(delays.length / 2)] as number;
    console.log(`${label}: A→B live delay ms: ${delays.map((d) => Math.round(d)).join(', ')}`);
    // About two flush intervals: A's flush (≤ 1.1 × interval away) plus B's coalescing window.
    expect(median).toBeLessThan(2.5 * flushMs);
    expect(delays[delays.length - 1]).toBeLessThan(1500);
    // Values on B never went backwards.
    const seq = values.map((v) => v.value);
    expect([...seq].sort((x, y) => x - y)).toEqual(seq);
  } finally {
    controller.abort();
    await reading;
  }
}
