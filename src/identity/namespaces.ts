/**
 * Namespace ids of a process: the inode number of each /proc/PID/ns/* link, the same
 * number `lsns` and `readlink /proc/PID/ns/pid` (`pid:[4026531836]`) show.
 */
import { statPath } from '../native/index.js';

/** The namespace kinds a Peer reports. */
export const NAMESPACE_KINDS = Object.freeze(['pid', 'mnt', 'net', 'user', 'uts', 'ipc', 'cgroup'] as const);

/** One of {@link NAMESPACE_KINDS}. */
export type NamespaceKind = (typeof NAMESPACE_KINDS)[number];

/** Namespace ids (inode numbers) by kind. */
export type Namespaces = Readonly<Record<NamespaceKind, number>>;

/** The namespaces of the process at `proc` (`/proc/PID`), or why they cannot be read. */
export function readNamespaces(proc: string): Namespaces | string {
  const out = {} as Record<NamespaceKind, number>;
  for (const kind of NAMESPACE_KINDS) {
    const s = statPath(`${proc}/ns/${kind}`);
    // ENOENT for an exited process (or a zombie, which has no namespaces left); EACCES without ptrace access.
    if (!s) return `cannot read ${proc}/ns/${kind}: the process exited or we may not inspect it`;
    out[kind] = Number(s.ino);
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
