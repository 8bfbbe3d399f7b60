// One store outage under load, shared by the Redis and PostgreSQL outage tests: two Tally
// instances take mixed eventual/strong increments while `stop` takes the store away for
// `outageMs` and `start` brings it back; then every documented behaviour is checked. The
// caller checks that the store holds exactly `expected`.
import { expect } from 'vitest';
import type { ServerProcess } from './server-process.js';

interface Outcome {
  kind: 'eventual' | 'strong';
  at: number;
  ms: number;
  status: number;
  code: string | undefined;
  retryAfter: string | null;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface OutageOptions {
  /** Two running instances on the store. */
  readonly tallies: readonly ServerProcess[];
  readonly counters: readonly string[];
  readonly outageMs: number;
  /** Takes the store away (kill, crash) and brings it back. */
  stop(): Promise<void>;
  start(): Promise<void>;
}

/** What the clients were told: per counter, the increments acknowledged (or to be applied once). */
export interface OutageRun {
  readonly expected: Map<string, number>;
  /** One line of figures for the test's output. */
  summary(store: string): string;
}

/**
 * Runs the load through the outage, waits until both instances are ready and flushed, and
 * asserts the outage behaviour: only documented answers, eventual increments accepted until
 * max-pending, strong ones failing fast, /readyz 503 during and 200 after, no process died.
 */
export async function loadThroughOutage(options: OutageOptions): Promise<OutageRun> {
  const { tallies, counters } = options;

  const expected = new Map<string, number>(counters.map((c) => [c, 0]));
  const outcomes: Outcome[] = [];
  const ready: Array<{ instance: number; at: number; status: number }> = [];
  let running = true;
  let counter = 0;

  const client = async (id: number) => {
    let n = 0;
    while (running) {
      const t = tallies[(id + n) % 2] as ServerProcess;
      const name = counters[(id * 7 + n * 13 + counter++) % counters.length] as string;
      const strong = n % 5 === 4;
      const by = 1 + (n % 3);
      n++;
      const started = performance.now();
      const res = await fetch(
        `${t.url}/api/v1/counters/${name}/increment${strong ? '?consistency=strong' : ''}`,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ by }),
        },
      );
      const body = (await res.json()) as { error?: { code: string } };
      const code = body.error?.code;
      outcomes.push({
        kind: strong ? 'strong' : 'eventual',
        at: started,
        ms: performance.now() - started,
        status: res.status,
        code,
        retryAfter: res.headers.get('retry-after'),
      });
      // Acknowledged, or accepted-but-unconfirmed (applied once later): both must be counted.
      if (res.status === 200 || res.status === 202 || code === 'NOT_CONFIRMED') {
        expected.set(name, (expected.get(name) ?? 0) + by);
      }
      await sleep(4);
    }
  };
  const poller = async () => {
    while (running) {
      for (const [i, t] of tallies.entries()) {
        const res = await fetch(`${t.url}/readyz`);
        await res.arrayBuffer();
        ready.push({ instance: i, at: performance.now(), status: res.status });
      }
      await sleep(100);
    }
  };

  const load = [...Array.from({ length: 6 }, (_, i) => client(i)), poller()];
  await sleep(1500);
  const down = performance.now();
  await options.stop();
  await sleep(options.outageMs);
  // The store may take requests before `start` returns (pg_ctl -w, redis-server's ping wait):
  // "during the outage" ends where the restart begins.
  const restarting = performance.now();
  await options.start();
  const up = performance.now();
  await sleep(2500);
  running = false;
  await Promise.all(load);

  // Back to ready on both instances.
  const recovery = performance.now();
  for (const t of tallies) {
    for (;;) {
      const res = await fetch(`${t.url}/readyz`);
      await res.arrayBuffer();
      if (res.status === 200) break;
      if (performance.now() - recovery > 15_000) throw new Error('readyz stayed 503');
      await sleep(100);
    }
  }
  // Strong reads flush what each instance still holds (retrying while its backoff runs).
  for (const t of tallies) {
    for (;;) {
      const res = await fetch(`${t.url}/api/v1/counters/${counters[0]}?consistency=strong`);
      await res.arrayBuffer();
      if (res.status === 200) break;
      if (performance.now() - recovery > 20_000) throw new Error('strong read kept failing');
      await sleep(100);
    }
  }
  const flushedMs = performance.now() - up;

  // Requests wholly inside the outage: started after it began, answered before the restart.
  const during = outcomes.filter((o) => o.at > down + 200 && o.at + o.ms < restarting);
  const eventualDuring = during.filter((o) => o.kind === 'eventual');
  const strongDuring = during.filter((o) => o.kind === 'strong');
  const overloaded = outcomes.filter((o) => o.code === 'OVERLOADED');

  // Nothing but the documented answers, and no process died.
  const allowed = new Set([
    '202',
    '200',
    '503 OVERLOADED',
    '503 STORE_UNAVAILABLE',
    '503 NOT_CONFIRMED',
  ]);
  for (const o of outcomes)
    expect(allowed).toContain(o.code ? `${o.status} ${o.code}` : `${o.status}`);
  for (const t of tallies) {
    expect(t.child.exitCode).toBeNull();
    expect(t.output()).not.toMatch(/unhandled_rejection|uncaught_exception/);
  }
  // Eventual increments kept being accepted during the outage, until max-pending refused more.
  expect(eventualDuring.filter((o) => o.status === 202).length).toBeGreaterThan(50);
  expect(overloaded.length).toBeGreaterThan(0);
  for (const o of overloaded) expect(Number(o.retryAfter)).toBeGreaterThanOrEqual(1);
  // Strong increments failed fast with a clear code instead of hanging.
  expect(strongDuring.length).toBeGreaterThan(10);
  for (const o of strongDuring) {
    expect(o.status).toBe(503);
    expect(['STORE_UNAVAILABLE', 'NOT_CONFIRMED']).toContain(o.code);
    expect(o.ms).toBeLessThan(2500);
  }
  // /readyz went 503 during the outage and 200 after, on both instances.
  for (const i of [0, 1]) {
    expect(
      ready.some((r) => r.instance === i && r.at > down && r.at < restarting && r.status === 503),
    ).toBe(true);
    expect(ready.some((r) => r.instance === i && r.at < down && r.status === 200)).toBe(true);
  }

  const total = [...expected.values()].reduce((a, b) => a + b, 0);
  const readyAgain = [0, 1].map((i) => {
    const first = ready.find((r) => r.instance === i && r.at > up && r.status === 200);
    return first === undefined ? 'n/a' : `${Math.round(first.at - up)} ms`;
  });
  const strongMs = strongDuring.map((o) => o.ms).sort((a, b) => a - b);
  return {
    expected,
    summary: (store) =>
      `${store}-outage: ${outcomes.length} requests, total counted ${total}; during the outage ` +
      `${eventualDuring.filter((o) => o.status === 202).length} eventual accepted, ` +
      `${eventualDuring.filter((o) => o.code === 'OVERLOADED').length} OVERLOADED, ` +
      `${strongDuring.length} strong failed fast (max ${Math.round(strongMs[strongMs.length - 1] ?? 0)} ms); ` +
      `/readyz 200 again ${readyAgain.join(' / ')} after the store restarted; all flushed by ${Math.round(flushedMs)} ms`,
  };
}
