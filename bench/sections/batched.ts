/** @module bench/sections/batched — POST /api/v1/increments with 1000 items, on one process. */
import { type BenchContext, walEnv, walLabel } from '../lib/context.js';
import { storedSum } from '../lib/http.js';
import { compare, type Target } from '../lib/load.js';
import { type Service, startTally } from '../lib/procs.js';
import { type BatchedRow, check } from '../lib/results.js';

/** Items per request: the API's maximum. */
export const ITEMS = 1000;
/** Fewer connections than single increments: each request is ~30 KB of JSON. */
const CONNECTIONS = 16;

export async function batched(ctx: BenchContext): Promise<BatchedRow[]> {
  const walModes: (boolean | null)[] = ctx.walSupported ? [true, false] : [null];
  const services: Service[] = [];
  try {
    const targets: { target: Target; label: string; server: Service }[] = [];
    for (const wal of walModes) {
      const id = `batch-sqlite-accumulate${wal === null ? '' : wal ? '-wal' : '-nowal'}`;
      ctx.log(`starting tally ${id}`);
      const server = await startTally({
        name: id,
        env: { TALLY_STORE: 'sqlite', TALLY_AGGREGATOR: 'accumulate', ...walEnv(ctx, wal) },
        ...ctx.spawn(id),
      });
      services.push(server);
      // One set of distinct counters per request, as a client that pre-aggregates would send.
      const increments = Array.from({ length: ITEMS }, (_, i) => ({ name: `${id}.${i}`, by: 1 }));
      targets.push({
        server,
        label: `batched · sqlite · accumulate${walLabel(wal)}`,
        target: {
          id,
          label: id,
          url: server.url,
          connections: CONNECTIONS,
          processes: { server: server.pid },
          requests: [
            {
              method: 'POST',
              path: '/api/v1/increments',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({ increments }),
            },
          ],
        },
      });
    }
    ctx.log(`batched: ${targets.length} targets × ${ctx.settings.secondsPerTarget} s`);
    const meters = await compare(
      targets.map((t) => t.target),
      {
        secondsPerTarget: ctx.settings.secondsPerTarget,
        rounds: ctx.settings.rounds,
        warmupSeconds: ctx.settings.warmupSeconds,
        progress: (t, s, round) =>
          ctx.verbose &&
          ctx.log(
            `  r${round + 1} ${t.id.padEnd(28)} ${Math.round((s.ok * ITEMS * 1000) / s.ms)
              .toString()
              .padStart(9)} increments/s`,
          ),
      },
    );
    const rows: BatchedRow[] = [];
    for (const { target, label, server } of targets) {
      const meter = meters.get(target.id);
      if (meter === undefined) continue;
      const stored = await storedSum(server.url, `${target.id}.`);
      const result = check(
        `sum of ${ITEMS} counters read back through the API after a strong read`,
        meter.acknowledged * ITEMS,
        stored.sum,
        meter.uncertain * ITEMS,
      );
      if (!result.ok) {
        ctx.fail(`${label}: stored ${stored.sum}, acknowledged ${result.expected}`);
      }
      rows.push({
        id: target.id,
        label,
        requestsPerSec: meter.rate,
        incrementsPerSec: meter.rate * ITEMS,
        itemsPerRequest: ITEMS,
        p50Ms: meter.percentile(0.5),
        p99Ms: meter.percentile(0.99),
        coresUsed: meter.coresUsed(),
        check: result,
      });
    }
    return rows;
  } finally {
    await Promise.all(services.map((s) => s.stop()));
  }
}
