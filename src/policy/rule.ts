/**
 * Rules are small values: a name, a flag, what is expected, and a check. The builder and
 * policy files make the same objects; allOf / anyOf / not combine them.
 */
import type { Peer } from '../identity/index.js';
import type { AsyncAttributeName } from '../identity/index.js';

/**
 * What a rule's check found: it holds, it does not, or (`unknown: true`) it cannot be
 * told because the attribute it needs could not be read. Unknown denies like a failure,
 * and the combinators keep it unknown: `not` of unknown is unknown, never a pass.
 */
export type Check = { pass: true } | { pass: false; actual: unknown; message: string; flag?: number; unknown?: true };

/** Context a rule check gets besides the peer. */
export interface RuleContext {
  /** Exec-after-connect defence: every holder of the peer's socket must pass the rules about what runs. */
  strict: boolean;
}

/** The asynchronous attributes a rule reads, which the evaluator reads before the rules run. */
export interface RuleNeeds {
  /** Read in every evaluation. */
  readonly always: readonly AsyncAttributeName[];
  /** Read when the rule runs in strict mode (the holder scan). */
  readonly strict: readonly AsyncAttributeName[];
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
  /** The asynchronous attributes its checks read; none when absent. */
  readonly needs?: RuleNeeds;
  check(peer: Peer, context: RuleContext): Check | Promise<Check>;
}

/** One failed rule in a Decision. */
export interface Failure {
  flag: number;
  rule: string;
  expected: unknown;
  actual: unknown;
  message: string;
  /** Set when the rule could not be decided (its attribute was unreadable); the message then begins `unknown: `. */
  unknown?: true;
}

/** The one passing check result (frozen, shared). */
export const PASS: Check = Object.freeze({ pass: true });

/** A failing check result: what was found and why it fails (`flag` overrides the rule's). */
export function fail(actual: unknown, message: string, flag?: number): Check {
  return flag === undefined ? { pass: false, actual, message } : { pass: false, actual, message, flag };
}

/** An undecidable check: the attribute could not be read (`why`); the message reads `unknown: <why>`. */
export function unknown(why: string, actual: unknown = undefined, flag?: number): Check {
  const message = why.startsWith('unknown: ') ? why : `unknown: ${why}`;
  return flag === undefined ? { pass: false, actual, message, unknown: true } : { pass: false, actual, message, flag, unknown: true };
}

/** A failed read as a check: unknown, or a failure when the attribute is known to be absent. */
export function missing(r: { reason: string; absent?: true }, what: string, actual: unknown = undefined): Check {
  return r.absent ? fail(actual, `${what}: ${r.reason}`) : unknown(`${what}: ${r.reason}`);
}

/** True for a promise or any object with a `then` method. */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** A placeholder context for rules checked outside a policy. */
export const DEFAULT_CONTEXT: RuleContext = Object.freeze({ strict: false });

/** The needs of several rules together (undefined when none has any). */
export function needsOf(rules: readonly Rule[], strict = false): RuleNeeds | undefined {
  const always = new Set<AsyncAttributeName>();
  const onStrict = new Set<AsyncAttributeName>();
  for (const r of rules) {
    for (const n of r.needs?.always ?? []) always.add(n);
    for (const n of r.needs?.strict ?? []) (strict ? always : onStrict).add(n);
  }
  return always.size === 0 && onStrict.size === 0 ? undefined : { always: [...always], strict: [...onStrict] };
}
