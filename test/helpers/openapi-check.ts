// Checks answers against the OpenAPI document the app serves: the operation exists, the status is
// documented, the media type is one documented for it, a JSON body matches its schema (error codes
// included: each status lists the codes it may carry). testApp hooks this into every in-process
// app, so every answer any HTTP test sees is checked; test/helpers/setup.ts fails the file that
// saw one that does not match.

import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import type { FastifyInstance } from 'fastify';
import { openapiPath } from '../../src/http/openapi.js';

type Doc = {
  paths: Record<string, Record<string, { responses: Record<string, Response> }>>;
};
type Response = { content?: Record<string, { schema?: unknown }> };

/** Answers that did not match, in this test file (each file runs in its own module registry). */
export const violations: string[] = [];
/** `METHOD /path status` of every checked answer, for the coverage test. */
export const seen = new Set<string>();

export class ContractChecker {
  readonly #doc: Doc;
  readonly #ajv: Ajv2020;
  readonly #validators = new Map<string, ValidateFunction>();

  constructor(doc: unknown) {
    this.#doc = doc as Doc;
    this.#ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats.default(this.#ajv);
    this.#ajv.addSchema(doc as object, 'openapi.json');
  }

  /** What is wrong with one answer, or undefined when it matches the document. */
  check(
    method: string,
    routeUrl: string,
    status: number,
    contentType: string | undefined,
    body: string | Buffer | undefined,
  ): string | undefined {
    const head = method === 'HEAD';
    const path = openapiPath(routeUrl);
    const item = this.#doc.paths[path];
    const verb = head ? 'get' : method.toLowerCase();
    const op = item?.[verb];
    if (op === undefined) return `${method} ${path}: not in the document`;
    const where = `${method} ${path} → ${status}`;
    seen.add(`${verb.toUpperCase()} ${path} ${status}`);
    const response = op.responses[String(status)];
    if (response === undefined) return `${where}: status not documented (${preview(body)})`;
    const empty = body === undefined || body.length === 0;
    if (response.content === undefined) {
      return empty ? undefined : `${where}: documented without a body, answered ${preview(body)}`;
    }
    if (head) return undefined;
    const type = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
    const media = Object.entries(response.content).find(([t]) => t.split(';')[0] === type);
    if (media === undefined) {
      return `${where}: content type ${type || '(none)'} not among ${Object.keys(response.content).join(', ')}`;
    }
    const [mediaType, entry] = media;
    if (entry.schema === undefined || mediaType !== 'application/json') return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(String(body));
    } catch {
      return `${where}: not JSON: ${preview(body)}`;
    }
    const validate = this.#validator(path, verb, String(status));
    if (validate(parsed)) return undefined;
    const errors = (validate.errors ?? [])
      .slice(0, 4)
      .map(
        (e) =>
          `${e.instancePath || '/'} ${e.message}${e.params ? ` ${JSON.stringify(e.params)}` : ''}`,
      )
      .join('; ');
    return `${where}: body does not match: ${errors}; body ${preview(body)}`;
  }

  #validator(path: string, verb: string, status: string): ValidateFunction {
    const key = `${verb} ${path} ${status}`;
    let v = this.#validators.get(key);
    if (v === undefined) {
      const pointer = [
        'paths',
        path,
        verb,
        'responses',
        status,
        'content',
        'application/json',
        'schema',
      ]
        .map((p) => p.replaceAll('~', '~0').replaceAll('/', '~1'))
        .join('/');
      v = this.#ajv.compile({ $ref: `openapi.json#/${pointer}` });
      this.#validators.set(key, v);
    }
    return v;
  }
}

function preview(body: string | Buffer | undefined): string {
  if (body === undefined) return '(no body)';
  const text = String(body);
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

/**
 * Checks every answer `app` sends (an onSend hook; live streams, which are hijacked, pass none)
 * against `doc`, recording what does not match in `violations`.
 */
export function checkAnswers(app: FastifyInstance, doc: () => unknown): void {
  let checker: ContractChecker | undefined;
  app.addHook('onSend', (request, reply, payload, done) => {
    const url = request.routeOptions.url;
    // No route: the not-found handler's 404 (and 405), which no operation describes.
    if (url !== undefined && request.method !== 'OPTIONS') {
      checker ??= new ContractChecker(doc());
      const body = typeof payload === 'string' || Buffer.isBuffer(payload) ? payload : undefined;
      // A stream body (none of Tally's routes sends one) is not read here.
      const streamed = payload !== null && payload !== undefined && body === undefined;
      const problem = streamed
        ? undefined
        : checker.check(
            request.method,
            url,
            reply.statusCode,
            reply.getHeader('content-type') as string | undefined,
            body,
          );
      if (problem !== undefined) violations.push(problem);
    }
    done(null, payload);
  });
}
