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
}
