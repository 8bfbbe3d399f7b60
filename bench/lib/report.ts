/** @module bench/lib/report — the issue's targets judged from results, and the printed table. */
import type { Results, TargetResult, ThroughputRow } from './results.js';

const MB = 1024 * 1024;

/** The row a headline comparison uses: eventual, accumulate, default log setting. */
export function headline(
  rows: readonly ThroughputRow[],
  store: string,
  wal: boolean | null,
  kind: ThroughputRow['kind'] = 'eventual',
): ThroughputRow | undefined {
  return rows.find(
    (r) => r.kind === kind && r.store === store && r.aggregator === 'accumulate' && r.wal === wal,
  );
}

/** Judges the issue's targets. `wal` is the default log setting of this build (null: none). */
export function judgeTargets(r: Omit<Results, 'targets'>, wal: boolean | null): TargetResult[] {
  const rows = r.throughput;
  const out: TargetResult[] = [];
  const sqlite = headline(rows, 'sqlite', wal);
  const redis = headline(rows, 'redis', wal);
  const express = rows.find((x) => x.id === 'express-incr');
  const fastify = rows.find((x) => x.id === 'fastify-incr');
  const eventual = rows.filter((x) => x.kind === 'eventual' && x.vsCeiling !== null);
  const span =
    eventual.length > 0
      ? ` (all variants ${fmtRatio(Math.min(...eventual.map((x) => x.vsCeiling ?? 0)))}–${fmtRatio(Math.max(...eventual.map((x) => x.vsCeiling ?? 0)))})`
      : '';
  out.push({
    name: 'eventual increments vs ceiling',
    goal: '≥ 0.90 × ceiling',
    measured: sqlite
      ? `${fmtRatio(sqlite.vsCeiling ?? Number.NaN)} (${sqlite.label.replace('eventual · ', '')})${span}`
      : 'not measured',
    met: sqlite ? (sqlite.vsCeiling ?? 0) >= 0.9 : null,
  });
  const ceiling = rows.find((x) => x.kind === 'ceiling');
  const bare = rows.find((x) => x.id === 'fastify-noop');
  // What Tally's hooks, parser and logger cost a request: its no-op route against Fastify's own
  // (issue 11). The paired ratio is measured bare/ceiling; the median of the inverses is its
  // inverse.
  const overhead = bare?.vsCeiling ? 1 / bare.vsCeiling : undefined;
  out.push({
    name: 'no-op route vs bare Fastify no-op',
    goal: '≥ 0.95 × bare Fastify',
    measured: overhead === undefined ? 'not measured' : fmtRatio(overhead),
    met: overhead === undefined ? null : overhead >= 0.95,
  });
  for (const [base, factor, ratio, bound] of [
    [express, 4, redis?.vsExpress ?? Number.NaN, ceiling?.vsExpress],
    [fastify, 1.5, redis?.vsFastify ?? Number.NaN, ceiling?.vsFastify],
  ] as const) {
    out.push({
      name: `vs ${base?.label.replace('baseline: ', '') ?? 'baseline'}`,
      goal: `≥ ${factor} ×`,
      measured: Number.isNaN(ratio)
        ? 'not measured'
        : `${fmtRatio(ratio)} (Tally on Redis; Tally no-op: ${fmtRatio(bound ?? Number.NaN)}${factor === 1.5 && bare?.vsFastify !== undefined ? `; bare Fastify no-op: ${fmtRatio(bare.vsFastify)}` : ''})`,
      met: Number.isNaN(ratio) ? null : ratio >= factor,
    });
  }
  // What TALLY_REDIS_WAIT_REPLICAS=1 costs against 0 on the same replicated Redis (issue 12).
  const waitCost = (['eventual', 'strong'] as const).map((kind) => {
    const pick = (n: number) =>
      rows.find((x) => x.kind === kind && x.id.endsWith(`-wait${n}-${kind}`))?.vsCeiling;
    const [off, on] = [pick(0), pick(1)];
    return off && on ? `${kind} ${fmtRatio(on / off)}` : undefined;
  });
  if (waitCost.some((c) => c !== undefined)) {
    out.push({
      name: 'WAIT for 1 replica vs none (same Redis)',
      goal: 'measured',
      measured: waitCost.filter(Boolean).join(', '),
      met: null,
    });
  }
  // What answering CORS costs a public increment (issue 13): the same server and route, with and
  // without an Origin header on every request.
  const cors = rows.find((x) => x.id.endsWith('-cors'));
  const plain = cors && rows.find((x) => x.id === cors.id.slice(0, -'-cors'.length));
  if (cors?.vsCeiling && plain?.vsCeiling) {
    out.push({
      name: 'increments with Origin (CORS) vs without',
      goal: 'measured',
      measured: fmtRatio(cors.vsCeiling / plain.vsCeiling),
      met: null,
    });
  }
  // Public hits with the per-client rate limit on (issue 13): same configuration otherwise.
  const limitedRow = rows.find((x) => x.id.endsWith('-limited-eventual'));
  const unlimited =
    limitedRow &&
    rows.find((x) => x.id === limitedRow.id.replace('-limited-eventual', '-eventual'));
  if (limitedRow?.vsCeiling && unlimited?.vsCeiling) {
    out.push({
      name: 'public hits with rate limiting on vs ceiling',
      goal: '≥ 0.90 × ceiling',
      measured: `${fmtRatio(limitedRow.vsCeiling)} (${fmtRatio(limitedRow.vsCeiling / unlimited.vsCeiling)} of the same without)`,
      met: limitedRow.vsCeiling >= 0.9,
    });
  }
  // Counting badge hits (issue 14): one view counted and an SVG drawn per request.
  const badge = rows.find((x) => x.id.endsWith('-badge'));
  if (badge !== undefined) {
    out.push({
      name: 'counting badge hits vs ceiling',
      goal: '≥ 0.80 × ceiling',
      measured: fmtRatio(badge.vsCeiling ?? Number.NaN),
      met:
        badge.vsCeiling === null || badge.vsCeiling === undefined ? null : badge.vsCeiling >= 0.8,
    });
  }
  // History (issue 14): every batch also writes the minute, hour and day buckets of its
  // counters; always on, so the headline eventual row carries its cost.
  const withHistory =
    rows.find((x) => x.id === 'sqlite-accumulate-wal-eventual') ??
    rows.find((x) => x.id === 'sqlite-accumulate-eventual');
  if (withHistory?.vsCeiling) {
    out.push({
      name: 'eventual increments, history buckets in every batch, vs ceiling',
      goal: '≥ 0.90 × ceiling',
      measured: fmtRatio(withHistory.vsCeiling),
      met: withHistory.vsCeiling >= 0.9,
    });
  }
  // Unique visitors (issue 14): a hash per request, one PFADD-like add per counter per flush.
  const uniques = rows.find((x) => x.id.endsWith('-uniques-eventual'));
  const plainRow =
    uniques && rows.find((x) => x.id === uniques.id.replace('-uniques-eventual', '-eventual'));
  if (uniques?.vsCeiling) {
    out.push({
      name: 'eventual increments with unique visitors on vs ceiling',
      goal: '≥ 0.90 × ceiling',
      measured: `${fmtRatio(uniques.vsCeiling)}${plainRow?.vsCeiling ? ` (${fmtRatio(uniques.vsCeiling / plainRow.vsCeiling)} of the same without)` : ''}`,
      met: uniques.vsCeiling >= 0.9,
    });
  }
  // PostgreSQL (issue 16): eventual increments against the ceiling, and store round trips.
  const onPostgres = rows.find((x) => x.store === 'postgres' && x.kind === 'eventual');
  if (onPostgres !== undefined) {
    out.push({
      name: 'eventual increments on PostgreSQL vs ceiling',
      goal: 'measured',
      measured: `${fmtRatio(onPostgres.vsCeiling ?? Number.NaN)} (${onPostgres.storeRoundTripsPerIncrement?.toFixed(5) ?? '?'} store round trips per increment)`,
      met: null,
    });
  }
  const cmds = redis?.commandsPerIncrement;
  out.push({
    name: 'Redis commands per increment at saturation',
    goal: '≤ 0.005',
    measured:
      cmds === undefined
        ? 'not measured'
        : `${cmds.toFixed(4)} (${(redis?.scriptCallsPerIncrement ?? 0).toFixed(5)} script calls)`,
    met: cmds === undefined ? null : cmds <= 0.005,
  });
  const batch = r.batched.find((b) =>
    b.id.endsWith(wal === null ? 'accumulate' : wal ? '-wal' : '-nowal'),
  );
  out.push({
    name: 'batched increments on one process',
    goal: '≥ 1,000,000 /s',
    measured: batch
      ? `${fmtInt(batch.incrementsPerSec)} /s (${batch.label.replace('batched · ', '')})`
      : 'not measured',
    met: batch ? batch.incrementsPerSec >= 1_000_000 : null,
  });
  const mem = r.memory;
  const million = mem?.counters === 1_000_000;
  out.push({
    name: 'RSS with 1,000,000 distinct counters pending',
    goal: '< 300 MB',
    measured: mem
      ? `${(mem.rssPendingBytes / MB).toFixed(0)} MB${million ? '' : ` with ${fmtInt(mem.counters)} (not judged)`}`
      : 'not measured',
    met: mem && million ? mem.rssPendingBytes < 300 * MB : null,
  });
  const conv = r.convergence;
  out.push({
    name: 'convergence A → SSE on B, p99',
    goal: `≤ 2 × flush interval (${conv ? 2 * conv.flushIntervalMs : 200} ms)`,
    measured: conv
      ? `${conv.p99Ms.toFixed(0)} ms (p50 ${conv.p50Ms.toFixed(0)} ms)`
      : 'not measured',
    met: conv ? conv.missed === 0 && conv.p99Ms <= 2 * conv.flushIntervalMs : null,
  });
  return out;
}

/** The one table the bench prints. */
export function renderTable(r: Results): string {
  const lines: string[] = [];
  const m = r.machine;
  lines.push(
    `Tally bench (${r.mode}) — ${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.os}, Node ${m.node}, redis ${m.redis}`,
  );
  lines.push(
    `load: ${r.method.generator}; ${r.method.connections} connections, pipelining 1; ${r.method.secondsPerTarget} s per target in ${r.method.rounds} interleaved rounds; WAL: ${r.wal}`,
  );
  lines.push('');
  lines.push(
    table(
      [
        'single increments',
        'req/s',
        'p50 ms',
        'p99 ms',
        '× ceiling',
        'cmds/inc',
        'cores gen/srv/redis',
        'check',
      ],
      r.throughput.map((t) => [
        t.label,
        fmtInt(t.reqPerSec),
        t.p50Ms.toFixed(1),
        t.p99Ms.toFixed(1),
        t.vsCeiling === null ? '' : fmtRatio(t.vsCeiling),
        t.commandsPerIncrement === undefined ? '' : t.commandsPerIncrement.toFixed(4),
        cores(t.coresUsed),
        t.check === null ? '' : t.check.ok ? 'ok' : 'MISCOUNT',
      ]),
    ),
  );
  if (r.batched.length > 0) {
    lines.push('');
    lines.push(
      table(
        [
          'batched (1000 per request)',
          'increments/s',
          'req/s',
          'p50 ms',
          'p99 ms',
          'cores gen/srv',
          'check',
        ],
        r.batched.map((b) => [
          b.label,
          fmtInt(b.incrementsPerSec),
          fmtInt(b.requestsPerSec),
          b.p50Ms.toFixed(1),
          b.p99Ms.toFixed(1),
          cores(b.coresUsed),
          b.check.ok ? 'ok' : 'MISCOUNT',
        ]),
      ),
    );
  }
  lines.push('');
  const other: string[][] = [];
  if (r.memory) {
    const mem = r.memory;
    other.push([
      `memory: ${fmtInt(mem.counters)} distinct counters pending (flush ${mem.flushIntervalMs / 1000} s)`,
      `${(mem.rssPendingBytes / MB).toFixed(0)} MB RSS (idle ${(mem.rssIdleBytes / MB).toFixed(0)} MB); pushed in ${mem.pushSeconds.toFixed(1)} s, drained in ${mem.drainSeconds.toFixed(1)} s; ${mem.check.ok ? 'all stored' : 'MISCOUNT'}`,
    ]);
  }
  if (r.convergence) {
    const c = r.convergence;
    other.push([
      `convergence: ack on A → SSE on B (${c.samples} samples, flush ${c.flushIntervalMs} ms)`,
      `p50 ${c.p50Ms.toFixed(0)} ms, p99 ${c.p99Ms.toFixed(0)} ms, max ${c.maxMs.toFixed(0)} ms${c.missed > 0 ? `, ${c.missed} MISSED` : ''}`,
    ]);
  }
  if (r.replay) {
    const rp = r.replay;
    other.push([
      `replay: restart on ${fmtInt(rp.increments)} logged increments (${rp.counters} counters, ${(rp.logBytes / MB).toFixed(0)} MiB, heap ${rp.heapLimitMb} MB)`,
      `listening after ${rp.startSeconds.toFixed(1)} s (empty log ${rp.emptyStartSeconds.toFixed(1)} s) = ${fmtInt(rp.incrementsPerSec)} increments/s; peak RSS ${(rp.peakRssBytes / MB).toFixed(0)} MB; ${rp.check.ok ? 'exact' : 'MISCOUNT'}`,
    ]);
  }
  if (r.workers) {
    const [one, all] = r.workers.rows;
    const speedup =
      one && all && all !== one ? ` → ${fmtRatio(all.reqPerSec / one.reqPerSec)}` : '';
    other.push([
      `workers: eventual · sqlite, 1 vs ${r.workers.cores} (${r.workers.cores} cores, generator included)`,
      r.workers.rows
        .map(
          (w) =>
            `${w.workers}: ${fmtInt(w.reqPerSec)} req/s (cores ${cores(w.coresUsed)})${w.check.ok ? '' : ' MISCOUNT'}`,
        )
        .join(', ') + speedup,
    ]);
  }
  if (other.length > 0) lines.push(table(['other', 'result'], other, true));
  lines.push('');
  lines.push(
    table(
      ['target', 'goal', 'measured', 'met'],
      r.targets.map((t) => [
        t.name,
        t.goal,
        t.measured,
        t.met === null ? '–' : t.met ? 'yes' : 'NO',
      ]),
      true,
    ),
  );
  if (r.failures.length > 0) {
    lines.push('');
    lines.push('FAILURES:');
    for (const f of r.failures) lines.push(`  - ${f}`);
  }
  return lines.join('\n');
}

/** A plain-text table; the first column, and every column when `text`, is left-aligned. */
function table(head: string[], rows: string[][], text = false): string {
  const widths = head.map((h, i) =>
    Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)),
  );
  const fmt = (row: string[]) =>
    row
      .map((cell, i) =>
        i === 0 || text ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0),
      )
      .join('  ')
      .trimEnd();
  return [fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)].join('\n');
}

/** "gen/server[/redis]" cores busy, e.g. "0.97/0.81/0.12". */
function cores(used: Readonly<Record<string, number>>): string {
  const parts = [used.generator, used.server, used.redis].filter((x) => x !== undefined);
  return parts.map((x) => (x as number).toFixed(2)).join('/');
}

export function fmtInt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a';
}

export function fmtRatio(n: number): string {
  return Number.isFinite(n) ? `${n.toFixed(2)}×` : 'n/a';
}
