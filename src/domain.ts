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

/** Namespaces and keys: 1-64 characters of `A-Za-z0-9_.-`. */
const PART_RE = /^[A-Za-z0-9_.-]{1,64}$/;
/** The namespace of flat names and of routes that give none. */
export const DEFAULT_NAMESPACE = 'default';

/** A namespace or key: the rule, and not `.` or `..` (which URLs resolve as path steps). */
export function isValidPart(part: unknown): part is string {
  return typeof part === 'string' && PART_RE.test(part) && !/^\.+$/.test(part);
}

/**
 * The stored name of `key` in `namespace`: the key itself in `default` (so flat names are default
 * names and stored counters carry over unchanged), else `namespace/key`. Flat names have no `/`,
 * so the two never collide.
 */
export function counterName(namespace: string, key: string): string {
  return namespace === DEFAULT_NAMESPACE ? key : `${namespace}/${key}`;
}

/** The namespace and key of a stored name (the inverse of {@link counterName}). */
export function splitName(name: string): { namespace: string; key: string } {
  const slash = name.indexOf('/');
  return slash < 0
    ? { namespace: DEFAULT_NAMESPACE, key: name }
    : { namespace: name.slice(0, slash), key: name.slice(slash + 1) };
}

/**
 * A counter reference as clients write it: a flat name, or `namespace/key`. Returns the stored
 * name, or undefined when it is neither.
 */
export function parseCounterRef(ref: unknown): string | undefined {
  if (typeof ref !== 'string') return undefined;
  const slash = ref.indexOf('/');
  if (slash < 0) return NAME_RE.test(ref) ? ref : undefined;
  const namespace = ref.slice(0, slash);
  const key = ref.slice(slash + 1);
  if (!isValidPart(namespace)) return undefined;
  const valid = namespace === DEFAULT_NAMESPACE ? isDefaultKey(key) : isValidPart(key);
  return valid ? counterName(namespace, key) : undefined;
}

/** One increment of one counter. */
export interface Increment {
  readonly name: string;
  readonly by: number;
}

export function isValidName(name: unknown): name is string {
  return typeof name === 'string' && NAME_RE.test(name);
}

/**
 * A key of the default namespace: a flat name (so every flat counter is reachable by the
 * namespaced routes too) or any key (`_x`, which the flat routes do not accept).
 */
export function isDefaultKey(key: unknown): key is string {
  return typeof key === 'string' && (NAME_RE.test(key) || PART_RE.test(key));
}

/** True when a counter may hold `value` (within ±(2^53-1)). */
export function inRange(value: number): boolean {
  return value <= MAX_VALUE && value >= -MAX_VALUE;
}
