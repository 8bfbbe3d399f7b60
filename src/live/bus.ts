/** @module live/bus — what sibling processes of one `tally serve` (cluster workers) share. */

/**
 * Carries value changes between sibling processes that serve the same counters, and lets one
 * ask the others to flush. `tally serve` implements it over node:cluster IPC (serve.ts).
 */
export interface SiblingBus {
  publish(changes: ReadonlyMap<string, number>): void;
  subscribe(listener: (changes: ReadonlyMap<string, number>) => void): () => void;
  /**
   * Has every sibling process flush what it acknowledged; resolves once all have, rejects if
   * one cannot. Strong reads and admin writes call it, so their guarantees hold across the
   * workers of one `tally serve` as they do within one process.
   */
  flushSiblings?(): Promise<void>;
  /** Answers siblings' `flushSiblings` with this process's flush; returns an unsubscribe. */
  serveFlush?(flush: () => Promise<void>): () => void;
  /**
   * The sum of what every sibling acknowledged for a counter and has not sent to the store yet,
   * so an eventual read on one worker includes the others' increments of a moment ago. Resolves
   * with what answered in time (0 without siblings); `complete` is false when a sibling did not
   * answer in time or had a batch carrying the counter in flight (the store may or may not hold
   * it yet: ask again).
   */
  siblingsUnsent?(name: string): Promise<{ sum: number; complete: boolean }>;
  /**
   * Answers siblings' `siblingsUnsent` with this process's unsent delta, or null while a batch
   * carrying the counter is in flight; returns unsubscribe.
   */
  serveUnsent?(unsent: (name: string) => number | null): () => void;
  /** Every sibling's metrics (prom-client `getMetricsAsJSON`), those that answered in time. */
  siblingMetrics?(): Promise<unknown[][]>;
  /** Answers siblings' `siblingMetrics` with this process's; returns unsubscribe. */
  serveMetrics?(metrics: () => Promise<unknown[]>): () => void;
}
