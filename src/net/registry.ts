/**
 * The verified peer of each connection, kept on the socket itself in a private field
 * stamped onto it: no table per connection, it goes away with the socket, and no code
 * outside this module can read, set, replace or forge it through the socket object.
 */
import type { Socket } from 'node:net';
import type { Peer } from '../identity/index.js';

/** A constructor that hands back the object it is given, so that a subclass stamps its private field onto that object. */
class Stamp {
  constructor(target: object) {
    return target;
  }
}

/** The peer slot of a socket: a private field only this class can see. */
class PeerSlot extends Stamp {
  #peer: Peer;

  private constructor(socket: Socket, peer: Peer) {
    super(socket);
    this.#peer = peer;
  }

  static get(socket: object): Peer | undefined {
    return #peer in socket ? (socket as PeerSlot).#peer : undefined;
  }

  static set(socket: Socket, peer: Peer): void {
    // A socket is verified once; a second verification leaves the first peer in place.
    if (!(#peer in socket)) new PeerSlot(socket, peer);
  }
}

/**
 * The verified peer of a connection accepted by {@link createServer} or {@link guard}, or
 * the verified server of a socket made by {@link connect}; undefined for any other socket.
 * Works on `req.socket` in an HTTP handler.
 */
export function peerOf(socket: Socket): Peer | undefined {
  return typeof socket === 'object' && socket !== null ? PeerSlot.get(socket) : undefined;
}

/** @internal Records the peer of a socket that passed verification. */
export function rememberPeer(socket: Socket, peer: Peer): void {
  PeerSlot.set(socket, peer);
}
