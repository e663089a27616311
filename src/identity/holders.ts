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

function listDir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    // The process exited, or we may not look at its fds.
    return [];
  }
}

/**
 * Every process that holds one of `inodes` (from /proc/PID/fd links `socket:[inode]`),
 * by inode. Processes whose fds we may not read are not seen: run as root for a
 * complete answer.
 */
export function socketHolders(inodes: ReadonlySet<number>): Map<number, Holder[]> {
  const out = new Map<number, Holder[]>();
  for (const entry of listDir('/proc')) {
    const c = entry.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    const pid = Number(entry);
    const dir = `/proc/${entry}/fd`;
    for (const fd of listDir(dir)) {
      let link: string;
      try {
        link = readlinkSync(`${dir}/${fd}`);
      } catch {
        continue;
      }
      if (!link.startsWith('socket:[')) continue;
      const inode = Number(link.slice(8, -1));
      if (!inodes.has(inode)) continue;
      let list = out.get(inode);
      if (!list) out.set(inode, (list = []));
      list.push({ pid, fd: Number(fd) });
    }
  }
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
