/** @module http/parse — request input to values, each bad input with its stable error code. */
import {
  DEFAULT_NAMESPACE,
  isDefaultKey,
  isValidName,
  isValidPart,
  MAX_BY,
  MAX_VALUE,
} from '../domain.js';
import { TallyError } from '../errors.js';

export function assertName(name: unknown): string {
  if (!isValidName(name)) throw new TallyError('INVALID_NAME');
  return name;
}

/** Checks a namespace or a key. */
export function assertPart(part: unknown): string {
  if (!isValidPart(part)) throw new TallyError('INVALID_NAMESPACE');
  return part;
}

/**
 * Checks a key of `namespace`: the key rule, or in the default namespace a flat name too (so a
 * flat counter such as `page:home` is reachable here as well).
 */
export function assertKey(namespace: string, key: unknown): string {
  if (namespace === DEFAULT_NAMESPACE ? isDefaultKey(key) : isValidPart(key)) return key as string;
  throw new TallyError('INVALID_NAMESPACE');
}

/** Checks an increment amount: an integer with |by| ≤ MAX_BY. */
export function assertBy(by: unknown, field = 'by'): number {
  if (typeof by !== 'number' || !Number.isInteger(by)) {
    throw new TallyError('INVALID_NUMBER', `"${field}" must be an integer`);
  }
  if (by > MAX_BY || by < -MAX_BY) {
    throw new TallyError('NUMBER_OUT_OF_RANGE', `"${field}" must be within ±${MAX_BY}`);
  }
  return by;
}

/** Checks a value to set: an integer within ±MAX_VALUE. */
export function assertValue(value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new TallyError('INVALID_NUMBER', '"value" must be an integer');
  }
  if (value > MAX_VALUE || value < -MAX_VALUE) {
    throw new TallyError('NUMBER_OUT_OF_RANGE', `"value" must be within ±${MAX_VALUE}`);
  }
  return value;
}

/** A query parameter's integer (`42`, `-7`, `+3`) within ±max; undefined for anything else. */
export function queryInteger(raw: unknown, max: number): number | undefined {
  if (typeof raw !== 'string' || !/^[+-]?\d{1,16}$/.test(raw)) return undefined;
  const n = Number(raw);
  return Number.isSafeInteger(n) && Math.abs(n) <= max ? n : undefined;
}

/** A JSON object body, or undefined when there was none; anything else is INVALID_BODY. */
export function asObject(body: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (body === undefined) return {};
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new TallyError('INVALID_BODY', 'The body must be a JSON object');
  }
  // for…in, not Object.keys: no array per call (once per item of a 1000-item batch). JSON.parse
  // makes plain objects, so every key it sees is the body's own (`__proto__` included).
  for (const key in body) {
    if (!allowed.includes(key)) {
      throw new TallyError(
        'UNKNOWN_FIELD',
        `Unknown field ${JSON.stringify(key)}; allowed: ${allowed.join(', ') || 'none'}`,
      );
    }
  }
  return body as Record<string, unknown>;
}
