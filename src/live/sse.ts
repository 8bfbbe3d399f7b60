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
  /**
   * Frames carry only `data:` (no `id:` or `event:` line), so EventSource's `onmessage` gets
   * them: the Abacus-compatible stream. @default false
   */
  readonly unnamed?: boolean;
}

/** An open stream: send events, or end it. */
export interface EventStream {
  /**
   * Sends one event. While the reader is behind (the socket buffer is full), only the latest
   * `data` per event name is kept, and written when the socket drains: a slow reader skips
   * values, it never makes the server buffer them all.
   */
  send(event: string, data: unknown): void;
  /** Writes any held-back events, then ends the response. */
  end(): void;
  /** Bytes of events held back for a slow reader (not counting the socket's own buffer). */
  readonly heldBytes: number;
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
  let id = 0;
  let open = true;
  // res.write answered false: the socket buffer is full until 'drain'. Writing on regardless
  // buffered every value in memory: 200,000 events to a paused reader held 27 MB.
  let backedUp = !res.write(`retry: ${options.retryMs ?? 1000}\n\n`);
  // While backed up: the latest data (JSON) per event name, oldest first.
  const held = new Map<string, string>();
  let heldBytes = 0;

  const unnamed = options.unnamed === true;
  const write = (event: string, json: string) => {
    id++;
    backedUp = !res.write(
      unnamed ? `data: ${json}\n\n` : `id: ${id}\nevent: ${event}\ndata: ${json}\n\n`,
    );
  };
  const release = () => {
    for (const [event, json] of held) {
      if (backedUp) return;
      held.delete(event);
      heldBytes -= Buffer.byteLength(json);
      write(event, json);
    }
  };
  const onDrain = () => {
    backedUp = false;
    if (open) release();
  };
  const heartbeat = setInterval(() => {
    // A heartbeat keeps an idle connection open; one queued behind unsent bytes adds only bytes.
    if (open && !backedUp) backedUp = !res.write(': heartbeat\n\n');
  }, options.heartbeatMs);
  heartbeat.unref();
  const close = () => {
    if (!open) return;
    open = false;
    clearInterval(heartbeat);
    res.off('drain', onDrain);
    held.clear();
    heldBytes = 0;
    options.onClose();
  };
  res.on('drain', onDrain);
  res.on('close', close);
  res.on('error', close);
  // The client left before the stream opened (the handler awaited something first): 'close' has
  // fired already and never will again. Next tick, so the caller holds the stream by then.
  if (res.destroyed) process.nextTick(close);
  return {
    send(event, data) {
      if (!open) return;
      const json = JSON.stringify(data);
      if (!backedUp) {
        write(event, json);
        return;
      }
      const older = held.get(event);
      if (older !== undefined) {
        heldBytes -= Buffer.byteLength(older);
        // Re-inserted below, so held events go out in the order of their latest send.
        held.delete(event);
      }
      held.set(event, json);
      heldBytes += Buffer.byteLength(json);
    },
    end() {
      if (!open) return;
      // The last values go out even to a slow reader; at most one per event name.
      backedUp = false;
      release();
      close();
      res.end();
    },
    get heldBytes() {
      return heldBytes;
    },
  };
}
