import type { IncomingMessage, ServerResponse } from 'node:http';
import proxyAddr from '@fastify/proxy-addr';

/**
 * A hot route answered before Fastify's routing, hooks and reply (app.ts's serverFactory): it answers a
 * request and returns true, or returns false having read and written nothing, and Fastify answers it.
 */
export type FastPath = (request: IncomingMessage, response: ServerResponse) => boolean;

/** Asks the per-address limit for a request: true to go on, false to leave the request to Fastify. */
export type AddressAdmission = (request: IncomingMessage) => boolean;

/**
 * The per-address limit of /api/ routes as the fast paths ask it: true when the client (its address as
 * Fastify's request.ip reads it, X-Forwarded-For only from trusted balancers) is exempt or got a token;
 * false when its address is unknown or it is over its budget, and then Fastify's hook asks the same bucket,
 * which refuses again, and answers the 429 with its Retry-After and metric.
 */
export function addressAdmitter({
  takeAddressToken,
  exempt,
  trustProxy,
}: {
  /** Throws (a 429) when the address is over its budget. */
  takeAddressToken: (address: string) => void;
  exempt: ReadonlySet<string>;
  /** ONSALE_TRUST_PROXY: whose X-Forwarded-For names the client. */
  trustProxy: readonly string[];
}): AddressAdmission {
  const trust = trustProxy.length > 0 ? proxyAddr.compile([...trustProxy]) : null;
  return (request) => {
    const address = trust ? proxyAddr(request, trust) : request.socket.remoteAddress;
    if (address === undefined) return false;
    if (exempt.has(address)) return true;
    try {
      takeAddressToken(address);
      return true;
    } catch {
      return false;
    }
  };
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
