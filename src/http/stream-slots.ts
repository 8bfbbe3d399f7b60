/**
 * @module http/stream-slots — the caps on live streams, shared by every route that opens one
 * (Tally's own events and the Abacus-compatible stream): streams per instance
 * (TALLY_MAX_SSE_CLIENTS) and per client address (TALLY_MAX_SSE_PER_CLIENT).
 */
import { TallyError } from '../errors.js';
import type { EventStream } from '../live/sse.js';

export class StreamSlots {
  /** Open streams per client address; an address leaves the map with its last stream. */
  private readonly perClient = new Map<string, number>();

  constructor(
    /** Every open stream, so shutdown can end them. */
    readonly streams: Set<EventStream>,
    private readonly max: number,
    private readonly maxPerClient: number,
    /** Told the number of open streams whenever it changes (the SSE gauge). */
    private readonly gauge: (open: number) => void,
  ) {}

  /**
   * Takes a slot for a stream from `client`, or throws (changing nothing): 503
   * TOO_MANY_SSE_CLIENTS when the instance is full, 429 TOO_MANY_STREAMS when the client holds
   * its share. Then `add` the stream once it is open; `release` frees the slot exactly once (also
   * when opening the stream failed before `add`).
   */
  take(client: string): { add(stream: EventStream): void; release(): void } {
    if (this.streams.size >= this.max)
      throw new TallyError('TOO_MANY_SSE_CLIENTS', undefined, { retryAfterS: 5 });
    // Without it, one client could take every slot of the instance.
    const held = this.perClient.get(client) ?? 0;
    if (held >= this.maxPerClient)
      throw new TallyError('TOO_MANY_STREAMS', undefined, { retryAfterS: 5 });
    this.perClient.set(client, held + 1);
    let stream: EventStream | undefined;
    let released = false;
    return {
      add: (s) => {
        stream = s;
        this.streams.add(s);
        this.gauge(this.streams.size);
      },
      release: () => {
        if (released) return;
        released = true;
        if (stream !== undefined) this.streams.delete(stream);
        this.gauge(this.streams.size);
        const left = (this.perClient.get(client) ?? 1) - 1;
        if (left > 0) this.perClient.set(client, left);
        else this.perClient.delete(client);
      },
    };
  }
}
