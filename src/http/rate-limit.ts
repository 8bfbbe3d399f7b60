/**
 * @module http/rate-limit — per-client limits on public increments, in process: a token bucket
 * per client address, refilled continuously. One Map lookup and a little arithmetic per request;
 * the RateLimit headers are sent only on the 429, so an allowed request pays for no header.
 * Per instance: behind a load balancer a client's real budget is the limit times the instances
 * its requests reach (docs/reliability.md).
 */
import { TallyError } from '../errors.js';
import { isPrivate } from './access.js';

/** A limit of `requests` per `seconds`, bursting up to `requests`. */
export interface RateLimit {
  readonly requests: number;
  readonly seconds: number;
}

interface Bucket {
  tokens: number;
  /** When `tokens` was last brought up to date, ms. */
  at: number;
}

/** `auto` on a server reachable from elsewhere: public increments per client. */
export const AUTO_HIT_LIMIT: RateLimit = { requests: 100, seconds: 10 };
/** `auto` on a server reachable from elsewhere: counters created and namespaces claimed. */
export const AUTO_CREATE_LIMIT: RateLimit = { requests: 10, seconds: 60 };

/** How often buckets back to full are dropped, ms. */
const SWEEP_EVERY_MS = 60_000;

export class ClientLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly perMs: number;
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly limit: RateLimit,
    /** The client a request counts against (see `clientAddressOf`). */
    private readonly clientOf: (request: LimitedRequest) => string,
    private readonly now: () => number = Date.now,
  ) {
    this.perMs = limit.requests / (limit.seconds * 1000);
    this.sweeper = setInterval(() => this.sweep(), SWEEP_EVERY_MS);
    this.sweeper.unref();
  }

  /** Takes one request from its client's budget, or throws RATE_LIMITED (changing nothing). */
  take(request: LimitedRequest): void {
    this.takeFor(this.clientOf(request));
  }

  /** `take` for a client address. */
  takeFor(client: string): void {
    const now = this.now();
    let bucket = this.buckets.get(client);
    if (bucket === undefined) {
      bucket = { tokens: this.limit.requests, at: now };
      this.buckets.set(client, bucket);
    } else if (now > bucket.at) {
      bucket.tokens = Math.min(this.limit.requests, bucket.tokens + (now - bucket.at) * this.perMs);
      bucket.at = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return;
    }
    const waitS = Math.max(1, Math.ceil((1 - bucket.tokens) / this.perMs / 1000));
    throw new TallyError('RATE_LIMITED', undefined, {
      retryAfterS: waitS,
      headers: {
        'ratelimit-limit': String(this.limit.requests),
        'ratelimit-remaining': '0',
        'ratelimit-reset': String(waitS),
        'ratelimit-policy': `${this.limit.requests};w=${this.limit.seconds}`,
      },
    });
  }

  /** Clients tracked now (for tests and metrics). */
  size(): number {
    return this.buckets.size;
  }

  close(): void {
    clearInterval(this.sweeper);
  }

  private sweep(): void {
    const now = this.now();
    for (const [client, bucket] of this.buckets) {
      if (bucket.tokens + (now - bucket.at) * this.perMs >= this.limit.requests) {
        this.buckets.delete(client);
      }
    }
  }
}

/**
 * What a rate limit setting (validated by config.ts) means for a server bound to `host`: `off`,
 * `N/S`, or `auto`: off on a private server (loopback only, no trusted proxy), `auto` otherwise.
 */
export function rateLimitFor(
  setting: string,
  host: string,
  auto: RateLimit,
  trustProxy: unknown = false,
): RateLimit | undefined {
  if (setting === 'off') return undefined;
  if (setting === 'auto') return isPrivate(host, trustProxy) ? undefined : auto;
  const [requests, seconds] = setting.split('/').map(Number) as [number, number];
  return { requests, seconds };
}

/** A request as the limiter reads its client address. */
export interface LimitedRequest {
  readonly ip: string;
  readonly raw: { readonly socket: { readonly remoteAddress?: string } };
}

/**
 * How a request's client address is read for the limit. Without a trusted proxy it is the
 * socket's peer, read directly: Fastify's `request.ip` getter cost 2.8k instructions per request
 * (a third of an increment's own work, bench/hot.ts count). Behind a trusted proxy it must be
 * `request.ip`, since one proxy connection carries many clients.
 */
export function clientAddressOf(trustProxy: unknown): (request: LimitedRequest) => string {
  if (trustProxy === false) return (request) => request.raw.socket.remoteAddress ?? '';
  return (request) => request.ip;
}
