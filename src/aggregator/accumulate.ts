/** @module aggregator/accumulate — pending deltas per counter in one Map, flushed on a timer. */
import { type AggregatorOptions, WriteBehindAggregator } from './write-behind.js';

/**
 * The default design. `add` is one Map update; every `flushIntervalMs` (±10%) the whole Map is
 * swapped out and sent as one batch. The bound (`maxPending`) counts distinct counters pending,
 * held for an admission whose log write is under way, cut off by an admin write, and in the
 * batch being flushed, since memory grows with names, not with increments.
 */
export class AccumulateAggregator extends WriteBehindAggregator {
  readonly kind = 'accumulate';
  private pending = new Map<string, number>();
  private pendingCount = 0;

  constructor(options: AggregatorOptions) {
    super(options);
  }

  protected buffer(name: string, by: number): void {
    this.pending.set(name, (this.pending.get(name) ?? 0) + by);
    this.pendingCount++;
  }

  protected pendingDelta(name: string): number {
    return this.pending.get(name) ?? 0;
  }

  protected takeDeltas(): { deltas: Map<string, number>; ticket: number } | null {
    if (this.pending.size === 0) return null;
    const deltas = this.pending;
    this.pending = new Map();
    this.pendingCount = 0;
    // Deltas that summed to zero need no write.
    for (const [name, delta] of deltas) if (delta === 0) deltas.delete(name);
    return deltas.size === 0 ? null : { deltas, ticket: this.ticket };
  }

  protected isPending(name: string): boolean {
    return this.pending.has(name);
  }

  protected hasRoom(fresh: number): boolean {
    return (
      fresh === 0 ||
      this.pending.size + this.heldOutside + this.sealedCounters + this.inflightSize() + fresh <=
        this.maxPending
    );
  }

  pendingSize(): number {
    return this.pending.size;
  }

  pendingIncrements(): number {
    return this.pendingCount;
  }

  protected eager(): boolean {
    return false;
  }
}
