/** @module bench/lib/results — the shape of bench/results/latest.json (and docs/bench/results.json). */

/** A correctness check: what the store holds against what the clients were told. */
export interface Check {
  /** What was compared, e.g. "sum of 10 counters via the API after a strong read". */
  readonly what: string;
  /** Acknowledged increments (2xx responses × increments per request). */
  readonly expected: number;
  readonly stored: number;
  /** Requests with unknown outcome (connection errors); the stored sum may exceed by this. */
  readonly uncertain: number;
  readonly ok: boolean;
}

/** One loaded route. */
export interface ThroughputRow {
  readonly id: string;
  readonly label: string;
  /** `reference`: a bare framework route, the most any server on that framework can do. */
  readonly kind: 'ceiling' | 'eventual' | 'strong' | 'baseline' | 'reference';
  readonly store?: string;
  readonly aggregator?: string;
  /** Write-ahead log on or off; null when this build has no log. */
  readonly wal?: boolean | null;
  /** Median over the measured slices of acknowledged requests per second. */
  readonly reqPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Measured requests (warm-up excluded). */
  readonly requests: number;
  readonly non2xx: number;
  readonly errors: number;
  /**
   * Median over rounds of this route's rate ÷ the ceiling route's rate in the same round (the
   * slices ran seconds apart).
   */
  readonly vsCeiling: number | null;
  /** Paired ratio to the Express baseline (headline comparison only). */
  readonly vsExpress?: number;
  /** Paired ratio to the Fastify baseline (headline comparison only). */
  readonly vsFastify?: number;
  /** Redis commands executed (Lua-internal included) per acknowledged increment. */
  readonly commandsPerIncrement?: number;
  /** EVALSHA/EVAL calls per acknowledged increment (round trips that carry a batch). */
  readonly scriptCallsPerIncrement?: number;
  /** PostgreSQL targets: batches flushed (one statement each) per acknowledged increment. */
  readonly storeRoundTripsPerIncrement?: number;
  /** Redis calls per command over the measured slices (from INFO commandstats). */
  readonly commandsByName?: Record<string, number>;
  /**
   * Mean cores busy during the measured slices: `generator` (autocannon, in the bench process),
   * `server`, and `redis` where used. A generator near 1.0 means the load, not the server, capped
   * the rate.
   */
  readonly coresUsed: Readonly<Record<string, number>>;
  readonly check: Check | null;
}

export interface BatchedRow {
  readonly id: string;
  readonly label: string;
  readonly requestsPerSec: number;
  readonly incrementsPerSec: number;
  readonly itemsPerRequest: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly coresUsed: Readonly<Record<string, number>>;
  readonly check: Check;
}

export interface MemoryResult {
  readonly counters: number;
  readonly nameExample: string;
  readonly flushIntervalMs: number;
  readonly rssIdleBytes: number;
  readonly rssPendingBytes: number;
  readonly pushSeconds: number;
  /** SIGTERM to exit: the drain that writes all pending counters. */
  readonly drainSeconds: number;
  readonly exitCode: number | null;
  readonly check: Check;
}

/** A restart that replays a large log of unflushed increments. */
export interface ReplayResult {
  /** Increments in the log (marked batches and the uncut remainder). */
  readonly increments: number;
  readonly counters: number;
  /** Batches with a marker at the start of the log. */
  readonly markedBatches: number;
  readonly logBytes: number;
  readonly segments: number;
  /** The server's V8 heap limit (--max-old-space-size), MB. */
  readonly heapLimitMb: number;
  /** The bench writing the log (not measured against Tally). */
  readonly writeSeconds: number;
  /** Spawn to "listening" on an empty data directory: a start without a log. */
  readonly emptyStartSeconds: number;
  /** Spawn to "listening" with the log: the replay plus a start. */
  readonly startSeconds: number;
  /** Logged increments ÷ startSeconds. */
  readonly incrementsPerSec: number;
  /** VmHWM once listening: the peak the replay reached. */
  readonly peakRssBytes: number;
  readonly check: Check;
}

export interface ConvergenceResult {
  readonly samples: number;
  /** Samples whose event did not arrive within the timeout. */
  readonly missed: number;
  readonly flushIntervalMs: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

export interface WorkersRow {
  readonly workers: number;
  readonly reqPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** `server` is the primary and its workers together. */
  readonly coresUsed: Readonly<Record<string, number>>;
  readonly check: Check;
}

/** A target from the issue and whether this run met it (null: not judged, e.g. not measured). */
export interface TargetResult {
  readonly name: string;
  readonly goal: string;
  readonly measured: string;
  readonly met: boolean | null;
}

export interface Results {
  readonly schema: 1;
  readonly mode: 'full' | 'quick';
  readonly startedAt: string;
  readonly wallSeconds: number;
  readonly machine: {
    readonly cpus: number;
    readonly cpuModel: string;
    readonly memoryGiB: number;
    readonly os: string;
    readonly node: string;
    readonly redis: string;
  };
  readonly method: {
    readonly generator: string;
    readonly connections: number;
    readonly pipelining: 1;
    readonly secondsPerTarget: number;
    readonly rounds: number;
    readonly headline: { readonly secondsPerTarget: number; readonly rounds: number };
    readonly variants: { readonly secondsPerTarget: number; readonly rounds: number };
    readonly warmupSeconds: number;
    readonly countersPerTarget: number;
    readonly note: string;
    /** os.loadavg() when the run started and ended: other work on the machine shows here. */
    readonly loadAverage: { readonly atStart: number[]; readonly atEnd: number[] };
  };
  /** "measured" when this build has the write-ahead log, else "not yet". */
  readonly wal: 'measured' | 'not yet';
  readonly throughput: ThroughputRow[];
  readonly batched: BatchedRow[];
  readonly memory: MemoryResult | null;
  readonly convergence: ConvergenceResult | null;
  /** Absent in results written before the replay section existed. */
  readonly replay?: ReplayResult | null;
  readonly workers: { readonly cores: number; readonly rows: WorkersRow[] } | null;
  readonly targets: TargetResult[];
  /** Miscounts and crashes; any entry makes the bench exit non-zero. */
  readonly failures: string[];
}

/** Builds a check; `ok` allows the stored sum to exceed by at most the uncertain requests. */
export function check(what: string, expected: number, stored: number, uncertain = 0): Check {
  return {
    what,
    expected,
    stored,
    uncertain,
    ok: stored >= expected && stored <= expected + uncertain,
  };
}
