/**
 * What the package knows of a UNIX socket, and the readers that need no netlink: the
 * inode behind one of our fds, and /proc/net/unix (the fallback of sock-diag.ts).
 */
import { readFileSync, readlinkSync } from 'node:fs';

/** Connection state of a UNIX socket (the kernel reuses TCP state numbers). */
export type UnixSocketState = 'listen' | 'established' | 'unconnected' | 'connecting' | 'other';

/** Socket type of a UNIX socket. */
export type UnixSocketType = 'stream' | 'dgram' | 'seqpacket' | 'other';

/** One UNIX socket as the kernel describes it. */
export interface UnixSocketInfo {
  /** The socket's inode number (as in /proc/PID/fd links `socket:[inode]`). */
  inode: number;
  type: UnixSocketType;
  state: UnixSocketState;
  /** Bound name: a path, or `@name` for an abstract socket (trailing NUL padding removed); undefined when unbound. */
  name?: string;
  /**
   * Device and inode of the socket file the socket is bound to (netlink only; undefined
   * for abstract and unbound sockets). `dev` uses the layout of FileStat.dev
   * (major * 2^20 + minor), so it compares directly with statPath().
   */
  vfs?: { dev: number; ino: number };
  /** Inode of the connected peer socket (netlink only; connected sockets). */
  peer?: number;
  /** Inodes of the connections in a listening socket's accept queue, not yet accepted (netlink only). */
  icons?: number[];
  /** Owner uid of the socket, in our user namespace (netlink only). */
  uid?: number;
  /**
   * Queue lengths (netlink only). For a listening socket: connections waiting to be
   * accepted and the backlog limit; otherwise: bytes queued to read and to write.
   */
  queue?: { read: number; write: number };
}

/** Socket type numbers (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET) by name. */
export const SOCKET_TYPES = new Map<number, UnixSocketType>([
  [1, 'stream'],
  [2, 'dgram'],
  [5, 'seqpacket'],
]);

/** The inode of the socket behind one of our fds (from /proc/self/fd); undefined when the fd is not a socket. */
export function socketInode(fd: number): number | undefined {
  let link: string;
  try {
    link = readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return undefined;
  }
  return link.startsWith('socket:[') ? Number(link.slice(8, -1)) : undefined;
}

/**
 * /proc/net/unix of our network namespace: inode, type, state and name only.
 * Line format: `Num RefCount Protocol Flags Type St Inode [Path]`.
 */
export function procNetUnix(text: string = readFileSync('/proc/net/unix', 'latin1')): UnixSocketInfo[] {
  const out: UnixSocketInfo[] = [];
  for (const line of text.split('\n')) {
    // A path may hold spaces: it is everything after the inode and one space.
    const m = PROC_LINE.exec(line);
    if (!m) continue;
    const flags = parseInt(m[1]!, 16);
    const st = parseInt(m[3]!, 16);
    // __SO_ACCEPTCON marks a listening socket; St 3 is SS_CONNECTED, 2 SS_CONNECTING.
    const state: UnixSocketState = flags & 0x10000 ? 'listen' : st === 3 ? 'established' : st === 2 ? 'connecting' : 'unconnected';
    const info: UnixSocketInfo = { inode: Number(m[4]), type: SOCKET_TYPES.get(parseInt(m[2]!, 16)) ?? 'other', state };
    // The file is read as latin1 so that abstract names keep their bytes (as netlink shows
    // them); a path is re-decoded as the UTF-8 the kernel holds.
    if (m[5]) info.name = m[5].startsWith('@') ? m[5] : Buffer.from(m[5], 'latin1').toString('utf8');
    out.push(info);
  }
  return out;
}

const PROC_LINE = /^\s*[0-9a-fA-F]+:\s+[0-9a-fA-F]+\s+[0-9a-fA-F]+\s+([0-9a-fA-F]+)\s+([0-9a-fA-F]+)\s+([0-9a-fA-F]+)\s+(\d+)(?: (.+))?$/;
