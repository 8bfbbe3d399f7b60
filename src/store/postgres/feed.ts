/**
 * @module store/postgres/feed — other instances' changes over LISTEN/NOTIFY: one dedicated
 * connection that reconnects with backoff, values kept in version order, and a resync of the
 * counters already delivered after each reconnect (notifications sent meanwhile are gone).
 */
import type { Client } from 'pg';
import { backoffMs } from '../../util/retry.js';
import type { ChangeListener } from '../interface.js';
import { NewestVersions } from '../versions.js';
import { quoteIdent, timed } from './schema.js';

/** A counter's stored value and the version of the write that left it there. */
export interface StoredVersion {
  readonly version: number;
  readonly value: number;
}

/** Options for {@link PostgresFeed}. */
export interface PostgresFeedOptions {
  /** Makes a new, unconnected client for LISTEN (not one from the pool: it stays checked out). */
  readonly createClient: () => Client;
  /** NOTIFY channel. */
  readonly channel: string;
  /** This store's tag on its own messages, which the feed skips. */
  readonly origin: string;
  /** Reads these counters' rows; a name without a row is absent from the answer. */
  readonly read: (names: string[]) => Promise<Map<string, StoredVersion>>;
  /** How often the connection is asked `SELECT 1` to find a dead link, in ms. @default 15_000 */
  readonly heartbeatMs?: number;
  /** Longest pause between reconnection attempts, in ms. @default 2000 */
  readonly maxReconnectDelayMs?: number;
  /** Newest versions remembered to keep values from stepping back. @default 100_000 */
  readonly maxTracked?: number;
  /** Told each time the listening connection is up (again); for tests and logs. */
  readonly onListening?: (reconnected: boolean) => void;
}

/**
 * Notifications and query replies arrive on different connections, so either may come first.
 * The feed keeps the newest version it has seen per counter and lets out neither a message nor
 * a reply older than that (`newest`), so values never step back.
 */
export class PostgresFeed {
  private readonly listeners = new Set<ChangeListener>();
  private readonly versions: NewestVersions;
  private client: Client | null = null;
  private started = false;
  private closed = false;
  private connectedOnce = false;
  private attempt = 0;
  private heartbeat: NodeJS.Timeout | null = null;
  private retry: NodeJS.Timeout | null = null;

  constructor(private readonly options: PostgresFeedOptions) {
    this.versions = new NewestVersions(options.maxTracked ?? 100_000);
  }

  /** True once someone watches (also while reconnecting): only then are versions kept. */
  get active(): boolean {
    return this.started && !this.closed;
  }

  /** True when this counter's newest version is known. */
  tracks(name: string): boolean {
    return this.versions.has(name);
  }

  watch(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    if (!this.started && !this.closed) {
      this.started = true;
      void this.open();
    }
    return () => {
      this.listeners.delete(listener);
    };
  }

  close(): void {
    this.closed = true;
    this.listeners.clear();
    if (this.retry !== null) clearTimeout(this.retry);
    const client = this.client;
    this.drop();
    client?.end().catch(() => undefined);
  }

  /**
   * Records `value` as the counter's value at `version` unless a newer one is known, and
   * returns the newest value. Only while someone watches: without messages nothing can race.
   */
  newest(name: string, version: number, value: number): number {
    if (!this.active) return value;
    return this.versions.offer(name, version, value);
  }

  /** Connects, listens, and after a reconnect resyncs; on any failure tries again later. */
  private async open(): Promise<void> {
    this.retry = null;
    if (this.closed) return;
    const client = this.options.createClient();
    this.client = client;
    // 'error' without a listener would crash the process (a terminated backend, a reset).
    client.on('error', () => this.lost(client));
    client.on('end', () => this.lost(client));
    client.on('notification', (msg) => {
      if (msg.channel === this.options.channel) this.onMessage(msg.payload ?? '');
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${quoteIdent(this.options.channel)}`);
    } catch {
      this.lost(client);
      return;
    }
    if (this.client !== client || this.closed) {
      client.end().catch(() => undefined);
      return;
    }
    this.attempt = 0;
    this.startHeartbeat(client);
    const reconnected = this.connectedOnce;
    this.connectedOnce = true;
    this.options.onListening?.(reconnected);
    // Messages sent while the connection was down are gone: read what they would have said.
    if (reconnected) this.resync(0);
  }

  /** The connection failed (once per client): drop it and try again after a pause. */
  private lost(client: Client): void {
    if (this.client !== client) return;
    this.drop();
    client.end().catch(() => undefined);
    if (this.closed) return;
    const pause = backoffMs(++this.attempt, 100, this.options.maxReconnectDelayMs ?? 2000);
    this.retry = setTimeout(() => void this.open(), pause);
    this.retry.unref();
  }

  private drop(): void {
    this.client = null;
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  /**
   * A listening connection only reads, so a link that died without a FIN or RST (a failover, a
   * NAT timeout) would go unnoticed: ask it something, and reconnect when the answer is late.
   */
  private startHeartbeat(client: Client): void {
    const every = this.options.heartbeatMs ?? 15_000;
    this.heartbeat = setInterval(() => {
      client.query(timed('SELECT 1', [], Math.min(every, 5000))).catch(() => this.lost(client));
    }, every);
    this.heartbeat.unref();
  }

  /**
   * Reads every tracked counter and delivers those that moved. A counter without a row was
   * deleted meanwhile, if nothing newer about it arrived while the read ran. Retried a few times
   * while the database is still out of reach.
   */
  private resync(attempt: number): void {
    if (this.closed || this.listeners.size === 0 || this.versions.size === 0) return;
    const names = this.versions.names();
    const before = new Map(names.map((name) => [name, this.versions.get(name)?.version]));
    this.options.read(names).then(
      (rows) => {
        if (this.closed) return;
        const changes = new Map<string, number>();
        for (const name of names) {
          const known = this.versions.get(name);
          const row = rows.get(name);
          if (row !== undefined) {
            if (known !== undefined && known.version >= row.version) continue;
            this.newest(name, row.version, row.value);
            if (known?.value !== row.value) changes.set(name, row.value);
          } else if (
            known !== undefined &&
            known.version === before.get(name) &&
            known.value !== 0
          ) {
            // Gone from the store: it reads 0, at the version it was last seen.
            this.versions.offer(name, known.version, 0);
            changes.set(name, 0);
          }
        }
        if (changes.size > 0) this.deliver(changes);
      },
      () => {
        if (attempt < 20 && !this.closed) {
          setTimeout(() => this.resync(attempt + 1), 500).unref();
        }
      },
    );
  }

  private onMessage(payload: string): void {
    if (this.listeners.size === 0) return;
    const lines = payload.split('\n');
    const [origin, rawVersion] = (lines[0] ?? '').split(' ');
    if (origin === this.options.origin || rawVersion === undefined) return;
    const version = Number(rawVersion);
    if (!Number.isSafeInteger(version)) return;
    const changes = new Map<string, number>();
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i] as string;
      const space = line.lastIndexOf(' ');
      if (space <= 0) continue;
      const name = line.slice(0, space);
      const value = Number(line.slice(space + 1));
      if (!Number.isSafeInteger(value)) continue;
      if (this.newest(name, version, value) === value) changes.set(name, value);
    }
    if (changes.size > 0) this.deliver(changes);
  }

  /**
   * Calls every listener. This runs inside node-postgres's socket handler, where a throw would
   * be lost or crash the process: a faulty listener is reported as a process warning and the
   * others still run.
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
