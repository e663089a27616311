/**
 * Which processes hold a socket (exec after connect). SO_PEERCRED names the process that
 * called connect(); after a fork the socket may be held by others, and the one that
 * connected may have exec'd a trusted binary since. The kernel knows the peer end's inode
 * (sock_diag UNIX_DIAG_PEER); the fd tables under /proc tell who holds it. This is a scan
 * of every fd of every process we can see: docs/containers.md gives its cost. Strict mode
 * runs it on a worker thread (holder-worker.ts), one scan per batch of verifications.
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { threadId } from 'node:worker_threads';
import { ErrorCode } from '../errors.js';
import { WorkerPort } from '../worker-port.js';
import type { ScanRequest } from './holder-worker.js';
import { dumpUnixSockets, readFdLinks, readTaskIds, sameFdTable, unixSocket, type FdLinks, type UnixSocketInfo } from '../native/index.js';

/** A process holding a socket, and the fd it holds it under. */
export interface Holder {
  pid: number;
  fd: number;
  /** The thread whose own fd table holds it, when that table is not the process's (/proc/PID/task/TID/fd). */
  task?: number;
  /** `io_uring`: a file registered with the io_uring instance open as `fd` (it holds no fd of its own). */
  via?: 'io_uring';
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
export function stillHolds(holder: Holder, inode: number, proc = '/proc'): boolean {
  const base = holder.task === undefined ? `${proc}/${holder.pid}` : `${proc}/${holder.pid}/task/${holder.task}`;
  try {
    if (holder.via === 'io_uring') return ioUringFiles(`${base}/fdinfo/${holder.fd}`).includes(inode);
    return readlinkSync(`${base}/fd/${holder.fd}`) === `socket:[${inode}]`;
  } catch {
    return false;
  }
}

/** The sockets registered with an io_uring instance, from its fdinfo (`UserFiles:` then one `N: path` line per file). */
function ioUringFiles(fdinfo: string): number[] {
  const out: number[] = [];
  const text = readFileSync(fdinfo, 'latin1');
  const at = text.indexOf('UserFiles:');
  if (at < 0) return out;
  for (const line of text.slice(at).split('\n')) {
    const m = /^\s*\d+: socket:\[(\d+)\]/.exec(line);
    if (m) out.push(Number(m[1]));
  }
  return out;
}

/** A UNIX socket that may hold a message with file descriptors in it, and who holds it. */
export interface QueuedSocket {
  inode: number;
  type: UnixSocketInfo['type'];
  /** Why it may carry descriptors (queued bytes, waiting connections, an empty datagram we cannot rule out). */
  why: string;
  /** Its holders, with every uid of each (real, effective, saved, filesystem); uids empty when unreadable. */
  holders: Array<{ pid: number; uids: number[] }>;
}

/** A process in another network namespace, holding sockets our sock_diag cannot describe. */
export interface ForeignHolder {
  pid: number;
  uids: number[];
}

/** Our end of a connection being verified: the scan looks up its peer end. */
export interface OurEnd {
  /** Our end's socket inode. */
  inode: number;
  /** Our fd for it: a connection from another network namespace is looked up in that namespace through it. */
  fd: number;
}

/**
 * The peer end of one of our ends as sock_diag described it when the scan began. `peer`
 * undefined: our end is gone or has no peer (closed); 0: the peer end has no socket file
 * of its own (closed, or a connection still in a listener's accept queue).
 */
export interface PeerEnd {
  peer?: number;
  /** The peer end's owner uid. */
  owner?: number;
  /** Why the peer end could not be looked up. */
  error?: string;
}

/** What one holder scan saw. Plain data: it crosses from the scanning thread by structured clone. */
export interface HolderScan {
  /** Serial number of the scan (scans shared by concurrent verifications have the same one). */
  serial: number;
  /** The thread that scanned (0: the main thread). */
  threadId: number;
  /** When the scan began and ended (ms, performance.timeOrigin-independent epoch time). */
  startedAt: number;
  endedAt: number;
  /** The peer end of each of our ends asked about, by our end's inode. */
  ends: Map<number, PeerEnd>;
  /** Holders of each peer end (and our end), and of each listener whose accept queue holds a connection from our end. */
  holders: Map<number, Holder[]>;
  /**
   * Wanted inode of a connecting socket -> the listener whose accept queue holds its
   * connection, not yet accept()ed (UNIX_DIAG_ICONS lists the connecting ends).
   */
  listenerOf: Map<number, number>;
  /** Sockets held by some process that may carry file descriptors in queued messages. */
  queued: QueuedSocket[];
  /** Processes in another network namespace holding sockets not in our sock_diag listing. */
  foreign: ForeignHolder[];
  /** Processes whose fd tables could not be read (permission): their holdings are unknown. */
  unreadable: number[];
  /** Set when the scan could not see every process (its bound, our pid namespace, hidepid, no sock_diag). */
  incomplete?: string;
  /** Processes and fds read. */
  processes: number;
  fds: number;
}

/** Options of {@link scanHolders}. */
export interface ScanOptions {
  /** Stop (and report the scan incomplete) after this many ms. */
  budgetMs: number;
  proc?: string;
  serial?: number;
}

// The scan never looks at the bound files' identity: the kernel need not find them.
const SCAN_DUMP = { vfs: false };

// The initial pid namespace has a fixed inode (PROC_PID_INIT_INO).
const INIT_PID_NS = 'pid:[4026531836]';
let visibility: string | null | undefined;

/** Why /proc cannot show us every process on the host, or null when it can. */
function visibilityProblem(proc: string): string | null {
  if (visibility !== undefined) return visibility;
  let problem: string | null = null;
  try {
    if (readlinkSync(`${proc}/self/ns/pid`) !== INIT_PID_NS)
      problem = "we run in a pid namespace below the host's, so processes outside it (which could hold the socket) are invisible";
  } catch {
    problem = 'cannot read our pid namespace';
  }
  // hidepid / subset=pid hide other users' processes from a process without ptrace rights over them.
  if (problem === null && process.geteuid?.() !== 0) {
    try {
      const mounts = readFileSync(`${proc}/self/mountinfo`, 'utf8');
      for (const line of mounts.split('\n')) {
        const f = line.split(' ');
        if (f[4] === proc && / - proc /.test(line) && /(hidepid=(?!0\b|off\b)|subset=pid)/.test(line)) {
          problem = `${proc} is mounted with hidepid or subset=pid: other users' processes are hidden from us`;
        }
      }
    } catch {
      // No mountinfo: unreadable fd tables still make the scan's answer unknown.
    }
  }
  visibility = problem;
  return problem;
}

/** Every uid of a process (Uid: real effective saved fs), or [] when unreadable. */
function processUids(pid: number, proc: string): number[] {
  try {
    const status = readFileSync(`${proc}/${pid}/status`, 'latin1');
    const m = /^Uid:\t(\d+)\t(\d+)\t(\d+)\t(\d+)/m.exec(status);
    return m ? [...new Set([m[1], m[2], m[3], m[4]].map(Number))] : [];
  } catch {
    return [];
  }
}

/**
 * Why a UNIX socket may hold a message with file descriptors (SCM_RIGHTS), or undefined
 * when the kernel's counters rule it out. A stream message carries at least one byte, so
 * an empty stream queue holds none; a datagram or seqpacket message may be empty, so for
 * those the sender's in-flight bytes (its write queue) or the socket's openness to senders
 * decide.
 */
export function mayCarryFds(s: UnixSocketInfo, byInode: ReadonlyMap<number, UnixSocketInfo>): string | undefined {
  const q = s.queue;
  if (q === undefined) return 'its queue length is unknown';
  if (s.state === 'listen') return q.read > 0 || (s.icons?.length ?? 0) > 0 ? `${q.read} connection(s) wait to be accepted` : undefined;
  if (q.read > 0) return `${q.read} byte(s) queued to read`;
  if (s.type === 'stream') return undefined;
  if (s.peer !== undefined) {
    if (s.peer === 0) return 'connected to a closed socket, whose empty messages may still be queued';
    const p = byInode.get(s.peer);
    if (p === undefined) return 'connected to a socket we cannot see';
    if (p.queue === undefined || p.queue.write > 0) return 'its peer has messages in flight';
    return undefined;
  }
  if (s.name !== undefined) return 'a bound, unconnected datagram socket: anyone may have queued an empty message';
  return undefined;
}

const tids: number[] = [];

/**
 * The fd tables of one process: /proc/PID/fd, plus /proc/PID/task/TID/fd for each thread
 * whose table is not one already listed (kcmp KCMP_FILES). A process whose main thread
 * called pthread_exit shows an empty /proc/PID/fd while its other threads hold files.
 */
function fdTables(pid: number, proc: string): Array<{ dir: string; task?: number }> | 'gone' {
  tids.length = 0;
  if (!readTaskIds(`${proc}/${pid}/task`, tids)) return 'gone';
  const tables: Array<{ dir: string; task?: number }> = [{ dir: `${proc}/${pid}/fd/` }];
  if (tids.length <= 1) return tables;
  const seen = [pid];
  for (const tid of tids) {
    if (tid === pid) continue;
    // undefined (no kcmp, no ptrace access): read the table rather than assume it is shared.
    if (seen.some((other) => sameFdTable(other, tid) === true)) continue;
    seen.push(tid);
    tables.push({ dir: `${proc}/${pid}/task/${tid}/fd/`, task: tid });
  }
  return tables;
}

/**
 * The peer end of `end`, from the sock_diag dump of our network namespace (`byInode`);
 * a connection from another network namespace (not in it) is asked for in its own.
 */
function peerEndOf(end: OurEnd, byInode: ReadonlyMap<number, UnixSocketInfo>): PeerEnd {
  try {
    const peer = (byInode.get(end.inode) ?? unixSocket(end.inode, { via: end.fd }))?.peer;
    if (peer === undefined) return {};
    const info = peer === 0 ? undefined : (byInode.get(peer) ?? unixSocket(peer, { via: end.fd }));
    return info?.uid === undefined ? { peer } : { peer, owner: info.uid };
  } catch (e) {
    return { error: `cannot find the peer end of the socket: ${(e as Error).message}` };
  }
}

/** A scan that has seen nothing yet, begun at `startedAt`. */
function emptyScan(serial: number, startedAt: number): HolderScan {
  return {
    serial,
    threadId,
    startedAt,
    endedAt: startedAt,
    ends: new Map(),
    holders: new Map(),
    listenerOf: new Map(),
    queued: [],
    foreign: [],
    unreadable: [],
    processes: 0,
    fds: 0,
  };
}

/**
 * One holder scan for strict mode: the peer end of each of `ours` (our ends of the
 * connections being verified), who holds each peer end, which listener queues one of our
 * connections not yet accepted, and which processes hold UNIX sockets that may be carrying
 * file descriptors in queued messages (a descriptor parked in flight has no holder).
 * sock_diag is read before and after the /proc walk, so a message queued during it is seen
 * too; the peer ends come from the first dump, one listing for the whole batch instead of
 * queries per connection. Bounded by `budgetMs`; runs on any thread.
 */
export function scanHolders(ours: readonly OurEnd[], options: ScanOptions): HolderScan {
  const proc = options.proc ?? '/proc';
  const startedAt = Date.now();
  const deadline = startedAt + options.budgetMs;
  const scan = emptyScan(options.serial ?? 0, startedAt);
  const problem = visibilityProblem(proc);
  if (problem !== null) scan.incomplete = problem;
  let before: UnixSocketInfo[] = [];
  try {
    before = dumpUnixSockets(undefined, SCAN_DUMP);
  } catch (e) {
    scan.incomplete ??= `cannot list UNIX sockets through sock_diag: ${(e as Error).message}`;
  }
  const beforeByInode = new Map<number, UnixSocketInfo>();
  for (const s of before) beforeByInode.set(s.inode, s);
  // Our end too: a connection still in an accept queue is found by it (UNIX_DIAG_ICONS).
  const want = new Set<number>();
  for (const end of ours) {
    const found = peerEndOf(end, beforeByInode);
    scan.ends.set(end.inode, found);
    if (found.error !== undefined || found.peer === undefined) continue;
    if (found.peer !== 0) want.add(found.peer);
    want.add(end.inode);
  }
  for (const s of before) {
    if (s.state !== 'listen' || !s.icons) continue;
    for (const i of s.icons) {
      if (want.has(i)) {
        scan.listenerOf.set(i, s.inode);
        want.add(s.inode);
      }
    }
  }
  for (const inode of want) scan.holders.set(inode, []);

  // Every socket seen, inode -> pids holding it: the queued-socket and foreign checks need them.
  const held = new Map<number, number[]>();
  const note = (inode: number, pid: number, holder: Holder | undefined): void => {
    const pids = held.get(inode);
    if (pids === undefined) held.set(inode, [pid]);
    else if (pids[pids.length - 1] !== pid) pids.push(pid);
    if (holder && want.has(inode)) scan.holders.get(inode)!.push(holder);
  };
  const links: FdLinks = { sockets: [], ioUring: [] };

  const pids: number[] = [];
  for (const name of readdirSync(proc)) {
    const c = name.charCodeAt(0);
    if (c >= 49 && c <= 57) pids.push(Number(name));
  }
  for (let p = 0; p < pids.length; p++) {
    if ((p & 15) === 15 && Date.now() > deadline) {
      scan.incomplete ??= `the holder scan did not finish within its bound of ${options.budgetMs} ms (${p} of ${pids.length} processes read)`;
      break;
    }
    const pid = pids[p]!;
    const tables = fdTables(pid, proc);
    if (tables === 'gone') continue;
    scan.processes++;
    for (const { dir, task } of tables) {
      links.sockets.length = 0;
      links.ioUring.length = 0;
      const read = readFdLinks(dir, links);
      // gone: the process or thread exited, and holds nothing now.
      if (read === 'gone') continue;
      if (read === 'denied') {
        if (!scan.unreadable.includes(pid)) scan.unreadable.push(pid);
        continue;
      }
      scan.fds += read;
      const sockets = links.sockets;
      for (let i = 0; i < sockets.length; i += 2) {
        const inode = sockets[i + 1]!;
        note(inode, pid, want.has(inode) ? (task === undefined ? { pid, fd: sockets[i]! } : { pid, fd: sockets[i]!, task }) : undefined);
      }
      for (const fd of links.ioUring) {
        // Files registered with an io_uring hold the socket without any fd of their own.
        let files: number[] = [];
        try {
          files = ioUringFiles(`${dir.slice(0, -3)}fdinfo/${fd}`);
        } catch {
          if (!scan.unreadable.includes(pid)) scan.unreadable.push(pid);
        }
        for (const i of files) note(i, pid, { pid, fd, via: 'io_uring', ...(task !== undefined && { task }) });
      }
    }
  }

  let after: UnixSocketInfo[] = [];
  try {
    after = dumpUnixSockets(undefined, SCAN_DUMP);
  } catch (e) {
    scan.incomplete ??= `cannot list UNIX sockets through sock_diag: ${(e as Error).message}`;
  }
  const uidCache = new Map<number, number[]>();
  const uidsOf = (pid: number): number[] => {
    let u = uidCache.get(pid);
    if (u === undefined) uidCache.set(pid, (u = processUids(pid, proc)));
    return u;
  };
  const unix = new Set<number>();
  const queued = new Map<number, QueuedSocket>();
  for (const dump of [before, after]) {
    const byInode = dump === before ? beforeByInode : new Map(dump.map((s) => [s.inode, s]));
    for (const s of dump) {
      unix.add(s.inode);
      if (queued.has(s.inode)) continue;
      const pidsHolding = held.get(s.inode);
      if (pidsHolding === undefined) continue; // held by nobody (or only in flight): nobody can take a message out
      const why = mayCarryFds(s, byInode);
      if (why === undefined) continue;
      queued.set(s.inode, {
        inode: s.inode,
        type: s.type,
        why,
        holders: [...new Set(pidsHolding)].map((pid) => ({ pid, uids: uidsOf(pid) })),
      });
    }
  }
  scan.queued = [...queued.values()];

  // Sockets outside both listings belong to other families or to other network namespaces.
  let ourNet: string | undefined;
  try {
    ourNet = readlinkSync(`${proc}/self/ns/net`);
  } catch {
    ourNet = undefined;
  }
  const checked = new Set<number>();
  for (const [inode, pidsHolding] of held) {
    if (unix.has(inode)) continue;
    for (const pid of pidsHolding) {
      if (checked.has(pid)) continue;
      checked.add(pid);
      let net: string | undefined;
      try {
        net = readlinkSync(`${proc}/${pid}/ns/net`);
      } catch {
        net = undefined; // exited
      }
      if (net !== undefined && net !== ourNet) scan.foreign.push({ pid, uids: uidsOf(pid) });
    }
  }
  scan.endedAt = Date.now();
  return scan;
}

/** Bound on a scan made off the event loop, in ms: past it the verifications waiting on it are unknown. */
export const ASYNC_SCAN_BUDGET_MS = 5000;

const scanner = new WorkerPort<ScanRequest, HolderScan>({
  url: new URL('./holder-worker.js', import.meta.url),
  name: 'the holder scan thread',
});
let serials = 0;
const waiting: Array<{ end: OurEnd; resolve: (scan: HolderScan) => void }> = [];
let running = false;
let scheduled = false;

/** A scan that could not be made: the verifications waiting on it are unknown, with this reason. */
function failedScan(serial: number, reason: string): HolderScan {
  const scan = emptyScan(serial, Date.now());
  scan.incomplete = reason;
  return scan;
}

function startBatch(): void {
  scheduled = false;
  if (running || waiting.length === 0) return;
  running = true;
  const batch = waiting.splice(0);
  const serial = ++serials;
  const byInode = new Map<number, OurEnd>();
  for (const b of batch) byInode.set(b.end.inode, b.end);
  const ours = [...byInode.values()];
  const finish = (scan: HolderScan): void => {
    running = false;
    kick();
    // One verification judged per turn of the loop: a large batch does not stall the
    // connections and timers waiting between them.
    let i = 0;
    const next = (): void => {
      batch[i++]!.resolve(scan);
      if (i < batch.length) setImmediate(next);
    };
    next();
  };
  if (!scanner.available) {
    // No worker threads here: the scan still runs, on this thread.
    finish(scanHere(ours, serial));
    return;
  }
  scanner.request({ serial, ours, budgetMs: ASYNC_SCAN_BUDGET_MS }).then(finish, (e: unknown) =>
    // A worker that could not start: this thread, as above.
    finish(
      (e as { code?: string }).code === ErrorCode.UNSUPPORTED_PLATFORM
        ? scanHere(ours, serial)
        : failedScan(serial, `the holder scan failed: ${(e as Error).message}`),
    ),
  );
}

/** A scan on the calling thread, for a runtime where no worker can start. */
function scanHere(ours: OurEnd[], serial: number): HolderScan {
  try {
    return scanHolders(ours, { budgetMs: ASYNC_SCAN_BUDGET_MS, serial });
  } catch (e) {
    return failedScan(serial, `the holder scan failed: ${(e as Error).message}`);
  }
}

function kick(): void {
  if (running || scheduled || waiting.length === 0) return;
  scheduled = true;
  // setImmediate: every verification accepted in this turn of the loop joins the scan.
  setImmediate(startBatch);
}

/**
 * A holder scan covering our end `end` (and its peer end), made off the event loop (a
 * worker thread) and begun after this call: verifications asking in the same turn of the
 * event loop share one scan; those asking while a scan runs wait for the next one (a scan
 * that began before they asked could miss a process that forked since).
 */
export function scanHoldersAsync(end: OurEnd): Promise<HolderScan> {
  return new Promise((resolve) => {
    waiting.push({ end, resolve });
    kick();
  });
}
