/** @module store/redis/url — parses TALLY_REDIS_URL (redis://, rediss://, AUTH tokens, db). */

/** Where and how to connect to one Redis node. */
export interface RedisTarget {
  readonly host: string;
  /** @default 6379 */
  readonly port: number;
  /** ACL user (Redis 6+); undefined sends `AUTH <password>` alone (requirepass, AUTH tokens). */
  readonly username: string | undefined;
  readonly password: string | undefined;
  /** Logical database (standalone only). @default 0 */
  readonly db: number;
  /** True for rediss://: connect with TLS. */
  readonly tls: boolean;
}

/** A URL that cannot be used; the message never contains the password. */
export class RedisUrlError extends Error {
  override name = 'RedisUrlError';
}

const SCHEME_RE = /^(rediss?):\/\/(.*)$/s;

/**
 * Parses `redis[s]://[[username]:password@]host[:port][/db]`. The user part is split at the last
 * `@`, so an AUTH token may hold any character but `@`; percent escapes in it are decoded, so
 * write a literal `%` as `%25`. IPv6 hosts go in brackets.
 */
export function parseRedisUrl(url: string): RedisTarget {
  const trimmed = url.trim();
  const m = SCHEME_RE.exec(trimmed);
  if (m === null) {
    throw new RedisUrlError(`"${redact(trimmed)}" is not a redis:// or rediss:// URL`);
  }
  const scheme = m[1] as string;
  const rest = m[2] as string;
  const at = rest.lastIndexOf('@');
  const userinfo = at >= 0 ? rest.slice(0, at) : undefined;
  const hostPart = at >= 0 ? rest.slice(at + 1) : rest;

  let username: string | undefined;
  let password: string | undefined;
  if (userinfo !== undefined) {
    const colon = userinfo.indexOf(':');
    const user = colon >= 0 ? userinfo.slice(0, colon) : userinfo;
    const pass = colon >= 0 ? userinfo.slice(colon + 1) : undefined;
    username = user === '' ? undefined : decode(user, 'username');
    password = pass === undefined || pass === '' ? undefined : decode(pass, 'password');
  }

  const hm = /^(\[[0-9A-Fa-f:.]+\]|[^:/?#[\]]+)(?::(\d{1,5}))?(?:\/(\d{0,5}))?\/?$/.exec(hostPart);
  if (hm === null) {
    throw new RedisUrlError(
      `"${redact(trimmed)}": expected host[:port][/db] after the scheme and credentials`,
    );
  }
  const host = (hm[1] as string).replace(/^\[(.*)\]$/, '$1');
  const port = hm[2] === undefined ? 6379 : Number(hm[2]);
  if (port < 1 || port > 65535) throw new RedisUrlError(`"${redact(trimmed)}": bad port`);
  const db = hm[3] === undefined || hm[3] === '' ? 0 : Number(hm[3]);
  return { host, port, username, password, db, tls: scheme === 'rediss' };
}

/** Parses a comma-separated list of seed URLs (redis-cluster); all must agree on TLS and auth. */
export function parseRedisUrls(list: string): RedisTarget[] {
  const targets = list
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map(parseRedisUrl);
  const first = targets[0];
  if (first === undefined) throw new RedisUrlError('no Redis URL given');
  for (const t of targets) {
    if (t.tls !== first.tls || t.username !== first.username || t.password !== first.password) {
      throw new RedisUrlError('all cluster seed URLs must use the same scheme and credentials');
    }
  }
  return targets;
}

/** `rediss://host:port/db`, for messages: no credentials. */
export function describeTarget(t: RedisTarget): string {
  const host = t.host.includes(':') ? `[${t.host}]` : t.host;
  return `${t.tls ? 'rediss' : 'redis'}://${host}:${t.port}${t.db === 0 ? '' : `/${t.db}`}`;
}

function decode(s: string, what: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new RedisUrlError(`the ${what} in TALLY_REDIS_URL has a bad % escape (write % as %25)`);
  }
}

/** The URL with everything between the scheme and the last `@` replaced. */
function redact(url: string): string {
  const at = url.lastIndexOf('@');
  const scheme = url.indexOf('://');
  if (at < 0 || scheme < 0 || at < scheme) return url;
  return `${url.slice(0, scheme + 3)}***${url.slice(at)}`;
}
