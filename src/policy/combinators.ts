/** allOf / anyOf / not: rules made of rules, for policy files and the builder alike. */
import type { Peer } from '../identity/peer.js';
import { PASS, fail, isThenable, type Check, type Failure, type Rule, type RuleContext } from './rule.js';

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

export function record(rule: Rule, check: Check & { pass: false }): Failure {
  return { flag: check.flag ?? rule.flag, rule: rule.name, expected: rule.expected, actual: check.actual, message: check.message };
}

const flagsOf = (failures: readonly Failure[]) => failures.reduce((f, x) => f | x.flag, 0);

function combine(rules: readonly Rule[], done: (failures: Failure[]) => Check, peer: Peer, context: RuleContext) {
  const r = runRules(rules, peer, context);
  return isThenable(r) ? r.then(done) : done(r);
}

/** Every member must hold. */
export function allOf(rules: readonly Rule[]): Rule {
  return {
    name: 'allOf',
    flag: rules.reduce((f, r) => f | r.flag, 0),
    expected: rules.map(describeRule),
    async: rules.some((r) => r.async),
    check: (peer, context) =>
      combine(
        rules,
        (failures) => (failures.length === 0 ? PASS : fail(failures, failures.map((f) => f.message).join('; '), flagsOf(failures))),
        peer,
        context,
      ),
  };
}

/** At least one member must hold; the members are tried in order and stop at the first that holds. */
export function anyOf(rules: readonly Rule[]): Rule {
  return {
    name: 'anyOf',
    flag: rules.reduce((f, r) => f | r.flag, 0),
    expected: rules.map(describeRule),
    async: rules.some((r) => r.async),
    async check(peer, context) {
      const all: Failure[] = [];
      for (const rule of rules) {
        const r = await rule.check(peer, context);
        if (r.pass) return PASS;
        all.push(record(rule, r));
      }
      return fail(all, `none of the alternatives holds: ${all.map((f) => f.message).join(' | ')}`, flagsOf(all));
    },
  };
}

/** A synchronous anyOf, used when no member is async (so that applySync works). */
export function anyOfSync(rules: readonly Rule[]): Rule {
  if (rules.some((r) => r.async)) return anyOf(rules);
  const base = anyOf(rules);
  return {
    ...base,
    async: false,
    check(peer, context) {
      const all: Failure[] = [];
      for (const rule of rules) {
        const r = rule.check(peer, context) as Check;
        if (r.pass) return PASS;
        all.push(record(rule, r));
      }
      return fail(all, `none of the alternatives holds: ${all.map((f) => f.message).join(' | ')}`, flagsOf(all));
    },
  };
}

/** The member must not hold. */
export function not(rule: Rule): Rule {
  const invert = (r: Check): Check =>
    r.pass ? fail(describeRule(rule), `the peer matches ${JSON.stringify(describeRule(rule))}, which is excluded`) : PASS;
  return {
    name: 'not',
    flag: rule.flag,
    expected: { not: describeRule(rule) },
    async: rule.async,
    check(peer, context) {
      const r = rule.check(peer, context);
      return isThenable(r) ? r.then(invert) : invert(r);
    },
  };
}

/** A rule as data: `{ uid: 1000 }`, `{ anyOf: [...] }`. */
export function describeRule(rule: Rule): unknown {
  // A not rule's expected value already reads { not: ... }.
  if (rule.name === 'not') return rule.expected;
  return { [rule.name]: rule.expected };
}
