/**
 * @module counters/changes — values changed elsewhere (other instances through the store, sibling
 * workers through the bus) refresh this process's estimates and reach its live streams.
 */
import type { Aggregator } from '../aggregator/index.js';
import type { SiblingBus } from '../live/bus.js';
import type { LiveHub } from '../live/hub.js';
import type { Store } from '../store/interface.js';

/** Subscribes to the store's change feed and the sibling bus; returns the unsubscribe. */
export function followChanges(
  store: Store,
  aggregator: Aggregator,
  hub: LiveHub,
  bus: SiblingBus | undefined,
): () => void {
  // Versioned values (store.watch orders Redis messages by version), and values read from the
  // store after `since`: both may refresh estimates, under the aggregator's one rule.
  const fromStore = (changes: ReadonlyMap<string, number>, since?: number) => {
    for (const [name, value] of changes) aggregator.learn(name, value, since);
    hub.publish(changes);
  };
  const unwatch = store.watch?.(fromStore);
  // Sibling workers share the store but not an order: a sibling's message can arrive after this
  // process flushed a newer value. Live streams must never step back, so watched counters
  // publish the store's current value instead, read after the message came; the unordered
  // values never enter the estimates (eventual reads read the store anyway).
  const fromSiblings = (changes: ReadonlyMap<string, number>) => {
    const watched = hub.watched(changes);
    if (watched.length === 0) return;
    const since = aggregator.readEpoch();
    void Promise.all(watched.map(async (name) => [name, await store.get(name)] as const)).then(
      (entries) => fromStore(new Map(entries), since),
      () => undefined,
    );
  };
  const unbus = bus?.subscribe(fromSiblings);
  const unserve = bus?.serveFlush?.(() => aggregator.waitDurable());
  const unserveUnsent = bus?.serveUnsent?.((name) =>
    aggregator.sending(name) ? null : aggregator.unsent(name),
  );
  return () => {
    unwatch?.();
    unbus?.();
    unserve?.();
    unserveUnsent?.();
  };
}
