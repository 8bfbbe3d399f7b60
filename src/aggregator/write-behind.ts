/**
 * @module aggregator/write-behind — what both aggregation designs share: batch identity, the one
 * flush in flight, retries with backoff, durability tickets for strong requests, and estimates.
 */

import { inRange } from '../counters/validate.js';
import { TallyError } from '../errors.js';
import type { Batch, BatchResult, Store } from '../store/interface.js';

/** Options shared by both aggregators. */
export interface AggregatorOptions {
  readonly store: Store;
  /** This instance's stable id; part of every batch's identity. */
  readonly instanceId: string;
  /** Seq of the first batch this process sends (store's last seq + 1). @default 1 */
  readonly firstSeq?: number;
  /** Accumulate: ms between flushes, jittered ±10%. @default 100 */
  readonly flushIntervalMs?: number;
  /** Bound on pending work (see each aggregator). @default 1_000_000 */
  readonly maxPending?: number;
  /** Queue: most increments one drain takes. @default 100_000 */
  readonly maxBatchSize?: number;
  /** First retry delay after a failed flush, in ms; doubles up to `retryMaxMs`. @default 50 */
  readonly retryBaseMs?: number;
  /** Longest retry delay, in ms. @default 2000 */
  readonly retryMaxMs?: number;
  /** Most stored values remembered for estimates (oldest forgotten first). @default 200_000 */
  readonly maxKnown?: number;
  /** Observer for metrics, logs and live updates. */
  readonly events?: AggregatorEvents;
  /** The write-ahead log's hooks: batch markers and durability (see wal/wal.ts). */
  readonly journal?: Journal;
}

/** What the aggregator tells the write-ahead log. */
export interface Journal {
  /** Batch `seq` holds every increment up to `lastTicket`; must be on disk before it is sent. */
  seal(seq: number, lastTicket: number): Promise<void>;
  /** The store holds every increment up to `ticket`. */
  markDurable(ticket: number): void;
}

/** Hooks an aggregator calls; each must be cheap and must not throw. */
export interface AggregatorEvents {
  /** A batch was applied (or found already applied); `values` are stored values after it. */
  onApplied?(batch: Batch, result: BatchResult, durationMs: number): void;
  /** A flush failed; its batch is kept and retried with the same seq. */
  onFlushError?(batch: Batch, err: unknown, consecutiveFailures: number): void;
  /** The store was unhealthy and a flush succeeded again. */
  onRecovered?(): void;
}

/** One increment, as the batch route passes them. */
export interface Increment {
  readonly name: string;
  readonly by: number;
}

/** Result of a final drain. */
export interface DrainResult {
  /** True when nothing acknowledged was left unflushed. */
  readonly drained: boolean;
  /** Increments acknowledged but not flushed (only when the drain timed out). */
  readonly unflushed: number;
}

interface Waiter {
  readonly ticket: number;
  resolve(): void;
  reject(err: unknown): void;
}

/**
 * The write-behind engine. Subclasses decide how pending increments are held (`buffer`,
 * `takeDeltas`) and whether the worker runs on a timer (accumulate) or whenever work exists
 * (queue).
 *
 * Invariants:
 * - `add` is synchronous, does no I/O, and either records the increment or throws a TallyError.
 * - At most one `store.applyBatch` is in flight.
 * - A failed batch is retried unchanged, with the same `(instanceId, seq)`, until it succeeds:
 *   newer increments wait for the next seq. Merging them into the retried batch would lose them
 *   if the first attempt had in fact been applied (the store would report it as a duplicate).
 * - Every accepted increment gets a ticket; `durableTicket` is the highest ticket the store holds.
 */
export abstract class WriteBehindAggregator {
  abstract readonly kind: 'accumulate' | 'queue';
  protected readonly store: Store;
  protected readonly instanceId: string;
  protected readonly flushIntervalMs: number;
  protected readonly maxPending: number;
  protected readonly maxBatchSize: number;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private readonly maxKnown: number;
  private readonly events: AggregatorEvents;
  private readonly journal: Journal | undefined;

  /** Last stored value seen per counter: from flush results, reads, sets and other instances. */
  private readonly known = new Map<string, number>();
  private inflight: Batch | null = null;
  /** Work cut off by `exclusive`, flushed before anything accepted after the cut. */
  private sealed: Array<{ deltas: Map<string, number>; ticket: number }> = [];
  private inflightTicket = 0;
  private nextSeq: number;
  /** Tickets: one per accepted increment. */
  protected ticket = 0;
  private durableTicket = 0;
  private waiters: Waiter[] = [];

  private lock: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private timerDue = 0;
  private flushing = false;
  private started = false;
  private stopping = false;
  private failures = 0;
  private applied = 0;

  constructor(options: AggregatorOptions) {
    this.store = options.store;
    this.instanceId = options.instanceId;
    this.nextSeq = options.firstSeq ?? 1;
    this.flushIntervalMs = options.flushIntervalMs ?? 100;
    this.maxPending = options.maxPending ?? 1_000_000;
    this.maxBatchSize = options.maxBatchSize ?? 100_000;
    this.retryBaseMs = options.retryBaseMs ?? 50;
    this.retryMaxMs = options.retryMaxMs ?? 2000;
    this.maxKnown = options.maxKnown ?? 200_000;
    this.events = options.events ?? {};
    this.journal = options.journal;
  }

  // ---- what each design provides ----

  /** Records an accepted increment (already validated and checked for room). */
  protected abstract buffer(name: string, by: number): void;
  /** Pending (not yet in a batch) delta of one counter. */
  protected abstract pendingDelta(name: string): number;
  /** Takes pending work for the next batch; null when there is none. */
  protected abstract takeDeltas(): { deltas: Map<string, number>; ticket: number } | null;
  /** True when increments to these counters (`items` in all) fit within `maxPending`. */
  protected abstract hasRoom(names: Iterable<string>, items: number): boolean;
  /** Pending work in the bound's unit (distinct counters or queued increments). */
  abstract pendingSize(): number;
  /** Increments accepted but not yet in a batch. */
  abstract pendingIncrements(): number;
  /** True when the worker should run again right away after a successful flush. */
  protected abstract eager(): boolean;

  // ---- the hot path ----

  /**
   * Accepts one increment and returns this instance's estimate of the counter after it.
   * Throws OVERLOADED, COUNTER_OVERFLOW or SHUTTING_DOWN; never does I/O.
   */
  add(name: string, by: number): number {
    this.check(name, by);
    return this.accept(name, by);
  }

  /** Throws what `add` would throw, changing nothing. */
  check(name: string, by: number): void {
    if (this.stopping) throw new TallyError('SHUTTING_DOWN');
    if (!this.hasRoom([name], 1)) this.overloaded();
    if (!inRange(this.estimate(name) + by)) throw new TallyError('COUNTER_OVERFLOW');
  }

  /**
   * Records an increment already checked and logged; never throws. The write-ahead log path
   * checks, awaits the log, then accepts: an increment in the log must reach the store.
   */
  accept(name: string, by: number): number {
    this.buffer(name, by);
    this.ticket++;
    if (this.eager()) this.kick();
    return this.estimate(name);
  }

  /** Accepts all increments or none (same errors as `add`). Returns the ticket of the last. */
  addMany(items: readonly Increment[]): number {
    this.checkMany(items);
    return this.acceptMany(items);
  }

  /** Throws what `addMany` would throw, changing nothing. */
  checkMany(items: readonly Increment[]): void {
    if (this.stopping) throw new TallyError('SHUTTING_DOWN');
    const totals = new Map<string, number>();
    for (const { name, by } of items) totals.set(name, (totals.get(name) ?? 0) + by);
    for (const [name, total] of totals) {
      if (!inRange(this.estimate(name) + total)) {
        throw new TallyError(
          'COUNTER_OVERFLOW',
          `Counter "${name}" would leave ±(2^53-1); nothing was applied`,
        );
      }
    }
    if (!this.hasRoom(totals.keys(), items.length)) this.overloaded();
  }

  /** Records checked and logged increments; returns the ticket of the last. */
  acceptMany(items: readonly Increment[]): number {
    for (const { name, by } of items) {
      this.buffer(name, by);
      this.ticket++;
    }
    if (this.eager()) this.kick();
    return this.ticket;
  }

  /** Ticket of the latest accepted increment; pass to `waitDurable`. */
  currentTicket(): number {
    return this.ticket;
  }

  /** Last stored value + in-flight + pending deltas. */
  estimate(name: string): number {
    return (
      (this.known.get(name) ?? 0) + (this.inflight?.deltas.get(name) ?? 0) + this.pendingDelta(name)
    );
  }

  /** True when a stored value for this counter is known, so `estimate` needs no read. */
  knows(name: string): boolean {
    return this.known.has(name);
  }

  /** Records a stored value learned elsewhere (a read, another instance's flush). */
  learn(name: string, value: number | undefined): void {
    if (value === undefined) this.known.delete(name);
    else this.remember(name, value);
  }

  /** Records a value read from the store unless a flush already told us a newer one. */
  learnIfUnknown(name: string, value: number): void {
    if (!this.known.has(name)) this.remember(name, value);
  }

  /** Last stored value known, if any. */
  knownValue(name: string): number | undefined {
    return this.known.get(name);
  }

  /** True unless the last flush attempt failed. */
  healthy(): boolean {
    return this.failures === 0;
  }

  /** Consecutive failed flush attempts. */
  consecutiveFailures(): number {
    return this.failures;
  }

  /** Distinct counters in the batch being flushed or retried. */
  inflightSize(): number {
    return this.inflight?.deltas.size ?? 0;
  }

  /** Delta of a counter in the batch being flushed or retried. */
  inflightDelta(name: string): number {
    return this.inflight?.deltas.get(name) ?? 0;
  }

  /** Batches applied by this process so far; changes whenever known values may have moved. */
  appliedBatches(): number {
    return this.applied;
  }

  /** Next batch seq this instance will use. */
  peekNextSeq(): number {
    return this.nextSeq;
  }

  // ---- durability ----

  /**
   * Resolves once the store holds every increment up to `ticket` (default: all accepted so far).
   * Rejects with STORE_UNAVAILABLE if a flush attempt fails meanwhile; the increments stay
   * pending and are retried.
   */
  waitDurable(ticket = this.ticket): Promise<void> {
    if (ticket <= this.durableTicket) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ ticket, resolve, reject });
      this.kick();
    });
  }

  /**
   * Runs `fn` while no flush runs, after flushing everything accepted before the call: the
   * ordering `PUT`/`DELETE` promise (earlier increments before, later ones after).
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const target = this.ticket;
    // Cut now, synchronously: increments accepted from here on wait until after `fn`.
    for (let taken = this.takeDeltas(); taken !== null; taken = this.takeDeltas()) {
      this.sealed.push(taken);
    }
    return this.withLock(async () => {
      while (this.durableTicket < target) await this.flushOnce();
      try {
        return await fn();
      } finally {
        this.applied++;
      }
    });
  }

  // ---- lifecycle ----

  /** Starts the flush worker. */
  start(): void {
    if (this.started) return;
    this.started = true;
    if (!this.eager()) this.schedule(this.jittered(this.flushIntervalMs));
    else if (this.pendingIncrements() > 0) this.schedule(0);
  }

  /**
   * Stops accepting, then flushes until nothing is pending, retrying failed flushes until
   * `timeoutMs` has passed.
   */
  async drain(timeoutMs: number): Promise<DrainResult> {
    this.stopping = true;
    this.clearTimer();
    const deadline = Date.now() + timeoutMs;
    let delay = this.retryBaseMs;
    for (;;) {
      try {
        await this.withLock(async () => {
          while (this.inflight !== null || this.sealed.length > 0 || this.pendingIncrements() > 0) {
            await this.flushOnce();
          }
        });
        return { drained: true, unflushed: 0 };
      } catch {
        if (Date.now() + delay > deadline) break;
        await sleep(delay);
        delay = Math.min(delay * 2, this.retryMaxMs);
      }
    }
    return { drained: false, unflushed: this.ticket - this.durableTicket };
  }

  // ---- the worker ----

  /** Wakes the worker now unless a flush is running (it re-checks when done). */
  protected kick(): void {
    if (!this.started || this.flushing || this.stopping) return;
    if (this.timer !== null && this.timerDue <= Date.now() + 1) return;
    if (this.failures > 0 && this.timer !== null) return; // keep the backoff
    this.schedule(0);
  }

  private schedule(delayMs: number): void {
    this.clearTimer();
    this.timerDue = Date.now() + delayMs;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.tick();
    }, delayMs);
    // The timer alone must not keep a finished process alive; the server does.
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private async tick(): Promise<void> {
    if (this.stopping) return;
    this.flushing = true;
    let retryIn = -1;
    try {
      await this.withLock(() => this.flushOnce());
    } catch {
      retryIn = this.backoff();
    } finally {
      this.flushing = false;
    }
    if (this.stopping) return;
    if (retryIn >= 0) this.schedule(retryIn);
    else if (this.waiters.length > 0 || this.inflight !== null || this.sealed.length > 0) {
      this.schedule(0);
    } else if (this.eager()) {
      if (this.pendingIncrements() > 0) this.schedule(0);
    } else this.schedule(this.jittered(this.flushIntervalMs));
  }

  /** Applies the in-flight batch, or the next one; must run under the lock. */
  private async flushOnce(): Promise<void> {
    if (this.inflight === null) {
      const taken = this.sealed.shift() ?? this.takeDeltas();
      if (taken === null) {
        this.settle(this.ticket);
        return;
      }
      this.inflight = { instanceId: this.instanceId, seq: this.nextSeq++, deltas: taken.deltas };
      this.inflightTicket = taken.ticket;
      // The marker must be on disk before the store may apply the batch: a crash after the
      // apply then replays it under the same seq, which the store skips.
      await this.journal?.seal(this.inflight.seq, taken.ticket);
    }
    const batch = this.inflight;
    const started = performance.now();
    let result: BatchResult;
    try {
      result = await this.store.applyBatch(batch);
    } catch (err) {
      this.failures++;
      this.events.onFlushError?.(batch, err, this.failures);
      const error = new TallyError('STORE_UNAVAILABLE', undefined, { cause: err, retryAfterS: 1 });
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w.reject(error);
      throw err;
    }
    this.inflight = null;
    this.applied++;
    for (const [name, value] of result.values) this.remember(name, value);
    const recovered = this.failures > 0;
    this.failures = 0;
    this.settle(this.inflightTicket);
    if (recovered) this.events.onRecovered?.();
    this.events.onApplied?.(batch, result, performance.now() - started);
  }

  private settle(ticket: number): void {
    if (ticket > this.durableTicket) {
      this.durableTicket = ticket;
      this.journal?.markDurable(ticket);
    }
    if (this.waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      if (w.ticket <= this.durableTicket) w.resolve();
      else still.push(w);
    }
    this.waiters = still;
  }

  private withLock<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.lock.then(fn);
    this.lock = run.catch(() => undefined);
    return run;
  }

  private remember(name: string, value: number): void {
    // Re-insert so Map order approximates least-recently-updated first.
    this.known.delete(name);
    this.known.set(name, value);
    if (this.known.size > this.maxKnown) this.forgetOldest();
  }

  /**
   * Forgets the oldest tenth in one pass. One at a time would be quadratic: V8's Map keeps
   * deleted entries at the front until it rehashes, so each `keys().next()` walks past every
   * entry deleted before it (a 1M-counter drain took 65 s that way, 3 s this way).
   */
  private forgetOldest(): void {
    let excess = this.known.size - Math.floor(this.maxKnown * 0.9);
    for (const name of this.known.keys()) {
      if (excess-- <= 0) break;
      this.known.delete(name);
    }
  }

  private backoff(): number {
    const ceiling = Math.min(
      this.retryMaxMs,
      this.retryBaseMs * 2 ** Math.min(this.failures - 1, 16),
    );
    // Full jitter keeps many instances from retrying in lockstep after a shared outage.
    return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
  }

  protected jittered(ms: number): number {
    return Math.max(1, Math.round(ms * (0.9 + Math.random() * 0.2)));
  }

  private overloaded(): never {
    throw new TallyError('OVERLOADED', undefined, {
      retryAfterS: Math.max(1, Math.ceil(this.flushIntervalMs / 1000)),
    });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
