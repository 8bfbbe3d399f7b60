/**
 * @module instance — this process's identity: the stable instance id kept in the data directory,
 * and its lease on that id in the store.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { StartRefusedError } from './errors.js';
import type { InstanceClaim, Store } from './store/interface.js';
import { backoffMs, sleep } from './util/retry.js';

const ID_RE = /^[A-Za-z0-9_.:-]{1,64}$/;

/**
 * Returns the configured id, or the one saved in `<dataDir>/instance-id`, creating it on first
 * start. The id names this instance's batch sequence in the store, so it must survive restarts
 * and must not be shared by two running processes.
 */
export function resolveInstanceId(dataDir: string, configured?: string): string {
  if (configured !== undefined) return configured;
  const file = join(dataDir, 'instance-id');
  try {
    const saved = readFileSync(file, 'utf8').trim();
    if (ID_RE.test(saved)) return saved;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const host =
    hostname()
      .replace(/[^A-Za-z0-9_.-]/g, '')
      .slice(0, 32) || 'tally';
  const id = `${host}-${randomBytes(4).toString('hex')}`;
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(file, `${id}\n`, { flag: 'wx' });
  return id;
}

/** What a process records about itself when it claims an instance id (the holder string). */
interface Holder {
  readonly host: string;
  readonly bootId: string;
  readonly pid: number;
  readonly dataDir: string;
  readonly startedAt: string;
}

/** Another live process holds this instance id in the store. */
export class InstanceHeldError extends StartRefusedError {
  override name = 'InstanceHeldError';
}

/** Options for {@link InstanceLease.claim}. */
export interface LeaseOptions {
  /** Lease length in ms; renewed every third of it. @default 15000 */
  readonly leaseMs?: number;
  /** The data dir this process uses, recorded for whoever finds the id held. */
  readonly dataDir: string;
  /** Told about waits, renewals that failed, and a lost lease. */
  readonly onEvent?: (event: LeaseEvent) => void;
}

/** What a lease reports as it goes. */
export type LeaseEvent =
  | { readonly kind: 'waiting'; readonly holder: string; readonly expiresInMs: number }
  | { readonly kind: 'claim-failed'; readonly err: unknown; readonly attempt: number }
  | { readonly kind: 'took-over'; readonly holder: string; readonly epoch: number }
  | { readonly kind: 'renew-failed'; readonly err: unknown }
  | { readonly kind: 'lost'; readonly epoch: number };

/**
 * This process's claim on its instance id in the store: an epoch and a lease, renewed while it
 * runs. The epoch makes this process's batches its own (`writerId` = `<instanceId>@<epoch>`), so
 * two processes that share an id (a copied data dir, a duplicated TALLY_INSTANCE_ID) never share
 * a batch sequence and no batch is ever skipped as "already applied". The lease tells each such
 * process that the other exists: a start finds the id held and refuses, and a process whose
 * lease was taken stops accepting increments (`onLost`).
 */
export class InstanceLease {
  private timer: NodeJS.Timeout | null = null;
  private lostAt: number | null = null;
  private released = false;

  private constructor(
    private readonly store: Store,
    readonly instanceId: string,
    readonly epoch: number,
    private readonly leaseMs: number,
    private readonly onEvent: (event: LeaseEvent) => void,
  ) {}

  /** Batch identity of this process: `<instanceId>@<epoch>`. */
  get writerId(): string {
    return `${this.instanceId}@${this.epoch}`;
  }

  /**
   * Claims `instanceId`. A holder that is this host's own dead process (same boot, its pid gone:
   * a crash or kill -9 before this restart) is taken over at once; any other holder is waited
   * out until its lease ends, and if it keeps renewing, the claim fails with InstanceHeldError.
   */
  static async claim(
    store: Store,
    instanceId: string,
    options: LeaseOptions,
  ): Promise<InstanceLease> {
    const leaseMs = options.leaseMs ?? 15_000;
    const onEvent = options.onEvent ?? (() => {});
    const me: Holder = {
      host: hostname(),
      bootId: bootId(),
      pid: process.pid,
      dataDir: resolve(options.dataDir),
      startedAt: new Date().toISOString(),
    };
    const holder = JSON.stringify(me);
    let giveUpAt = performance.now() + leaseMs + 2000;
    let takeover: number | undefined;
    let failures = 0;
    for (;;) {
      let claim: InstanceClaim;
      try {
        claim = await store.claimInstance(instanceId, holder, leaseMs, takeover);
      } catch (err) {
        // The store is down (or the answer was lost): wait it out with the same holder string,
        // so a grant whose answer was lost is recognised as ours on the next try.
        failures++;
        onEvent({ kind: 'claim-failed', err, attempt: failures });
        await sleep(backoffMs(failures + 1, 100, 5000));
        giveUpAt = performance.now() + leaseMs + 2000;
        continue;
      }
      if (claim.granted) {
        if (takeover !== undefined) onEvent({ kind: 'took-over', holder, epoch: claim.epoch });
        return new InstanceLease(store, instanceId, claim.epoch, leaseMs, onEvent);
      }
      // Our own holder string: an earlier attempt was granted but its answer was lost.
      if (claim.holder === holder || isDeadPredecessor(claim.holder, me)) {
        takeover = claim.epoch;
        continue;
      }
      takeover = undefined;
      if (performance.now() >= giveUpAt) {
        throw new InstanceHeldError(
          `instance id "${instanceId}" is held by another running process (${describeHolder(claim.holder)}); ` +
            'two processes must not share an instance id: give this one its own data directory ' +
            '(a new instance-id file) or its own TALLY_INSTANCE_ID (docs/reliability.md)',
        );
      }
      onEvent({ kind: 'waiting', holder: claim.holder, expiresInMs: claim.expiresInMs });
      await sleep(Math.min(1000, Math.max(50, claim.expiresInMs + 10)));
    }
  }

  /** Renews every third of the lease until `release`; `onLost` runs once if it was taken. */
  keep(onLost: () => void): void {
    const every = Math.max(100, Math.floor(this.leaseMs / 3));
    this.timer = setInterval(() => {
      this.store.renewInstance(this.instanceId, this.epoch, this.leaseMs).then(
        (still) => {
          if (still || this.lostAt !== null || this.released) return;
          this.lostAt = Date.now();
          this.stop();
          this.onEvent({ kind: 'lost', epoch: this.epoch });
          onLost();
        },
        (err: unknown) => this.onEvent({ kind: 'renew-failed', err }),
      );
    }, every);
    this.timer.unref();
  }

  /** Asks the store whether this process still holds its epoch (renewing the lease). */
  async owned(): Promise<boolean> {
    if (this.lostAt !== null) return false;
    return this.store.renewInstance(this.instanceId, this.epoch, this.leaseMs).catch(() => true);
  }

  /** Why this process no longer owns its id, or undefined while it does. */
  problem(): string | undefined {
    if (this.lostAt === null) return undefined;
    return `instance id "${this.instanceId}" was claimed by another process; increments are refused`;
  }

  /** Ends the lease now (clean stop), so the next start claims at once. */
  async release(): Promise<void> {
    this.released = true;
    this.stop();
    if (this.lostAt === null) {
      await this.store.releaseInstance(this.instanceId, this.epoch).catch(() => undefined);
    }
  }

  /** Stops renewing without ending the lease, as a crash would (tests). */
  abandon(): void {
    this.stop();
  }

  private stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}

/** True when `raw` names a process of this host, this boot, other than us, that is gone. */
function isDeadPredecessor(raw: string, me: Holder): boolean {
  const other = parseHolder(raw);
  if (other === undefined || other.host !== me.host || other.bootId !== me.bootId) return false;
  if (me.bootId === '') return false;
  // Our own pid from an earlier start of this boot (a container restarted: pid 1 again).
  if (other.pid === me.pid) return other.startedAt !== me.startedAt && other.dataDir === me.dataDir;
  try {
    process.kill(other.pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

function parseHolder(raw: string): Holder | undefined {
  try {
    const h = JSON.parse(raw) as Partial<Holder>;
    if (typeof h.host !== 'string' || typeof h.pid !== 'number') return undefined;
    return {
      host: h.host,
      bootId: String(h.bootId ?? ''),
      pid: h.pid,
      dataDir: String(h.dataDir ?? ''),
      startedAt: String(h.startedAt ?? ''),
    };
  } catch {
    return undefined;
  }
}

function describeHolder(raw: string): string {
  const h = parseHolder(raw);
  if (h === undefined) return raw.slice(0, 200);
  return `pid ${h.pid} on ${h.host}, data dir ${h.dataDir}, started ${h.startedAt}`;
}

/** This boot's id: a process of an earlier boot is gone whatever its pid says. */
function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '';
  }
}
