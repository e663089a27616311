/**
 * The rule table: each rule declared once — its name (the builder method and the
 * policy-file key), its Result flag, the registry attribute it reads (a key of the
 * attribute registry, so the check's value type is the one declared there), whether
 * strict mode applies it to every holder of the socket, how its arguments are validated
 * and compiled, how a file value becomes those arguments, and the check. From
 * this one declaration come the Policy builder method (and its type), the policy-file
 * key and its validation, the `Result` flag, the failure record and the docs table.
 *
 * A check sees only the attribute's value and the compiled argument, so it can be tested
 * with plain values; an attribute that cannot be read makes the rule unknown before the
 * check runs.
 */
import { invalidArg } from '../errors.js';
import type { Peer } from '../identity/index.js';
import type { Container } from '../identity/index.js';
import { NAMESPACE_KINDS, ownNamespaces, type NamespaceKind } from '../identity/index.js';
import type { Outcome } from '../identity/index.js';
import {
  ATTRIBUTES,
  CAPABILITY_NAMES,
  type AsyncAttributeName,
  type AttributeDef,
  type AttributeName,
  type AttributeTypes,
} from '../identity/index.js';
import { idUnmapped } from '../identity/index.js';
import { formatMode, gidOf, type FileStat } from '../native/index.js';
import { programFiles, programMatches } from './program-file.js';
import { PASS, fail, isThenable, missing, unknown, type Check, type Rule, type RuleContext, type RuleNeeds } from './rule.js';
import { strictHoldersCheck, type HolderTest } from './strict.js';
import * as v from '../validate.js';

/** What a policy-file value is turned into: the builder's arguments, or a message for the file's error. */
export type FileArgs = { ok: true; args: unknown[] } | { ok: false; message: string };

/** The source text of a scalar of the file value (`sub` is a path inside it), when known: `"0660"` for the YAML number 0660. */
export type FileSource = (sub?: ReadonlyArray<string | number>) => string | undefined;

/** What compile() is called on: the key (rule name or alias) the rule is made under, for the argument's name in errors. */
export interface CompileContext {
  key: string;
}

/** What a check may consult besides the attribute: the peer (for other attributes, read only when needed) and the policy's context. */
export interface CheckEnv {
  peer: Peer;
  context: RuleContext;
}

/** One rule of the table. */
export interface RuleDef<
  A extends unknown[],
  C,
  V,
  N extends string = string,
  F extends number = number,
  R extends Check | Promise<Check> = Check | Promise<Check>,
> {
  /** Name of the flag in `Result`; its value is `flag`, fixed forever once released. */
  flagName: N;
  flag: F;
  /** The registry attribute the check compares (read through the pinned Peer); null for a rule that reads the peer itself (callback). */
  attribute: AttributeName | null;
  /**
   * The attributes read, when the check needs several (their values reach the check as a
   * list, in this order); by default `[attribute]`.
   */
  reads?(compiled: C): readonly AttributeName[];
  /** A rule about what runs: in strict mode every process holding the peer end of the socket must pass it too. */
  strict?: true;
  /** The check gets the attribute's Outcome, not its value: it decides itself what an unreadable attribute means. */
  outcome?: true;
  /** What the attribute is called in failure messages (per attribute, for a rule reading several). */
  what: string | ((attribute: AttributeName) => string);
  /** Other builder methods and file keys for the same rule (same flag, and one replaces the other). */
  aliases?: readonly string[];
  /** True when the check may return a promise. */
  async?: true;
  /** Validates the builder's arguments (ERR_SECPOLICY_INVALID_ARG naming the argument) and compiles them into what the check compares. */
  compile(...args: A): C;
  /** A compiled argument as data, for failure records and `describeRule`. */
  expected(compiled: C): unknown;
  /** The check on the attribute's value; `env` only for what the value alone cannot tell (strict mode, a message). */
  check(value: V, compiled: C, env?: CheckEnv): R;
  /** The policy-file value as builder arguments; `source` gives the text as written. */
  file?(value: unknown, source: FileSource): FileArgs;
  /** Why a file cannot hold the rule, for one that has no file form (code). */
  notInFiles?: string;
  /** For the docs table: the builder's signature, the file's form, and what it checks. */
  signature: string;
  fileForm: string;
  doc: string;
}

/** The value a check of attribute `K` gets: the registry's type for it (nothing for a rule that reads no attribute). */
type ValueOf<K> = K extends AttributeName ? AttributeTypes[K] : undefined;

/** A rule over one attribute: the check's value type is the registry's type of that attribute. */
const define = <
  A extends unknown[],
  C,
  const K extends AttributeName | null,
  const N extends string,
  const F extends number,
  R extends Check | Promise<Check> = Check,
>(
  def: RuleDef<A, C, ValueOf<K>, N, F, R> & { attribute: K; reads?: never },
): RuleDef<A, C, ValueOf<K>, N, F, R> => Object.freeze(def);

/** A rule over several attributes (`reads`): the check gets their values as a list, typed by the rule. */
const defineReads = <A extends unknown[], C, V, const N extends string, const F extends number>(
  def: RuleDef<A, C, V, N, F, Check> & { reads(compiled: C): readonly AttributeName[] },
): RuleDef<A, C, V, N, F, Check> => Object.freeze(def);

/** A rule's `expected` for a list: the one value, or the list ("any of"). */
const oneOrList = (list: readonly unknown[]) => (list.length === 1 ? list[0] : list);
const show = (list: readonly unknown[]) => (list.length === 1 ? String(list[0]) : `one of ${list.join(', ')}`);
const asArgs = (value: unknown): FileArgs => ({ ok: true, args: [value] });

/**
 * `perms` in a file: a number (YAML written like `0660`, which YAML 1.2 reads as decimal
 * 660, means chmod's octal) or an octal string.
 */
function fileMode(value: unknown, source: FileSource): FileArgs {
  if (typeof value === 'number') {
    const src = source();
    return { ok: true, args: [src !== undefined && /^0[0-7]+$/.test(src) ? Number.parseInt(src, 8) : value] };
  }
  if (typeof value === 'string' && /^(0o?)?[0-7]{1,4}$/i.test(value))
    return { ok: true, args: [Number.parseInt(value.replace(/^0o/i, ''), 8)] };
  return { ok: false, message: 'must be a mode as a number or an octal string such as "0660"' };
}

/** User code deciding on a peer; only `true` (or a promise of it) passes. */
export type PeerCallback = (peer: Peer) => boolean | Promise<boolean>;

const verdict = (r: unknown): Check => (r === true ? PASS : fail(r, `callback returned ${String(r)}`));
const thrown = (e: unknown): Check => fail(undefined, `callback threw: ${(e as Error)?.message ?? String(e)}`);

const HEX64 = /^[0-9a-fA-F]{64}$/;

/**
 * Hex written without quotes can read as a number (`0123...` with only digits, or `1e5...`
 * as a float); a digest means the characters as written.
 */
function asWritten(value: unknown, source: FileSource, at: Array<string | number>): unknown {
  if (Array.isArray(value)) return value.map((x, i) => asWritten(x, source, [...at, i]));
  return typeof value === 'number' ? (source(at) ?? value) : value;
}

/** What container() matches: any container (`true`), or one by id, id prefix and/or runtime. */
export type ContainerMatch = true | { id?: string | string[]; idPrefix?: string; runtime?: string | string[] };

function containerMatch(value: unknown): { id?: readonly string[]; idPrefix?: string; runtime?: readonly string[] } {
  if (value === true || value === undefined) return {};
  const o = v.options<{ id: unknown; idPrefix: unknown; runtime: unknown }>('container', value);
  for (const key of Object.keys(o)) {
    if (key !== 'id' && key !== 'idPrefix' && key !== 'runtime')
      throw invalidArg(`container.${key}`, 'not present (known keys: id, idPrefix, runtime)', o[key as 'id']);
  }
  const out: { id?: readonly string[]; idPrefix?: string; runtime?: readonly string[] } = {};
  if (o.id !== undefined) out.id = v.names('container.id', o.id);
  if (o.idPrefix !== undefined) {
    if (!v.isName(o.idPrefix)) throw invalidArg('container.idPrefix', 'a non-empty string', o.idPrefix);
    out.idPrefix = o.idPrefix;
  }
  if (o.runtime !== undefined) out.runtime = v.names('container.runtime', o.runtime).map((r) => r.toLowerCase());
  return out;
}

const HOST_KINDS: readonly NamespaceKind[] = Object.freeze(['pid', 'mnt']);
const HOST_READS: readonly AttributeName[] = Object.freeze(HOST_KINDS.map((k) => `ns:${k}` as const));
const namespaceWhat = (attribute: AttributeName) => `peer ${attribute.slice(3)} namespace`;

/** Passes when the peer's namespaces (`theirs`, in the order of `kinds`) are ours. */
function sameNamespaces(kinds: readonly NamespaceKind[], theirs: readonly number[]): Check {
  const ours = ownNamespaces();
  if (typeof ours === 'string') return unknown(`our own namespaces: ${ours}`);
  const differ = kinds.flatMap((k, i) => (theirs[i] === ours[k] ? [] : [i]));
  if (differ.length === 0) return PASS;
  const names = differ.map((i) => kinds[i]!);
  const actual = Object.fromEntries(differ.map((i) => [kinds[i], theirs[i]]));
  return fail(
    actual,
    `peer is in other ${names.join(', ')} namespace${names.length > 1 ? 's' : ''} than ours (${differ.map((i) => `${kinds[i]}:[${theirs[i]}] vs [${ours[kinds[i]!]}]`).join(', ')})`,
  );
}

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
  /** The socket file the connection came through has exactly these mode bits; never passes for abstract or unnamed sockets. */
  perms: define({
    flagName: 'PERMS',
    flag: 1,
    attribute: 'perms',
    what: 'socket file permissions',
    compile: (mode: number) => v.mode('perms', mode),
    expected: (mode) => mode,
    check: (actual: number, mode) =>
      actual === mode ? PASS : fail(actual, `socket file mode ${formatMode(actual)} is not ${formatMode(mode)}`),
    file: fileMode,
    signature: '`perms(mode)`',
    fileForm: '`perms: 0660` or `"0660"`',
    doc: 'mode bits (& 0o777) of the socket file the connection came through',
  }),
  /**
   * The peer's executable is one of these files, compared by device and inode (not by path
   * string, which a container can fake). In strict mode every holder of the peer end must be.
   */
  program: define({
    flagName: 'PROGRAM',
    flag: 2,
    attribute: 'programStat',
    what: 'peer program',
    strict: true,
    compile: (path: string | string[]) => programFiles(v.absolutePaths('program', path)),
    expected: (files) => oneOrList(files.paths),
    check: (exe: FileStat, files, env) => {
      if (!programMatches(exe, files)) {
        // Without env: a holder in strict mode, named by the caller.
        if (env === undefined)
          return fail(undefined, `its executable is not the file at ${show(files.paths)} (compared by device and inode)`);
        const shown = env.peer.program ?? '(unreadable)';
        return fail(shown, `peer program ${shown} is not the file at ${show(files.paths)} (compared by device and inode)`);
      }
      return PASS;
    },
    file: asArgs,
    signature: '`program(path \\| path[])`',
    fileForm: '`program: /usr/bin/socat` or a list',
    doc: 'executable of the peer (device and inode of the file at the path)',
  }),
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
  /** User code decides; anything but `true` (a throw, a rejection, a falsy value) fails. */
  callback: define({
    flagName: 'CALLBACK',
    flag: 64,
    attribute: null,
    what: 'callback',
    async: true,
    compile: (fn: PeerCallback) => v.func<PeerCallback>('callback', fn),
    expected: () => true,
    check: (_: undefined, fn, env): Check | Promise<Check> => {
      let r: unknown;
      try {
        r = fn(env!.peer);
      } catch (e) {
        return thrown(e);
      }
      return isThenable(r) ? Promise.resolve(r).then(verdict, thrown) : verdict(r);
    },
    notInFiles: 'a callback is code and cannot be written in a policy file: add it with Policy.callback() after loading',
    signature: '`callback(fn)`',
    fileForm: '(code only)',
    doc: 'user code: `fn(peer)` returns `true` or a promise of it; a throw or rejection fails',
  }),
  /** The peer's SO_PEERSEC security label is exactly this string (alias: `label`). */
  creds: define({
    flagName: 'CREDS',
    flag: 256,
    attribute: 'label',
    what: 'peer label',
    aliases: ['label'],
    compile(this: Partial<CompileContext> | void, label: string) {
      if (!v.isName(label)) throw invalidArg(this?.key ?? 'creds', 'a non-empty security label string', label);
      return label;
    },
    expected: (label) => label,
    check: (actual: string, label) => (actual === label ? PASS : fail(actual, `peer label ${actual} is not ${label}`)),
    file: asArgs,
    signature: '`creds(label)`, `label(label)`',
    fileForm: '`creds: <label>` or `label: <label>`',
    doc: 'SO_PEERSEC security label of the peer, exact string',
  }),
  /** The peer is in one of these groups (names or gids), as primary or supplementary group (SO_PEERGROUPS). */
  memberOf: defineReads({
    flagName: 'MEMBER_OF',
    flag: 512,
    attribute: 'groups',
    reads: () => ['gid', 'groups'],
    outcome: true,
    what: 'peer groups',
    compile: (group: string | number | Array<string | number>) =>
      v.oneOrMany('memberOf', group, (x): x is string | number => v.isId(x) || v.isName(x), 'a group name or gid'),
    expected: (list) => oneOrList(list),
    check: ([gid, groups]: [Outcome<number>, Outcome<number[]>], list) => {
      const mine = groups.ok ? [gid.ok ? gid.value : -1, ...groups.value] : gid.ok ? [gid.value] : [];
      for (const g of list) {
        // Names are resolved now, not when the rule was made: NSS may change.
        const id = typeof g === 'number' ? g : gidOf(g);
        // An unmapped group shows as the overflow gid: it makes nobody a member of anything.
        if (id !== undefined && mine.includes(id) && !idUnmapped('gid', id)) return PASS;
      }
      // Without the supplementary groups the answer may be yes: unknown, not no.
      if (!groups.ok) return unknown(`supplementary groups: ${groups.reason}; peer's primary group is not ${show(list)}`, mine);
      return fail(mine, `peer is not a member of ${show(list)}`);
    },
    file: asArgs,
    signature: '`memberOf(group \\| group[])`',
    fileForm: '`memberOf: docker` (name or gid) or a list',
    doc: 'primary or supplementary group of the peer (SO_PEERGROUPS)',
  }),
  /** The SHA-256 (hex) of the peer's executable is one of these; hashed once per file version. */
  programDigest: define({
    flagName: 'PROGRAM_DIGEST',
    flag: 1024,
    attribute: 'programDigest',
    what: 'peer program digest',
    strict: true,
    compile: (sha256: string | string[]) =>
      new Set(
        v
          .oneOrMany(
            'programDigest',
            sha256,
            (x): x is string => typeof x === 'string' && HEX64.test(x),
            'a SHA-256 digest (64 hex digits)',
          )
          .map((d) => d.toLowerCase()),
      ),
    expected: (c) => oneOrList([...c]),
    check: (digest: string, c, env) =>
      c.has(digest)
        ? PASS
        : fail(
            digest,
            env === undefined
              ? `its executable has SHA-256 ${digest}, not an allowed digest`
              : `peer program ${env.peer.program ?? '(unreadable)'} has SHA-256 ${digest}, not an allowed digest`,
          ),
    file: (value, source) => ({ ok: true, args: [asWritten(value, source, [])] }),
    signature: '`programDigest(sha256 \\| sha256[])`',
    fileForm: '`programDigest: <64 hex digits>` or a list',
    doc: "SHA-256 of the peer's executable",
  }),
  /** The peer runs in a container: any (`true`, the default), or one matching `{ id, idPrefix, runtime }`. */
  container: define({
    flagName: 'CONTAINER',
    flag: 2048,
    attribute: 'container',
    what: 'peer container',
    strict: true,
    compile: (match?: ContainerMatch) => containerMatch(match),
    expected: (m) => (Object.keys(m).length === 0 ? 'any container' : m),
    check: (c: Container | null, m, env) => {
      if (c === null) return fail(null, `peer is not in a container (cgroup ${env?.peer.cgroup ?? 'unknown'})`);
      const what = `${c.runtime} container ${c.id}`;
      if (m.runtime && !m.runtime.includes(c.runtime)) return fail(c, `peer runs in a ${what}, not a ${m.runtime.join(' or ')} container`);
      if (m.id && !m.id.includes(c.id)) return fail(c, `peer runs in ${what}, not in ${m.id.join(' or ')}`);
      if (m.idPrefix !== undefined && !c.id.startsWith(m.idPrefix))
        return fail(c, `peer runs in ${what}, whose id does not start with ${m.idPrefix}`);
      return PASS;
    },
    file: (value) =>
      value === true || v.isMapping(value)
        ? asArgs(value)
        : {
            ok: false,
            message:
              'must be true (any container) or { id, idPrefix, runtime }; for "not in a container" write not: { container: true } or host: true',
          },
    signature: '`container(match?)`',
    fileForm: '`container: true` or `{ id, idPrefix, runtime }`',
    doc: 'container the peer runs in (from its cgroup), any or matching',
  }),
  /** The peer runs on our host: it shares our pid and mount namespaces. */
  host: defineReads({
    flagName: 'HOST',
    flag: 4096,
    attribute: 'namespaces',
    reads: () => HOST_READS,
    what: namespaceWhat,
    compile: () => HOST_KINDS,
    expected: () => 'our pid and mnt namespaces',
    check: (theirs: number[], kinds) => sameNamespaces(kinds, theirs),
    file: (value) =>
      value === true ? { ok: true, args: [] } : { ok: false, message: 'must be true; for "not on this host" write not: { host: true }' },
    signature: '`host()`',
    fileForm: '`host: true`',
    doc: 'the peer shares our pid and mount namespaces',
  }),
  /** The peer shares every one of these namespaces with us. */
  sameNamespace: defineReads({
    flagName: 'NAMESPACE',
    flag: 8192,
    attribute: 'namespaces',
    reads: (kinds) => kinds.map((k) => `ns:${k}` as const),
    what: namespaceWhat,
    compile: (kinds: NamespaceKind | NamespaceKind[]) =>
      v.oneOrMany(
        'sameNamespace',
        kinds,
        (x): x is NamespaceKind => (NAMESPACE_KINDS as readonly unknown[]).includes(x),
        `one of ${NAMESPACE_KINDS.join(', ')}`,
      ),
    // All of them, unlike the "any of" lists of other rules.
    expected: (kinds) => kinds,
    check: (theirs: number[], kinds) => sameNamespaces(kinds, theirs),
    file: asArgs,
    signature: '`sameNamespace(kind \\| kind[])`',
    fileForm: '`sameNamespace: net` or a list (all of them)',
    doc: 'the peer shares these namespaces with us (pid, mnt, net, user, uts, ipc, cgroup)',
  }),
  /** The peer runs in one of these systemd system units (e.g. `nginx.service`), read from its cgroup. */
  unit: define({
    flagName: 'UNIT',
    flag: 32768,
    attribute: 'unit',
    what: 'peer systemd unit',
    strict: true,
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
    strict: true,
    compile: () => true as const,
    expected: () => true,
    check: (on: boolean) => (on ? PASS : fail(false, 'peer runs without no_new_privs in at least one of its threads')),
    file: (value) =>
      value === true
        ? { ok: true, args: [] }
        : { ok: false, message: `must be true; for "without no_new_privs" write not: { noNewPrivs: true }` },
    signature: '`noNewPrivs()`',
    fileForm: '`noNewPrivs: true`',
    doc: '`NoNewPrivs:` of /proc/PID/task/*/status is 1 for every thread',
  }),
  /** Every thread of the peer holds effective capabilities only from this set (`[]`: none). */
  capabilities: define({
    flagName: 'CAPABILITIES',
    flag: 524288,
    attribute: 'capabilities',
    what: 'peer capabilities',
    strict: true,
    compile: (caps: string | string[]) => capabilitySet(caps),
    expected: (c) => [...c],
    check: (held, c) => {
      const extra = held.filter((cap) => !c.has(cap));
      if (extra.length === 0) return PASS;
      return fail(
        extra,
        `peer holds ${extra.join(', ')} (effective, in at least one thread), outside ${c.size === 0 ? 'none' : show([...c])}`,
      );
    },
    file: (value) =>
      Array.isArray(value) || typeof value === 'string'
        ? { ok: true, args: [value] }
        : { ok: false, message: 'must be a list of capability names such as [CAP_NET_BIND_SERVICE] ([] for none)' },
    signature: '`capabilities(cap \\| cap[])`',
    fileForm: '`capabilities: [CAP_NET_BIND_SERVICE]`, `[]` for none',
    doc: '`CapEff:` of every thread of the peer is within the set (names with or without `CAP_`, any case)',
  }),
});

/** A set of `CAP_` names from names with or without `CAP_`, in any case; `[]` is the empty set. */
function capabilitySet(caps: unknown): ReadonlySet<string> {
  const list = Array.isArray(caps) ? caps : [caps];
  const out = new Set<string>();
  list.forEach((x, i) => {
    const where = Array.isArray(caps) ? `capabilities[${i}]` : 'capabilities';
    if (typeof x !== 'string') throw invalidArg(where, 'a capability name such as CAP_NET_BIND_SERVICE', x);
    const name = x.toUpperCase().startsWith('CAP_') ? x.toUpperCase() : `CAP_${x.toUpperCase()}`;
    if (!CAPABILITY_NAMES.includes(name)) throw invalidArg(where, 'a capability name such as CAP_NET_BIND_SERVICE', x);
    out.add(name);
  });
  return new Set([...out].sort());
}

/** The names of the table's rules. */
export type TableRuleName = keyof typeof RULE_DEFS;

type AnyDef = RuleDef<unknown[], unknown, unknown>;

/** The builder arguments of a table rule. */
export type TableRuleArgs<K extends TableRuleName> =
  (typeof RULE_DEFS)[K] extends RuleDef<infer A, infer _C, infer _V, string, number, infer _R> ? A : never;

/** A table rule's name or one of its aliases: each is a builder method and a policy-file key. */
export type TableRuleKey = TableRuleName | 'label';

/** The Policy builder methods the table declares: each takes the rule's arguments and returns the policy. */
export type TableRuleMethods<P> = { [K in TableRuleName]: (...args: TableRuleArgs<K>) => P } & {
  label: (...args: TableRuleArgs<'creds'>) => P;
};

/** The `Result` flags the table declares. */
export type TableFlags = { readonly [K in TableRuleName as (typeof RULE_DEFS)[K]['flagName']]: (typeof RULE_DEFS)[K]['flag'] };

/** `Result` entries of the table's rules. */
export const TABLE_FLAGS = Object.freeze(
  Object.fromEntries(Object.values(RULE_DEFS).map((d) => [d.flagName, d.flag])) as unknown as TableFlags,
);

/** Every builder method and file key of the table, with the rule (its Policy slot) it names. */
export const TABLE_KEYS: ReadonlyMap<string, TableRuleName> = new Map(
  (Object.entries(RULE_DEFS) as Array<[TableRuleName, AnyDef]>).flatMap(([name, d]) => [
    [name, name] as const,
    ...(d.aliases ?? []).map((a) => [a, name] as const),
  ]),
);

/**
 * A Rule value from a table rule and its builder arguments (validated and compiled here,
 * once). `key` is the name it was asked for by (an alias names the rule it makes).
 */
export function tableRule(key: string, args: readonly unknown[]): Rule {
  const name = TABLE_KEYS.get(key);
  if (name === undefined) throw invalidArg('rule', `a rule of the table (${[...TABLE_KEYS.keys()].join(', ')})`, key);
  const def = RULE_DEFS[name] as unknown as AnyDef;
  const compiled = def.compile.apply({ key }, args as unknown[]);
  const check = ruleCheck(def, compiled);
  const needs = needsOfDef(def, compiled);
  return {
    name: key,
    flag: def.flag,
    expected: def.expected(compiled),
    ...(def.async && { async: true }),
    ...(needs && { needs }),
    check,
  };
}

/** The asynchronous attributes a rule reads (the evaluator reads them before the rules run). */
function needsOfDef(def: AnyDef, compiled: unknown): RuleNeeds | undefined {
  const reads = def.reads?.(compiled) ?? (def.attribute === null ? [] : [def.attribute]);
  const always = reads.filter((a): a is AsyncAttributeName => (ATTRIBUTES[a] as AttributeDef<unknown>).when === 'async');
  const strict: AsyncAttributeName[] = def.strict ? ['holders'] : [];
  return always.length === 0 && strict.length === 0 ? undefined : { always, strict };
}

/** The check of a table rule over its compiled argument: reads the attribute(s), then judges; strict rules judge every holder too. */
function ruleCheck(def: AnyDef, compiled: unknown): Rule['check'] {
  const { attribute, what, outcome } = def;
  const whatOf = typeof what === 'string' ? () => what : what;
  // Only checks that take `env` get one (made per check): the common rules allocate nothing.
  const withEnv = def.check.length >= 3;
  const judge = (value: unknown, peer: Peer, context: RuleContext) =>
    withEnv ? def.check(value, compiled, { peer, context }) : def.check(value, compiled);
  const reads = def.reads?.(compiled);
  let check: Rule['check'];
  if (reads !== undefined) {
    check = (peer, context) => {
      const values: unknown[] = [];
      for (const a of reads) {
        const r = peer.attempt(a);
        if (outcome) values.push(r);
        else if (r.ok) values.push(r.value);
        else return missing(r, whatOf(a));
      }
      return judge(values, peer, context);
    };
  } else if (attribute === null) {
    check = (peer, context) => judge(undefined, peer, context);
  } else if (outcome) {
    check = (peer, context) => judge(peer.attempt(attribute), peer, context);
  } else {
    const shown = whatOf(attribute);
    check = (peer, context) => {
      const r = peer.attempt(attribute);
      return r.ok ? judge(r.value, peer, context) : missing(r, shown);
    };
  }
  if (!def.strict || attribute === null) return check;
  // Strict mode: the peer passes, and so does every process that holds the peer end.
  const shown = whatOf(attribute);
  const holderTest: HolderTest = (holder) => {
    const r = holder.attempt(attribute);
    return r.ok ? (def.check(r.value, compiled) as Check) : missing(r, shown);
  };
  return (peer, context) => {
    const r = check(peer, context);
    if (!context.strict) return r;
    const after = (c: Check): Check => (c.pass ? strictHoldersCheck(peer, holderTest) : c);
    return isThenable(r) ? r.then(after) : after(r);
  };
}

/** The Markdown table of the table's rules, as docs/attributes.md carries it (a test keeps them equal). */
export function rulesDocTable(): string {
  const rows = (Object.values(RULE_DEFS) as AnyDef[]).map(
    (d) => `| ${d.signature} | ${d.fileForm} | \`Result.${d.flagName}\` = ${d.flag} | ${attributeCell(d)} | ${d.doc} |`,
  );
  return ['| builder | policy file | flag | attribute | checks |', '|---|---|---|---|---|', ...rows].join('\n');
}

function attributeCell(d: AnyDef): string {
  return d.attribute === null ? '(the peer)' : `\`${d.attribute}\`${d.strict ? ' (strict: every holder)' : ''}`;
}
