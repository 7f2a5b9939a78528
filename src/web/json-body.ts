import type { FastifyInstance, FastifyRequest } from 'fastify';
import { OnsaleError } from '../domain/errors.js';

/**
 * Only JSON bodies are accepted, in UTF-8: bytes that are not UTF-8 are refused, not stored as U+FFFD, so
 * that every string is kept as sent. The rest is Fastify's own JSON parser (with its prototype-poisoning
 * checks).
 */
export function acceptJsonBodies(app: FastifyInstance): void {
  // Without this, Fastify would also parse text/plain.
  app.removeContentTypeParser('text/plain');
  const parseJson = app.getDefaultJsonParser('error', 'error') as (
    request: FastifyRequest,
    body: string,
    done: (error: Error | null, value?: unknown) => void,
  ) => void;
  const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    let text: string;
    try {
      text = strictUtf8.decode(body as Buffer);
    } catch {
      return done(new OnsaleError('invalid_request', 'the body is not valid UTF-8'), undefined);
    }
    parseJson(request, text, done);
  });
}
