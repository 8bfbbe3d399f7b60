import { type ClientRequest, type IncomingMessage, request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import type { Tally } from '../../src/app.js';
import { testApp } from '../helpers/app.js';

let tally: Tally | undefined;
const opened: ClientRequest[] = [];
afterEach(async () => {
  for (const req of opened.splice(0)) req.destroy();
  await tally?.close();
  tally = undefined;
});

interface Answer {
  readonly req: ClientRequest;
  readonly res: IncomingMessage;
}

/** Opens a stream over real HTTP from `localAddress` (another loopback address = another client). */
function stream(address: string, name: string, localAddress = '127.0.0.1'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(`${address}/api/v1/counters/${name}/events`, { localAddress });
    opened.push(req);
    req.on('response', (res) => resolve({ req, res }));
    req.on('error', reject);
    req.end();
  });
}

async function body(res: IncomingMessage): Promise<string> {
  let text = '';
  res.setEncoding('utf8');
  for await (const chunk of res) text += chunk;
  return text;
}

describe('per-client live stream cap', () => {
  it('answers 429 TOO_MANY_STREAMS past the cap and frees a slot when a stream closes', async () => {
    tally = await testApp({ maxSseClientsPerIp: 2 });
    const t = tally;
    const address = await t.app.listen({ port: 0, host: '127.0.0.1' });

    const a = await stream(address, 'x');
    const b = await stream(address, 'y');
    expect([a.res.statusCode, b.res.statusCode]).toEqual([200, 200]);

    const third = await stream(address, 'x');
    expect(third.res.statusCode).toBe(429);
    expect(third.res.headers['retry-after']).toBe('5');
    const refused = JSON.parse(await body(third.res));
    expect(refused.error.code).toBe('TOO_MANY_STREAMS');
    expect(typeof refused.error.message).toBe('string');
    expect(typeof refused.error.requestId).toBe('string');

    // Another client address is not affected by this one's streams.
    const other = await stream(address, 'x', '127.0.0.2');
    expect(other.res.statusCode).toBe(200);
    other.req.destroy();

    // Closing one stream gives its slot back.
    a.req.destroy();
    const deadline = Date.now() + 3000;
    while (t.hub.size > 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const again = await stream(address, 'z');
    expect(again.res.statusCode).toBe(200);
    const fourth = await stream(address, 'z');
    expect(fourth.res.statusCode).toBe(429);
    await body(fourth.res);
  });

  it('keeps the per-instance cap across clients', async () => {
    tally = await testApp({ maxSseClients: 2, maxSseClientsPerIp: 5 });
    const address = await tally.app.listen({ port: 0, host: '127.0.0.1' });
    expect((await stream(address, 'a', '127.0.0.1')).res.statusCode).toBe(200);
    expect((await stream(address, 'a', '127.0.0.2')).res.statusCode).toBe(200);
    const third = await stream(address, 'a', '127.0.0.3');
    expect(third.res.statusCode).toBe(503);
    expect(JSON.parse(await body(third.res)).error.code).toBe('TOO_MANY_SSE_CLIENTS');
  });
});
