/**
 * Strict mode (DESIGN.md threat 2, exec after connect): besides the process that
 * connected, every process that holds the peer end of the socket must be the program
 * the rule names. The peer end's inode comes from sock_diag (UNIX_DIAG_PEER of our end);
 * its holders from a scan of /proc/PID/fd.
 */
import { readlinkSync } from 'node:fs';
import { socketInode, statPath, unixPeerInode } from '../native/index.js';
import { socketHolders, stillHolds, type Holder } from '../identity/holders.js';
import type { Peer } from '../identity/peer.js';
import { PASS, fail, type Check } from './rule.js';
import { programMatches } from './rules.js';

function exeOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return undefined;
  }
}

/** The holders of the peer end of `peer`'s socket, or why they cannot be known. */
export function peerEndHolders(peer: Peer): { inode: number; holders: Holder[] } | string {
  let ours: number | undefined;
  let peerEnd: number | undefined;
  try {
    const fd = peer.fd();
    ours = socketInode(fd);
    if (ours === undefined) return 'strict mode: our end of the connection is not a socket';
    // A peer in another network namespace (a container) owns both ends' namespace.
    peerEnd = unixPeerInode(ours, { via: fd });
  } catch (e) {
    return `strict mode: cannot find the peer end of the socket: ${(e as Error).message}`;
  }
  if (peerEnd === undefined) return 'strict mode: the peer end of the socket is closed';
  return { inode: peerEnd, holders: socketHolders(new Set([peerEnd])).get(peerEnd) ?? [] };
}

/** Every holder of the peer end passes the program rule with these paths. */
export function strictHoldersCheck(peer: Peer, paths: readonly string[]): Check {
  const found = peerEndHolders(peer);
  if (typeof found === 'string') return fail(undefined, found);
  const { inode, holders } = found;
  // An fd in flight (SCM_RIGHTS) or a holder in a pid namespace we cannot see: nobody to vouch for.
  if (holders.length === 0) return fail([], 'strict mode: no process visible to us holds the peer end of the socket');
  const failing: Array<{ pid: number; program: string | undefined }> = [];
  for (const h of holders) {
    const exe = statPath(`/proc/${h.pid}/exe`);
    // Re-read the fd link after the stat: a holder that exited must not be judged by whoever got its pid.
    if (exe === undefined || !programMatches(exe, paths) || !stillHolds(h, inode)) failing.push({ pid: h.pid, program: exeOf(h.pid) });
  }
  if (failing.length === 0) return PASS;
  const shown = failing.map((f) => `${f.pid} (${f.program ?? 'exited or unreadable'})`).join(', ');
  return fail(
    { holders: holders.map((h) => h.pid), failing },
    `strict mode: the peer end of the socket is also held by process ${shown}, which is not the file at ${paths.join(', ')}`,
  );
}
