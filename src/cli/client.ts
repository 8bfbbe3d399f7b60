/** @module cli/client — the `tally get|inc|set|delete|list` commands: HTTP calls to a server. */

/** Options every client command takes. */
export interface ClientOptions {
  /** Base URL of a running server. @default 'http://127.0.0.1:8080' */
  readonly url: string;
  /** Admin token for set/delete. */
  readonly token?: string;
}

/** A failed call: the server's error code and message, or a connection problem. */
export class ClientError extends Error {
  override name = 'ClientError';
  constructor(
    message: string,
    readonly code: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export async function call(
  options: ClientOptions,
  method: string,
  path: string,
  body?: unknown,
): Promise<unknown> {
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  let res: Response;
  try {
    res = await fetch(new URL(path, options.url), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
  } catch (err) {
    throw new ClientError(
      `cannot reach ${options.url}: ${(err as Error).message}`,
      'UNREACHABLE',
      0,
    );
  }
  const text = await res.text();
  let data: unknown = text;
  try {
    data = JSON.parse(text);
  } catch {
    // Not JSON; keep the text.
  }
  if (!res.ok) {
    const e = (data as { error?: { code?: string; message?: string } }).error;
    throw new ClientError(
      e?.message ?? `HTTP ${res.status}`,
      e?.code ?? `HTTP_${res.status}`,
      res.status,
    );
  }
  return data;
}

export function counterPath(name: string, suffix = ''): string {
  return `/api/v1/counters/${encodeURIComponent(name)}${suffix}`;
}
