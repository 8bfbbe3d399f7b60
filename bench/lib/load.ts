/**
 * @module bench/lib/load — drives HTTP load with autocannon and compares targets side by side:
 * every target runs in short slices, the slices of all targets interleaved round by round, so a
 * machine that slows down mid-run slows every target alike.
 */

import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon, { type AutocannonRequest } from 'autocannon';

/** Something to load: one route of one server. */
export interface Target {
  /** Stable id, used for counter names and in the JSON. */
  readonly id: string;
  readonly label: string;
  /** Base URL, http://127.0.0.1:<port>. */
  readonly url: string;
  /** Requests each connection cycles through. */
  readonly requests: AutocannonRequest[];
  /** Concurrent connections (pipelining is always 1). */
  readonly connections: number;
  /** Processes whose CPU time is measured during slices, by label (e.g. server, redis). */
  readonly processes?: Readonly<Record<string, number>>;
  /** Runs right before each measured slice (e.g. reset Redis command stats). */
  before?(): Promise<void>;
  /** Runs right after each measured slice, with its result. */
  after?(slice: SliceResult): Promise<void>;
}

/** One autocannon run of a fixed number of requests. */
export interface SliceResult {
  /** 2xx responses: acknowledged requests. */
  readonly ok: number;
  readonly non2xx: number;
  /** Connection errors and timeouts (their requests may or may not have been served). */
  readonly errors: number;
  /** Wall time of the slice, in ms. */
  readonly ms: number;
  /** True when the safety stop cut the slice short (in-flight requests then are unknown). */
  readonly cut: boolean;
  /** CPU seconds used during the slice: `generator` (this process) and each of `processes`. */
  readonly cpuSeconds: Readonly<Record<string, number>>;
}

/** Everything measured for one target: slices added up, every response time kept. */
export class Meter {
  /** 2xx in measured slices. */
  ok = 0;
  /** 2xx in all slices, warm-up included: what the store must hold afterwards. */
  acknowledged = 0;
  non2xx = 0;
  errors = 0;
  /** Requests whose fate is unknown (errors, or in flight when a slice was cut). */
  uncertain = 0;
  ms = 0;
  /** CPU seconds over the measured slices, by process label (`generator`, `server`, …). */
  readonly cpuSeconds: Record<string, number> = {};
  /** Acknowledged requests per second of each measured slice, by round. */
  readonly roundRates: number[] = [];
  private latencies = new Float64Array(1 << 16);
  private count = 0;

  /**
   * Acknowledged requests per second: the median over slices, so a burst of someone else's
   * work on the machine during one slice does not move it.
   */
  get rate(): number {
    return median(this.roundRates);
  }

  /** Mean cores each measured process kept busy during the slices. */
  coresUsed(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [label, seconds] of Object.entries(this.cpuSeconds)) {
      out[label] = this.ms === 0 ? 0 : seconds / (this.ms / 1000);
    }
    return out;
  }

  /**
   * This target's rate relative to `other`'s: the median over rounds of the ratio of the two
   * slices of that round (they ran seconds apart, so they saw the same machine).
   */
  ratioTo(other: Meter): number {
    const ratios: number[] = [];
    for (let i = 0; i < this.roundRates.length; i++) {
      const mine = this.roundRates[i];
      const theirs = other.roundRates[i];
      if (mine !== undefined && theirs !== undefined && theirs > 0) ratios.push(mine / theirs);
    }
    return median(ratios);
  }

  record(ms: number): void {
    if (this.count === this.latencies.length) {
      const bigger = new Float64Array(this.latencies.length * 2);
      bigger.set(this.latencies);
      this.latencies = bigger;
    }
    this.latencies[this.count++] = ms;
  }

  /** Latency percentile in ms over every measured response, e.g. `percentile(0.99)`. */
  percentile(q: number): number {
    if (this.count === 0) return Number.NaN;
    const sorted = this.latencies.slice(0, this.count).sort();
    return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
  }
}

/**
 * Runs `amount` requests against a target and waits for every response: a run of a fixed count
 * (not a fixed time) ends with nothing in flight, so the acknowledged count is exact.
 */
export function runSlice(
  target: Target,
  amount: number,
  onLatency?: (ms: number) => void,
  expectedMs = 10_000,
): Promise<SliceResult> {
  const total = Math.max(amount, target.connections);
  const cpuBefore = cpuSnapshot(target);
  const started = performance.now();
  return new Promise((resolve, reject) => {
    let cut = false;
    let lastAt = 0;
    const instance = autocannon(
      {
        url: target.url,
        connections: target.connections,
        pipelining: 1,
        amount: total,
        timeout: 20,
        // autocannon notices the end only on its sampling tick; keep that wait short.
        sampleInt: 50,
        requests: target.requests,
      },
      (err, result) => {
        clearTimeout(safety);
        if (err) {
          reject(err);
          return;
        }
        const errors = result.errors;
        const cpuAfter = cpuSnapshot(target);
        const cpuSeconds: Record<string, number> = {};
        for (const [label, seconds] of Object.entries(cpuAfter)) {
          cpuSeconds[label] = seconds - (cpuBefore[label] ?? 0);
        }
        resolve({
          cpuSeconds,
          ok: result['2xx'],
          non2xx: result.non2xx,
          // Cut short: every request sent but not answered is unknown.
          errors: cut ? errors + Math.max(0, total - result['2xx'] - result.non2xx) : errors,
          // Up to the last response, not to autocannon's next tick.
          ms: (lastAt > started ? lastAt : performance.now()) - started,
          cut,
        });
      },
    );
    instance.on('response', (_c, _s, _b, ms) => {
      lastAt = performance.now();
      onLatency?.(ms);
    });
    // A stalled server must not hang the bench.
    const safety = setTimeout(
      () => {
        cut = true;
        instance.stop();
      },
      expectedMs * 4 + 15_000,
    );
  });
}

/** CPU seconds so far of this process (`generator`) and of the target's processes. */
function cpuSnapshot(target: Target): Record<string, number> {
  const own = process.cpuUsage();
  const out: Record<string, number> = { generator: (own.user + own.system) / 1e6 };
  for (const [label, pid] of Object.entries(target.processes ?? {})) {
    const seconds = processCpuSeconds(pid);
    if (seconds !== undefined) out[label] = seconds;
  }
  return out;
}

/** utime + stime of a process from /proc (Linux, clock ticks of 10 ms); undefined elsewhere. */
export function processCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which may contain spaces, start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

/** sysconf(_SC_CLK_TCK) on every Linux build Node supports. */
const CLOCK_TICKS = 100;

/** Options for {@link compare}. */
export interface CompareOptions {
  /** Measured seconds per target, split over `rounds` slices. */
  readonly secondsPerTarget: number;
  readonly rounds: number;
  /** Seconds of warm-up per target (JIT, connections, first-touch reads), not measured. */
  readonly warmupSeconds: number;
  /** Called after each slice, for progress output. */
  readonly progress?: (target: Target, slice: SliceResult, round: number) => void;
}

/**
 * Pause between slices, in ms: a Tally target's last flush (100 ms interval) and log sync run
 * after its slice ends, and would otherwise land on the next target's slice.
 */
const SETTLE_MS = 150;

/**
 * The order of one round: a shuffle seeded by the round, so no target always follows the same
 * one (a rotation keeps the cyclic order, and with it whatever the predecessor leaves behind).
 */
export function roundOrder<T>(items: readonly T[], round: number): T[] {
  const order = [...items];
  // mulberry32: a small deterministic generator, so two runs slice in the same orders.
  let state = (round + 1) * 0x9e3779b9;
  const next = () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [order[i], order[j]] = [order[j] as T, order[i] as T];
  }
  return order;
}

/**
 * Warms every target up, then runs `rounds` rounds; each round gives every target one slice,
 * in an order shuffled each round (`roundOrder`), with a pause between slices. Slice sizes come
 * from the previous slice's rate, so each lasts about `secondsPerTarget / rounds`.
 */
export async function compare(
  targets: readonly Target[],
  options: CompareOptions,
): Promise<Map<string, Meter>> {
  const meters = new Map<string, Meter>();
  const rates = new Map<string, number>();
  for (const target of targets) {
    const meter = new Meter();
    meters.set(target.id, meter);
    const probe = await runSlice(target, target.connections * 4);
    add(meter, probe, null);
    let rate = (probe.ok * 1000) / probe.ms;
    if (options.warmupSeconds > 0) {
      const warm = await runSlice(
        target,
        Math.round(rate * options.warmupSeconds),
        undefined,
        options.warmupSeconds * 1000,
      );
      add(meter, warm, null);
      rate = ((warm.ok + warm.non2xx) * 1000) / warm.ms;
    }
    rates.set(target.id, rate);
  }
  const sliceSeconds = options.secondsPerTarget / options.rounds;
  for (let round = 0; round < options.rounds; round++) {
    for (const target of roundOrder(targets, round)) {
      await sleep(SETTLE_MS);
      const meter = meters.get(target.id) as Meter;
      const rate = rates.get(target.id) ?? 1000;
      await target.before?.();
      const slice = await runSlice(
        target,
        Math.round(rate * sliceSeconds),
        (ms) => meter.record(ms),
        sliceSeconds * 1000,
      );
      await target.after?.(slice);
      add(meter, slice, round);
      rates.set(target.id, ((slice.ok + slice.non2xx) * 1000) / slice.ms);
      options.progress?.(target, slice, round);
    }
  }
  return meters;
}

function add(meter: Meter, slice: SliceResult, round: number | null): void {
  meter.acknowledged += slice.ok;
  meter.uncertain += slice.errors;
  if (round === null) return;
  meter.ok += slice.ok;
  meter.non2xx += slice.non2xx;
  meter.errors += slice.errors;
  meter.ms += slice.ms;
  for (const [label, seconds] of Object.entries(slice.cpuSeconds)) {
    meter.cpuSeconds[label] = (meter.cpuSeconds[label] ?? 0) + seconds;
  }
  meter.roundRates[round] = (slice.ok * 1000) / slice.ms;
}

/** Median of the finite values; NaN when there are none. */
export function median(values: readonly number[]): number {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}
