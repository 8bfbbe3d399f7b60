/**
 * @module http/routes/compat/docs — the OpenAPI descriptions of the CountAPI and Abacus routes
 * (http/openapi.ts). Their answers keep those APIs' shapes, so their schemas are theirs too.
 */
import {
  type JsonSchema,
  json,
  object,
  type ParamDoc,
  type ResponseDoc,
  type RouteDoc,
} from '../../openapi.js';

const NAME: JsonSchema = { type: 'string', pattern: '^[A-Za-z0-9_\\-.]{3,64}$' };
const int = { type: 'integer' };

const COMPAT_PARAMS: Record<string, ParamDoc> = {
  ns: {
    description: 'Namespace, 3-64 characters of `A-Za-z0-9_-.`',
    schema: NAME,
    example: 'mysite',
  },
  key: { description: 'Key, 3-64 characters of `A-Za-z0-9_-.`', schema: NAME, example: 'visits' },
};

// -- CountAPI --

const COUNTAPI_PARAMS: Record<string, ParamDoc> = {
  ns: {
    ...COMPAT_PARAMS.ns,
    description: `${COMPAT_PARAMS.ns?.description}, or \`:HOST:\` for the host of the page asking`,
  } as ParamDoc,
  key: {
    ...COMPAT_PARAMS.key,
    description: `${COMPAT_PARAMS.key?.description}, or \`:PATHNAME:\` for the page's path`,
  } as ParamDoc,
};

const COUNTAPI_QUERY: Record<string, ParamDoc> = {
  callback: {
    description: 'JSONP: answers `callback({...,"status":N})` with 200 whatever happened',
    schema: { type: 'string' },
  },
  img: {
    description: 'Any value: answers a 1×1 GIF with the status the JSON would have',
    schema: { type: 'string' },
  },
};

/** A CountAPI answer at one status: JSON, JSONP (200 only) or the pixel. */
function countapi(description: string, schema: JsonSchema): ResponseDoc {
  return {
    description,
    content: { 'application/json': schema, 'application/javascript': null, 'image/gif': null },
  };
}

const COUNTAPI_ERRORS = {
  compatErrors: [400, 401, 403, 429, 500, 503],
  errorMedia: ['application/javascript', 'image/gif'],
};

const value = object({ value: int });
const noValue = object({ value: { type: 'null' } });

const COUNTAPI_OPS = {
  hit: {
    summary: 'Add 1 (CountAPI)',
    query: {},
    responses: { 200: countapi('The value after the hit', value) },
  },
  get: {
    summary: 'Read (CountAPI)',
    query: {},
    responses: { 200: countapi('The value', value), 404: countapi('No such counter', noValue) },
  },
  set: {
    summary: 'Set (CountAPI)',
    query: { value: { description: 'The new value', schema: int, required: true } },
    responses: {
      200: countapi('Set', object({ old_value: int, value: int })),
      403: countapi('The key does not allow it', object({ old_value: int, value: int })),
      404: countapi(
        'No such counter',
        object({ old_value: { type: 'null' }, value: { type: 'null' } }),
      ),
    },
  },
  update: {
    summary: 'Add an amount (CountAPI)',
    query: {
      amount: {
        description: 'Within the counter’s update bounds, unless a key is sent',
        schema: int,
        required: true,
      },
    },
    responses: {
      200: countapi('The value after the update', value),
      403: countapi('Outside the bounds', value),
      404: countapi('No such counter', noValue),
    },
  },
  info: {
    summary: 'Describe (CountAPI)',
    query: {},
    responses: {
      200: countapi(
        'The counter',
        object({
          namespace: { type: 'string' },
          key: { type: 'string' },
          ttl: { ...int, description: 'ms until it expires; -1: never' },
          created: int,
          update_lowerbound: int,
          update_upperbound: int,
          enable_reset: { type: 'boolean' },
          value: int,
        }),
      ),
      404: countapi(
        'No such counter',
        object(
          Object.fromEntries(
            [
              'namespace',
              'key',
              'ttl',
              'created',
              'update_lowerbound',
              'update_upperbound',
              'enable_reset',
              'value',
            ].map((f) => [f, { type: 'null' }]),
          ),
        ),
      ),
    },
  },
} satisfies Record<
  string,
  Pick<RouteDoc, 'summary' | 'responses'> & { query: Record<string, ParamDoc> }
>;

export type CountapiOp = keyof typeof COUNTAPI_OPS;

export function countapiDoc(op: CountapiOp, namespaced: boolean): RouteDoc {
  const o = COUNTAPI_OPS[op];
  return {
    ...o,
    tag: 'CountAPI',
    description:
      'As api.countapi.xyz answered. Without the namespace, `default`. Answers carry `x-path: namespace/key`.',
    params: namespaced ? COUNTAPI_PARAMS : { key: COUNTAPI_PARAMS.key as ParamDoc },
    query: { ...o.query, ...COUNTAPI_QUERY },
    ...(op === 'set' || op === 'update' ? { auth: 'optional' as const } : {}),
    ...COUNTAPI_ERRORS,
  };
}

export const COUNTAPI_CREATE_DOC: RouteDoc = {
  summary: 'Create (CountAPI)',
  description:
    "Creates a counter; its admin key comes in the `x-admin-key` header (CountAPI's body has three fields).",
  tag: 'CountAPI',
  auth: 'optional',
  query: {
    namespace: { description: 'Default `default`', schema: NAME },
    key: { description: 'Default: a random UUID', schema: { type: 'string' } },
    value: { description: 'Starting value', schema: { ...int, default: 0 } },
    enable_reset: {
      description: 'Whether its key may set it',
      schema: { type: 'string', enum: ['true', 'false', '1', '0'] },
    },
    update_lowerbound: { description: '≤ 0, default -1', schema: int },
    update_upperbound: { description: '≥ 0, default 1', schema: int },
    ...COUNTAPI_QUERY,
  },
  responses: {
    200: countapi(
      'Created',
      object({ namespace: { type: 'string' }, key: { type: 'string' }, value: int }),
    ),
    409: countapi(
      'Exists already',
      object({ namespace: { type: 'null' }, key: { type: 'null' }, value: { type: 'null' } }),
    ),
  },
  ...COUNTAPI_ERRORS,
};

export const COUNTAPI_STATS_DOC: RouteDoc = {
  summary: 'Statistics (CountAPI)',
  description: 'This instance, since it started.',
  tag: 'CountAPI',
  responses: {
    200: json(
      'Counts',
      object({ keys_created: int, keys_updated: int, requests: int, version: { type: 'string' } }),
    ),
  },
};

// -- Abacus --

const ABACUS_JSONP: Record<string, ParamDoc> = {
  callback: { description: 'JSONP: answers `callback({...})`', schema: { type: 'string' } },
};
const TOKEN: Record<string, ParamDoc> = {
  token: {
    description:
      "The counter's admin key (or send it as a Bearer header; Tally's admin token only as a header)",
    schema: { type: 'string' },
  },
};
// 413 and 415: the POST routes' bodies are read (JSON only) though none is used.
const ABACUS_ERRORS = { compatErrors: [400, 401, 403, 404, 409, 413, 415, 429, 500, 503] };

const abacusValue = (description: string, jsonp = false): ResponseDoc =>
  jsonp
    ? { description, content: { 'application/json': value, 'application/javascript': null } }
    : json(description, value);

const ABACUS_OPS = {
  hit: {
    summary: 'Add 1 (Abacus)',
    query: ABACUS_JSONP,
    responses: { 200: abacusValue('The value after the hit', true) },
  },
  get: {
    summary: 'Read (Abacus)',
    query: ABACUS_JSONP,
    responses: { 200: abacusValue('The value', true) },
  },
  create: {
    summary: 'Create (Abacus)',
    query: { initializer: { description: 'Starting value', schema: { ...int, default: 0 } } },
    responses: {
      201: json(
        'Created; keep the admin key',
        object({
          admin_key: { type: 'string' },
          key: { type: 'string' },
          namespace: { type: 'string' },
          value: int,
        }),
      ),
    },
  },
  info: {
    summary: 'Describe (Abacus)',
    query: {},
    responses: {
      200: json(
        'The counter (`exists: false` and value -1 when there is none)',
        object({
          exists: { type: 'boolean' },
          expires_in: {
            type: 'number',
            description: 'Seconds; negative: never (-1e-9) or missing (-2e-9)',
          },
          expires_str: { type: 'string' },
          full_key: { type: 'string' },
          is_genuine: { type: 'boolean', description: 'Made by a hit, without an admin key' },
          value: int,
        }),
      ),
    },
  },
  set: {
    summary: 'Set (Abacus)',
    query: { value: { description: 'The new value', schema: int, required: true }, ...TOKEN },
    responses: { 200: abacusValue('Set') },
  },
  reset: {
    summary: 'Set to 0 (Abacus)',
    query: TOKEN,
    responses: { 200: abacusValue('Reset') },
  },
  update: {
    summary: 'Add an amount (Abacus)',
    query: { value: { description: 'The amount, not 0', schema: int, required: true }, ...TOKEN },
    responses: { 200: abacusValue('The value after the update') },
  },
  delete: {
    summary: 'Delete (Abacus)',
    query: TOKEN,
    responses: {
      200: json('Deleted', object({ message: { type: 'string' }, status: { const: 'ok' } })),
    },
  },
  stream: {
    summary: 'Live value (Abacus, Server-Sent Events)',
    query: {},
    responses: {
      200: { description: 'Unnamed events `{"value": N}`', content: { 'text/event-stream': null } },
    },
  },
} satisfies Record<
  string,
  Pick<RouteDoc, 'summary' | 'responses'> & { query: Record<string, ParamDoc> }
>;

export type AbacusOp = keyof typeof ABACUS_OPS;

export function abacusDoc(op: AbacusOp, namespaced: boolean): RouteDoc {
  const o = ABACUS_OPS[op];
  const token = op === 'set' || op === 'reset' || op === 'update' || op === 'delete';
  return {
    ...o,
    tag: 'Abacus',
    description: `As Abacus answers.${namespaced ? '' : ' Without the namespace, `default`.'}`,
    params: namespaced ? COMPAT_PARAMS : { key: COMPAT_PARAMS.key as ParamDoc },
    ...(token ? { auth: 'key' as const } : op === 'create' ? { auth: 'optional' as const } : {}),
    ...ABACUS_ERRORS,
  };
}

export function abacusShieldDoc(op: 'hit' | 'get'): RouteDoc {
  return {
    summary: `Badge of ${op === 'hit' ? 'a hit' : 'the value'} (Abacus)`,
    description:
      'An SVG badge with Abacus’s options (`text`, `bgcolor`, `style` flat, flat-square, plastic, each also `-simple`). Abacus’s own errors answer in JSON; others are drawn.',
    tag: 'Abacus',
    params: COMPAT_PARAMS,
    query: {
      text: { description: 'Label (default "counter")', schema: { type: 'string' } },
      bgcolor: { description: 'Color (default 007ec6)', schema: { type: 'string' } },
      style: { description: 'Look', schema: { type: 'string' } },
      textcolor: { description: 'Accepted, ignored', schema: { type: 'string' } },
    },
    responses: { 200: { description: 'The badge', content: { 'image/svg+xml': null } } },
    errorMedia: ['image/svg+xml'],
    ...ABACUS_ERRORS,
  };
}

export const ABACUS_STATS_DOC: RouteDoc = {
  summary: 'Statistics (Abacus)',
  tag: 'Abacus',
  responses: {
    200: json(
      'Counts since this instance started',
      object({
        commands: object({ create: int, get: int, hit: int, total: int }),
        db_uptime: { type: 'string' },
        db_version: { type: 'string' },
        expired_keys__since_restart: { type: 'string' },
        key_misses__since_restart: { type: 'string' },
        shard: { type: 'string' },
        total_keys: int,
        uptime: { type: 'string' },
        version: { type: 'string' },
      }),
    ),
  },
};

export const ABACUS_HEALTH_DOC: RouteDoc = {
  summary: 'Health (Abacus)',
  tag: 'Abacus',
  responses: {
    200: json('Alive', object({ status: { const: 'ok' }, uptime: { type: 'string' } })),
  },
};
