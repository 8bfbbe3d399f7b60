/**
 * @module bench/baselines/fastify-incr — the fast usual way: Fastify with JSON schemas and one
 * Redis INCRBY per request, auto-pipelined by ioredis.
 */
import Fastify from 'fastify';
import { Redis } from 'ioredis';

const port = Number(process.env.PORT ?? 3000);
const prefix = process.env.KEY_PREFIX ?? 'baseline:fastify:';
const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', {
  enableAutoPipelining: true,
});

const app = Fastify({ logger: false });

app.post<{ Params: { name: string }; Body: { by?: number } | undefined }>(
  '/api/v1/counters/:name/increment',
  {
    schema: {
      params: {
        type: 'object',
        properties: { name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$' } },
      },
      body: {
        type: 'object',
        properties: { by: { type: 'integer' } },
        additionalProperties: false,
      },
      response: {
        200: {
          type: 'object',
          properties: { name: { type: 'string' }, value: { type: 'number' } },
        },
      },
    },
  },
  async (request) => {
    const name = request.params.name;
    const value = await redis.incrby(prefix + name, request.body?.by ?? 1);
    return { name, value };
  },
);

// The same app without the INCRBY: what Fastify alone costs per request on this machine.
app.post<{ Params: { name: string }; Body: { by?: number } | undefined }>(
  '/api/v1/noop',
  {
    schema: {
      body: {
        type: 'object',
        properties: { by: { type: 'integer' } },
        additionalProperties: false,
      },
      response: {
        202: {
          type: 'object',
          properties: { name: { type: 'string' }, value: { type: 'number' } },
        },
      },
    },
  },
  async (_request, reply) => {
    reply.code(202);
    return { name: 'noop', value: 0 };
  },
);

await app.listen({ port, host: '127.0.0.1' });
process.stdout.write(`fastify-incr listening on http://127.0.0.1:${port}\n`);
process.once('SIGTERM', () => process.exit(0));
