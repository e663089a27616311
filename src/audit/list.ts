/**
 * The listing of listening sockets: sock_diag netlink where it works (exact paths, the
 * bound file's device and inode), /proc/net/unix otherwise. Both see the network
 * namespace of this process, as `ss -xl` does.
 */
import { invalidArg } from '../errors.js';
import { listUnixSockets, procNetUnix, type UnixSocketInfo } from '../native/index.js';

/** The kinds of listening socket an audit reports: only connection-oriented sockets listen. */
export type SocketKind = 'stream' | 'seqpacket';

/** Where the listing comes from; `auto` is netlink with /proc/net/unix as the fallback. */
export type ListSource = 'auto' | 'netlink' | 'proc';

/** One listening socket as the kernel lists it. */
export interface ListeningSocket {
  /** The socket's inode in sockfs (what /proc/PID/fd links to as `socket:[inode]`). */
  inode: number;
  kind: SocketKind;
  /** The bound path, or `@name` for an abstract socket. */
  path: string;
  abstract: boolean;
  /** Device and inode of the file the socket was bound to (netlink only): they reveal a replaced socket file. */
  vfs?: { dev: number; ino: number };
}

/** Listening stream and seqpacket sockets from the chosen source. */
export function listListening(source: ListSource = 'auto'): ListeningSocket[] {
  let sockets: UnixSocketInfo[];
  if (source === 'proc') sockets = procNetUnix();
  else if (source === 'netlink' || source === 'auto')
    sockets = listUnixSockets({ states: ['listen'], fallback: source === 'auto' }).sockets;
  else throw invalidArg('options.source', '"auto", "netlink" or "proc"', source);
  const out: ListeningSocket[] = [];
  for (const s of sockets) {
    // A listening socket always has a name: listen() on an unbound socket autobinds one.
    if (s.state !== 'listen' || s.name === undefined || (s.type !== 'stream' && s.type !== 'seqpacket')) continue;
    const abstract = s.name.startsWith('@');
    const path = abstract ? trimPadding(s.name) : s.name;
    const entry: ListeningSocket = { inode: s.inode, kind: s.type, path, abstract };
    if (s.vfs) entry.vfs = s.vfs;
    out.push(entry);
  }
  return out;
}

/** Length of `@` + an abstract name that fills all of sun_path. */
const PADDED_ABSTRACT = 108;

/**
 * libuv before 1.46 binds abstract names padded with NULs to the whole of sun_path, and
 * /proc/net/unix shows each NUL as `@`; netlink names come trimmed. Trim a padded name
 * the same way so that both sources name the socket alike.
 */
export function trimPadding(name: string): string {
  return name.length === PADDED_ABSTRACT ? name.replace(/@+$/, '') : name;
}
