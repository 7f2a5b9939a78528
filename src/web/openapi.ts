import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import swagger from '@fastify/swagger';
import type { FastifyInstance } from 'fastify';
import {
  CONNECTION_ERROR_CODES,
  ERROR_CODES,
  errorBodySchema,
  errorResponses,
  type ApiErrorCode,
} from './errors.js';

/** The path of the OpenAPI document. */
export const OPENAPI_PATH = '/api/openapi.json';

/** The security scheme of the admin endpoints, named in their route schemas' `security`. */
export const ADMIN_SECURITY = [{ adminToken: [] }];

/** onsale's version, from the package.json of the folders above this module (dist/, build/src/ or src/). */
function packageVersion(): string {
  for (let dir = new URL('./', import.meta.url); dir.pathname !== '/'; dir = new URL('../', dir)) {
    try {
      const pkg = JSON.parse(readFileSync(new URL('package.json', dir), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'onsale' && pkg.version) return pkg.version;
    } catch {
      // no package.json here: look further up
    }
  }
  return '0.0.0';
}

const VERSION = packageVersion();

/**
 * Registers the generator of the OpenAPI 3.1 document, which collects every route's schema as it is added,
 * so it must come before any route. The document is built once, at the first request.
 */
export function registerOpenApi(app: FastifyInstance): void {
  recordRoutes(app);
  const codes = Object.keys(ERROR_CODES) as ApiErrorCode[];
  app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'onsale HTTP API',
        version: VERSION,
        description:
          'Sells tickets when everyone wants them at once. Every error answers the body ' +
          '`{ "error": { "code", "message" } }`; each operation lists the codes it can answer. ' +
          `Any request may also be refused before it reaches a route: ${CONNECTION_ERROR_CODES.map(
            (c) => `\`${c}\` (${ERROR_CODES[c].status}: ${ERROR_CODES[c].when})`,
          ).join(', ')}.`,
        license: { name: 'MIT', identifier: 'MIT' },
      },
      components: {
        securitySchemes: {
          adminToken: {
            type: 'http',
            scheme: 'bearer',
            description:
              'The admin token: ONSALE_ADMIN_TOKEN, or the one generated in the data folder at first start.',
          },
        },
        schemas: {
          Error: {
            ...errorBodySchema(codes),
            description: codes.map((c) => `${c} (${ERROR_CODES[c].status})`).join(', '),
          },
        },
      },
      tags: [
        { name: 'public', description: 'Buying and reading events and purchases' },
        { name: 'admin', description: 'Needs the admin token' },
        { name: 'payments', description: "The payment provider's webhooks (not for clients)" },
        { name: 'operations', description: 'Health, readiness, metrics and this document' },
        { name: 'pages', description: 'The HTML pages of buyers and the organizer, and their files' },
      ],
    },
  });

  let document: { body: string; etag: string } | undefined;
  // In a plugin, so that the generator, registered just above, sees this route too.
  app.register(async (scope) =>
    scope.get(
      OPENAPI_PATH,
      {
        schema: {
          tags: ['operations'],
          summary: 'This OpenAPI 3.1 document',
          response: {
            200: { description: 'the OpenAPI document', type: 'object' },
            304: { description: 'not modified (If-None-Match)', type: 'null' },
            ...errorResponses('rate_limited', 'internal_error'),
          },
        },
      },
      async (request, reply) => {
        if (!document) {
          const body = JSON.stringify(app.swagger());
          document = {
            body,
            etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 16)}"`,
          };
        }
        reply.header('cache-control', 'public, max-age=300').header('etag', document.etag);
        if (request.headers['if-none-match'] === document.etag) return reply.code(304).send();
        return reply.type('application/json; charset=utf-8').send(document.body);
      },
    ),
  );
}

/** A route as Fastify registered it: what the OpenAPI document must describe. */
export interface RegisteredRoute {
  method: string;
  url: string;
}

const registered = new WeakMap<FastifyInstance, RegisteredRoute[]>();

/**
 * Records every route added to `app` from now on, wherever it is added (a plugin, or the instance itself),
 * so that a test can check the OpenAPI document against what the server really serves.
 */
function recordRoutes(app: FastifyInstance): void {
  const routes: RegisteredRoute[] = [];
  registered.set(app, routes);
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) routes.push({ method, url: route.url ?? route.path });
  });
}

/** Every route added to an app built by buildApp. */
export function registeredRoutes(app: FastifyInstance): readonly RegisteredRoute[] {
  return registered.get(app) ?? [];
}
