/**
 * @module aggregator/write-behind — what both aggregation designs share: batch identity, the one
 * flush in flight, retries with backoff, durability tickets for strong requests, and estimates.
 */

import { type Increment, inRange } from '../domain.js';
import { storeUnavailable, TallyError } from '../errors.js';
import type { Batch, BatchResult, Store } from '../store/interface.js';
import { backoffMs, sleep } from '../util/retry.js';

/** Options shared by both aggregators. */
export interface AggregatorOptions {
  readonly store: Store;
  /**
   * Identity of this process's batches: `<instanceId>@<epoch>`, the epoch claimed in the store at
   * start, so no two processes ever share a batch sequence (see docs/reliability.md).
   */
  readonly writerId: string;
  /** Seq of the first batch this process sends (store's last seq + 1). @default 1 */
  readonly firstSeq?: number;
  /** Accumulate: ms between flushes, jittered ±10%. @default 100 */
  readonly flushIntervalMs?: number;
  /** Bound on pending work (see each aggregator). @default 1_000_000 */
  readonly maxPending?: number;
  /** Bound on acknowledged increments the store does not hold yet. @default 10_000_000 */
  readonly maxUnflushed?: number;
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

/**
 * The write-ahead log as the aggregator drives it. Item numbers are tickets: an increment is
 * appended after its admission is reserved and becomes pending once the append resolves, in
 * append order.
 */
export interface Journal {
  /** Logs one increment; resolves once it is durable enough to acknowledge. */
  append(name: string, by: number): Promise<void>;
  /** Logs several increments as one unit. */
  appendMany(items: readonly Increment[]): Promise<void>;
  /**
   * Batch `seq`, cut at `at` (ms), holds every increment up to `lastTicket`; must be on disk
   * before it is sent.
   */
  seal(seq: number, lastTicket: number, at: number): Promise<void>;
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
  /**
   * A batch's first attempt was reported as already applied: either another process sent
   * batches under this writer id (this batch was then not counted) or the client library re-sent
   * the attempt. The observer decides (it can ask the store who owns the epoch) and calls
   * `suspend` for a real conflict.
   */
  onIdentityConflict?(batch: Batch): void;
}

/** Result of a final drain. */
export interface DrainResult {
  /** True when nothing acknowledged was left unflushed. */
  readonly drained: boolean;
  /** Increments acknowledged but not flushed (only when the drain timed out). */
  readonly unflushed: number;
}

/** Deltas of one counter in an admission: sums of the positive and negative ones, and how many. */
interface Sum {
  up: number;
  down: number;
  n: number;
}

/** Increments of one counter admitted but not yet logged: the headroom they may still take. */
interface Hold extends Sum {
  /** Not pending when held: takes a pending slot of its own (accumulate's bound). */
  outside: boolean;
}

/**
 * The single admissions that share one log write (one event-loop turn): released and accepted
 * together when it lands, by one handler instead of two closures per admission.
 */
interface Turn {
  readonly logged: Promise<void>;
  readonly names: string[];
  readonly bys: number[];
  /** Settles once every admission of the turn is released and, if logged, accepted. */
  settled: Promise<void>;
}

/** The answer of an admission that needed no log write. */
const RESOLVED: Promise<void> = Promise.resolve();

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
 * - Admission (`admit`, `admitMany`) is one synchronous step that reserves everything an
 *   increment needs — pending room, unflushed room and the counter's headroom toward ±(2^53-1),
 *   counting deltas already pending, in flight or held for other admissions — or throws a
 *   TallyError and changes nothing. The journal append follows; when it resolves the increment
 *   becomes pending, when it fails the reservation is released. Requests of one event-loop turn
 *   therefore see each other's reservations: no bound can be passed.
 * - At most one `store.applyBatch` is in flight.
 * - A failed batch is retried unchanged, with the same `(writerId, seq)`, until it succeeds:
 *   newer increments wait for the next seq. Merging them into the retried batch would lose them
 *   if the first attempt had in fact been applied (the store would report it as a duplicate).
 * - Every accepted increment gets a ticket; `durableTicket` is the highest ticket the store holds.
 * - Stored values enter the estimates one way: from this process's own batch results, or
 *   through `learn` (reads, sets, other instances), under one rule.
 */
export abstract class WriteBehindAggregator {
  abstract readonly kind: 'accumulate' | 'queue';
  protected readonly store: Store;
  protected readonly writerId: string;
  protected readonly flushIntervalMs: number;
  protected readonly maxPending: number;
  protected readonly maxBatchSize: number;
  private readonly maxUnflushed: number;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private readonly maxKnown: number;
  private readonly events: AggregatorEvents;
  private readonly journal: Journal | undefined;

  /** Last stored value seen per counter: from flush results, reads, sets and other instances. */
  private readonly known = new Map<string, number>();
  private inflight: Batch | null = null;
  /** Attempts of the in-flight batch so far (a duplicate on the first one is a conflict). */
  private inflightAttempts = 0;
  /** Work cut off by `exclusive`, flushed before anything accepted after the cut. */
  private sealed: Array<{ deltas: Map<string, number>; ticket: number }> = [];
  /** Sum of the sealed deltas per counter (estimates and headroom count them). */
  private readonly sealedDeltas = new Map<string, number>();
  /** Counters in `sealed`, each entry's counted apart (they take pending slots). */
  protected sealedCounters = 0;
  private inflightTicket = 0;
  private nextSeq: number;
  /** Tickets: one per accepted increment. */
  protected ticket = 0;
  private durableTicket = 0;
  private waiters: Waiter[] = [];
  /** Admitted increments whose journal append has not resolved yet, per counter. */
  private readonly holds = new Map<string, Hold>();
  /** The log write that single admissions of this turn are waiting for (see `Turn`). */
  private turn: Turn | undefined;
  /** Increments held in `holds`. */
  protected heldItems = 0;
  /** Held counters that are not pending: each takes a pending slot of its own. */
  protected heldOutside = 0;
  /** Why admission is refused for good (the instance id was taken), if it is. */
  private suspended: TallyError | null = null;

  private lock: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private timerDue = 0;
  private flushing = false;
  private started = false;
  private stopping = false;
  private failures = 0;
  /** Bumped whenever a stored value may have moved under a read: our batches, admin writes, learns. */
  private epoch = 0;

  constructor(options: AggregatorOptions) {
    this.store = options.store;
    this.writerId = options.writerId;
    this.nextSeq = options.firstSeq ?? 1;
    this.flushIntervalMs = options.flushIntervalMs ?? 100;
    this.maxPending = options.maxPending ?? 1_000_000;
    this.maxUnflushed = options.maxUnflushed ?? 10_000_000;
    this.maxBatchSize = options.maxBatchSize ?? 100_000;
    this.retryBaseMs = options.retryBaseMs ?? 50;
    this.retryMaxMs = options.retryMaxMs ?? 2000;
    this.maxKnown = options.maxKnown ?? 200_000;
    this.events = options.events ?? {};
    this.journal = options.journal;
  }

  // ---- what each design provides ----

  /** Records an accepted increment (its room was reserved at admission). */
  protected abstract buffer(name: string, by: number): void;
  /** Pending (not yet in a batch) delta of one counter. */
  protected abstract pendingDelta(name: string): number;
  /** True when the counter has a pending delta. */
  protected abstract isPending(name: string): boolean;
  /** Takes pending work for the next batch; null when there is none. */
  protected abstract takeDeltas(): { deltas: Map<string, number>; ticket: number } | null;
  /**
   * True when `items` more increments, `fresh` of them on counters neither pending nor held,
   * fit within `maxPending` on top of everything pending, in flight and held.
   */
  protected abstract hasRoom(fresh: number, items: number): boolean;
  /** Pending work in the bound's unit (distinct counters or queued increments). */
  abstract pendingSize(): number;
  /** Increments accepted but not yet in a batch. */
  abstract pendingIncrements(): number;
  /** True when the worker should run again right away after a successful flush. */
  protected abstract eager(): boolean;

  // ---- admission: the hot path ----

  /**
   * Admits one increment: reserves (or throws OVERLOADED, COUNTER_OVERFLOW, SHUTTING_DOWN,
   * IDENTITY_CONFLICT, changing nothing), logs, then makes it pending. Resolves with this
   * instance's estimate of the counter after it; rejects with the journal's error (nothing
   * counted) if the log write fails.
   */
  admit(name: string, by: number): Promise<number> {
    return this.enter(name, by).then(() => this.estimate(name));
  }

  /**
   * `admit` without the estimate: resolves once the increment is pending. Every single
   * admission of a turn gets the turn's one promise, so a caller that reads `estimate` itself
   * costs no promise of its own (the hot route: 95.0k → 94.2k instructions per increment,
   * bench/hot.ts count).
   */
  enter(name: string, by: number): Promise<void> {
    this.refuseIfClosed();
    const hold = this.holds.get(name);
    const fresh = hold === undefined && !this.isPending(name) ? 1 : 0;
    if (!this.unflushedRoom(1) || !this.hasRoom(fresh, 1)) this.overloaded();
    if (!this.fits(name, by, hold)) throw new TallyError('COUNTER_OVERFLOW');
    const journal = this.journal;
    if (journal === undefined) {
      this.accept(name, by);
      return RESOLVED;
    }
    this.hold(name, Math.max(by, 0), Math.min(by, 0), 1, hold, fresh === 1);
    const logged = journal.append(name, by);
    let turn = this.turn;
    if (turn?.logged !== logged) turn = this.newTurn(logged);
    turn.names.push(name);
    turn.bys.push(by);
    return turn.settled;
  }

  private newTurn(logged: Promise<void>): Turn {
    const turn: Turn = { logged, names: [], bys: [], settled: logged };
    turn.settled = logged.then(
      () => this.settleTurn(turn, true),
      (err: unknown) => {
        this.settleTurn(turn, false);
        throw err;
      },
    );
    this.turn = turn;
    return turn;
  }

  /** Releases a turn's holds and, once its log write landed, makes its increments pending. */
  private settleTurn(turn: Turn, logged: boolean): void {
    if (this.turn === turn) this.turn = undefined;
    const { names, bys } = turn;
    for (let i = 0; i < names.length; i++) {
      const name = names[i] as string;
      const by = bys[i] as number;
      this.release(name, Math.max(by, 0), Math.min(by, 0), 1);
      if (logged) this.accept(name, by);
    }
  }

  /**
   * Admits several increments, all or none (same errors as `admit`; one journal append).
   * Resolves with the ticket of the last, for `waitDurable`.
   */
  admitMany(items: readonly Increment[]): Promise<number> {
    this.refuseIfClosed();
    // Per counter, not per item: a 1000-item batch on a few counters costs a few Map entries.
    const sums = new Map<string, Sum>();
    for (const { name, by } of items) {
      const sum = sums.get(name);
      if (sum === undefined) sums.set(name, { up: Math.max(by, 0), down: Math.min(by, 0), n: 1 });
      else {
        if (by > 0) sum.up += by;
        else sum.down += by;
        sum.n++;
      }
    }
    let fresh = 0;
    for (const [name, sum] of sums) {
      const hold = this.holds.get(name);
      if (hold === undefined && !this.isPending(name)) fresh++;
      if (!this.fits(name, sum.up + sum.down, hold)) {
        throw new TallyError(
          'COUNTER_OVERFLOW',
          `Counter "${name}" would leave ±(2^53-1); nothing was applied`,
        );
      }
    }
    if (!this.unflushedRoom(items.length) || !this.hasRoom(fresh, items.length)) {
      this.overloaded();
    }
    const journal = this.journal;
    if (journal === undefined) {
      this.acceptAll(items, sums.keys());
      return Promise.resolve(this.ticket);
    }
    for (const [name, { up, down, n }] of sums) {
      this.hold(name, up, down, n, this.holds.get(name), !this.isPending(name));
    }
    const releaseAll = () => {
      for (const [name, { up, down, n }] of sums) this.release(name, up, down, n);
    };
    return journal.appendMany(items).then(
      () => {
        releaseAll();
        this.acceptAll(items, sums.keys());
        return this.ticket;
      },
      (err: unknown) => {
        releaseAll();
        throw err;
      },
    );
  }

  /** Ticket of the latest accepted increment; pass to `waitDurable`. */
  currentTicket(): number {
    return this.ticket;
  }

  /**
   * Refuses every later admission with `reason` (the instance id was taken by another process).
   * What was acknowledged is still flushed: it goes out under this process's own writer id.
   */
  suspend(reason: TallyError): void {
    this.suspended ??= reason;
  }

  /** Why admissions are refused for good, if they are. */
  suspendedReason(): TallyError | null {
    return this.suspended;
  }

  private refuseIfClosed(): void {
    if (this.stopping) throw new TallyError('SHUTTING_DOWN');
    if (this.suspended !== null) throw this.suspended;
  }

  private unflushedRoom(items: number): boolean {
    return this.ticket - this.durableTicket + this.heldItems + items <= this.maxUnflushed;
  }

  /** Whether `delta` keeps the counter within ±(2^53-1) however the held admissions end. */
  private fits(name: string, delta: number, hold: Hold | undefined): boolean {
    const base = this.estimate(name) + delta;
    if (hold === undefined) return inRange(base);
    return inRange(base + hold.up) && inRange(base + hold.down);
  }

  /**
   * Holds `n` increments of a counter (positive ones summing to `up`, negative to `down`) while
   * their log write is under way. `found` is the counter's hold and `outside` whether it is not
   * pending, both as the caller looked them up.
   */
  private hold(
    name: string,
    up: number,
    down: number,
    n: number,
    found: Hold | undefined,
    outside: boolean,
  ): void {
    if (found === undefined) {
      if (outside) this.heldOutside++;
      this.holds.set(name, { up, down, n, outside });
    } else {
      found.up += up;
      found.down += down;
      found.n += n;
    }
    this.heldItems += n;
  }

  private release(name: string, up: number, down: number, n: number): void {
    const hold = this.holds.get(name);
    if (hold === undefined) return;
    hold.up -= up;
    hold.down -= down;
    this.heldItems -= n;
    hold.n -= n;
    if (hold.n === 0) {
      this.holds.delete(name);
      if (hold.outside) this.heldOutside--;
    }
  }

  /** Makes an admitted (and logged) increment pending; never throws. */
  private accept(name: string, by: number): void {
    this.buffer(name, by);
    this.ticket++;
    this.nowPending(name);
    if (this.eager()) this.kick();
  }

  /** `accept` for a batch: one kick, one look at the holds per counter. */
  private acceptAll(items: readonly Increment[], names: Iterable<string>): void {
    for (const { name, by } of items) {
      this.buffer(name, by);
      this.ticket++;
    }
    if (this.heldOutside > 0) for (const name of names) this.nowPending(name);
    if (this.eager()) this.kick();
  }

  /** A held counter that became pending: its slot is counted there from now on. */
  private nowPending(name: string): void {
    if (this.heldOutside === 0) return;
    const hold = this.holds.get(name);
    if (hold?.outside) {
      hold.outside = false;
      this.heldOutside--;
    }
  }

  /**
   * Takes the next batch's deltas. Held counters that are no longer pending take slots of their
   * own, also when everything taken summed to zero (nothing to send, but pending was emptied).
   */
  private take(): { deltas: Map<string, number>; ticket: number } | null {
    const taken = this.takeDeltas();
    if (this.holds.size > 0) {
      for (const [name, hold] of this.holds) {
        if (!hold.outside && !this.isPending(name)) {
          hold.outside = true;
          this.heldOutside++;
        }
      }
    }
    return taken;
  }

  private pushSealed(taken: { deltas: Map<string, number>; ticket: number }): void {
    this.sealed.push(taken);
    this.sealedCounters += taken.deltas.size;
    for (const [name, delta] of taken.deltas) {
      this.sealedDeltas.set(name, (this.sealedDeltas.get(name) ?? 0) + delta);
    }
  }

  private shiftSealed(): { deltas: Map<string, number>; ticket: number } | null {
    const taken = this.sealed.shift();
    if (taken === undefined) return null;
    this.sealedCounters -= taken.deltas.size;
    for (const [name, delta] of taken.deltas) {
      const rest = (this.sealedDeltas.get(name) ?? 0) - delta;
      if (this.sealed.some((s) => s.deltas.has(name))) this.sealedDeltas.set(name, rest);
      else this.sealedDeltas.delete(name);
    }
    return taken;
  }

  // ---- estimates and stored values ----

  /** Last stored value + in-flight + cut-off + pending deltas. */
  estimate(name: string): number {
    let value = (this.known.get(name) ?? 0) + this.pendingDelta(name);
    if (this.inflight !== null) value += this.inflight.deltas.get(name) ?? 0;
    if (this.sealedCounters > 0) value += this.sealedDeltas.get(name) ?? 0;
    return value;
  }

  /**
   * Acknowledged deltas of a counter not yet sent to the store (pending and cut off; not the
   * batch in flight, which the store may already hold). What a sibling worker adds to its own
   * eventual read: it can only make a read lag, never count a delta twice.
   */
  unsent(name: string): number {
    let value = this.pendingDelta(name);
    if (this.sealedCounters > 0) value += this.sealedDeltas.get(name) ?? 0;
    return value;
  }

  /** True while the batch in flight carries this counter (the store may already hold it). */
  sending(name: string): boolean {
    return this.inflight?.deltas.has(name) ?? false;
  }

  /** True when a stored value for this counter is known, so `estimate` needs no read. */
  knows(name: string): boolean {
    return this.known.has(name);
  }

  /** True while this instance holds a delta of the counter that is not stored yet. */
  holdsUnflushed(name: string): boolean {
    if (this.pendingDelta(name) !== 0) return true;
    if (this.inflight?.deltas.has(name) === true) return true;
    return this.sealedCounters > 0 && this.sealedDeltas.has(name);
  }

  /** Last stored value known, if any. */
  knownValue(name: string): number | undefined {
    return this.known.get(name);
  }

  /** Pass to `learn` with a value read from the store: taken when the read began. */
  readEpoch(): number {
    return this.epoch;
  }

  /**
   * The one way a stored value learned outside this process's own batches (a read, a set or
   * delete, another instance's versioned change) enters the estimates. It is taken unless a batch
   * of ours that carries this counter is in flight or cut off (the value may or may not include
   * its delta), or, for a read, anything moved since the read began (`since`, from `readEpoch()`:
   * one of our batches landed, an admin write ran, or another value was learned; the read may
   * predate it, and taking it would step back). Values without an order (sibling workers' IPC
   * messages) must not come in here.
   */
  learn(name: string, value: number, since = this.epoch): void {
    if (since !== this.epoch || (this.inflight?.deltas.has(name) ?? false)) return;
    if (this.sealedCounters > 0 && this.sealedDeltas.has(name)) return;
    this.epoch++;
    this.remember(name, value);
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

  /** Acknowledged increments the store does not hold yet (the log's backlog). */
  unflushed(): number {
    return this.ticket - this.durableTicket;
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
    for (let taken = this.take(); taken !== null; taken = this.take()) this.pushSealed(taken);
    return this.withLock(async () => {
      // Only what was cut (and the batch in flight): later increments wait until after `fn`.
      // Cut work that summed to zero needs no write, so the target is settled here.
      while (this.inflight !== null || this.sealed.length > 0) await this.flushOnce(true);
      this.settle(target);
      try {
        return await fn();
      } finally {
        this.epoch++;
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
    const deadline = performance.now() + timeoutMs;
    let delay = this.retryBaseMs;
    for (;;) {
      try {
        await this.withLock(async () => {
          for (;;) {
            if (this.inflight !== null || this.sealed.length > 0 || this.pendingIncrements() > 0) {
              await this.flushOnce();
            } else if (this.heldItems > 0) {
              // Admitted before the stop, log write still under way: they land in a moment.
              await sleep(1);
            } else break;
          }
        });
        return { drained: true, unflushed: 0 };
      } catch {
        if (performance.now() + delay > deadline) break;
        await sleep(delay);
        delay = Math.min(delay * 2, this.retryMaxMs);
      }
    }
    return { drained: false, unflushed: this.ticket - this.durableTicket + this.heldItems };
  }

  // ---- the worker ----

  /** Wakes the worker now unless a flush is running (it re-checks when done). */
  protected kick(): void {
    if (!this.started || this.flushing || this.stopping) return;
    if (this.timer !== null && this.timerDue <= performance.now() + 1) return;
    if (this.failures > 0 && this.timer !== null) return; // keep the backoff
    this.schedule(0);
  }

  private schedule(delayMs: number): void {
    this.clearTimer();
    // Monotonic: a wall clock stepped back must not make the worker think a timer is far off.
    this.timerDue = performance.now() + delayMs;
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

  /**
   * Applies the in-flight batch, or the next one (only cut-off work when `onlyCut`); must run
   * under the lock.
   */
  private async flushOnce(onlyCut = false): Promise<void> {
    if (this.inflight === null) {
      const taken = this.shiftSealed() ?? (onlyCut ? null : this.take());
      if (taken === null) {
        if (!onlyCut) this.settle(this.ticket);
        return;
      }
      this.inflight = {
        instanceId: this.writerId,
        seq: this.nextSeq++,
        deltas: taken.deltas,
        at: Date.now(),
      };
      this.inflightTicket = taken.ticket;
      this.inflightAttempts = 0;
      // The marker must be on disk before the store may apply the batch: a crash after the
      // apply then replays it under the same seq, which the store skips.
      await this.journal?.seal(this.inflight.seq, taken.ticket, this.inflight.at ?? Date.now());
    }
    const batch = this.inflight;
    const started = performance.now();
    this.inflightAttempts++;
    let result: BatchResult;
    try {
      result = await this.store.applyBatch(batch);
    } catch (err) {
      this.failures++;
      this.events.onFlushError?.(batch, err, this.failures);
      const error = storeUnavailable(err);
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w.reject(error);
      throw err;
    }
    if (result.duplicate && this.inflightAttempts === 1) {
      // Either another process writes as us (its batch holds this seq: ours was not counted), or
      // the client library re-sent our first attempt after a dropped connection (ioredis Cluster
      // does). The observer tells them apart by asking the store who owns our epoch.
      this.events.onIdentityConflict?.(batch);
    }
    this.inflight = null;
    this.epoch++;
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
    return backoffMs(this.failures, this.retryBaseMs, this.retryMaxMs);
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
