/**
 * The rule table: each rule declared once — its name (the builder method and the
 * policy-file key), its Result flag, the peer attribute it needs, how its arguments are
 * validated and compiled, how a file value becomes those arguments, and the check. From
 * this one declaration come the Policy builder method (and its type), the policy-file
 * key and its validation, the `Result` flag, the failure record and the docs table.
 *
 * A check sees only the attribute's value and the compiled argument, so it can be tested
 * with plain values; an attribute that cannot be read makes the rule unknown before the
 * check runs.
 */
import { invalidArg } from '../errors.js';
import { PASS, fail, missing, type Check, type Rule } from './rule.js';
import * as v from './validate.js';

/** What a policy-file value is turned into: the builder's arguments, or a message for the file's error. */
export type FileArgs = { ok: true; args: unknown[] } | { ok: false; message: string };

/** One rule of the table. */
export interface RuleDef<A extends unknown[], C, V, N extends string = string, F extends number = number> {
  /** Name of the flag in `Result`; its value is `flag`, fixed forever once released. */
  flagName: N;
  flag: F;
  /** The peer attribute the check compares (read through the pinned Peer). */
  attribute: string;
  /** What the attribute is called in failure messages. */
  what: string;
  /** Validates the builder's arguments (ERR_SECPOLICY_INVALID_ARG naming the argument) and compiles them into what the check compares. */
  compile(...args: A): C;
  /** A compiled argument as data, for failure records and `describeRule`. */
  expected(compiled: C): unknown;
  /** The check on the attribute's value. */
  check(value: V, compiled: C): Check;
  /** The policy-file value as builder arguments. */
  file(value: unknown): FileArgs;
  /** For the docs table: the builder's signature, the file's form, and what it checks. */
  signature: string;
  fileForm: string;
  doc: string;
}

const define = <A extends unknown[], C, V, const N extends string, const F extends number>(
  def: RuleDef<A, C, V, N, F>,
): RuleDef<A, C, V, N, F> => Object.freeze(def);

/** A rule's `expected` for a list: the one value, or the list ("any of"). */
const oneOrList = (list: readonly unknown[]) => (list.length === 1 ? list[0] : list);
const show = (list: readonly unknown[]) => (list.length === 1 ? String(list[0]) : `one of ${list.join(', ')}`);
const asArgs = (value: unknown): FileArgs => ({ ok: true, args: [value] });

const UNIT_NAME = /^[^/\s]+\.(?:service|scope|socket|mount|swap)$/;
const SLICE_NAME = /^[^/\s]+\.slice$/;

function unitNames(name: string, value: unknown, pattern: RegExp, expected: string): ReadonlySet<string> {
  return new Set(v.oneOrMany(name, value, (x): x is string => v.isName(x) && pattern.test(x), expected));
}

/** What userUnit() matches: the user manager's uid, and optionally the user unit. */
export interface UserUnitMatch {
  uid: number | number[];
  unit?: string | string[];
}

/** A set of ids or names as the check compares them, and the list for failure records. */
const idSet = (name: string, value: unknown) => new Set(v.ids(name, value));
const nameSet = (name: string, value: unknown) => new Set(v.names(name, value));
const isNot = (what: string, actual: unknown, c: ReadonlySet<unknown>) => fail(actual, `${what} ${String(actual)} is not ${show([...c])}`);

/** The rules declared in the table, by name (builder method and policy-file key). */
export const RULE_DEFS = Object.freeze({
  /** The peer's uid (SO_PEERCRED) is one of these. An unmapped uid (shown as 65534) is unknown. */
  uid: define({
    flagName: 'UID',
    flag: 4,
    attribute: 'uid',
    what: 'peer uid',
    compile: (id: number | number[]) => idSet('uid', id),
    expected: (c) => oneOrList([...c]),
    check: (uid: number, c) => (c.has(uid) ? PASS : isNot('peer uid', uid, c)),
    file: asArgs,
    signature: '`uid(id \\| id[])`',
    fileForm: '`uid: 0` or a list',
    doc: 'peer uid (SO_PEERCRED)',
  }),
  /** The peer's primary gid (SO_PEERCRED) is one of these. */
  gid: define({
    flagName: 'GID',
    flag: 8,
    attribute: 'gid',
    what: 'peer gid',
    compile: (id: number | number[]) => idSet('gid', id),
    expected: (c) => oneOrList([...c]),
    check: (gid: number, c) => (c.has(gid) ? PASS : isNot('peer gid', gid, c)),
    file: asArgs,
    signature: '`gid(id \\| id[])`',
    fileForm: '`gid: 0` or a list',
    doc: 'peer primary gid (SO_PEERCRED)',
  }),
  /** The NSS name of the peer's uid is one of these. */
  user: define({
    flagName: 'USER',
    flag: 16,
    attribute: 'user',
    what: 'peer user',
    compile: (name: string | string[]) => nameSet('user', name),
    expected: (c) => oneOrList([...c]),
    check: (user: string, c) => (c.has(user) ? PASS : isNot('peer user', user, c)),
    file: asArgs,
    signature: '`user(name \\| name[])`',
    fileForm: '`user: www-data` or a list',
    doc: 'NSS name of the peer uid',
  }),
  /** The NSS name of the peer's primary gid is one of these. */
  group: define({
    flagName: 'GROUP',
    flag: 32,
    attribute: 'group',
    what: 'peer group',
    compile: (name: string | string[]) => nameSet('group', name),
    expected: (c) => oneOrList([...c]),
    check: (group: string, c) => (c.has(group) ? PASS : isNot('peer group', group, c)),
    file: asArgs,
    signature: '`group(name \\| name[])`',
    fileForm: '`group: app` or a list',
    doc: 'NSS name of the peer primary gid',
  }),
  /** The peer runs in one of these systemd system units (e.g. `nginx.service`), read from its cgroup. */
  unit: define({
    flagName: 'UNIT',
    flag: 32768,
    attribute: 'unit',
    what: 'peer systemd unit',
    compile: (name: string | string[]) => unitNames('unit', name, UNIT_NAME, 'a systemd unit name such as nginx.service'),
    expected: (c) => oneOrList([...c]),
    check: (unit: string | null, c) =>
      unit === null
        ? fail(null, 'peer runs in no systemd system unit')
        : c.has(unit)
          ? PASS
          : fail(unit, `peer runs in ${unit}, not ${show([...c])}`),
    file: asArgs,
    signature: '`unit(name \\| name[])`',
    fileForm: '`unit: nginx.service` or a list',
    doc: 'systemd system unit of the peer (cgroup); never a path under `user@UID.service` or a tree a non-root uid can write',
  }),
  /** The peer's unit sits in one of these systemd slices (e.g. `system.slice`). */
  slice: define({
    flagName: 'SLICE',
    flag: 65536,
    attribute: 'slice',
    what: 'peer systemd slice',
    compile: (name: string | string[]) => unitNames('slice', name, SLICE_NAME, 'a systemd slice name such as system.slice'),
    expected: (c) => oneOrList([...c]),
    check: (slice: string | null, c) =>
      slice === null
        ? fail(null, 'peer is in no systemd slice')
        : c.has(slice)
          ? PASS
          : fail(slice, `peer is in ${slice}, not ${show([...c])}`),
    file: asArgs,
    signature: '`slice(name \\| name[])`',
    fileForm: '`slice: system.slice` or a list',
    doc: "innermost systemd slice above the peer's unit",
  }),
  /**
   * The peer runs under the user manager (`user@UID.service`) of one of these uids, and, if
   * given, in one of these user units. The unit name is that user's own choice: pair it
   * with the uid, never trust it alone.
   */
  userUnit: define({
    flagName: 'USER_UNIT',
    flag: 131072,
    attribute: 'userUnit',
    what: 'peer user unit',
    compile: (match: UserUnitMatch) => {
      const o = v.options<{ uid: unknown; unit: unknown }>('userUnit', match);
      for (const key of Object.keys(o)) {
        if (key !== 'uid' && key !== 'unit') throw invalidArg(`userUnit.${key}`, 'not present (known keys: uid, unit)', o[key as 'uid']);
      }
      const uids = new Set(v.ids('userUnit.uid', o.uid));
      const units =
        o.unit === undefined ? undefined : unitNames('userUnit.unit', o.unit, UNIT_NAME, 'a systemd unit name such as app.service');
      return { uids, units };
    },
    expected: (c) => ({ uid: oneOrList([...c.uids]), ...(c.units && { unit: oneOrList([...c.units]) }) }),
    check: (u: { uid: number; unit: string | null } | null, c) => {
      if (u === null) return fail(null, 'peer runs under no user manager (user@UID.service)');
      if (!c.uids.has(u.uid)) return fail(u, `peer runs under the user manager of uid ${u.uid}, not ${show([...c.uids])}`);
      if (c.units && (u.unit === null || !c.units.has(u.unit)))
        return fail(u, `peer runs in user unit ${u.unit ?? '(none)'} of uid ${u.uid}, not ${show([...c.units])}`);
      return PASS;
    },
    file: asArgs,
    signature: '`userUnit({ uid, unit? })`',
    fileForm: '`userUnit: { uid: 1000, unit: app.service }`',
    doc: 'uid of the user manager (`user@UID.service`) the peer runs under, and its user unit (named by that user)',
  }),
  /** The peer runs with no_new_privs: exec can gain it no privileges (setuid, file capabilities). */
  noNewPrivs: define({
    flagName: 'NO_NEW_PRIVS',
    flag: 262144,
    attribute: 'noNewPrivs',
    what: 'peer no_new_privs',
    compile: () => true as const,
    expected: () => true,
    check: (on: boolean) => (on ? PASS : fail(false, 'peer runs without no_new_privs')),
    file: (value) =>
      value === true
        ? { ok: true, args: [] }
        : { ok: false, message: `must be true; for "without no_new_privs" write not: { noNewPrivs: true }` },
    signature: '`noNewPrivs()`',
    fileForm: '`noNewPrivs: true`',
    doc: '`NoNewPrivs:` of /proc/PID/status is 1',
  }),
});

/** The names of the table's rules. */
export type TableRuleName = keyof typeof RULE_DEFS;

type AnyDef = RuleDef<unknown[], unknown, unknown>;

/** The builder arguments of a table rule. */
export type TableRuleArgs<K extends TableRuleName> =
  (typeof RULE_DEFS)[K] extends RuleDef<infer A, infer _C, infer _V, string, number> ? A : never;

/** The Policy builder methods the table declares: each takes the rule's arguments and returns the policy. */
export type TableRuleMethods<P> = { [K in TableRuleName]: (...args: TableRuleArgs<K>) => P };

/** The `Result` flags the table declares. */
export type TableFlags = { readonly [K in TableRuleName as (typeof RULE_DEFS)[K]['flagName']]: (typeof RULE_DEFS)[K]['flag'] };

/** `Result` entries of the table's rules. */
export const TABLE_FLAGS = Object.freeze(
  Object.fromEntries(Object.values(RULE_DEFS).map((d) => [d.flagName, d.flag])) as unknown as TableFlags,
);

/** A Rule value from a table rule and its builder arguments (validated and compiled here, once). */
export function tableRule(name: TableRuleName, args: readonly unknown[]): Rule {
  const def = RULE_DEFS[name] as unknown as AnyDef;
  const compiled = def.compile(...args);
  const { attribute, what } = def;
  return {
    name,
    flag: def.flag,
    expected: def.expected(compiled),
    check(peer) {
      const r = peer.attempt(attribute);
      return r.ok ? def.check(r.value, compiled) : missing(r, what);
    },
  };
}

/** The Markdown table of the table's rules, as docs/attributes.md carries it (a test keeps them equal). */
export function rulesDocTable(): string {
  const rows = Object.entries(RULE_DEFS).map(
    ([, d]) => `| ${d.signature} | ${d.fileForm} | \`Result.${d.flagName}\` = ${d.flag} | \`${d.attribute}\` | ${d.doc} |`,
  );
  return ['| builder | policy file | flag | attribute | checks |', '|---|---|---|---|---|', ...rows].join('\n');
}
