/** @module live/hub — fans counter value changes out to local subscribers, throttled per counter. */

/** Receives a counter's latest value. */
export type ValueListener = (value: number) => void;

interface Topic {
  readonly listeners: Set<ValueListener>;
  lastValue: number | undefined;
  /** performance.now() of the last event sent, or -Infinity before the first. */
  lastEmitAt: number;
  timer: NodeJS.Timeout | null;
  pending: number | undefined;
}

/**
 * One per process. Values come from this instance's flushes and from other instances (store
 * `watch`); each counter's subscribers get at most one event per `windowMs` (leading edge: the
 * first change goes out at once, later ones within the window are merged into one at its end),
 * and never the same value twice in a row.
 */
export class LiveHub {
  private readonly topics = new Map<string, Topic>();
  private subscriberCount = 0;

  /** @param windowMs coalescing window per counter, in ms (the flush interval). */
  constructor(private readonly windowMs: number) {}

  /** Subscribers across all counters. */
  get size(): number {
    return this.subscriberCount;
  }

  /** Adds a listener; returns the function that removes it. */
  subscribe(name: string, listener: ValueListener, current?: number): () => void {
    let topic = this.topics.get(name);
    if (topic === undefined) {
      topic = {
        listeners: new Set(),
        lastValue: current,
        lastEmitAt: Number.NEGATIVE_INFINITY,
        timer: null,
        pending: undefined,
      };
      this.topics.set(name, topic);
    }
    topic.listeners.add(listener);
    this.subscriberCount++;
    const t = topic;
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      t.listeners.delete(listener);
      this.subscriberCount--;
      if (t.listeners.size === 0) {
        if (t.timer !== null) clearTimeout(t.timer);
        this.topics.delete(name);
      }
    };
  }

  /** Offers new values; only counters with subscribers cost anything. */
  publish(changes: ReadonlyMap<string, number>): void {
    for (const name of this.watched(changes)) {
      this.offer(this.topics.get(name) as Topic, changes.get(name) as number);
    }
  }

  /**
   * The counters among `changes` that have subscribers here. Iterates the smaller side: a batch
   * may carry a million counters and few are watched.
   */
  watched(changes: ReadonlyMap<string, unknown>): string[] {
    const out: string[] = [];
    if (this.topics.size === 0) return out;
    if (changes.size <= this.topics.size) {
      for (const name of changes.keys()) if (this.topics.has(name)) out.push(name);
    } else {
      for (const name of this.topics.keys()) if (changes.has(name)) out.push(name);
    }
    return out;
  }

  /** Stops all timers and drops every subscriber. */
  close(): void {
    for (const topic of this.topics.values()) if (topic.timer !== null) clearTimeout(topic.timer);
    this.topics.clear();
    this.subscriberCount = 0;
  }

  private offer(topic: Topic, value: number): void {
    // Monotonic: with Date.now(), a wall clock stepped back 60 s froze live values for 60 s.
    const now = performance.now();
    if (topic.timer !== null) {
      topic.pending = value;
      return;
    }
    if (now - topic.lastEmitAt >= this.windowMs) {
      this.emit(topic, value, now);
      return;
    }
    topic.pending = value;
    topic.timer = setTimeout(
      () => {
        topic.timer = null;
        const v = topic.pending;
        topic.pending = undefined;
        if (v !== undefined) this.emit(topic, v, performance.now());
      },
      this.windowMs - (now - topic.lastEmitAt),
    );
    topic.timer.unref();
  }

  private emit(topic: Topic, value: number, now: number): void {
    if (value === topic.lastValue) return;
    topic.lastValue = value;
    topic.lastEmitAt = now;
    for (const listener of topic.listeners) listener(value);
  }
}
