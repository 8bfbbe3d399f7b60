/**
 * @module store/redis/feed — the change feed: other instances' values over Redis pub/sub, kept
 * in version order, with a heartbeat on the subscription and a resync after it reconnects.
 */
import type { ChangeListener } from '../interface.js';
import { NewestVersions } from '../versions.js';
import type { RedisClient } from './store.js';

/** A counter's value at a shard version, as a resync reads it. */
export interface VersionedValue {
  readonly name: string;
  readonly version: number;
  readonly value: number;
}

/** Options for {@link ChangeFeed}. */
export interface ChangeFeedOptions {
  /** Makes the pub/sub connection (it reconnects and resubscribes by itself). */
  readonly createSubscriber: () => RedisClient;
  readonly channel: string;
  /** This store's tag on its own messages, which the feed skips. */
  readonly origin: string;
  /** How often the subscription is pinged to find a dead link, in ms. @default 15_000 */
  readonly heartbeatMs?: number;
  /** Newest versions remembered to keep live values from stepping back. @default 100_000 */
  readonly maxTracked?: number;
  /** Reads these counters with their shard versions (for a resync after a reconnect). */
  readonly read: (names: string[]) => Promise<VersionedValue[]>;
}

/**
 * Pub/sub messages and command replies arrive on different connections, so either may be first:
 * the feed remembers the newest version seen per counter, and neither delivers nor lets the
 * store return a value older than one it already let out (`newest`).
 */
export class ChangeFeed {
  private readonly listeners = new Set<ChangeListener>();
  private readonly versions: NewestVersions;
  private subscriber: RedisClient | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly options: ChangeFeedOptions) {
    this.versions = new NewestVersions(options.maxTracked ?? 100_000);
  }

  /** True while subscribed: only then can values race, and only then are versions kept. */
  get active(): boolean {
    return this.subscriber !== null;
  }

  /** True when this counter's newest version is known. */
  tracks(name: string): boolean {
    return this.versions.has(name);
  }

  watch(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    if (this.subscriber === null && !this.closed) this.subscribe();
    return () => {
      this.listeners.delete(listener);
    };
  }

  close(): void {
    this.closed = true;
    this.listeners.clear();
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    this.subscriber?.disconnect();
    this.subscriber = null;
  }

  /**
   * Records `value` as the counter's value at shard `version` unless a newer one is known, and
   * returns the newest value. Only while someone watches: without messages nothing can race.
   */
  newest(name: string, version: number, value: number): number {
    if (this.subscriber === null) return value;
    return this.versions.offer(name, version, value);
  }

  private subscribe(): void {
    const sub = this.options.createSubscriber();
    this.subscriber = sub;
    // Errors also show up as failed commands; the listener keeps them from being "unhandled".
    sub.on('error', () => {});
    sub.on('message', (_channel: string, message: string) => this.onMessage(message));
    let connectedBefore = false;
    sub.on('ready', () => {
      // Messages published while the subscription was down are gone: re-read instead.
      if (connectedBefore) this.resync(0);
      connectedBefore = true;
    });
    // With the offline queue on, SUBSCRIBE waits for the connection; ioredis resubscribes after
    // every reconnect by itself.
    sub.subscribe(this.options.channel).catch(() => {});
    if (!('nodes' in sub)) {
      // A subscriber only reads, so a link that died without a FIN/RST (a failover, a NAT
      // timeout) would go unnoticed for hours: ping it, and reconnect when the answer is late.
      const every = this.options.heartbeatMs ?? 15_000;
      this.heartbeat = setInterval(() => {
        if (sub.status !== 'ready') return;
        const late = setTimeout(() => sub.disconnect(true), Math.min(every, 5000));
        late.unref();
        sub.ping().then(
          () => clearTimeout(late),
          () => clearTimeout(late),
        );
      }, every);
      this.heartbeat.unref();
    }
  }

  /**
   * Reads every tracked counter with its shard version and delivers those that moved. Retried a
   * few times while the command connection is still down.
   */
  private resync(attempt: number): void {
    if (this.closed || this.listeners.size === 0) return;
    this.options.read(this.versions.names()).then(
      (rows) => {
        const changes = new Map<string, number>();
        for (const { name, version, value } of rows) {
          const before = this.versions.get(name);
          if (before !== undefined && before.version >= version) continue;
          this.newest(name, version, value);
          if (before?.value !== value) changes.set(name, value);
        }
        if (changes.size > 0) this.deliver(changes);
      },
      () => {
        if (attempt < 20) setTimeout(() => this.resync(attempt + 1), 500).unref();
      },
    );
  }

  private onMessage(message: string): void {
    if (this.listeners.size === 0) return;
    const lines = message.split('\n');
    const [origin, , rawVersion] = (lines[0] ?? '').split(' ');
    if (origin === this.options.origin || rawVersion === undefined) return;
    const version = Number(rawVersion);
    const changes = new Map<string, number>();
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i] as string;
      const space = line.indexOf(' ');
      if (space <= 0) continue;
      const name = line.slice(0, space);
      const value = Number(line.slice(space + 1));
      if (!Number.isSafeInteger(value)) continue;
      if (this.newest(name, version, value) === value) changes.set(name, value);
    }
    if (changes.size === 0) return;
    this.deliver(changes);
  }

  /**
   * Calls every listener. This runs inside ioredis's socket handler, where a throw would crash
   * the process: a faulty listener is reported as a process warning and the others still run.
   */
  private deliver(changes: ReadonlyMap<string, number>): void {
    for (const listener of this.listeners) {
      try {
        listener(changes);
      } catch (err) {
        process.emitWarning(
          err instanceof Error ? err : new Error(String(err)),
          'TallyWatchListener',
        );
      }
    }
  }
}
