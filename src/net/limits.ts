/**
 * Per-uid connection limits: one user cannot take every connection of a server. A
 * connection counts from the moment it is accepted (so a peer still in its handshake
 * counts) until it closes.
 */
import type { Socket } from 'node:net';
import type { Peer } from '../identity/index.js';
import { makeDecision, type Decision } from '../policy/index.js';
import { Result } from '../policy/index.js';

/** @internal Live connections per uid, bounded by `max`. */
export class UidLimiter {
  readonly #counts = new Map<number, number>();
  constructor(readonly max: number) {}

  /** Live connections of a uid. */
  count(uid: number): number {
    return this.#counts.get(uid) ?? 0;
  }

  /**
   * Counts the socket against its peer's uid until it closes, or returns the denial when
   * the uid is at its limit.
   */
  admit(socket: Socket, peer: Peer): Decision | undefined {
    const uid = peer.uid;
    const current = this.count(uid);
    if (current >= this.max) return limitDecision(peer, this.max, current);
    this.#counts.set(uid, current + 1);
    socket.once('close', () => {
      const n = this.count(uid) - 1;
      if (n > 0) this.#counts.set(uid, n);
      else this.#counts.delete(uid);
    });
    return undefined;
  }
}

function limitDecision(peer: Peer, max: number, current: number): Decision {
  return makeDecision(peer, [
    {
      flag: Result.LIMIT,
      rule: 'maxConnectionsPerUid',
      expected: max,
      actual: current,
      message: `uid ${peer.uid} already holds ${current} connection${current === 1 ? '' : 's'} (maxConnectionsPerUid is ${max})`,
    },
  ]);
}
