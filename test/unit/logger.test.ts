import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { lazyChildLogger } from '../../src/obs/logger.js';

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { lines, logger: pino({ level: 'info' }, stream) };
}

describe('lazyChildLogger', () => {
  it('logs enabled levels with the request bindings and drops disabled ones', async () => {
    const { lines, logger } = capture();
    const log = lazyChildLogger(logger, { reqId: 'r-1' }, {});
    log.debug('hidden');
    log.info({ counter: 'a' }, 'shown');
    log.error(new Error('boom'));
    log.child({ extra: 1 }).warn('from child');
    await new Promise((r) => setImmediate(r));
    expect(lines.map((l) => l.msg)).toEqual(['shown', 'boom', 'from child']);
    expect(lines.every((l) => l.reqId === 'r-1')).toBe(true);
    expect(lines[0]?.counter).toBe('a');
    expect(lines[2]?.extra).toBe(1);
    expect(log.level).toBe('info');
    expect(log.isLevelEnabled('debug')).toBe(false);
  });
});
