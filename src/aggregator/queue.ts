/** @module aggregator/queue — a bounded queue of increments drained by a pull worker. */
import { type AggregatorOptions, WriteBehindAggregator } from './write-behind.js';

/**
 * Producer/consumer design. `add` appends to a fixed-size ring buffer; the worker wakes as soon
 * as the queue is not empty, takes up to `maxBatchSize` increments, coalesces them per counter
 * and applies them as one batch. The bound (`maxPending`) counts queued increments plus those
 * admitted whose log write is under way, so the ring can never be written past and memory is
 * fixed up front; per-counter sums are kept beside the queue so estimates stay O(1).
 */
export class QueueAggregator extends WriteBehindAggregator {
  readonly kind = 'queue';
  private readonly names: (string | undefined)[];
  private readonly amounts: Float64Array;
  private head = 0;
  private length = 0;
  private readonly queued = new Map<string, { sum: number; items: number }>();
  /** Tickets handed to batches so far: queue position of the last increment taken. */
  private taken = 0;

  constructor(options: AggregatorOptions) {
    super(options);
    this.names = new Array(this.maxPending);
    this.amounts = new Float64Array(this.maxPending);
  }

  protected buffer(name: string, by: number): void {
    const at = (this.head + this.length) % this.maxPending;
    this.names[at] = name;
    this.amounts[at] = by;
    this.length++;
    const entry = this.queued.get(name);
    if (entry === undefined) this.queued.set(name, { sum: by, items: 1 });
    else {
      entry.sum += by;
      entry.items++;
    }
  }

  protected pendingDelta(name: string): number {
    return this.queued.get(name)?.sum ?? 0;
  }

  protected takeDeltas(): { deltas: Map<string, number>; ticket: number } | null {
    if (this.length === 0) return null;
    const n = Math.min(this.length, this.maxBatchSize);
    const deltas = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const at = (this.head + i) % this.maxPending;
      const name = this.names[at] as string;
      const by = this.amounts[at] as number;
      this.names[at] = undefined;
      deltas.set(name, (deltas.get(name) ?? 0) + by);
      const entry = this.queued.get(name);
      if (entry !== undefined) {
        entry.sum -= by;
        if (--entry.items === 0) this.queued.delete(name);
      }
    }
    this.head = (this.head + n) % this.maxPending;
    this.length -= n;
    this.taken += n;
    for (const [name, delta] of deltas) if (delta === 0) deltas.delete(name);
    if (deltas.size > 0) return { deltas, ticket: this.taken };
    // Everything taken cancelled out; with the queue empty, the caller settles every ticket.
    return this.length > 0 ? this.takeDeltas() : null;
  }

  protected isPending(name: string): boolean {
    return this.queued.has(name);
  }

  protected hasRoom(_fresh: number, items: number): boolean {
    // Slots held for admissions whose log write is under way are taken already; work cut off by
    // an admin write left the ring but not memory (one slot per counter).
    return this.length + this.heldItems + this.sealedCounters + items <= this.maxPending;
  }

  pendingSize(): number {
    return this.length;
  }

  pendingIncrements(): number {
    return this.length;
  }

  protected eager(): boolean {
    return true;
  }
}
