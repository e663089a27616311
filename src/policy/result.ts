import { TABLE_FLAGS } from './table.js';

/**
 * Result flags: one bit per rule, the same values as the C library's
 * SECPOLICY_RESULT_* so that a port from C keeps its checks. A Decision's `result` is
 * the OR of the flags of every failed rule; 0 means trusted.
 */
export const Result = Object.freeze({
  PERMS: 1,
  PROGRAM: 2,
  UID: 4,
  GID: 8,
  USER: 16,
  GROUP: 32,
  CALLBACK: 64,
  CHALLENGE: 128,
  CREDS: 256,
  MEMBER_OF: 512,
  /** programDigest(): SHA-256 of the peer's executable. */
  PROGRAM_DIGEST: 1024,
  /** container(): the peer runs in a matching container. */
  CONTAINER: 2048,
  /** host(): the peer shares our pid and mount namespaces. */
  HOST: 4096,
  /** sameNamespace(): the peer shares the listed namespaces with us. */
  NAMESPACE: 8192,
  /** A connection limit of the server (e.g. per uid) was reached. */
  LIMIT: 16384,
  /** The rules of the rule table (unit, slice, userUnit, noNewPrivs): 32768 and up. */
  ...TABLE_FLAGS,
} as const);

/** The name of any Result flag. */
export type ResultFlag = keyof typeof Result;

/** Names of the flags set in a result bitmask, e.g. `['UID', 'PROGRAM']`. */
export function resultNames(result: number): ResultFlag[] {
  return (Object.keys(Result) as ResultFlag[]).filter((k) => (result & Result[k]) !== 0);
}
