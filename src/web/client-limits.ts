import { BlockList, isIPv6, type Socket } from 'node:net';
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import { OnsaleError } from '../domain/errors.js';

/** A list of addresses and CIDR ranges (ONSALE_TRUST_PROXY, ONSALE_RATE_LIMIT_EXEMPT) as a membership test. */
export function addressMatcher(entries: readonly string[]): (address: string | undefined) => boolean {
  if (entries.length === 0) return () => false;
  const list = new BlockList();
  for (const entry of entries) {
    const [address = '', prefix] = entry.split('/');
    const type = isIPv6(address) ? 'ipv6' : 'ipv4';
    if (prefix === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(prefix), type);
  }
  return (address) => {
    if (!address) return false;
    try {
      return list.check(address, isIPv6(address) ? 'ipv6' : 'ipv4');
    } catch {
      return false;
    }
  };
}

/** Counts held per client address, up to a cap. */
class PerClientCount {
  readonly #counts = new Map<string, number>();
  readonly #cap: number;

  constructor(cap: number) {
    this.#cap = cap;
  }

  /** Counts one more for `key`; false (and nothing counted) when it already holds the cap. */
  take(key: string): boolean {
    const held = this.#counts.get(key) ?? 0;
    if (held >= this.#cap) return false;
    this.#counts.set(key, held + 1);
    return true;
  }

  release(key: string): void {
    const held = (this.#counts.get(key) ?? 1) - 1;
    if (held <= 0) this.#counts.delete(key);
    else this.#counts.set(key, held);
  }
}

/**
 * Closes at once every connection beyond `cap` from one address: a client holding hundreds of idle or slow
 * connections would otherwise use up the process's sockets. Balancers (all buyers come through them) and
 * exempt addresses are not capped. Refusals are logged at most once a second per address.
 */
export function capConnections(
  server: Server,
  cap: number,
  uncapped: (address: string | undefined) => boolean,
  logger: Logger,
): void {
  const open = new PerClientCount(cap);
  const loggedAt = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress;
    if (address === undefined || uncapped(address)) return;
    if (!open.take(address)) {
      socket.destroy();
      const now = Date.now();
      if (now - (loggedAt.get(address) ?? 0) >= 1000) {
        loggedAt.set(address, now);
        logger.warn({ client: address, cap }, 'too many connections from one client: closed');
      }
      return;
    }
    socket.once('close', () => {
      open.release(address);
      loggedAt.delete(address);
    });
  });
}

/** Open status streams per client (request.ip): beyond the cap, 429 with Retry-After. */
export class StreamCap {
  readonly #open: PerClientCount;

  constructor(cap: number) {
    this.#open = new PerClientCount(cap);
  }

  /** Holds one stream for `client`; returns the function that lets it go. Throws 429 at the cap. */
  take(client: string): () => void {
    if (!this.#open.take(client)) {
      throw new OnsaleError('rate_limited', 'too many open status streams from this client; close some', {
        retryAfterSeconds: 5,
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#open.release(client);
    };
  }
}
