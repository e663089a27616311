/** The identity rules of the C library, plus memberOf. Each returns a Rule value. */
import { gidOf, statPath, type FileStat } from '../native/index.js';
import type { Peer } from '../identity/peer.js';
import { idUnmapped } from '../identity/proc.js';
import { Result } from './result.js';
import { PASS, fail, isThenable, missing, unknown, type Check, type Rule, type RuleContext } from './rule.js';
import * as v from './validate.js';

/** A rule's `expected` for a list: the one value, or the list ("any of"). */
export const anyOf = (list: readonly unknown[]) => (list.length === 1 ? list[0] : list);
const show = (list: readonly unknown[]) => (list.length === 1 ? String(list[0]) : `one of ${list.join(', ')}`);

/** `memberOf(group)`: the peer's primary or supplementary groups (SO_PEERGROUPS) include one of these. */
export function memberOfRule(value: string | number | Array<string | number>): Rule {
  const list = v.oneOrMany('memberOf', value, (x): x is string | number => v.isId(x) || v.isName(x), 'a group name or gid');
  return {
    name: 'memberOf',
    flag: Result.MEMBER_OF,
    expected: anyOf(list),
    check(peer) {
      const groups = peer.attempt('groups');
      const mine = groups.ok ? [peer.gid, ...(groups.value as number[])] : [peer.gid];
      for (const g of list) {
        const gid = typeof g === 'number' ? g : gidOf(g);
        // An unmapped group shows as the overflow gid: it makes nobody a member of anything.
        if (gid !== undefined && mine.includes(gid) && !idUnmapped('gid', gid)) return PASS;
      }
      // Without the supplementary groups the answer may be yes: unknown, not no.
      if (!groups.ok) return unknown(`supplementary groups: ${groups.reason}; peer's primary group is not ${show(list)}`, mine);
      return fail(mine, `peer is not a member of ${show(list)}`);
    },
  };
}

/** A cache of the rule paths' file identity: the accept path should not stat them per connection. */
const RULE_PATH_TTL = 1000;
const rulePathCache = new Map<string, { stat: FileStat | undefined; expires: number }>();

function rulePathStat(path: string): FileStat | undefined {
  const now = Date.now();
  const hit = rulePathCache.get(path);
  if (hit && hit.expires > now) return hit.stat;
  const stat = statPath(path);
  if (rulePathCache.size > 1024) rulePathCache.clear();
  rulePathCache.set(path, { stat, expires: now + RULE_PATH_TTL });
  return stat;
}

/** True when the peer's executable is the same file (device and inode) as one of the paths. */
export function programMatches(exe: FileStat, paths: readonly string[]): boolean {
  for (const p of paths) {
    const s = rulePathStat(p);
    if (s && s.dev === exe.dev && s.ino === exe.ino) return true;
  }
  return false;
}

/** `program(path)`: the peer's executable is the same file (device and inode) as one of these paths. */
export function programRule(value: string | string[]): Rule {
  const paths = v.absolutePaths('program', value);
  return {
    name: 'program',
    flag: Result.PROGRAM,
    expected: anyOf(paths),
    check(peer, context) {
      const exe = peer.programStat();
      if (!exe.ok) return missing(exe, 'peer program');
      if (!programMatches(exe.value, paths)) {
        const shown = peer.program ?? '(unreadable)';
        return fail(shown, `peer program ${shown} is not the file at ${show(paths)} (compared by device and inode)`);
      }
      return context.strict ? strictHolders(peer, paths) : PASS;
    },
  };
}

/** Strict mode hook: replaced by the exec-after-connect defence of the identity room. */
export let strictHolders: (peer: Peer, paths: readonly string[]) => Check = () => unknown('strict mode is not available on this platform');

/** @internal Installs the strict-mode holder check. */
export function setStrictHolders(fn: typeof strictHolders): void {
  strictHolders = fn;
}

/** User code deciding on a peer; only `true` (or a promise of it) passes. */
export type PeerCallback = (peer: Peer) => boolean | Promise<boolean>;

/** `callback(fn)`: user code decides; a throw or a rejection fails the rule. */
export function callbackRule(value: PeerCallback): Rule {
  const fn = v.func<PeerCallback>('callback', value);
  const verdict = (r: unknown): Check => (r === true ? PASS : fail(r, `callback returned ${String(r)}`));
  const thrown = (e: unknown): Check => fail(undefined, `callback threw: ${(e as Error)?.message ?? String(e)}`);
  return {
    name: 'callback',
    flag: Result.CALLBACK,
    expected: true,
    async: true,
    check(peer) {
      let r: unknown;
      try {
        r = fn(peer);
      } catch (e) {
        return thrown(e);
      }
      if (isThenable(r)) return Promise.resolve(r).then(verdict, thrown);
      return verdict(r);
    },
  };
}

/** A placeholder context for rules checked outside a policy. */
export const DEFAULT_CONTEXT: RuleContext = Object.freeze({ strict: false });
