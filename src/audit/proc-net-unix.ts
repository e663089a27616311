/**
 * Listening UNIX sockets from /proc/net/unix: the fallback lister where sock_diag netlink
 * is unavailable (seccomp filters, old kernels). It sees the network namespace of the
 * reading process, as `ss -xl` does.
 */
import { readFileSync } from 'node:fs';

/** The kinds of listening socket an audit reports: only connection-oriented sockets listen. */
export type SocketKind = 'stream' | 'seqpacket';

/** One listening socket as the kernel lists it. */
export interface ListeningSocket {
  /** The socket's inode in sockfs (what /proc/PID/fd links to as `socket:[inode]`). */
  inode: number;
  kind: SocketKind;
  /** The bound path, or `@name` for an abstract socket. */
  path: string;
  abstract: boolean;
  /**
   * Device and inode of the file the socket was bound to, when the lister knows them
   * (sock_diag does, /proc/net/unix does not): they tell a replaced socket file apart.
   */
  vfs?: { dev: number; ino: number };
  /** Bytes waiting in the accept queue and the backlog, when the lister knows them. */
  queue?: { pending: number; backlog: number };
}

// __SO_ACCEPTCON in the Flags column: the socket is listening.
const SO_ACCEPTCON = 0x10000;
const KIND: Record<string, SocketKind | undefined> = { '0001': 'stream', '0005': 'seqpacket' };

/** Parses the text of /proc/net/unix into its listening stream and seqpacket sockets. */
export function parseProcNetUnix(text: string): ListeningSocket[] {
  const out: ListeningSocket[] = [];
  let start = text.indexOf('\n') + 1; // skip the header line
  while (start > 0 && start < text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    const entry = parseLine(text, start, end);
    if (entry) out.push(entry);
    start = end + 1;
  }
  return out;
}

// A line is "Num: RefCount Protocol Flags Type St Inode[ Path]", the inode padded to five
// columns; the path runs to the end of the line and may contain spaces.
function parseLine(text: string, start: number, end: number): ListeningSocket | undefined {
  const fields: string[] = [];
  let i = start;
  while (fields.length < 7 && i < end) {
    while (i < end && text.charCodeAt(i) === 32) i++;
    const from = i;
    while (i < end && text.charCodeAt(i) !== 32) i++;
    if (i > from) fields.push(text.slice(from, i));
  }
  if (fields.length < 7) return undefined;
  const kind = KIND[fields[4]!];
  if (!kind || !(parseInt(fields[3]!, 16) & SO_ACCEPTCON)) return undefined;
  const inode = Number(fields[6]);
  // A listening socket always has a name: listen() on an unbound socket autobinds one.
  if (!Number.isSafeInteger(inode) || i + 1 >= end) return undefined;
  const path = text.slice(i + 1, end);
  return { inode, kind, path, abstract: path.startsWith('@') };
}

/** Listening stream and seqpacket sockets of our network namespace, from /proc/net/unix. */
export function listFromProc(file = '/proc/net/unix'): ListeningSocket[] {
  return parseProcNetUnix(readFileSync(file, 'utf8'));
}
