/**
 * Rules on where the peer runs and what it runs: programDigest, container, host and
 * sameNamespace (docs/security.md, "Containers"). Each reads /proc through the pinned Peer, so a peer
 * that exits (or whose pid is recycled) fails them with "peer exited".
 */
import { invalidArg } from '../errors.js';
import type { Container } from '../identity/container.js';
import { NAMESPACE_KINDS, ownNamespaces, type NamespaceKind } from '../identity/namespaces.js';
import type { Peer } from '../identity/peer.js';
import { Result } from './result.js';
import { PASS, fail, missing, unknown, type Check, type Rule } from './rule.js';
import { anyOf, setStrictHolders } from './rules.js';
import { checkHolders } from './strict.js';
import * as v from './validate.js';

/** The one adapter between strict mode's three-valued holder verdict and a rule's Check. */
export function strictVerdict(peer: Peer, paths: readonly string[]): Check {
  const r = checkHolders(peer, paths);
  return r.verdict === 'pass' ? PASS : r.verdict === 'unknown' ? unknown(r.message, r.actual) : fail(r.actual, r.message);
}

// Every Policy imports this module for its builder methods: strict mode is always wired.
setStrictHolders(strictVerdict);

const HEX64 = /^[0-9a-fA-F]{64}$/;

/** The peer's executable has one of these SHA-256 digests (hex). */
export function programDigestRule(value: string | string[]): Rule {
  const list = v
    .oneOrMany('programDigest', value, (x): x is string => typeof x === 'string' && HEX64.test(x), 'a SHA-256 digest (64 hex digits)')
    .map((d) => d.toLowerCase());
  return {
    name: 'programDigest',
    flag: Result.PROGRAM_DIGEST,
    expected: anyOf(list),
    check(peer) {
      const r = peer.attempt('programDigest');
      if (!r.ok) return missing(r, 'peer program digest');
      const digest = r.value as string;
      return list.includes(digest)
        ? PASS
        : fail(digest, `peer program ${peer.program ?? '(unreadable)'} has SHA-256 ${digest}, not an allowed digest`);
    },
  };
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

/** The peer runs in a container (any, or one matching id / idPrefix / runtime). */
export function containerRule(value: ContainerMatch = true): Rule {
  const m = containerMatch(value);
  const expected = Object.keys(m).length === 0 ? 'any container' : m;
  return {
    name: 'container',
    flag: Result.CONTAINER,
    expected,
    check(peer) {
      const r = peer.attempt('container');
      if (!r.ok) return missing(r, 'peer container');
      const c = r.value as Container | null;
      if (c === null) return fail(null, `peer is not in a container (cgroup ${peer.cgroup ?? 'unknown'})`);
      const what = `${c.runtime} container ${c.id}`;
      if (m.runtime && !m.runtime.includes(c.runtime)) return fail(c, `peer runs in a ${what}, not a ${m.runtime.join(' or ')} container`);
      if (m.id && !m.id.includes(c.id)) return fail(c, `peer runs in ${what}, not in ${m.id.join(' or ')}`);
      if (m.idPrefix !== undefined && !c.id.startsWith(m.idPrefix))
        return fail(c, `peer runs in ${what}, whose id does not start with ${m.idPrefix}`);
      return PASS;
    },
  };
}

/** Passes when the peer shares every one of `kinds` with us. */
function namespacesOf(peer: Peer, kinds: readonly NamespaceKind[]): Check {
  const ours = ownNamespaces();
  if (typeof ours === 'string') return unknown(`our own namespaces: ${ours}`);
  const theirs: Partial<Record<NamespaceKind, number>> = {};
  for (const k of kinds) {
    const r = peer.attempt(`ns:${k}`);
    if (!r.ok) return missing(r, `peer ${k} namespace`);
    theirs[k] = r.value as number;
  }
  const differ = kinds.filter((k) => theirs[k] !== ours[k]);
  if (differ.length === 0) return PASS;
  const actual = Object.fromEntries(differ.map((k) => [k, theirs[k]]));
  return fail(
    actual,
    `peer is in other ${differ.join(', ')} namespace${differ.length > 1 ? 's' : ''} than ours (${differ.map((k) => `${k}:[${theirs[k]}] vs [${ours[k]}]`).join(', ')})`,
  );
}

/** The peer shares every one of the listed namespaces with us. */
export function sameNamespaceRule(kinds: NamespaceKind | NamespaceKind[]): Rule {
  const list = v.oneOrMany(
    'sameNamespace',
    kinds,
    (x): x is NamespaceKind => (NAMESPACE_KINDS as readonly unknown[]).includes(x),
    `one of ${NAMESPACE_KINDS.join(', ')}`,
  );
  return {
    name: 'sameNamespace',
    flag: Result.NAMESPACE,
    // All of them, unlike the "any of" lists of other rules.
    expected: list,
    check: (peer) => namespacesOf(peer, list),
  };
}

const HOST_KINDS: readonly NamespaceKind[] = Object.freeze(['pid', 'mnt']);

/** The peer runs on the host we run on: it shares our pid and mount namespaces. */
export function hostRule(): Rule {
  return {
    name: 'host',
    flag: Result.HOST,
    expected: 'our pid and mnt namespaces',
    check: (peer) => namespacesOf(peer, HOST_KINDS),
  };
}
