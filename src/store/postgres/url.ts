/**
 * @module store/postgres/url — TALLY_POSTGRES_URL and TALLY_POSTGRES_SSL into node-postgres
 * connection settings, with libpq's meaning of `sslmode` (node-postgres reads `require` as
 * `verify-full`, which refuses the certificates of most managed services).
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';

/** TLS as TALLY_POSTGRES_SSL names it; the URL's `sslmode` may also say `verify-ca`. */
export type SslMode = 'off' | 'require' | 'verify-ca' | 'verify-full';

/** A bad TALLY_POSTGRES_URL or TLS setting: the message says what to change. */
export class PostgresUrlError extends Error {
  override name = 'PostgresUrlError';
}

/** What node-postgres needs, and how to name the server in messages. */
export interface PostgresTarget {
  /** The URL without the TLS parameters, which `ssl` carries instead. */
  readonly connectionString: string;
  /** node-postgres `ssl`: false for plain TCP. */
  readonly ssl: false | ConnectionOptions;
  readonly sslMode: SslMode;
  /** `postgres://host:port/database`, without user or password, for logs and errors. */
  readonly target: string;
}

/** URL parameters that configure TLS; node-postgres would read them its own way. */
const TLS_PARAMS = ['sslmode', 'ssl', 'sslrootcert', 'sslcert', 'sslkey', 'uselibpqcompat'];

/**
 * Parses a postgres:// (or postgresql://) URL. `sslMode` (TALLY_POSTGRES_SSL) wins over the URL's
 * `sslmode`; without either the connection is plain TCP. `sslrootcert`, `sslcert` and `sslkey`
 * name PEM files (a private CA such as RDS's bundle, a client certificate).
 */
export function parsePostgresUrl(raw: string, sslMode?: SslMode): PostgresTarget {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new PostgresUrlError('TALLY_POSTGRES_URL is not a URL (postgres://user:pass@host/db)');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new PostgresUrlError(
      `TALLY_POSTGRES_URL must start with postgres:// or postgresql:// (got ${url.protocol}//)`,
    );
  }
  if (url.hostname === '') {
    throw new PostgresUrlError('TALLY_POSTGRES_URL names no host (postgres://host:5432/db)');
  }
  const params = url.searchParams;
  const mode = sslMode ?? urlSslMode(params.get('sslmode'), params.get('ssl'));
  const files = {
    ca: params.get('sslrootcert'),
    cert: params.get('sslcert'),
    key: params.get('sslkey'),
  };
  for (const name of TLS_PARAMS) params.delete(name);
  const database = decodeURIComponent(url.pathname.slice(1)) || '(default database)';
  const target = `postgres://${url.host}/${database}`;
  return { connectionString: url.toString(), ssl: tlsOptions(mode, files), sslMode: mode, target };
}

function urlSslMode(sslmode: string | null, ssl: string | null): SslMode {
  switch (sslmode) {
    case null:
      return ssl === 'true' || ssl === '1' ? 'verify-full' : 'off';
    case 'disable':
      return 'off';
    case 'require':
    case 'verify-ca':
    case 'verify-full':
      return sslmode;
    default:
      // allow/prefer fall back to plain TCP in libpq: say which guarantee is wanted instead.
      throw new PostgresUrlError(
        `TALLY_POSTGRES_URL: sslmode=${sslmode} is not supported; use disable, require, ` +
          'verify-ca or verify-full (or set TALLY_POSTGRES_SSL)',
      );
  }
}

function tlsOptions(
  mode: SslMode,
  files: { ca: string | null; cert: string | null; key: string | null },
): false | ConnectionOptions {
  if (mode === 'off') return false;
  const options: ConnectionOptions = {};
  const read = (path: string, what: string) => {
    try {
      return readFileSync(path, 'utf8');
    } catch (err) {
      throw new PostgresUrlError(
        `TALLY_POSTGRES_URL: cannot read ${what} ${path}: ${(err as Error).message}`,
      );
    }
  };
  if (files.ca !== null) options.ca = read(files.ca, 'sslrootcert');
  if (files.cert !== null) options.cert = read(files.cert, 'sslcert');
  if (files.key !== null) options.key = read(files.key, 'sslkey');
  switch (mode) {
    case 'require':
      // libpq: encrypted; the certificate is checked only when a root CA is given (then as
      // verify-ca).
      if (files.ca === null) options.rejectUnauthorized = false;
      else options.checkServerIdentity = () => undefined;
      break;
    case 'verify-ca':
      // The chain is checked, the host name is not.
      options.checkServerIdentity = () => undefined;
      break;
    case 'verify-full':
      break;
  }
  return options;
}
