/** @module bench/lib/redis — Redis command statistics and direct reads for the checks. */
import { Redis } from 'ioredis';

/** Commands that are the bench's own bookkeeping or connection setup, not store work. */
const NOT_STORE_WORK = new Set([
  'info',
  'config',
  'config|resetstat',
  'config|get',
  'ping',
  'subscribe',
  'psubscribe',
  'unsubscribe',
  'client',
  'client|setname',
  'client|setinfo',
  'hello',
  'select',
  'auth',
  'script',
  'script|load',
  'command',
  'command|docs',
]);

/** Calls per command since the last reset. */
export type CommandCounts = Map<string, number>;

/** A bookkeeping connection to the bench's own redis-server. */
export class RedisProbe {
  private readonly client: Redis;

  constructor(url: string) {
    this.client = new Redis(url, { lazyConnect: false, maxRetriesPerRequest: 1 });
  }

  async resetStats(): Promise<void> {
    await this.client.config('RESETSTAT');
  }

  /** Commands executed since the reset, Lua-internal calls included (they are real work). */
  async commandCounts(): Promise<CommandCounts> {
    const info = await this.client.info('commandstats');
    const counts: CommandCounts = new Map();
    for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) {
      const name = m[1] ?? '';
      if (!NOT_STORE_WORK.has(name)) counts.set(name, Number(m[2]));
    }
    return counts;
  }

  /** Sum and count of the string keys matching `pattern` (SCAN + MGET). */
  async sumKeys(pattern: string): Promise<{ sum: number; count: number }> {
    let sum = 0;
    let count = 0;
    let cursor = '0';
    do {
      const [next, keys] = await this.client.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      if (keys.length > 0) {
        for (const v of await this.client.mget(keys)) {
          sum += Number(v ?? 0);
          count++;
        }
      }
    } while (cursor !== '0');
    return { sum, count };
  }

  close(): void {
    this.client.disconnect();
  }
}

/** Total calls, and the script calls among them. */
export function totals(counts: CommandCounts): { all: number; scripts: number } {
  let all = 0;
  let scripts = 0;
  for (const [name, calls] of counts) {
    all += calls;
    if (name === 'evalsha' || name === 'eval' || name === 'fcall') scripts += calls;
  }
  return { all, scripts };
}
