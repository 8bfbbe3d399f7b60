/**
 * @module domain — the counter rules every layer shares: limits, the name rule, one increment.
 * A leaf: it imports nothing, so stores, the aggregator and HTTP can all point down to it.
 */

/** Largest |by| one increment may carry. */
export const MAX_BY = 1_000_000_000;
/** Counter values stay within ±MAX_VALUE (2^53-1) so JSON clients read them exactly. */
export const MAX_VALUE = Number.MAX_SAFE_INTEGER;
/** Items one batch request may carry. */
export const MAX_BATCH_ITEMS = 1000;

/** Counter names: 1-128 characters of `A-Za-z0-9_.:-`, starting with a letter or digit. */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;

/** One increment of one counter. */
export interface Increment {
  readonly name: string;
  readonly by: number;
}

export function isValidName(name: unknown): name is string {
  return typeof name === 'string' && NAME_RE.test(name);
}

/** True when a counter may hold `value` (within ±(2^53-1)). */
export function inRange(value: number): boolean {
  return value <= MAX_VALUE && value >= -MAX_VALUE;
}
