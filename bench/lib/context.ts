/** @module bench/lib/context — what every bench section gets: settings, shared Redis, output. */

import type { Service } from './procs.js';
import type { RedisProbe } from './redis.js';

/** Durations and sizes of one run; `--quick` shrinks them, never drops a section. */
export interface Settings {
  readonly quick: boolean;
  /** Connections per load target; pipelining is 1. */
  readonly connections: number;
  /** Measured seconds per target, spread over `rounds` interleaved slices. */
  readonly secondsPerTarget: number;
  readonly rounds: number;
  /** The headline comparison (ceiling, default Tally on SQLite and Redis, baselines). */
  readonly headlineSeconds: number;
  readonly headlineRounds: number;
  /** Every other configuration, against the ceiling again. */
  readonly variantSeconds: number;
  readonly variantRounds: number;
  readonly warmupSeconds: number;
  /** Distinct counters each increment target cycles through. */
  readonly countersPerTarget: number;
  /** Distinct counters held pending for the memory measurement. */
  readonly memoryCounters: number;
  /** Samples for the convergence measurement. */
  readonly convergenceSamples: number;
  /** Logged increments a restart replays in the replay measurement. */
  readonly replayIncrements: number;
}

export const FULL: Settings = {
  quick: false,
  connections: 64,
  secondsPerTarget: 6,
  rounds: 12,
  headlineSeconds: 16,
  headlineRounds: 32,
  variantSeconds: 4,
  variantRounds: 8,
  warmupSeconds: 1.5,
  countersPerTarget: 10,
  memoryCounters: 1_000_000,
  convergenceSamples: 200,
  replayIncrements: 10_000_000,
};

export const QUICK: Settings = {
  ...FULL,
  quick: true,
  secondsPerTarget: 1,
  rounds: 2,
  headlineSeconds: 1.6,
  headlineRounds: 4,
  variantSeconds: 1,
  variantRounds: 2,
  warmupSeconds: 0.3,
  // The full million: pushed and drained in a few seconds, so CI checks the real target too.
  memoryCounters: 1_000_000,
  convergenceSamples: 30,
  replayIncrements: 1_000_000,
};

export interface BenchContext {
  readonly settings: Settings;
  /** True when this build has the write-ahead log (TALLY_WAL exists). */
  readonly walSupported: boolean;
  /** The bench's own redis-server. */
  readonly redis: Service;
  readonly probe: RedisProbe;
  /** How to run a Tally process: node flags (--cpu-prof when profiling), entry point (--main). */
  spawn(name: string): { nodeFlags: string[]; main?: string };
  /** Print every slice's rate (--verbose). */
  readonly verbose: boolean;
  /** A progress line on stderr. */
  log(line: string): void;
  /** Records a miscount or crash; the bench exits non-zero at the end. */
  fail(message: string): void;
}

/** TALLY_WAL for a variant: nothing when this build has no log. */
export function walEnv(ctx: BenchContext, on: boolean | null): Record<string, string> {
  return ctx.walSupported && on !== null ? { TALLY_WAL: on ? 'true' : 'false' } : {};
}

/** Label suffix of a WAL setting. */
export function walLabel(on: boolean | null): string {
  return on === null ? '' : on ? ' · WAL on' : ' · WAL off';
}
