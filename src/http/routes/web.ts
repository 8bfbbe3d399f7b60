/** @module http/routes/web — the click page and dashboard (issue "The click page"). */
import type { FastifyInstance } from 'fastify';

export interface WebRoutesOptions {
  /** The live update window, so the page can size its batching. */
  readonly flushIntervalMs: number;
}

export async function webRoutes(app: FastifyInstance, _opts: WebRoutesOptions): Promise<void> {
  app.get('/', async (_request, reply) => {
    reply.type('text/plain; charset=utf-8');
    return 'Tally is running. API: /api/v1/counters/{name}\n';
  });
}
