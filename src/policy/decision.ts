/** The Decision a verification returns: what was decided about a peer, and why. */
import type { Peer } from '../identity/index.js';
import type { Failure } from './rule.js';

/** The outcome of applying a policy to a connection. */
export interface Decision {
  /** OR of the flags of every failed rule; 0 = trusted. */
  result: number;
  /** `result === 0`. */
  allowed: boolean;
  /** The peer that was verified. */
  peer: Peer;
  /** One record per failed rule: what was expected and what was found. */
  failures: Failure[];
  /**
   * The attributes of the live process the rules read (program, cgroup, container, ...),
   * as they were while the rules ran. `peer.program` and the like read the process again.
   */
  attributes: Readonly<Record<string, unknown>>;
}

/**
 * @internal The one place a Decision is made, also for a server's connection limit (whose
 * denial the server publishes itself, as its own).
 */
export function makeDecision(peer: Peer, failures: Failure[]): Decision {
  let result = 0;
  for (const f of failures) result |= f.flag;
  return { result, allowed: result === 0, peer, failures, attributes: peer.seen };
}
