/**
 * Strict mode (exec after connect): besides the process that connected, every process
 * that holds the peer end of the socket must be the program the rule names. The peer
 * end's inode comes from sock_diag (UNIX_DIAG_PEER of our end); its holders from a scan of
 * every fd table on the host (holders.ts), made off the event loop for apply().
 *
 * The verdict is three-valued: `fail` names a holder that is another program; `unknown`
 * says why the holders cannot be vouched for (a descriptor that may be parked in a queued
 * message, bytes queued before the check, a process whose fds we cannot read, a scan past
 * its bound). Only `pass` lets the peer in. docs/containers.md says what each covers.
 */
import { readlinkSync } from 'node:fs';
import { queuedToRead, socketInode, statPath } from '../native/index.js';
import { scanHolders, scanHoldersAsync, stillHolds, type Holder, type HolderScan, type OurEnd } from '../identity/holders.js';
import type { Peer } from '../identity/peer.js';
import { programFiles, programMatches, type ProgramFiles } from './program-file.js';
import { PASS, fail, unknown as unknownCheck, type Check } from './rule.js';

/** The answer of a strict-mode holder check. */
export interface HolderVerdict {
  /** `pass`: every holder is the program; `fail`: one is not; `unknown`: the holders cannot all be vouched for. */
  verdict: 'pass' | 'fail' | 'unknown';
  /** What was found (holders, failing holders, the process or queue that made it unknown). */
  actual?: unknown;
  message: string;
}

/** Bound on a scan made on the calling thread (applySync), in ms: past it the verdict is unknown. */
export const SYNC_SCAN_BUDGET_MS = 1000;

// A thread's own exe link: a process whose main thread exited has none at /proc/PID/exe.
const exePath = (h: Holder): string => (h.task === undefined ? `/proc/${h.pid}/exe` : `/proc/${h.pid}/task/${h.task}/exe`);

function exeOf(h: Holder): string | undefined {
  try {
    return readlinkSync(exePath(h));
  } catch {
    return undefined;
  }
}

const unknown = (actual: unknown, message: string): HolderVerdict => ({ verdict: 'unknown', actual, message: `strict mode: ${message}` });

/**
 * Our end of `peer`'s socket, or the verdict when it cannot be found. The peer end is
 * looked up by the scan, from its sock_diag dump (for a peer in another network namespace,
 * a container, in that namespace through our fd).
 */
function ourEnd(peer: Peer): OurEnd | HolderVerdict {
  try {
    const fd = peer.fd();
    const inode = socketInode(fd);
    if (inode === undefined) return unknown(undefined, 'our end of the connection is not a socket');
    return { inode, fd };
  } catch (e) {
    return unknown(undefined, `cannot find the peer end of the socket: ${(e as Error).message}`);
  }
}

const closed = (): HolderVerdict => ({ verdict: 'fail', actual: undefined, message: 'strict mode: the peer end of the socket is closed' });

const isVerdict = (x: OurEnd | HolderVerdict): x is HolderVerdict => 'verdict' in x;

function pidList(pids: readonly number[]): string {
  const shown = pids.slice(0, 8).join(', ');
  return pids.length > 8 ? `${shown} and ${pids.length - 8} more` : shown;
}

/**
 * Judges one connection on a finished scan. The program of each holder is read now,
 * after the scan, and the queue of our end last: bytes the peer wrote before a holder
 * exec'd the program are queued by the time that exec is visible.
 */
function judge(peer: Peer, files: ProgramFiles, end: OurEnd, scan: HolderScan): HolderVerdict {
  // Which scan decided: concurrent verifications share one.
  const scanInfo = { serial: scan.serial, thread: scan.threadId, startedAt: scan.startedAt, processes: scan.processes, fds: scan.fds };
  const found = scan.ends.get(end.inode);
  // No answer for our end: the scan failed before it looked (its reason says why).
  if (found === undefined) return unknown({ scan: scanInfo }, scan.incomplete ?? 'the holder scan did not look up the peer end');
  if (found.error !== undefined) return unknown(undefined, found.error);
  if (found.peer === undefined) return closed();
  const ends = { fd: end.fd, ours: end.inode, peerEnd: found.peer, peerOwner: found.owner };
  // 0: a peer end with no socket file of its own, either closed or a connection still in a
  // listener's accept queue (not yet accept()ed). One that no listener queues has closed:
  // a denial whatever else the scan saw.
  if (ends.peerEnd === 0 && !scan.listenerOf.has(ends.ours)) return closed();
  if (peer.pid === 0) return unknown({ scan: scanInfo }, 'the peer is in a pid namespace we cannot see into');
  if (scan.incomplete !== undefined) return unknown({ scan: scanInfo }, scan.incomplete);
  if (scan.unreadable.length > 0)
    return unknown(
      { scan: scanInfo, unreadable: scan.unreadable },
      `cannot read the open files of process ${pidList(scan.unreadable)}, so the holders of the peer end cannot all be seen (strict mode needs root)`,
    );

  let holders: Holder[] = ends.peerEnd === 0 ? [] : (scan.holders.get(ends.peerEnd) ?? []);
  let heldAs = ends.peerEnd;
  let listener: number | undefined;
  if (holders.length === 0) {
    // A connection still in a listener's accept queue goes to whoever accept()s on that listener.
    listener = scan.listenerOf.get(ends.ours);
    if (listener !== undefined) {
      holders = scan.holders.get(listener) ?? [];
      heldAs = listener;
    } else if (ends.peerEnd === 0) return closed();
  }
  if (holders.length === 0)
    return unknown(
      { scan: scanInfo, holders: [] },
      'no process visible to us holds the peer end of the socket (a descriptor in flight, or a holder in a pid namespace we cannot see)',
    );

  const verified = new Set<number>();
  const failing: Array<{ pid: number; program: string | undefined }> = [];
  const vanished: number[] = [];
  for (const h of holders) {
    const exe = statPath(exePath(h));
    // Re-read the fd after the stat: a holder that exited must not be judged by whoever got its pid.
    const still = stillHolds(h, heldAs);
    if (exe === undefined || !still) vanished.push(h.pid);
    else if (!programMatches(exe, files)) failing.push({ pid: h.pid, program: exeOf(h) });
    else verified.add(h.pid);
  }
  const holderPids = [...new Set(holders.map((h) => h.pid))];
  const where = listener === undefined ? 'the peer end of the socket' : `the listening socket whose accept queue holds the peer end`;
  if (failing.length > 0) {
    const unique = failing.filter((f, i) => failing.findIndex((g) => g.pid === f.pid) === i);
    const shown = unique.map((f) => `${f.pid} (${f.program ?? 'exited or unreadable'})`).join(', ');
    return {
      verdict: 'fail',
      actual: { holders: holderPids, failing: unique, ...(listener !== undefined && { listener }) },
      message: `strict mode: ${where} is also held by process ${shown}, which is not the file at ${files.paths.join(', ')}`,
    };
  }
  if (vanished.length > 0)
    return unknown(
      { holders: holderPids, vanished },
      `process ${pidList(vanished)} held ${where} during the scan and cannot be inspected now (exited, or its executable is unreadable)`,
    );

  // A descriptor parked in a queued SCM_RIGHTS message has no holder until it is received.
  // Root can take any process's descriptors (pidfd_getfd, ptrace): for a root peer only the visible holders count.
  if (peer.uid !== 0) {
    const uids = new Set([peer.uid, ...(ends.peerOwner !== undefined && ends.peerOwner !== 0 ? [ends.peerOwner] : [])]);
    const suspect = (h: { pid: number; uids: number[] }): boolean =>
      h.pid !== process.pid && !verified.has(h.pid) && (h.uids.length === 0 || h.uids.some((u) => uids.has(u)));
    for (const q of scan.queued) {
      const who = q.holders.filter(suspect);
      if (who.length > 0)
        return unknown(
          { holders: holderPids, queued: { inode: q.inode, type: q.type, why: q.why, holders: who.map((h) => h.pid) } },
          `process ${pidList(who.map((h) => h.pid))}, running as the peer's user and not the program, holds a UNIX socket ` +
            `(${q.type}, inode ${q.inode}: ${q.why}) whose queued messages could carry the peer end of the socket out of sight and back`,
        );
    }
    const foreign = scan.foreign.filter(suspect);
    if (foreign.length > 0)
      return unknown(
        { holders: holderPids, foreign: foreign.map((h) => h.pid) },
        `process ${pidList(foreign.map((h) => h.pid))}, running as the peer's user, holds sockets in another network namespace, whose queues we cannot inspect`,
      );
  }

  // Last: bytes that reached us before the holders were verified cannot be attributed to the program.
  let queuedBytes: number;
  try {
    queuedBytes = queuedToRead(ends.fd);
  } catch (e) {
    return unknown({ holders: holderPids }, `cannot read the queue of our end of the socket: ${(e as Error).message}`);
  }
  const readBytes = peer.bytesRead();
  if (queuedBytes > 0 || readBytes > 0)
    return unknown(
      { holders: holderPids, queuedBytes, readBytes },
      `${queuedBytes + readBytes} byte(s) from the peer arrived before its holders were verified: they may have been written before an exec, by another program`,
    );
  return {
    verdict: 'pass',
    actual: { holders: holderPids, scan: scanInfo },
    message: 'strict mode: every holder of the peer end is the program',
  };
}

/**
 * Strict-mode holder check on the calling thread: scans every fd table on the host (bounded
 * by {@link SYNC_SCAN_BUDGET_MS}; past it the verdict is unknown). For applySync; apply()
 * uses {@link checkHoldersAsync}, which keeps the event loop free.
 */
export function checkHolders(peer: Peer, paths: readonly string[] | ProgramFiles): HolderVerdict {
  const files = filesOf(paths);
  const prepared = preparedScans.get(peer);
  if (prepared !== undefined) return judge(peer, files, prepared.end, prepared.scan);
  const end = ourEnd(peer);
  if (isVerdict(end)) return end;
  let scan: HolderScan;
  try {
    scan = scanHolders([end], { budgetMs: SYNC_SCAN_BUDGET_MS });
  } catch (e) {
    return unknown(undefined, `the holder scan failed: ${(e as Error).message}`);
  }
  return judge(peer, files, end, scan);
}

/**
 * Strict-mode holder check with the scan made off the event loop (a worker thread),
 * begun after this call and shared with every verification asking in the same turn of
 * the event loop.
 */
export async function checkHoldersAsync(peer: Peer, paths: readonly string[] | ProgramFiles): Promise<HolderVerdict> {
  const files = filesOf(paths);
  const end = ourEnd(peer);
  if (isVerdict(end)) return end;
  const scan = await scanHoldersAsync(end);
  return judge(peer, files, end, scan);
}

const preparedScans = new WeakMap<Peer, { end: OurEnd; scan: HolderScan }>();

/**
 * For apply(): makes the holder scan of `peer` off the event loop before the rules run,
 * so that the (synchronous) program rule judges on it. `release()` forgets it when the
 * verification ends: a later verification of the same peer scans again.
 */
export async function prepareHolders(peer: Peer): Promise<{ release(): void }> {
  const end = ourEnd(peer);
  if (!isVerdict(end)) preparedScans.set(peer, { end, scan: await scanHoldersAsync(end) });
  return { release: () => preparedScans.delete(peer) };
}

/** The program rule's paths as compiled by the rule, or compiled now for a caller that has only the paths. */
const filesOf = (paths: readonly string[] | ProgramFiles): ProgramFiles =>
  Array.isArray(paths) ? programFiles(paths) : (paths as ProgramFiles);

/** Every holder of the peer end passes the program rule: {@link checkHolders}'s three-valued verdict as a rule's Check. */
export function strictHoldersCheck(peer: Peer, files: ProgramFiles): Check {
  const r = checkHolders(peer, files);
  return r.verdict === 'pass' ? PASS : r.verdict === 'unknown' ? unknownCheck(r.message, r.actual) : fail(r.actual, r.message);
}
