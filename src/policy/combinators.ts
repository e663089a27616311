/**
 * allOf / anyOf / not: rules made of rules, for policy files and the builder alike. They
 * are three-valued: a member that cannot be decided (unknown) never turns into a pass.
 * `not(unknown)` is unknown; `anyOf` passes only on a member that truly passed; `allOf`
 * is unknown when a member is unknown and none truly failed.
 */
import type { Peer } from '../identity/index.js';
import { PASS, fail, isThenable, needsOf, unknown, type Check, type Failure, type Rule, type RuleContext } from './rule.js';

/** Runs rules in order; returns their failures (sync when every rule answered sync). */
export function runRules(rules: readonly Rule[], peer: Peer, context: RuleContext): Failure[] | Promise<Failure[]> {
  const failures: Failure[] = [];
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i]!;
    const r = rule.check(peer, context);
    if (isThenable(r)) return finishAsync(rules, i, r, failures, peer, context);
    if (!r.pass) failures.push(record(rule, r));
  }
  return failures;
}

async function finishAsync(
  rules: readonly Rule[],
  index: number,
  pending: Promise<Check>,
  failures: Failure[],
  peer: Peer,
  context: RuleContext,
): Promise<Failure[]> {
  const first = await pending;
  if (!first.pass) failures.push(record(rules[index]!, first));
  for (let i = index + 1; i < rules.length; i++) {
    const rule = rules[i]!;
    const r = await rule.check(peer, context);
    if (!r.pass) failures.push(record(rule, r));
  }
  return failures;
}

/** The one place a failure record is made. */
export function record(rule: Rule, check: Check & { pass: false }): Failure {
  const f: Failure = {
    flag: check.flag ?? rule.flag,
    rule: rule.name,
    expected: rule.expected,
    actual: check.actual,
    message: check.message,
  };
  if (check.unknown) f.unknown = true;
  return f;
}

const flagsOf = (failures: readonly Failure[]) => failures.reduce((f, x) => f | x.flag, 0);
const messages = (failures: readonly Failure[], sep: string) => failures.map((f) => f.message).join(sep);

function combine(rules: readonly Rule[], done: (failures: Failure[]) => Check, peer: Peer, context: RuleContext) {
  const r = runRules(rules, peer, context);
  return isThenable(r) ? r.then(done) : done(r);
}

/** allOf's verdict: a true failure decides; else any unknown member makes it unknown. */
function allOfVerdict(failures: Failure[]): Check {
  if (failures.length === 0) return PASS;
  const flag = flagsOf(failures);
  if (failures.some((f) => !f.unknown)) return fail(failures, messages(failures, '; '), flag);
  return unknown(messages(failures, '; ').replace(/^unknown: /, ''), failures, flag);
}

/** Every member must hold. */
export function allOf(rules: readonly Rule[]): Rule {
  return {
    name: 'allOf',
    flag: rules.reduce((f, r) => f | r.flag, 0),
    expected: rules.map(describeRule),
    async: rules.some((r) => r.async),
    ...withNeeds(rules),
    check: (peer, context) => combine(rules, allOfVerdict, peer, context),
  };
}

/** anyOf's verdict once no member passed: unknown if any member was unknown. */
function anyOfVerdict(all: Failure[]): Check {
  const flag = flagsOf(all);
  if (all.some((f) => f.unknown)) return unknown(`no alternative is known to hold: ${messages(all, ' | ')}`, all, flag);
  return fail(all, `none of the alternatives holds: ${messages(all, ' | ')}`, flag);
}

/**
 * At least one member must hold; the members are tried in order and stop at the first
 * that holds. Synchronous while every member answers synchronously (so applySync works).
 */
export function anyOf(rules: readonly Rule[]): Rule {
  const next = (all: Failure[], i: number, peer: Peer, context: RuleContext): Check | Promise<Check> => {
    for (; i < rules.length; i++) {
      const rule = rules[i]!;
      const r = rule.check(peer, context);
      if (isThenable(r)) {
        const at = i;
        return r.then((c) => (c.pass ? PASS : (all.push(record(rule, c)), next(all, at + 1, peer, context))));
      }
      if (r.pass) return PASS;
      all.push(record(rule, r));
    }
    return anyOfVerdict(all);
  };
  return {
    name: 'anyOf',
    flag: rules.reduce((f, r) => f | r.flag, 0),
    expected: rules.map(describeRule),
    async: rules.some((r) => r.async),
    ...withNeeds(rules),
    check: (peer, context) => next([], 0, peer, context),
  };
}

/** The member must not hold; a member that cannot be decided leaves `not` undecided too. */
export function not(rule: Rule): Rule {
  const invert = (r: Check): Check => {
    if (r.pass) return fail(describeRule(rule), `the peer matches ${JSON.stringify(describeRule(rule))}, which is excluded`);
    if (r.unknown) return unknown(r.message, r.actual);
    return PASS;
  };
  return {
    name: 'not',
    flag: rule.flag,
    expected: { not: describeRule(rule) },
    async: rule.async,
    ...withNeeds([rule]),
    check(peer, context) {
      const r = rule.check(peer, context);
      return isThenable(r) ? r.then(invert) : invert(r);
    },
  };
}

/** A nested policy's own context (its strict mode) for its rules, whatever the outer policy says. */
export function withContext(rule: Rule, context: RuleContext): Rule {
  return {
    name: rule.name,
    flag: rule.flag,
    expected: rule.expected,
    ...(rule.async !== undefined && { async: rule.async }),
    ...withNeeds([rule], context.strict),
    check: (peer, outer) => rule.check(peer, outer.strict ? outer : context),
  };
}

/** A rule as data: `{ uid: 1000 }`, `{ anyOf: [...] }`. */
export function describeRule(rule: Rule): unknown {
  // A not rule's expected value already reads { not: ... }.
  if (rule.name === 'not') return rule.expected;
  return { [rule.name]: rule.expected };
}

/** The `needs` of a rule made of `rules` (nothing when they have none); `strict`: its members run strict. */
function withNeeds(rules: readonly Rule[], strict = false): { needs?: NonNullable<Rule['needs']> } {
  const needs = needsOf(rules, strict);
  return needs === undefined ? {} : { needs };
}
