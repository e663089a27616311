/**
 * Rules are small values: a name, a flag, what is expected, and a check. The builder and
 * policy files make the same objects; allOf / anyOf / not combine them.
 */
import type { Peer } from '../identity/peer.js';

/** What a rule's check found. */
export type Check = { pass: true } | { pass: false; actual: unknown; message: string; flag?: number };

/** Context a rule check gets besides the peer. */
export interface RuleContext {
  /** Exec-after-connect defence: every holder of the peer's socket must pass the program rule. */
  strict: boolean;
}

/** A rule of a policy. */
export interface Rule {
  /** The builder method (or policy-file key) that made it: `uid`, `program`, `anyOf`, ... */
  readonly name: string;
  /** Result flag set when the rule fails (combinators set their failed members' flags). */
  readonly flag: number;
  /** What the rule expects, as data, for failure records. */
  readonly expected: unknown;
  /** True when check may return a promise (callbacks). */
  readonly async?: boolean;
  check(peer: Peer, context: RuleContext): Check | Promise<Check>;
}

/** One failed rule in a Decision. */
export interface Failure {
  flag: number;
  rule: string;
  expected: unknown;
  actual: unknown;
  message: string;
}

/** The one passing check result (frozen, shared). */
export const PASS: Check = Object.freeze({ pass: true });

/** A failing check result: what was found and why it fails (`flag` overrides the rule's). */
export function fail(actual: unknown, message: string, flag?: number): Check {
  return flag === undefined ? { pass: false, actual, message } : { pass: false, actual, message, flag };
}

/** True for a promise or any object with a `then` method. */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}
