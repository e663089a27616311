/**
 * The built-in mutual challenge (PROTOCOL.md, "Shared-secret mechanism"): each side sends
 * a fresh 32-byte nonce and answers the peer's with
 * HMAC-SHA256(key, "secpolicy-v1 " + role_of_responder + "\0" + received_nonce + own_nonce).
 * The responder's role in the MAC input means an answer made by one side is never valid
 * for the other; a nonce equal to our own (reflection) is refused outright.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { Refusal, type ExchangeSteps } from './exchange.js';

/** Bytes of a nonce. */
export const NONCE_SIZE = 32;
/** Which end of the connection a side is. */
export type Role = 'server' | 'client';

const LABEL = 'secpolicy-v1 ';

/** The RESPONSE a side with role `responder` gives to `received`, having sent `own`. */
export function secretResponse(key: Uint8Array, responder: Role, received: Uint8Array, own: Uint8Array): Buffer {
  return createHmac('sha256', key).update(`${LABEL}${responder}\0`).update(received).update(own).digest();
}

/** The exchange steps for one side: `key` is already loaded and long enough. */
export function sharedSecretSteps(key: Uint8Array, role: Role): ExchangeSteps {
  const peerRole: Role = role === 'server' ? 'client' : 'server';
  const ours = randomBytes(NONCE_SIZE);
  let theirs: Uint8Array | undefined;
  return {
    create: () => ours,
    solve: (challenge) => {
      if (challenge.length !== NONCE_SIZE) throw new Refusal(`the peer's nonce must be ${NONCE_SIZE} bytes`, `${challenge.length} bytes`);
      if (timingSafeEqual(challenge, ours)) throw new Refusal('the peer sent our own nonce back (reflection)', 'a reflected nonce');
      theirs = challenge;
      return secretResponse(key, role, challenge, ours);
    },
    verify: (challenge, response) => {
      if (!theirs || response.length !== 32) return false;
      // Recomputed with the peer's role: the peer received our nonce and sent theirs.
      const expected = secretResponse(key, peerRole, challenge, theirs);
      return timingSafeEqual(expected, response);
    },
  };
}
