import type { IncomingMessage, ServerResponse } from 'node:http';
import proxyAddr from '@fastify/proxy-addr';

/**
 * A hot route answered before Fastify's routing, hooks and reply (app.ts's serverFactory): it answers a
 * request and returns true, or returns false having read and written nothing, and Fastify answers it.
 */
export type FastPath = (request: IncomingMessage, response: ServerResponse) => boolean;

/** The client's address as Fastify's request.ip reads it: X-Forwarded-For only from trusted balancers. */
export function clientAddressReader(
  trustProxy: readonly string[],
): (request: IncomingMessage) => string | undefined {
  const trust = trustProxy.length > 0 ? proxyAddr.compile([...trustProxy]) : null;
  return (request) => (trust ? proxyAddr(request, trust) : request.socket.remoteAddress);
}

/** Writes a JSON answer with the headers every API answer carries: its request id and no-store. */
export function writeJson(
  response: ServerResponse,
  statusCode: number,
  body: string,
  requestId: string,
  retryAfterSeconds?: number,
): void {
  const headers: Record<string, string | number> = {
    'x-request-id': requestId,
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(body),
  };
  if (retryAfterSeconds !== undefined) headers['retry-after'] = String(retryAfterSeconds);
  response.writeHead(statusCode, headers);
  response.end(body);
}
