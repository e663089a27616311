/**
 * The verified peer of each connection, kept on the socket itself under a symbol only this
 * module holds: no table per connection, and it goes away with the socket. The property is
 * read-only and cannot be redefined once set, and a value counts only if it is a Peer made
 * for that very socket, so a peer cannot be set or moved through the socket object.
 */
import type { Socket } from 'node:net';
import { Peer } from '../identity/peer.js';

const PEER = Symbol('secpolicy.peer');

/**
 * The verified peer of a connection accepted by {@link createServer} or {@link guard}, or
 * the verified server of a socket made by {@link connect}; undefined for any other socket.
 * Works on `req.socket` in an HTTP handler.
 */
export function peerOf(socket: Socket): Peer | undefined {
  if (typeof socket !== 'object' || socket === null) return undefined;
  const peer = (socket as unknown as Record<symbol, unknown>)[PEER];
  return peer instanceof Peer && peer.isPeerOf(socket) ? peer : undefined;
}

/** @internal Records the peer of a socket that passed verification (once: a socket is verified once). */
export function rememberPeer(socket: Socket, peer: Peer): void {
  if (!Object.hasOwn(socket, PEER)) Object.defineProperty(socket, PEER, { value: peer });
}
