/** @module http/routes/events — live values of one counter as Server-Sent Events. */
import type { FastifyInstance } from 'fastify';
import type { CounterService } from '../../counters/service.js';
import { counterName } from '../../domain.js';
import type { ErrorCode } from '../../errors.js';
import type { LiveHub } from '../../live/hub.js';
import { type EventStream, openEventStream } from '../../live/sse.js';
import type { CorsPolicy } from '../cors.js';
import { media, PARAMS, type ParamDoc, type RouteDoc } from '../openapi.js';
import { assertKey, assertName, assertPart } from '../parse.js';
import type { StreamSlots } from '../stream-slots.js';

export interface EventRoutesOptions {
  readonly counters: CounterService;
  readonly hub: LiveHub;
  /** The caps on open streams, shared with the Abacus-compatible stream. */
  readonly slots: StreamSlots;
  readonly heartbeatMs: number;
  /** Cross-origin access: pages on allowed origins may open a stream (EventSource). */
  readonly cors: CorsPolicy;
}

export async function eventRoutes(app: FastifyInstance, opts: EventRoutesOptions): Promise<void> {
  const { counters, hub } = opts;
  opts.cors.preflight(app, '/api/v1/counters/:name/events', ['GET']);
  opts.cors.preflight(app, '/api/v1/namespaces/:ns/counters/:key/events', ['GET']);

  // The same stream for a flat name and for `namespace/key` (frames name the stored name).
  const routes: Array<[string, (params: Record<string, string>) => string, RouteDoc]> = [
    [
      '/api/v1/counters/:name/events',
      (params) => assertName(params.name),
      eventsDoc({ name: PARAMS.name }, 'INVALID_NAME'),
    ],
    [
      '/api/v1/namespaces/:ns/counters/:key/events',
      (params) => {
        const namespace = assertPart(params.ns);
        return counterName(namespace, assertKey(namespace, params.key));
      },
      eventsDoc({ ns: PARAMS.ns, key: PARAMS.key }, 'INVALID_NAMESPACE'),
    ],
  ];
  for (const [path, nameOf, doc] of routes) {
    app.get<{ Params: Record<string, string> }>(
      path,
      { config: { cors: true, doc } },
      async (request, reply) => {
        const name = nameOf(request.params);
        const slot = opts.slots.take(request.ip);
        let unsubscribe = () => {};
        let stream: EventStream;
        try {
          // A hijacked reply passes no onSend: its CORS headers go on the raw response here.
          const origin = request.headers.origin;
          if (origin !== undefined)
            opts.cors.apply(origin, (name, value) => reply.raw.setHeader(name, value));
          reply.hijack();
          stream = openEventStream(reply.raw, {
            heartbeatMs: opts.heartbeatMs,
            onClose: () => {
              unsubscribe();
              slot.release();
            },
          });
        } catch (err) {
          slot.release();
          throw err;
        }
        slot.add(stream);

        // Subscribe before reading so no change is missed; hold changes until the first value is out.
        let first: number | undefined;
        let latest: number | undefined;
        unsubscribe = hub.subscribe(name, (value) => {
          if (first === undefined) latest = value;
          else stream.send('value', { name, value });
        });
        let current: number;
        try {
          current = (await counters.get(name, 'eventual')).value;
        } catch {
          current = latest ?? 0;
        }
        first = current;
        stream.send('value', { name, value: current });
        if (latest !== undefined && latest !== current)
          stream.send('value', { name, value: latest });
      },
    );
  }
}

function eventsDoc(params: Record<string, ParamDoc>, bad: ErrorCode): RouteDoc {
  return {
    summary: 'Live value (Server-Sent Events)',
    description:
      'A stream of `value` events, `{"name", "value"}`: the value now, then each change (at most about one per flush interval per counter, from every instance). Comments keep the connection open. Works with `EventSource`.',
    tag: 'Live',
    params,
    responses: { 200: media('The event stream', 'text/event-stream') },
    errors: [bad, 'TOO_MANY_SSE_CLIENTS', 'TOO_MANY_STREAMS', 'SHUTTING_DOWN'],
  };
}
