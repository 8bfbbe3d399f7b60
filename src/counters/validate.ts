/** @module counters/validate — input rules for names, amounts and values, with stable codes. */
import { TallyError } from '../errors.js';

/** Largest |by| one increment may carry. */
export const MAX_BY = 1_000_000_000;
/** Counter values stay within ±MAX_VALUE (2^53-1) so JSON clients read them exactly. */
export const MAX_VALUE = Number.MAX_SAFE_INTEGER;
/** Items one batch request may carry. */
export const MAX_BATCH_ITEMS = 1000;

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;

export function isValidName(name: unknown): name is string {
  return typeof name === 'string' && NAME_RE.test(name);
}

export function assertName(name: unknown): string {
  if (!isValidName(name)) throw new TallyError('INVALID_NAME');
  return name;
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

export function inRange(value: number): boolean {
  return value <= MAX_VALUE && value >= -MAX_VALUE;
}

/** A JSON object body, or undefined when there was none; anything else is INVALID_BODY. */
export function asObject(body: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (body === undefined) return {};
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new TallyError('INVALID_BODY', 'The body must be a JSON object');
  }
  for (const key of Object.keys(body)) {
    if (!allowed.includes(key)) {
      throw new TallyError(
        'UNKNOWN_FIELD',
        `Unknown field ${JSON.stringify(key)}; allowed: ${allowed.join(', ') || 'none'}`,
      );
    }
  }
  return body as Record<string, unknown>;
}
