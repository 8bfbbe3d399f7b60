/** @module http/routes/docs — `GET /openapi.json`: the OpenAPI document of every route (http/openapi.ts). */
import type { FastifyInstance } from 'fastify';
import { json, type RouteDoc, type RouteDocs } from '../openapi.js';

export interface DocsRoutesOptions {
  /** Every route's description, collected by http/server.ts as routes were added. */
  readonly docs: RouteDocs;
}

const OPENAPI_DOC: RouteDoc = {
  summary: 'This API as OpenAPI 3.1',
  description: 'Built from the routes themselves; /docs shows it. Any origin may fetch it.',
  tag: 'Operations',
  responses: { 200: json('The document', { type: 'object', required: ['openapi', 'paths'] }) },
};

export async function docsRoutes(app: FastifyInstance, opts: DocsRoutesOptions): Promise<void> {
  app.get('/openapi.json', { config: { doc: OPENAPI_DOC } }, async (_request, reply) => {
    // Not `cors: true`: that is the allowed origins'; a description of a public API is for anyone.
    reply.header('access-control-allow-origin', '*').header('cache-control', 'no-cache');
    return opts.docs.document();
  });
}
