// Cross-origin access over real HTTP: the public routes (reads, increments, live values) answer
// CORS for the allowed origins, admin routes never do (their preflight names only the public
// methods), no route allows credentials, and the click page's frame-ancestors follow the setting.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ServerProcess, startServer } from '../helpers/server-process.js';
import { tempDir } from '../helpers/tmp.js';

const dir = tempDir('tally-cors');
const SITE = 'https://blog.example';
let open: ServerProcess;
let listed: ServerProcess;

beforeAll(async () => {
  open = await startServer({ TALLY_STORE: 'memory', TALLY_DATA_DIR: join(dir.path, 'open') });
  listed = await startServer({
    TALLY_STORE: 'memory',
    TALLY_DATA_DIR: join(dir.path, 'listed'),
    TALLY_CORS_ORIGINS: `${SITE},http://localhost:8000`,
    TALLY_FRAME_ANCESTORS: `${SITE} https://*.example.org`,
    TALLY_ADMIN_TOKEN: 'cors-admin-token-0123456789',
  });
});
afterAll(async () => {
  await open?.stop('SIGTERM');
  await listed?.stop('SIGTERM');
  dir.remove();
});

function from(origin: string, init: RequestInit = {}): RequestInit {
  return { ...init, headers: { origin, ...(init.headers as Record<string, string>) } };
}

describe('CORS', () => {
  it('lets any origin read and increment by default, without credentials', async () => {
    const inc = await fetch(
      `${open.url}/api/v1/counters/cors-a/increment`,
      from(SITE, { method: 'POST' }),
    );
    expect(inc.status).toBe(202);
    expect(inc.headers.get('access-control-allow-origin')).toBe('*');
    expect(inc.headers.get('access-control-allow-credentials')).toBeNull();
    expect(inc.headers.get('access-control-expose-headers')).toContain('retry-after');
    const read = await fetch(`${open.url}/api/v1/counters/cors-a`, from('https://other.example'));
    expect(read.headers.get('access-control-allow-origin')).toBe('*');
    // Errors of a public route carry it too, so the page can read the code.
    const bad = await fetch(
      `${open.url}/api/v1/counters/-bad-/increment`,
      from(SITE, { method: 'POST' }),
    );
    expect(bad.status).toBe(400);
    expect(bad.headers.get('access-control-allow-origin')).toBe('*');
    // Without Origin (curl, servers) nothing is added.
    const plain = await fetch(`${open.url}/api/v1/counters/cors-a`);
    expect(plain.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('answers the preflight of a JSON increment, and names only GET for the admin path', async () => {
    const pre = await fetch(`${open.url}/api/v1/counters/cors-a/increment`, {
      method: 'OPTIONS',
      headers: {
        origin: SITE,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type, idempotency-key',
      },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBe('*');
    expect(pre.headers.get('access-control-allow-methods')).toBe('POST');
    expect(pre.headers.get('access-control-allow-headers')).toContain('idempotency-key');
    expect(pre.headers.get('access-control-allow-headers')).toContain('content-type');
    expect(Number(pre.headers.get('access-control-max-age'))).toBeGreaterThan(0);

    // PUT and DELETE on a counter are admin routes: the preflight allows GET only.
    const admin = await fetch(`${open.url}/api/v1/counters/cors-a`, {
      method: 'OPTIONS',
      headers: { origin: SITE, 'access-control-request-method': 'PUT' },
    });
    expect(admin.status).toBe(204);
    expect(admin.headers.get('access-control-allow-methods')).toBe('GET');
    const put = await fetch(`${open.url}/api/v1/counters/cors-a`, from(SITE, { method: 'PUT' }));
    expect(put.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('with a list, echoes a listed origin (Vary: Origin) and ignores any other', async () => {
    const ok = await fetch(
      `${listed.url}/api/v1/counters/cors-b/increment`,
      from(SITE, { method: 'POST' }),
    );
    expect(ok.status).toBe(202);
    expect(ok.headers.get('access-control-allow-origin')).toBe(SITE);
    expect(ok.headers.get('vary')).toContain('origin');
    const other = await fetch(
      `${listed.url}/api/v1/counters/cors-b/increment`,
      from('https://evil.example', { method: 'POST' }),
    );
    // Counted (CORS is the browser's rule, not an access control), but the page cannot read it.
    expect(other.status).toBe(202);
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    const pre = await fetch(`${listed.url}/api/v1/increments`, {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('opens live streams to allowed origins', async () => {
    const controller = new AbortController();
    const res = await fetch(`${listed.url}/api/v1/counters/cors-b/events`, {
      headers: { origin: SITE, accept: 'text/event-stream' },
      signal: controller.signal,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBe(SITE);
    controller.abort();
  });

  it('lets configured sites embed the click page, and no site embed the dashboard', async () => {
    const csp = (res: Response) => res.headers.get('content-security-policy') ?? '';
    expect(csp(await fetch(`${listed.url}/`))).toContain(
      `frame-ancestors ${SITE} https://*.example.org`,
    );
    expect(csp(await fetch(`${listed.url}/c/cors-b`))).toContain(`frame-ancestors ${SITE}`);
    expect(csp(await fetch(`${listed.url}/dashboard`))).toContain("frame-ancestors 'none'");
    expect(csp(await fetch(`${open.url}/`))).toContain("frame-ancestors 'none'");
  });
});
