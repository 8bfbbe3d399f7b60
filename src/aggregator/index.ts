/** @module aggregator — picks the write-behind design named in config. */
import { AccumulateAggregator } from './accumulate.js';
import { QueueAggregator } from './queue.js';
import type { AggregatorOptions, WriteBehindAggregator } from './write-behind.js';

export type { AggregatorEvents, AggregatorOptions, DrainResult } from './write-behind.js';
export { AccumulateAggregator, QueueAggregator };
/** Either design; routes and services only see this. */
export type Aggregator = WriteBehindAggregator;

export function createAggregator(
  kind: 'accumulate' | 'queue',
  options: AggregatorOptions,
): Aggregator {
  return kind === 'queue' ? new QueueAggregator(options) : new AccumulateAggregator(options);
}
