import { TABLE_FLAGS, type TableFlags } from './table.js';

/** The flags that are not a rule of the rule table (every rule's flag comes from its declaration there). */
const FLAGS = {
  /** A challenge exchange (challengeSend, sharedSecret) failed. */
  CHALLENGE: 128,
  /** A connection limit of the server (e.g. per uid) was reached. */
  LIMIT: 16384,
} as const;

/**
 * Result flags: one bit per rule, the same values as the C library's
 * SECPOLICY_RESULT_* so that a port from C keeps its checks. A Decision's `result` is
 * the OR of the flags of every failed rule; 0 means trusted. Rules the C library does not
 * have take the free bits from 32768 up.
 */
export const Result: Readonly<typeof FLAGS & TableFlags> = Object.freeze(
  // In bit order, which is the C library's order for its flags.
  Object.fromEntries(Object.entries({ ...FLAGS, ...TABLE_FLAGS }).sort((a, b) => a[1] - b[1])) as typeof FLAGS & TableFlags,
);

/** The name of any Result flag. */
export type ResultFlag = keyof typeof Result;

/** Names of the flags set in a result bitmask, e.g. `['UID', 'PROGRAM']`. */
export function resultNames(result: number): ResultFlag[] {
  return (Object.keys(Result) as ResultFlag[]).filter((k) => (result & Result[k]) !== 0);
}
