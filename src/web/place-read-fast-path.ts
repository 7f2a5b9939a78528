import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { observeRequest } from '../metrics/metrics.js';
import { writeJson, type AddressAdmission, type FastPath } from './fast-path.js';
import { requestId } from './metrics-plugin.js';
import type { RoomReader } from './room-reader.js';

/** The route as Fastify names it: the fast path's requests count under the same metrics label. */
export const PLACE_ROUTE = '/api/queue/:placeId';
const PREFIX = '/api/queue/';
/** Ids the router would pass on as they are: no percent-encoding, no slash, within the schema's length. */
const PLAIN_ID = /^[A-Za-z0-9_-]{1,64}$/;

interface FastPathDeps {
  reader: RoomReader;
  /** The per-address limit of /api/ routes (addressAdmitter): false leaves the request to Fastify. */
  admitAddress: AddressAdmission;
  logger: Logger;
  /** The clock of the cache and the rate limit (tests fix it). */
  now?: () => number;
}

/**
 * The hot path of a rush, `GET /api/queue/:placeId`, answered before Fastify's routing, hooks and reply
 * when the answer is in the process's memory (RoomReader.cachedAnswer): the same body and headers
 * (x-request-id, cache-control: no-store), the same per-address rate limit, the same request metric.
 * Anything else goes to Fastify, which keeps the route: a place not in memory or a line due for a read
 * (the database), a bad or unknown id (400, 404), a refusal by the rate limit (429, its Retry-After and
 * metric), a request with a body or an odd URL, debug logging on (its per-request line), a server closing.
 */
export function placeReadFastPath({
  reader,
  admitAddress,
  logger,
  now: clock = Date.now,
}: FastPathDeps): FastPath & { close(): void } {
  let open = true;

  const fastPath = (request: IncomingMessage, response: ServerResponse): boolean => {
    const url = request.url;
    if (!open || request.method !== 'GET' || url === undefined || !url.startsWith(PREFIX)) return false;
    if (request.headers['content-length'] !== undefined || request.headers['transfer-encoding'] !== undefined)
      return false;
    const started = performance.now();
    const queryAt = url.indexOf('?', PREFIX.length);
    const placeId = url.slice(PREFIX.length, queryAt === -1 ? undefined : queryAt);
    if (!PLAIN_ID.test(placeId) || logger.isLevelEnabled('debug')) return false;
    try {
      const now = clock();
      const answer = reader.cachedAnswer(placeId, now);
      if (!answer) return false;
      if (!admitAddress(request)) return false;
      reader.noteRead(placeId, now);
      writeJson(response, 200, JSON.stringify(answer), requestId(request));
      observeRequest(PLACE_ROUTE, 'GET', 200, (performance.now() - started) / 1000);
      return true;
    } catch (error) {
      logger.error({ err: error, route: PLACE_ROUTE }, 'place read fast path failed');
      if (response.headersSent) {
        response.destroy();
        return true;
      }
      return false;
    }
  };
  return Object.assign(fastPath, {
    close: () => {
      open = false;
    },
  });
}
