import { EventEmitter, once } from 'node:events';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { type EventStream, openEventStream } from '../../src/live/sse.js';

const MiB = 1024 * 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Harness {
  readonly server: Server;
  readonly socket: Socket;
  readonly res: ServerResponse;
  readonly stream: EventStream;
  closed: number;
}

let harness: Harness | undefined;
afterEach(async () => {
  if (harness === undefined) return;
  harness.socket.destroy();
  harness.server.closeAllConnections();
  harness.server.close();
  harness = undefined;
});

/** A real server with one event stream, and a raw client socket, paused (not reading) if asked. */
async function open(opts: { heartbeatMs: number; paused: boolean }): Promise<Harness> {
  let resolveOpened: (h: { res: ServerResponse; stream: EventStream }) => void = () => {};
  const opened = new Promise<{ res: ServerResponse; stream: EventStream }>((r) => {
    resolveOpened = r;
  });
  const server = createServer((_req, res) => {
    const stream = openEventStream(res, {
      heartbeatMs: opts.heartbeatMs,
      onClose: () => {
        if (harness !== undefined) harness.closed++;
      },
    });
    resolveOpened({ res, stream });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  if (opts.paused) socket.pause();
  socket.write('GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n');
  const { res, stream } = await opened;
  harness = { server, socket, res, stream, closed: 0 };
  return harness;
}

/** The `data:` payloads of the events in `text` (chunked framing sits between writes). */
function payloads(text: string): Array<{ value: number }> {
  return [...text.matchAll(/^data: (\{.*\})$/gm)].map((m) => JSON.parse(m[1] as string));
}

/** Collects what the socket reads; keeps only the tail, so a long stream costs little here. */
function reader(socket: Socket, keepChars = 64 * 1024) {
  const state = { text: '', total: 0 };
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    state.total += chunk.length;
    state.text = (state.text + chunk).slice(-keepChars);
  });
  return state;
}

const pad = 'x'.repeat(64); // with name and value, a payload of about 100 bytes
const EVENTS = 200_000;

/** Sends EVENTS values in slices, yielding between them so the socket can move data. */
async function flood(h: Harness): Promise<number> {
  let maxBuffered = 0;
  for (let i = 1; i <= EVENTS; i++) {
    h.stream.send('value', { name: 'flood', value: i, pad });
    if (i % 1000 === 0) {
      maxBuffered = Math.max(maxBuffered, h.res.writableLength + h.stream.heldBytes);
      await nextTurn();
    }
  }
  return maxBuffered;
}

describe('event stream backpressure', () => {
  it('holds only the latest value for a reader that does not read', async () => {
    const h = await open({ heartbeatMs: 60_000, paused: true });
    const maxBuffered = await flood(h);
    expect(h.res.writableLength).toBeLessThan(MiB);
    expect(maxBuffered).toBeLessThan(MiB);
    expect(h.stream.heldBytes).toBeLessThan(1024);

    // The reader wakes up: it gets what was in flight, then the latest value last.
    const got = reader(h.socket);
    h.socket.resume();
    const deadline = Date.now() + 20_000;
    while (!got.text.includes(`"value":${EVENTS},`) && Date.now() < deadline) await sleep(10);
    await sleep(100);
    const last = payloads(got.text).at(-1);
    expect(last?.value).toBe(EVENTS);
    expect(h.stream.heldBytes).toBe(0);
    expect(h.closed).toBe(0);
  });

  it('sends every value, in order, to a reader that keeps up', async () => {
    const h = await open({ heartbeatMs: 60_000, paused: false });
    const got = reader(h.socket, 10 * MiB);
    for (let i = 1; i <= 1000; i++) {
      h.stream.send('value', { name: 'steady', value: i });
      if (i % 10 === 0) await sleep(1);
    }
    const deadline = Date.now() + 5000;
    while (!got.text.includes('"value":1000}') && Date.now() < deadline) await sleep(10);
    expect(payloads(got.text).map((p) => p.value)).toEqual(
      Array.from({ length: 1000 }, (_, i) => i + 1),
    );
  });

  it('calls onClose once when the client goes away', async () => {
    const h = await open({ heartbeatMs: 60_000, paused: false });
    h.socket.destroy();
    const deadline = Date.now() + 2000;
    while (h.closed === 0 && Date.now() < deadline) await sleep(10);
    h.stream.send('value', { name: 'gone', value: 1 });
    h.stream.end();
    expect(h.closed).toBe(1);
  });
});

/** A response whose socket is full whenever `full` is set; records every write. */
class ScriptedResponse extends EventEmitter {
  readonly written: string[] = [];
  full = false;
  writeHead(): this {
    return this;
  }
  write(chunk: string): boolean {
    this.written.push(chunk);
    return !this.full;
  }
  end(): void {
    this.emit('close');
  }
  /** Unblocks the socket the way Node does: 'drain' once the buffer is empty. */
  drain(): void {
    this.full = false;
    this.emit('drain');
  }
  events(): string[] {
    return this.written.flatMap((w) => {
      const m = /^event: (\S+)\ndata: (.*)$/m.exec(w);
      return m === null ? [] : [`${m[1]} ${m[2]}`];
    });
  }
}

function scripted(heartbeatMs = 60_000) {
  const res = new ScriptedResponse();
  const stream = openEventStream(res as unknown as ServerResponse, { heartbeatMs, onClose() {} });
  return { res, stream };
}

describe('event stream lifecycle', () => {
  it('calls onClose for a response whose client left before the stream opened', async () => {
    let closed = 0;
    let opened = false;
    const server = createServer(async (_req, res) => {
      await sleep(100); // an async hook or handler step; the client is gone meanwhile
      openEventStream(res, { heartbeatMs: 60_000, onClose: () => closed++ });
      opened = true;
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    await once(socket, 'connect');
    socket.write('GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await sleep(20);
    socket.destroy();
    const deadline = Date.now() + 2000;
    while ((!opened || closed === 0) && Date.now() < deadline) await sleep(10);
    server.close();
    expect(opened).toBe(true);
    expect(closed).toBe(1);
  });
});

describe('event stream, backed up', () => {
  it('skips heartbeats while the socket is full and resumes them after drain', async () => {
    const { res, stream } = scripted(20);
    res.full = true;
    stream.send('value', { value: 1 }); // answered false: backed up from here
    const written = res.written.length;
    await sleep(200); // about 10 heartbeat ticks
    expect(res.written.length).toBe(written);
    res.drain();
    await sleep(100);
    expect(res.written.slice(written)).toContain(': heartbeat\n\n');
    stream.end();
  });

  it('keeps only the latest data per event name and writes it, in order, on drain', () => {
    const { res, stream } = scripted();
    stream.send('value', { value: 1 });
    res.full = true;
    stream.send('value', { value: 2 }); // written; the socket is now full
    for (let i = 3; i <= 10_000; i++) stream.send('value', { value: i });
    stream.send('other', { value: 1 });
    stream.send('value', { value: 10_001 });
    expect(res.events()).toEqual(['value {"value":1}', 'value {"value":2}']);
    expect(stream.heldBytes).toBe('{"value":1}'.length + '{"value":10001}'.length);
    res.drain();
    expect(res.events()).toEqual([
      'value {"value":1}',
      'value {"value":2}',
      'other {"value":1}',
      'value {"value":10001}',
    ]);
    expect(stream.heldBytes).toBe(0);
    stream.end();
  });

  it('writes held values before ending', () => {
    const { res, stream } = scripted();
    res.full = true;
    stream.send('value', { value: 1 });
    stream.send('value', { value: 2 });
    stream.end();
    expect(res.events()).toEqual(['value {"value":1}', 'value {"value":2}']);
  });
});
