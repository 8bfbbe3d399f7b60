/**
 * @module store/versions — the newest version seen per counter, kept by the change feeds of the
 * stores many instances share (Redis, PostgreSQL). Change messages and command replies arrive
 * on different connections, so either may be first; a value older than one already let out is
 * never let out again, so live values never step back.
 */

/** A counter's value at a version. */
export interface Versioned {
  readonly version: number;
  readonly value: number;
}

export class NewestVersions {
  /** In least recently written first order (entries are re-inserted on write). */
  private readonly tracked = new Map<string, Versioned>();

  /** `max`: counters remembered; the least recently written is forgotten past it. */
  constructor(private readonly max = 100_000) {}

  get size(): number {
    return this.tracked.size;
  }

  has(name: string): boolean {
    return this.tracked.has(name);
  }

  get(name: string): Versioned | undefined {
    return this.tracked.get(name);
  }

  names(): string[] {
    return [...this.tracked.keys()];
  }

  /**
   * Records `value` as the counter's value at `version` unless a newer one is known, and returns
   * the newest value. The same version and value again changes nothing.
   */
  offer(name: string, version: number, value: number): number {
    const known = this.tracked.get(name);
    if (known !== undefined && known.version > version) return known.value;
    if (known !== undefined && known.version === version && known.value === value) return value;
    this.tracked.delete(name);
    this.tracked.set(name, { version, value });
    if (this.tracked.size > this.max) {
      const oldest = this.tracked.keys().next().value;
      if (oldest !== undefined) this.tracked.delete(oldest);
    }
    return value;
  }
}
