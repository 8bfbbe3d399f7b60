// Sends several HTTP/1.1 requests in one write on one socket (pipelining), so the server parses
// them in one event-loop turn: the way to hit races between requests that a client sees in
// practice under load, deterministically.
import { connect } from 'node:net';

export interface RawRequest {
  readonly method: string;
  readonly path: string;
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
}

export interface RawAnswer {
  readonly status: number;
  readonly headers: Record<string, string>;
  // biome-ignore lint/suspicious/noExplicitAny: JSON answers of many shapes, read by tests
  readonly body: any;
}

/** Writes every request at once and resolves with the answers, in order. */
export function pipelined(base: string, requests: readonly RawRequest[]): Promise<RawAnswer[]> {
  const { hostname, port } = new URL(base);
  let wire = '';
  for (const r of requests) {
    const body = r.body === undefined ? '' : JSON.stringify(r.body);
    wire += `${r.method} ${r.path} HTTP/1.1\r\nhost: ${hostname}:${port}\r\n`;
    for (const [k, v] of Object.entries(r.headers ?? {})) wire += `${k}: ${v}\r\n`;
    if (body !== '') wire += 'content-type: application/json\r\n';
    wire += `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  }
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let data = Buffer.alloc(0);
    const answers: RawAnswer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`pipelined: ${answers.length} of ${requests.length} answers in 20 s`));
    }, 20_000);
    socket.on('error', reject);
    socket.on('connect', () => socket.write(wire));
    socket.on('data', (chunk) => {
      data = Buffer.concat([data, chunk]);
      for (;;) {
        const end = data.indexOf('\r\n\r\n');
        if (end < 0) break;
        const head = data.subarray(0, end).toString('latin1').split('\r\n');
        const headers: Record<string, string> = {};
        for (const line of head.slice(1)) {
          const colon = line.indexOf(':');
          headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
        }
        const length = Number(headers['content-length'] ?? 0);
        if (data.length < end + 4 + length) break;
        const text = data.subarray(end + 4, end + 4 + length).toString('utf8');
        data = data.subarray(end + 4 + length);
        const status = Number(head[0]?.split(' ')[1]);
        answers.push({ status, headers, body: text === '' ? undefined : JSON.parse(text) });
      }
      if (answers.length === requests.length) {
        clearTimeout(timer);
        socket.end();
        resolve(answers);
      }
    });
  });
}
