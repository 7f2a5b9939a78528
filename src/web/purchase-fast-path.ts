import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import AjvCompiler from '@fastify/ajv-compiler';
import type { ErrorObject } from 'ajv';
import type { Logger } from 'pino';
import type { SaleEvent } from '../domain/types.js';
import { logRef } from '../shared/logger.js';
import { errorAnswer, httpStatus } from './errors.js';
import { writeJson, type AddressAdmission, type FastPath } from './fast-path.js';
import type { JsonBodyParser } from './json-body.js';
import { PURCHASE_ROUTE, recordRequest, requestId } from './metrics-plugin.js';
import type { PurchaseAcceptance } from './purchase-acceptance.js';
import { AJV_OPTIONS, purchaseBody, purchaseHeaders, type PurchaseBody } from './schemas.js';

const PREFIX = '/api/events/';
const SUFFIX = '/purchases';
/** The spellings of a JSON body's type that Fastify's parser takes too; others go to Fastify. */
const JSON_TYPE = /^application\/json\s*(;\s*charset="?utf-8"?\s*)?$/i;

interface PurchaseFastPathDeps {
  acceptance: PurchaseAcceptance;
  /** The event if this process has it in memory; the fast path leaves the others to Fastify. */
  knownEvent: (eventId: string) => SaleEvent | undefined;
  /** The JSON parser Fastify's routes use (json-body.ts). */
  parseJson: JsonBodyParser;
  bodyLimit: number;
  /** The per-address limit of /api/ routes (addressAdmitter): false leaves the request to Fastify. */
  admitAddress: AddressAdmission;
  logger: Logger;
}

/**
 * The hot path of a rush, `POST /api/events/{eventId}/purchases`, answered before Fastify's routing, hooks
 * and reply: the same validation (Fastify's ajv, options and schemas; its JSON parser), the same decisions
 * (PurchaseAcceptance), answers, headers, request metric, purchase counters and log line. What it cannot
 * take without reading the body goes to Fastify untouched: an event not in memory, an odd URL or body
 * type, no Content-Length or one over the body limit, headers that fail their schema, a client over the
 * per-address limit (Fastify answers the 429), a server closing. Once it has read a body it answers every
 * outcome itself, errors with api.md's body as the error handler writes it (app.ts).
 */
export function purchaseFastPath({
  acceptance,
  knownEvent,
  parseJson,
  bodyLimit,
  admitAddress,
  logger,
}: PurchaseFastPathDeps): FastPath & { close(): void } {
  // A compiler of Fastify's own making, with the options app.ts gives Fastify: the same checks and messages.
  const compile = AjvCompiler()({}, { customOptions: { ...AJV_OPTIONS } });
  const validBody = compile({ schema: purchaseBody, method: 'POST', url: PURCHASE_ROUTE, httpPart: 'body' });
  const validHeaders = compile({
    schema: purchaseHeaders,
    method: 'POST',
    url: PURCHASE_ROUTE,
    httpPart: 'headers',
  });
  let open = true;

  const fastPath = (request: IncomingMessage, response: ServerResponse): boolean => {
    const url = request.url;
    if (!open || request.method !== 'POST' || url === undefined || !url.startsWith(PREFIX)) return false;
    const queryAt = url.indexOf('?', PREFIX.length);
    const path = queryAt === -1 ? url : url.slice(0, queryAt);
    if (!path.endsWith(SUFFIX)) return false;
    const eventId = path.slice(PREFIX.length, -SUFFIX.length);
    // The router would decode percent-escapes: such an id is left to it.
    if (eventId.includes('/') || eventId.includes('%')) return false;
    const event = knownEvent(eventId);
    if (!event) return false;
    const { headers } = request;
    const length = Number(headers['content-length']);
    if (!(length > 0 && length <= bodyLimit) || headers['transfer-encoding'] !== undefined) return false;
    const type = headers['content-type'];
    if (type === undefined || !JSON_TYPE.test(type) || !validHeaders(headers)) return false;
    if (!admitAddress(request)) return false;
    const started = performance.now();
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      answer(request, response, event, body, started).catch((error: unknown) => {
        logger.error({ err: error, route: PURCHASE_ROUTE }, 'purchase fast path failed');
        response.destroy();
      });
    });
    // The client went away mid-body: there is no one to answer.
    request.on('error', () => response.destroy());
    return true;
  };

  async function answer(
    request: IncomingMessage,
    response: ServerResponse,
    event: SaleEvent,
    body: Buffer,
    started: number,
  ): Promise<void> {
    const reqId = requestId(request);
    let status: number;
    let purchaseId: string | undefined;
    let errorCode: string | undefined;
    try {
      const value = parseJson(body);
      if (!validBody(value)) throw validationFailure(validBody.errors ?? []);
      const { headers } = request;
      const accepted = await acceptance.accept(
        event,
        value as PurchaseBody,
        headers['idempotency-key'] as string | undefined,
        headers['onsale-admission'],
      );
      status = accepted.statusCode;
      purchaseId = accepted.receipt.purchaseId;
      writeJson(response, status, JSON.stringify(accepted.receipt), reqId);
    } catch (error) {
      if (response.headersSent) {
        logger.error({ reqId, err: error, route: PURCHASE_ROUTE }, 'purchase fast path failed');
        response.destroy();
        return;
      }
      const failure = errorAnswer(error);
      if (failure.log)
        logger[failure.log.level]({ reqId, err: error, route: PURCHASE_ROUTE }, failure.log.message);
      status = httpStatus(failure.code);
      errorCode = failure.code;
      const errorBody = JSON.stringify({ error: { code: failure.code, message: failure.message } });
      writeJson(response, status, errorBody, reqId, failure.retryAfterSeconds);
    }
    recordRequest(logger, {
      method: 'POST',
      route: PURCHASE_ROUTE,
      status,
      ms: performance.now() - started,
      errorCode,
      // With its reqId, as Fastify's request logger adds it to its lines.
      where: () => ({
        reqId,
        route: PURCHASE_ROUTE,
        eventId: event.id,
        ...(purchaseId ? { purchaseRef: logRef(purchaseId) } : {}),
      }),
    });
  }

  return Object.assign(fastPath, {
    close: () => {
      open = false;
    },
  });
}

/** A body that fails its schema, as Fastify reports one: "body/items/0/quantity must be <= 100". */
function validationFailure(errors: ErrorObject[]): Error {
  const message = errors.map((e) => `body${e.instancePath} ${e.message}`).join(', ');
  return Object.assign(new Error(message), { validation: errors, statusCode: 400 });
}
