import type { IncomingMessage, Server } from 'node:http';
import type { Socket } from 'node:net';

/** How long a closing connection keeps reading what its client still sends (nginx's lingering_time). */
export const LINGER_MS = 5_000;

/**
 * A lingering close, as nginx does it. An answer sent before its request's body was read (413 for a body
 * over the limit, by its Content-Length or as it is counted) closes the connection while the body is still
 * arriving. Node closes such a socket with bytes unread, and the kernel then sends a reset instead of a
 * FIN: a reset can destroy the answer in the client's buffer before the client reads it, so the client,
 * still sending, sees EPIPE or ECONNRESET instead of its 413.
 *
 * Here a closing connection sends its FIN after the answer, then reads and discards whatever the client
 * still sends, and closes when the client does, or after LINGER_MS. A request that arrives on it meanwhile
 * (pipelined after a Connection: close answer) is not served: the connection is closed.
 *
 * Returns what the request handler asks first: true means the request arrived on a closing connection and
 * has been dealt with. (A body its route stopped reading past the limit goes on flowing, unread: Node
 * reads it on and discards it.)
 */
export function lingerOnClose(server: Server): (request: IncomingMessage) => boolean {
  const closing = new WeakSet<Socket>();
  function closeLingering(socket: Socket): void {
    closing.add(socket);
    if (socket.writable) socket.end();
    const destroyOnceWritten = () => {
      if (socket.writableFinished) socket.destroy();
      else socket.once('finish', () => socket.destroy());
    };
    if (socket.readableEnded || socket.destroyed) return destroyOnceWritten();
    const deadline = setTimeout(() => socket.destroy(), LINGER_MS);
    deadline.unref();
    socket.once('end', destroyOnceWritten);
    socket.once('close', () => clearTimeout(deadline));
    // Node's HTTP parser goes on reading the unread body and discards it; the socket itself must flow.
    socket.resume();
  }
  server.on('connection', (socket: Socket) => {
    // Node calls destroySoon once a Connection: close answer is written.
    socket.destroySoon = () => closeLingering(socket);
  });
  return (request) => {
    if (closing.has(request.socket)) {
      request.socket.destroy();
      return true;
    }
    return false;
  };
}
