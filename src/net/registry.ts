/**
 * The verified peer of each connection, kept beside the socket in a WeakMap so that it
 * goes away with the socket and cannot be set or forged through the socket object.
 */
import type { Socket } from 'node:net';
import type { Peer } from '../identity/peer.js';

const peers = new WeakMap<Socket, Peer>();

/**
 * The verified peer of a connection accepted by {@link createServer} or {@link guard}, or
 * the verified server of a socket made by {@link connect}; undefined for any other socket.
 * Works on `req.socket` in an HTTP handler.
 */
export function peerOf(socket: Socket): Peer | undefined {
  return typeof socket === 'object' && socket !== null ? peers.get(socket) : undefined;
}

/** @internal Records the peer of a socket that passed verification. */
export function rememberPeer(socket: Socket, peer: Peer): void {
  peers.set(socket, peer);
}
