/**
 * @module bench/sections/convergence — time from an increment acknowledged by instance A to the
 * SSE event carrying the new value on instance B (two processes on one Redis).
 */
import { request } from 'node:http';
import { type BenchContext, walEnv } from '../lib/context.js';
import { call } from '../lib/http.js';
import { type Service, startTally } from '../lib/procs.js';
import type { ConvergenceResult } from '../lib/results.js';

const FLUSH_INTERVAL_MS = 100;
/** An event later than this counts as missed. */
const TIMEOUT_MS = 3000;
const COUNTER = 'conv.clicks';

/** Values from one SSE stream, with the time each arrived. */
class ValueStream {
  private latest = Number.NEGATIVE_INFINITY;
  private latestAt = 0;
  private waiter: { min: number; resolve: (at: number) => void } | null = null;
  private readonly req;

  constructor(url: string, onOpen: () => void, onError: (err: Error) => void) {
    let buffer = '';
    this.req = request(url, { headers: { accept: 'text/event-stream' } }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        const at = performance.now();
        buffer += chunk;
        for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = /^data: (.*)$/m.exec(frame)?.[1];
          if (!/^event: value$/m.test(frame) || data === undefined) continue;
          const { value } = JSON.parse(data) as { value: number };
          if (this.latest === Number.NEGATIVE_INFINITY) onOpen();
          this.latest = value;
          this.latestAt = at;
          if (this.waiter !== null && value >= this.waiter.min) {
            this.waiter.resolve(at);
            this.waiter = null;
          }
        }
      });
    });
    this.req.on('error', onError);
    this.req.end();
  }

  /** Resolves with the arrival time of the first value ≥ `min` (maybe one already seen). */
  until(min: number): Promise<number | null> {
    if (this.latest >= min) return Promise.resolve(this.latestAt);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        resolve(null);
      }, TIMEOUT_MS);
      this.waiter = {
        min,
        resolve: (at) => {
          clearTimeout(timer);
          resolve(at);
        },
      };
    });
  }

  close(): void {
    this.req.destroy();
  }
}

export async function convergence(ctx: BenchContext): Promise<ConvergenceResult> {
  const samples = ctx.settings.convergenceSamples;
  const services: Service[] = [];
  let stream: ValueStream | undefined;
  try {
    for (const name of ['conv-a', 'conv-b']) {
      services.push(
        await startTally({
          name,
          env: {
            TALLY_STORE: 'redis',
            TALLY_REDIS_URL: ctx.redis.url,
            TALLY_REDIS_PREFIX: 'bench:conv:',
            TALLY_FLUSH_INTERVAL_MS: String(FLUSH_INTERVAL_MS),
            ...walEnv(ctx, true),
          },
          ...ctx.spawn(name),
        }),
      );
    }
    const [a, b] = services as [Service, Service];
    ctx.log(`convergence: ${samples} increments on A, SSE on B`);
    await new Promise<void>((resolve, reject) => {
      stream = new ValueStream(`${b.url}/api/v1/counters/${COUNTER}/events`, resolve, reject);
    });
    const latencies: number[] = [];
    let missed = 0;
    for (let i = 0; i < samples; i++) {
      const { value } = await call<{ value: number }>(
        `${a.url}/api/v1/counters/${COUNTER}/increment`,
        'POST',
      );
      const ackedAt = performance.now();
      const seenAt = await (stream as ValueStream).until(value);
      if (seenAt === null) missed++;
      else latencies.push(Math.max(0, seenAt - ackedAt));
      // Land the next increment at a random point of the flush cycle.
      await new Promise((r) => setTimeout(r, Math.random() * FLUSH_INTERVAL_MS * 0.5));
    }
    if (missed > 0) ctx.fail(`convergence: ${missed} of ${samples} values never reached B`);
    latencies.sort((x, y) => x - y);
    const at = (q: number) =>
      latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? Number.NaN;
    return {
      samples,
      missed,
      flushIntervalMs: FLUSH_INTERVAL_MS,
      p50Ms: at(0.5),
      p99Ms: at(0.99),
      maxMs: latencies[latencies.length - 1] ?? Number.NaN,
    };
  } finally {
    stream?.close();
    await Promise.all(services.map((s) => s.stop()));
  }
}
