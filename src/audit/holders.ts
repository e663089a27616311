/**
 * Which processes hold which sockets: one pass over /proc/PID/fd for the whole audit,
 * building an inode -> pids map. This is the expensive part of an audit (one readlink per
 * open file descriptor on the host), so the loop allocates as little as it can: it keeps
 * only links to the inodes asked for and parses `socket:[N]` without a regular expression.
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

/** Progress of a scan: processes done out of the total. */
export type ScanProgress = (done: number, total: number) => void;

const SOCKET_PREFIX = 'socket:[';

/** The sockfs inode a /proc/PID/fd link names, or -1 when it is not a socket. */
export function socketInode(link: string): number {
  if (!link.startsWith(SOCKET_PREFIX)) return -1;
  let n = 0;
  for (let i = SOCKET_PREFIX.length; i < link.length; i++) {
    const c = link.charCodeAt(i) - 48;
    if (c < 0 || c > 9) break;
    n = n * 10 + c;
  }
  return n;
}

/** The pids of the processes in `proc` (our pid namespace's view). */
export function listPids(proc = '/proc'): number[] {
  const pids: number[] = [];
  for (const name of readdirSync(proc)) {
    const c = name.charCodeAt(0);
    if (c >= 49 && c <= 57) pids.push(Number(name));
  }
  return pids;
}

/**
 * Maps each wanted socket inode to the pids holding it (each pid once, ascending).
 * Processes that exit during the scan, or whose fds we may not read, are skipped.
 */
export function scanHolders(wanted: ReadonlySet<number>, onProgress?: ScanProgress, proc = '/proc'): Map<number, number[]> {
  const holders = new Map<number, number[]>();
  const pids = listPids(proc);
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
      const inode = socketInode(link);
      if (inode < 0 || !wanted.has(inode)) continue;
      const list = holders.get(inode);
      if (list === undefined) holders.set(inode, [pid]);
      else if (list[list.length - 1] !== pid) list.push(pid);
    }
    if (onProgress && (p & 63) === 63) onProgress(p + 1, total);
  }
  onProgress?.(total, total);
  return holders;
}

/** What an audit says about a process holding a socket. */
export interface ProcessInfo {
  pid: number;
  /** Effective uid; undefined when the process is gone. */
  uid?: number;
  /** The command name (`Name:` of /proc/PID/status). */
  comm?: string;
  /** The executable (/proc/PID/exe); undefined when it cannot be read. */
  program?: string;
}

/** uid, command name and executable of a process; fields are missing when unreadable. */
export function processInfo(pid: number, proc = '/proc'): ProcessInfo {
  const info: ProcessInfo = { pid };
  try {
    // status, not the owner of /proc/PID: a non-dumpable process's directory belongs to root.
    const status = readFileSync(`${proc}/${pid}/status`, 'utf8');
    const name = /^Name:\t(.*)$/m.exec(status);
    const uid = /^Uid:\t\d+\t(\d+)/m.exec(status);
    if (name) info.comm = name[1];
    if (uid) info.uid = Number(uid[1]);
  } catch {
    return info; // gone, or hidden by hidepid
  }
  try {
    info.program = readlinkSync(`${proc}/${pid}/exe`);
  } catch {
    // kernel threads have no executable; other users' need privilege
  }
  return info;
}
