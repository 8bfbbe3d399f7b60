/** @module bench/lib/http — small JSON HTTP calls and the correctness reads. */

/** Sends a request and parses the JSON answer; throws on a non-2xx status. */
export async function call<T>(url: string, method = 'GET', body?: unknown): Promise<T> {
  const res = await fetch(url, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${text.slice(0, 300)}`);
  return JSON.parse(text) as T;
}

/**
 * Sum and count of the stored counters whose names start with `prefix`. A strong read first
 * makes this instance flush everything it acknowledged, so the list shows stored values.
 */
export async function storedSum(
  baseUrl: string,
  prefix: string,
): Promise<{ sum: number; count: number }> {
  await call(`${baseUrl}/api/v1/counters/${prefix}flush?consistency=strong`);
  let sum = 0;
  let count = 0;
  let cursor: string | null = null;
  do {
    const q = new URLSearchParams({ prefix, limit: '1000' });
    if (cursor !== null) q.set('cursor', cursor);
    const page: { items: { value: number }[]; nextCursor: string | null } = await call(
      `${baseUrl}/api/v1/counters?${q}`,
    );
    for (const item of page.items) sum += item.value;
    count += page.items.length;
    cursor = page.nextCursor;
  } while (cursor !== null);
  return { sum, count };
}
