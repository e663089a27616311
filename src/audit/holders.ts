/**
 * Which processes hold which sockets (one pass over /proc/PID/fd for the whole audit, the
 * expensive part of it), and what the audit says of each holder.
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { socketHolders, type ScanProgress } from '../identity/holders.js';

export type { ScanProgress };

/**
 * Maps each wanted socket inode to the pids holding it (each pid once, ascending), from
 * the same single /proc scan that strict mode uses.
 */
export function scanHolders(wanted: ReadonlySet<number>, onProgress?: ScanProgress, proc = '/proc'): Map<number, number[]> {
  const pids = new Map<number, number[]>();
  for (const [inode, holders] of socketHolders(wanted, onProgress, proc)) {
    pids.set(inode, [...new Set(holders.map((h) => h.pid))]);
  }
  return pids;
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
    // The kernel writes a newline and a backslash in the name as \n and \\: undone, so the name is exact.
    if (name) info.comm = name[1]!.replace(/\\([n\\])/g, (_, c: string) => (c === 'n' ? '\n' : '\\'));
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
