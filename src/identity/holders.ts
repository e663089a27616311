/**
 * Which processes hold a socket (DESIGN.md threat 2, exec after connect). SO_PEERCRED
 * names the process that called connect(); after a fork the socket may be held by
 * others, and the one that connected may have exec'd a trusted binary since. The kernel
 * knows the peer end's inode (sock_diag UNIX_DIAG_PEER); /proc/PID/fd tells who holds it.
 * This is a scan of every fd of every process we can see: see docs/containers.md for
 * its cost.
 */
import { readdirSync, readlinkSync } from 'node:fs';

/** A process holding a socket, and the fd it holds it under. */
export interface Holder {
  pid: number;
  fd: number;
}

/** Progress of a scan: processes done out of the total. */
export type ScanProgress = (done: number, total: number) => void;

const SOCKET_PREFIX = 'socket:[';

/** The sockfs inode a /proc/PID/fd link names, or -1 when it is not a socket. */
function linkInode(link: string): number {
  if (!link.startsWith(SOCKET_PREFIX)) return -1;
  let n = 0;
  for (let i = SOCKET_PREFIX.length; i < link.length; i++) {
    const c = link.charCodeAt(i) - 48;
    if (c < 0 || c > 9) break;
    n = n * 10 + c;
  }
  return n;
}

/**
 * Every process that holds one of `wanted` (from /proc/PID/fd links `socket:[inode]`),
 * by inode, in one pass over /proc. This is one readlink per open fd on the host, so the
 * loop keeps only the links asked for and parses them without a regular expression.
 * Processes that exit during the scan, or whose fds we may not read, are not seen: run as
 * root for a complete answer.
 */
export function socketHolders(wanted: ReadonlySet<number>, onProgress?: ScanProgress, proc = '/proc'): Map<number, Holder[]> {
  const out = new Map<number, Holder[]>();
  const pids: number[] = [];
  for (const name of readdirSync(proc)) {
    const c = name.charCodeAt(0);
    if (c >= 49 && c <= 57) pids.push(Number(name));
  }
  const total = pids.length;
  for (let p = 0; p < total; p++) {
    const pid = pids[p]!;
    const dir = `${proc}/${pid}/fd/`;
    let fds: string[];
    try {
      fds = readdirSync(dir);
    } catch {
      continue; // exited, or not ours to read
    }
    for (let f = 0; f < fds.length; f++) {
      let link: string;
      try {
        link = readlinkSync(dir + fds[f]);
      } catch {
        continue; // the fd was closed between readdir and readlink
      }
      const inode = linkInode(link);
      if (inode < 0 || !wanted.has(inode)) continue;
      const holder = { pid, fd: Number(fds[f]) };
      const list = out.get(inode);
      if (list === undefined) out.set(inode, [holder]);
      else list.push(holder);
    }
    if (onProgress && (p & 63) === 63) onProgress(p + 1, total);
  }
  onProgress?.(total, total);
  return out;
}

/**
 * Whether `holder` still holds socket `inode`: re-read after inspecting the holder, so
 * that a holder which exited (and whose pid went to another process) is not judged by
 * the newcomer's executable.
 */
export function stillHolds(holder: Holder, inode: number): boolean {
  try {
    return readlinkSync(`/proc/${holder.pid}/fd/${holder.fd}`) === `socket:[${inode}]`;
  } catch {
    return false;
  }
}
