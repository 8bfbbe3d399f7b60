/**
 * @module client — Tally's typed client (`tally-counter/client`), for Node.js 20+ and browsers.
 * Depends on nothing but `fetch`. Counter references are a flat name (`visits`) or
 * `namespace/key` (`blog/post-1`).
 *
 * Retries: `increment` and `incrementMany` send one `Idempotency-Key` per logical call, so a
 * retry after a lost answer is counted once; they retry network failures and the codes in
 * {@link RETRYABLE} with exponential backoff (jittered), waiting at least what `Retry-After`
 * says. Reads retry the same way. Nothing else is retried.
 */

/** Which stable error codes a client may retry (with the same Idempotency-Key for writes). */
export const RETRYABLE: Readonly<Record<string, boolean>> = {
  UNREACHABLE: true,
  REQUEST_TIMEOUT: true,
  RATE_LIMITED: true,
  OVERLOADED: true,
  STORE_UNAVAILABLE: true,
  SHUTTING_DOWN: true,
  NOT_CONFIRMED: true,
  IDEMPOTENCY_IN_PROGRESS: true,
  IDEMPOTENCY_KEYS_FULL: true,
  LOG_UNAVAILABLE: true,
  TOO_MANY_SSE_CLIENTS: true,
  TOO_MANY_STREAMS: true,
  // A fault of the server's: the same call (with its key) may well succeed.
  INTERNAL: true,
  // Answers without Tally's error body: a reverse proxy or load balancer while Tally restarts.
  HTTP_408: true,
  HTTP_429: true,
  HTTP_500: true,
  HTTP_502: true,
  HTTP_503: true,
  HTTP_504: true,
};

/** A refused or failed call: the server's stable code, or `UNREACHABLE` for the network. */
export class TallyApiError extends Error {
  override name = 'TallyApiError';
  constructor(
    message: string,
    readonly code: string,
    readonly status: number,
    /** What `Retry-After` asked for, in ms. */
    readonly retryAfterMs?: number,
    readonly requestId?: string,
  ) {
    super(message);
  }

  /** True when the same call may be sent again (see {@link RETRYABLE}). */
  get retryable(): boolean {
    return RETRYABLE[this.code] === true;
  }
}

export interface TallyClientOptions {
  /** The server, e.g. `https://counter.example.com`. */
  readonly baseUrl: string;
  /** A counter key, namespace key or the admin token: sent as `Authorization: Bearer`. */
  readonly token?: string;
  /** Attempts per call at most, the first included. @default 5 */
  readonly attempts?: number;
  /** First retry delay in ms; doubles per attempt up to 10 s. @default 200 */
  readonly retryBaseMs?: number;
  /** Each attempt's time limit in ms. @default 10_000 */
  readonly timeoutMs?: number;
  /** A fetch of your own (tests, proxies). @default globalThis.fetch */
  readonly fetch?: typeof fetch;
}

export type Consistency = 'eventual' | 'strong';

/** Per-call options of the increments. */
export interface IncrementOptions {
  readonly consistency?: Consistency;
  /** The key of this logical increment; one is made when absent. Resend with the same key. */
  readonly idempotencyKey?: string;
  /** Attempts for this call, overriding the client's; `Infinity`: until answered or refused. */
  readonly attempts?: number;
  /** Called before each retry with what failed and how long the call now waits (ms). */
  readonly onRetry?: (error: TallyApiError, delayMs: number) => void;
  /** fetch's `keepalive`: the request outlives the page (a browser's `pagehide`). */
  readonly keepalive?: boolean;
}

export interface Reading {
  readonly name: string;
  readonly value: number;
  readonly namespace?: string;
  readonly key?: string;
  /** True when the store was down and the value is the server's last estimate. */
  readonly stale?: boolean;
  readonly uniques?: { readonly total: number; readonly today: number };
}

/** The API path of a counter reference. */
export function counterPath(ref: string): string {
  const slash = ref.indexOf('/');
  if (slash < 0) return `/api/v1/counters/${encodeURIComponent(ref)}`;
  const ns = encodeURIComponent(ref.slice(0, slash));
  return `/api/v1/namespaces/${ns}/counters/${encodeURIComponent(ref.slice(slash + 1))}`;
}

function newKey(): string {
  // randomUUID exists only in secure contexts: a page served over plain HTTP has getRandomValues.
  const c = globalThis.crypto;
  if (typeof c.randomUUID === 'function') return c.randomUUID();
  const bytes = c.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export class TallyClient {
  private readonly base: string;
  private readonly attempts: number;
  private readonly retryBaseMs: number;
  private readonly timeoutMs: number;
  private readonly fetchFn: typeof fetch;
  /** The calls waiting out a backoff, to wake on {@link retryNow}. */
  private readonly sleepers = new Set<() => void>();

  constructor(private readonly options: TallyClientOptions) {
    this.base = options.baseUrl.replace(/\/+$/, '');
    this.attempts = Math.max(1, options.attempts ?? 5);
    this.retryBaseMs = options.retryBaseMs ?? 200;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.fetchFn = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** A counter's value (`strong`: everything acknowledged before is in it). */
  get(ref: string, options: { consistency?: Consistency } = {}): Promise<Reading> {
    return this.request(
      'GET',
      `${counterPath(ref)}${query(options.consistency)}`,
    ) as Promise<Reading>;
  }

  /** Adds `by` (default 1) to a counter; resolves with the value the server reports after it. */
  async increment(ref: string, by = 1, options: IncrementOptions = {}): Promise<number> {
    const body = by === 1 ? undefined : { by };
    const answer = (await this.request(
      'POST',
      `${counterPath(ref)}/increment${query(options.consistency)}`,
      body,
      options.idempotencyKey ?? newKey(),
      options,
    )) as Reading;
    return answer.value;
  }

  /** The network is back: every call waiting out a backoff sends its next attempt now. */
  retryNow(): void {
    for (const wake of [...this.sleepers]) wake();
  }

  /** Adds several increments at once, all or none (needs a key covering them, or open writes). */
  async incrementMany(
    items: ReadonlyArray<{ name: string; by?: number }>,
    options: IncrementOptions = {},
  ): Promise<number> {
    const answer = (await this.request(
      'POST',
      `/api/v1/increments${query(options.consistency)}`,
      { increments: items.map((i) => ({ name: i.name, by: i.by ?? 1 })) },
      options.idempotencyKey ?? newKey(),
      options,
    )) as { accepted: number };
    return answer.accepted;
  }

  /**
   * Coalesces increments on the client: `add` sums per counter, and every `intervalMs` (or at
   * `maxItems` counters) one batch goes out. `flush` sends what is waiting now.
   */
  batcher(options: { intervalMs?: number; maxItems?: number } = {}): {
    add(ref: string, by?: number): void;
    flush(): Promise<number>;
    close(): Promise<number>;
  } {
    const intervalMs = options.intervalMs ?? 1000;
    const maxItems = Math.min(1000, options.maxItems ?? 1000);
    let waiting = new Map<string, number>();
    let sending: Promise<number> = Promise.resolve(0);
    const flush = (): Promise<number> => {
      if (waiting.size === 0) return sending;
      const items = [...waiting].filter(([, by]) => by !== 0).map(([name, by]) => ({ name, by }));
      waiting = new Map();
      sending = sending.then(() => (items.length === 0 ? 0 : this.incrementMany(items)));
      return sending;
    };
    const timer = setInterval(() => void flush().catch(() => undefined), intervalMs);
    (timer as { unref?: () => void }).unref?.();
    return {
      add: (ref, by = 1) => {
        waiting.set(ref, (waiting.get(ref) ?? 0) + by);
        if (waiting.size >= maxItems) void flush().catch(() => undefined);
      },
      flush,
      close: () => {
        clearInterval(timer);
        return flush();
      },
    };
  }

  /** Every counter whose name starts with `prefix`, page by page, in name order. */
  async *list(options: { prefix?: string; pageSize?: number } = {}): AsyncGenerator<Reading> {
    let cursor: string | null = null;
    do {
      const q = new URLSearchParams({
        prefix: options.prefix ?? '',
        limit: String(options.pageSize ?? 1000),
      });
      if (cursor !== null) q.set('cursor', cursor);
      const page = (await this.request('GET', `/api/v1/counters?${q}`)) as {
        items: Reading[];
        nextCursor: string | null;
      };
      yield* page.items;
      cursor = page.nextCursor;
    } while (cursor !== null);
  }

  /** Overwrites a counter (a key that covers it, or the admin token). */
  async set(ref: string, value: number): Promise<number> {
    return ((await this.request('PUT', counterPath(ref), { value })) as Reading).value;
  }

  /** Deletes a counter; true if it existed. */
  async delete(ref: string): Promise<boolean> {
    return ((await this.request('DELETE', counterPath(ref))) as { deleted: boolean }).deleted;
  }

  /**
   * Follows a counter's live value (Server-Sent Events), reconnecting with backoff until
   * `signal` aborts. `onValue` gets every value, the current one first.
   */
  async subscribe(
    ref: string,
    onValue: (value: number) => void,
    options: { signal?: AbortSignal } = {},
  ): Promise<void> {
    const signal = options.signal;
    const aborted = () => signal?.aborted === true;
    for (let attempt = 1; !aborted(); attempt++) {
      try {
        const res = await this.fetchFn(`${this.base}${counterPath(ref)}/events`, {
          headers: { accept: 'text/event-stream', ...this.auth() },
          ...(signal === undefined ? {} : { signal }),
        });
        if (!res.ok || res.body === null) throw await toError(res);
        attempt = 0;
        await readEvents(res.body, (event, data) => {
          if (event !== 'value') return;
          const value = (JSON.parse(data) as { value?: unknown }).value;
          if (typeof value === 'number') onValue(value);
        });
      } catch (err) {
        if (aborted()) return;
        if (err instanceof TallyApiError && !err.retryable) throw err;
      }
      await this.sleep(this.backoff(Math.max(1, attempt)));
    }
  }

  private auth(): Record<string, string> {
    return this.options.token === undefined
      ? {}
      : { authorization: `Bearer ${this.options.token}` };
  }

  /** Waits `ms`, or less when {@link retryNow} is called. */
  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.sleepers.add(wake);
    });
  }

  private backoff(attempt: number, retryAfterMs = 0): number {
    const exp = Math.min(10_000, this.retryBaseMs * 2 ** (attempt - 1));
    return Math.max(retryAfterMs, exp / 2 + Math.random() * (exp / 2));
  }

  /** One call with retries for what is safe to retry; the same Idempotency-Key every time. */
  private async request(
    method: string,
    path: string,
    body?: unknown,
    idempotencyKey?: string,
    call: Pick<IncrementOptions, 'attempts' | 'onRetry' | 'keepalive'> = {},
  ): Promise<unknown> {
    const attempts = Math.max(1, call.attempts ?? this.attempts);
    const headers: Record<string, string> = { accept: 'application/json', ...this.auth() };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (idempotencyKey !== undefined) headers['idempotency-key'] = idempotencyKey;
    for (let attempt = 1; ; attempt++) {
      let error: TallyApiError;
      try {
        const res = await this.fetchFn(`${this.base}${path}`, {
          method,
          headers,
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          ...(call.keepalive === true ? { keepalive: true } : {}),
          signal: AbortSignal.timeout(this.timeoutMs),
        });
        if (res.ok) return await res.json();
        error = await toError(res);
      } catch (err) {
        error =
          err instanceof TallyApiError
            ? err
            : new TallyApiError(
                `cannot reach ${this.base}: ${(err as Error).message}`,
                'UNREACHABLE',
                0,
              );
      }
      // A write without an idempotency key is never sent twice.
      const safe = method === 'GET' || idempotencyKey !== undefined;
      if (!error.retryable || !safe || attempt >= attempts) throw error;
      const delay = this.backoff(attempt, error.retryAfterMs);
      call.onRetry?.(error, delay);
      await this.sleep(delay);
    }
  }
}

function query(consistency: Consistency | undefined): string {
  return consistency === undefined ? '' : `?consistency=${consistency}`;
}

async function toError(res: Response): Promise<TallyApiError> {
  let code = `HTTP_${res.status}`;
  let message = `HTTP ${res.status}`;
  let requestId: string | undefined;
  try {
    const body = (await res.json()) as {
      error?: { code?: string; message?: string; requestId?: string };
    };
    code = body.error?.code ?? code;
    message = body.error?.message ?? message;
    requestId = body.error?.requestId;
  } catch {
    // not JSON
  }
  const after = Number(res.headers.get('retry-after'));
  return new TallyApiError(
    message,
    code,
    res.status,
    Number.isFinite(after) && after > 0 ? after * 1000 : undefined,
    requestId ?? res.headers.get('x-request-id') ?? undefined,
  );
}

/** Reads `event:` / `data:` pairs from an SSE body until it ends. */
async function readEvents(
  body: ReadableStream<Uint8Array>,
  onEvent: (event: string, data: string) => void,
): Promise<void> {
  const decoder = new TextDecoder();
  const reader = body.getReader();
  let buffer = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end = buffer.indexOf('\n\n');
    while (end >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
      }
      if (data.length > 0) onEvent(event, data.join('\n'));
      end = buffer.indexOf('\n\n');
    }
  }
}
