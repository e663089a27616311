/**
 * Namespace ids of a process: the inode number of each /proc/PID/ns/* link, the same
 * number `lsns` and `readlink /proc/PID/ns/pid` (`pid:[4026531836]`) show.
 */
import { readlinkSync } from 'node:fs';

/** The namespace kinds a Peer reports. */
export const NAMESPACE_KINDS = Object.freeze(['pid', 'mnt', 'net', 'user', 'uts', 'ipc', 'cgroup'] as const);

/** One of {@link NAMESPACE_KINDS}. */
export type NamespaceKind = (typeof NAMESPACE_KINDS)[number];

/** Namespace ids (inode numbers) by kind. */
export type Namespaces = Readonly<Record<NamespaceKind, number>>;

/** One namespace id of the process at `proc` (`/proc/PID`), or why it cannot be read. */
export function readNamespace(proc: string, kind: NamespaceKind): number | string {
  // readlink (`pid:[4026531836]`) costs about half a stat of the same link.
  try {
    const link = readlinkSync(`${proc}/ns/${kind}`);
    return Number(link.slice(link.indexOf('[') + 1, -1));
  } catch {
    // ENOENT for an exited process (or a zombie, which has no namespaces left); EACCES without ptrace access.
    return `cannot read ${proc}/ns/${kind}: the process exited or we may not inspect it`;
  }
}

/** The namespaces of the process at `proc` (`/proc/PID`), or why they cannot be read. */
export function readNamespaces(proc: string): Namespaces | string {
  const out = {} as Record<NamespaceKind, number>;
  for (const kind of NAMESPACE_KINDS) {
    const r = readNamespace(proc, kind);
    if (typeof r === 'string') return r;
    out[kind] = r;
  }
  return Object.freeze(out);
}

let own: Namespaces | undefined;

/** Our own namespaces, read once (setns() is not something this package does), or why they cannot be read. */
export function ownNamespaces(): Namespaces | string {
  if (own) return own;
  const r = readNamespaces('/proc/self');
  if (typeof r !== 'string') own = r;
  return r;
}
