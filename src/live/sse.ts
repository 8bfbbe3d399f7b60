/** @module live/sse — Server-Sent Events framing and the lifecycle of one stream. */
import type { ServerResponse } from 'node:http';

/** Options for {@link openEventStream}. */
export interface EventStreamOptions {
  /** Milliseconds between `: heartbeat` comments, which keep proxies from closing the stream. */
  readonly heartbeatMs: number;
  /** Reconnect delay the browser should use, in ms. @default 1000 */
  readonly retryMs?: number;
  /** Called once when the stream ends for any reason. */
  readonly onClose: () => void;
}

/** An open stream: send events, or end it. */
export interface EventStream {
  send(event: string, data: unknown): void;
  end(): void;
}

/** Writes SSE headers on a raw response and returns a handle; the caller has hijacked the reply. */
export function openEventStream(res: ServerResponse, options: EventStreamOptions): EventStream {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    // nginx and some proxies buffer responses unless told not to.
    'x-accel-buffering': 'no',
  });
  res.write(`retry: ${options.retryMs ?? 1000}\n\n`);
  let id = 0;
  let open = true;
  const heartbeat = setInterval(() => {
    if (open) res.write(': heartbeat\n\n');
  }, options.heartbeatMs);
  heartbeat.unref();
  const close = () => {
    if (!open) return;
    open = false;
    clearInterval(heartbeat);
    options.onClose();
  };
  res.on('close', close);
  res.on('error', close);
  return {
    send(event, data) {
      if (!open) return;
      id++;
      res.write(`id: ${id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    },
    end() {
      if (!open) return;
      close();
      res.end();
    },
  };
}
