import type { FastifyInstance, FastifyRequest } from 'fastify';
import { OnsaleError } from '../domain/errors.js';

/** Parses a request body as JSON: the value, or it throws what the client is to be told. */
export type JsonBodyParser = (body: Buffer) => unknown;

/**
 * Only JSON bodies are accepted, in UTF-8: bytes that are not UTF-8 are refused, not stored as U+FFFD, so
 * that every string is kept as sent. The rest is Fastify's own JSON parser (with its prototype-poisoning
 * checks). Returns the parser, for the purchase fast path, which reads its bodies before Fastify does.
 */
export function acceptJsonBodies(app: FastifyInstance): JsonBodyParser {
  // Without this, Fastify would also parse text/plain.
  app.removeContentTypeParser('text/plain');
  const parseJson = app.getDefaultJsonParser('error', 'error') as (
    request: FastifyRequest | null,
    body: string,
    done: (error: Error | null, value?: unknown) => void,
  ) => void;
  const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
  const parse: JsonBodyParser = (body) => {
    let text: string;
    try {
      text = strictUtf8.decode(body);
    } catch {
      throw new OnsaleError('invalid_request', 'the body is not valid UTF-8');
    }
    // Fastify's parser answers synchronously, through its callback.
    let failure: Error | null = null;
    let value: unknown;
    parseJson(null, text, (error, parsed) => {
      failure = error;
      value = parsed;
    });
    if (failure) throw failure;
    return value;
  };
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) => {
    let value: unknown;
    try {
      value = parse(body as Buffer);
    } catch (error) {
      return done(error as Error, undefined);
    }
    done(null, value);
  });
  return parse;
}
