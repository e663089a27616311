/**
 * The Peer's attributes that come from /proc beyond the program: namespaces, cgroup,
 * container and the executable's digest. Each is read through `peer.procRead()`, which
 * proves after the read that the pinned process is still the peer.
 */
import { no, ok, type Outcome } from './outcome.js';
import type { Peer } from './peer.js';
import { parseCgroup, type CgroupInfo } from './container.js';
import { executableDigest } from './digest.js';
import { NAMESPACE_KINDS, readNamespace, readNamespaces, type NamespaceKind } from './namespaces.js';
import { readProc } from './proc.js';

/** Resolves one of this room's attributes; undefined for a name it does not know. */
export function resolveProcAttribute(peer: Peer, name: string): Outcome<unknown> | undefined {
  switch (name) {
    case 'namespaces':
      return peer.procRead((proc) => {
        const r = readNamespaces(proc);
        return typeof r === 'string' ? no(r) : ok(r);
      });
    case 'cgroupInfo':
      return peer.procRead((proc) => {
        const text = readProc(`${proc}/cgroup`);
        return text === undefined ? no(`cannot read ${proc}/cgroup: the peer exited`) : ok(parseCgroup(text));
      });
    case 'cgroup': {
      const info = peer.attempt('cgroupInfo') as Outcome<CgroupInfo>;
      if (!info.ok) return info;
      return info.value.path === undefined ? no('the peer has no cgroup line we understand') : ok(info.value.path);
    }
    case 'container': {
      const info = peer.attempt('cgroupInfo') as Outcome<CgroupInfo>;
      return info.ok ? ok(info.value.container) : info;
    }
    case 'programDigest':
      return peer.procRead(executableDigest);
    default: {
      // `ns:<kind>`: one namespace, for rules that need only some (host() needs two of seven).
      const kind = name.startsWith('ns:') ? (name.slice(3) as NamespaceKind) : undefined;
      if (kind === undefined || !NAMESPACE_KINDS.includes(kind)) return undefined;
      return peer.procRead((proc) => {
        const r = readNamespace(proc, kind);
        return typeof r === 'string' ? no(r) : ok(r);
      });
    }
  }
}
