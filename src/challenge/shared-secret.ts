/**
 * The built-in mutual challenge, version 2 (docs/protocol.md): each side sends a fresh
 * 32-byte nonce and answers the peer's with
 *
 *   HMAC-SHA256(key, "secpolicy-v2 " + role_of_responder + "\0"
 *                    + u64le(client_inode) + u64le(server_inode) + received_nonce + own_nonce)
 *
 * where the inodes are those of the two sockets of this connection, the connecting end's
 * and the accepting end's, as each side sees them (its own from its fd, its peer's from
 * sock_diag). A relay in the middle holds two connections with four different sockets, so
 * the proof one honest end makes for its connection never verifies on the other's. The
 * responder's role keeps an answer of one side from being valid for the other; a nonce
 * equal to our own (reflection) is refused outright.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import { isSecpolicyError } from '../errors.js';
import { socketFd, socketInode, unixPeerInode } from '../native/index.js';
import { Refusal, type ExchangeSteps } from './exchange.js';
import { SHARED_SECRET_VERSION } from './frame.js';

/** Bytes of a nonce. */
export const NONCE_SIZE = 32;
/** Which end of the connection a side is. */
export type Role = 'server' | 'client';

/** The two sockets of one connection, by inode: the connecting end's and the accepting end's. */
export interface ConnectionBinding {
  client: number;
  server: number;
}

const LABEL = 'secpolicy-v2 ';

/**
 * The RESPONSE a side with role `responder` gives to `received`, having sent `own`, on the
 * connection `binding`.
 */
export function secretResponse(
  key: Uint8Array,
  responder: Role,
  binding: ConnectionBinding,
  received: Uint8Array,
  own: Uint8Array,
): Buffer {
  const inodes = Buffer.alloc(16);
  inodes.writeBigUInt64LE(BigInt(binding.client), 0);
  inodes.writeBigUInt64LE(BigInt(binding.server), 8);
  return createHmac('sha256', key).update(`${LABEL}${responder}\0`).update(inodes).update(received).update(own).digest();
}

/**
 * This connection's binding as `role` sees it: our socket's inode and, from sock_diag, the
 * inode of the socket at the other end. An accepted socket lives in the connecting
 * process's network namespace; when that is not ours, the lookup enters it, which needs
 * root. Anything that leaves the peer's socket unknown refuses the exchange, with the reason.
 */
export function connectionBinding(socket: Socket, role: Role): ConnectionBinding {
  const fd = socketFd(socket);
  const own = socketInode(fd);
  if (own === undefined) throw new Refusal('cannot bind the proof to this connection: our socket has no inode', 'no socket inode');
  let peer: number | undefined;
  try {
    peer = unixPeerInode(own, { via: fd });
  } catch (e) {
    const why = isSecpolicyError(e) ? e.message : String(e);
    throw new Refusal(
      `cannot bind the proof to this connection: the peer's socket cannot be looked up through sock_diag (${why}); ` +
        'a peer in another network namespace needs this side to run as root',
      'an unknown peer socket',
    );
  }
  if (peer === undefined || peer === 0)
    throw new Refusal('cannot bind the proof to this connection: the socket has no peer (it was closed)', 'no peer socket');
  return role === 'client' ? { client: own, server: peer } : { client: peer, server: own };
}

/**
 * The exchange steps for one side: `key` is already loaded and long enough; `bind` gives
 * this connection's binding (called once, when the peer's REQUEST has arrived).
 */
export function sharedSecretSteps(key: Uint8Array, role: Role, bind: () => ConnectionBinding): ExchangeSteps {
  const peerRole: Role = role === 'server' ? 'client' : 'server';
  const ours = randomBytes(NONCE_SIZE);
  let binding: ConnectionBinding | undefined;
  let theirs: Uint8Array | undefined;
  return {
    version: SHARED_SECRET_VERSION,
    create: () => ours,
    solve: (challenge) => {
      if (challenge.length !== NONCE_SIZE) throw new Refusal(`the peer's nonce must be ${NONCE_SIZE} bytes`, `${challenge.length} bytes`);
      if (timingSafeEqual(challenge, ours)) throw new Refusal('the peer sent our own nonce back (reflection)', 'a reflected nonce');
      theirs = challenge;
      // Only now: a connection still in the accept queue has no socket on the accepting
      // side yet (sock_diag reports peer 0); one that sent us its REQUEST has been accepted.
      binding = bind();
      return secretResponse(key, role, binding, challenge, ours);
    },
    verify: (challenge, response) => {
      if (!theirs || !binding || response.length !== 32) return false;
      // Recomputed with the peer's role: the peer received our nonce and sent theirs.
      const expected = secretResponse(key, peerRole, binding, challenge, theirs);
      return timingSafeEqual(expected, response);
    },
  };
}
