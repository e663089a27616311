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
import { queuedToRead } from '../native/index.js';
import { executableDigest, executableDigestAsync, MAX_HOLDER_DIGEST_BYTES } from '../identity/index.js';
import { stillHolds, type Holder, type HolderScan } from '../identity/index.js';
import { no, type Outcome } from '../identity/index.js';
import type { Peer } from '../identity/index.js';
import {
  ATTRIBUTES,
  isAttribute,
  type AttributeDef,
  type AttributeName,
  type AttributeSource,
  type AttributeTypes,
  type HolderScanOf,
} from '../identity/index.js';
import { PASS, fail, unknown as unknownCheck, type Check } from './rule.js';

/** The answer of a strict-mode holder check. */
export interface HolderVerdict {
  /** `pass`: every holder is the program; `fail`: one is not; `unknown`: the holders cannot all be vouched for. */
  verdict: 'pass' | 'fail' | 'unknown';
  /** What was found (holders, failing holders, the process or queue that made it unknown). */
  actual?: unknown;
  message: string;
}

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

const closed = (): HolderVerdict => ({ verdict: 'fail', actual: undefined, message: 'strict mode: the peer end of the socket is closed' });

function pidList(pids: readonly number[]): string {
  const shown = pids.slice(0, 8).join(', ');
  return pids.length > 8 ? `${shown} and ${pids.length - 8} more` : shown;
}

/**
 * The processes holding the peer end `peerEnd` of our end `ours`, and the socket they hold
 * it as: the peer end itself, or (a connection still in a listener's accept queue goes to
 * whoever accept()s on that listener) the listener.
 */
function holdersOf(peerEnd: number, ours: number, scan: HolderScan): { holders: Holder[]; heldAs: number; listener?: number } {
  const holders = peerEnd === 0 ? [] : (scan.holders.get(peerEnd) ?? []);
  if (holders.length > 0) return { holders, heldAs: peerEnd };
  const listener = scan.listenerOf.get(ours);
  if (listener === undefined) return { holders, heldAs: peerEnd };
  return { holders: scan.holders.get(listener) ?? [], heldAs: listener, listener };
}

/** The key of a holder in {@link HolderScanOf.digests}. */
const holderKey = (h: Holder): string => (h.task === undefined ? `${h.pid}` : `${h.pid}/${h.task}`);

/**
 * Hashes the executable of every holder of the peer end on the digest thread, before the
 * rules run (apply() with a strict programDigest rule): the size of those files is the
 * holders' choice, so none is hashed on the event loop. Each file is opened under the same
 * proof as every other holder read (it still holds the socket). The digests ride with the
 * scan's value for the holder check to use.
 */
export async function readHolderDigests(scanOf: Outcome<HolderScanOf>): Promise<void> {
  if (!scanOf.ok || scanOf.value.digests !== undefined) return;
  const { end, scan } = scanOf.value;
  // Set before any await: from here the holder check of this evaluation hashes nothing itself.
  const digests = (scanOf.value.digests = new Map<string, Outcome<string>>());
  const found = scan.ends.get(end.inode);
  // A scan that cannot vouch for the holders is unknown before any holder is judged: nothing to hash.
  if (found?.peer === undefined || scan.incomplete !== undefined || scan.unreadable.length > 0) return;
  const { holders, heldAs } = holdersOf(found.peer, end.inode, scan);
  // One digest per process (or thread) however many fds it holds the socket under.
  const unique = new Map(holders.map((h) => [holderKey(h), h]));
  await Promise.all([...unique].map(async ([key, h]) => digests.set(key, await executableDigestAsync(new HolderView(h, heldAs)))));
}

/**
 * Judges one connection on a finished scan. The program of each holder is read now,
 * after the scan, and the queue of our end last: bytes the peer wrote before a holder
 * exec'd the program are queued by the time that exec is visible.
 */
function judge(peer: Peer, test: HolderTest, scanOf: HolderScanOf): HolderVerdict {
  const { end, scan } = scanOf;
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

  const { holders, heldAs, listener } = holdersOf(ends.peerEnd, ends.ours, scan);
  if (holders.length === 0 && listener === undefined && ends.peerEnd === 0) return closed();
  if (holders.length === 0)
    return unknown(
      { scan: scanInfo, holders: [] },
      'no process visible to us holds the peer end of the socket (a descriptor in flight, or a holder in a pid namespace we cannot see)',
    );

  const verified = new Set<number>();
  const failing: Array<{ pid: number; program: string | undefined; why: string }> = [];
  const vanished: number[] = [];
  const whyUnknown: string[] = [];
  for (const h of holders) {
    // Every read of the holder is followed by a re-read of its fd: a holder that exited
    // must not be judged by whoever got its pid.
    const c = test(viewOf(scanOf, h, heldAs));
    if (c.pass) verified.add(h.pid);
    else if (c.unknown) {
      vanished.push(h.pid);
      whyUnknown.push(c.message.replace(/^unknown: /, ''));
    } else failing.push({ pid: h.pid, program: exeOf(h), why: c.message });
  }
  const holderPids = [...new Set(holders.map((h) => h.pid))];
  const where = listener === undefined ? 'the peer end of the socket' : `the listening socket whose accept queue holds the peer end`;
  if (failing.length > 0) {
    const unique = failing.filter((f, i) => failing.findIndex((g) => g.pid === f.pid) === i);
    const shown = unique.map((f) => `${f.pid} (${f.program ?? 'exited or unreadable'})`).join(', ');
    return {
      verdict: 'fail',
      actual: {
        holders: holderPids,
        failing: unique.map(({ pid, program }) => ({ pid, program })),
        ...(listener !== undefined && { listener }),
      },
      message: `strict mode: ${where} is also held by process ${shown}, which does not pass: ${unique[0]!.why}`,
    };
  }
  if (vanished.length > 0)
    return unknown(
      { holders: holderPids, vanished },
      `process ${pidList(vanished)} held ${where} during the scan and cannot be inspected now: ${whyUnknown[0]}`,
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
    message: 'strict mode: every holder of the peer end passes',
  };
}

/** What a holder must pass: the check of a rule about what runs, on the holder's attributes. */
export type HolderTest = (holder: AttributeSource) => Check;

/**
 * The holders of one evaluation's scan as views: every strict rule of a policy judges the
 * same holders, and a holder's attributes are read once for all of them (as the peer's are).
 */
const views = new WeakMap<HolderScanOf, Map<string, HolderView>>();

function viewOf(scanOf: HolderScanOf, h: Holder, heldAs: number): HolderView {
  let byHolder = views.get(scanOf);
  if (byHolder === undefined) views.set(scanOf, (byHolder = new Map()));
  const key = `${holderKey(h)}@${heldAs}`;
  let view = byHolder.get(key);
  if (view === undefined) byHolder.set(key, (view = new HolderView(h, heldAs, scanOf.digests)));
  return view;
}

/**
 * One process holding the peer end, seen through the attribute registry: /proc of the
 * holder (of the thread that holds it, when its main thread has exited), each read
 * followed by a proof that it still holds the socket (else the read is unknown).
 */
class HolderView implements AttributeSource {
  readonly #holder: Holder;
  readonly #heldAs: number;
  readonly #digests: HolderScanOf['digests'];
  readonly #read = new Map<AttributeName, Outcome<unknown>>();

  constructor(holder: Holder, heldAs: number, digests?: HolderScanOf['digests']) {
    this.#holder = holder;
    this.#heldAs = heldAs;
    this.#digests = digests;
  }

  attempt<K extends AttributeName>(name: K): Outcome<AttributeTypes[K]>;
  attempt(name: string): Outcome<unknown>;
  attempt(name: string): Outcome<unknown> {
    if (!isAttribute(name)) return no(`unknown attribute ${name}`);
    let r = this.#read.get(name);
    if (r === undefined) {
      // The holders' digests were made off the event loop before the rules ran (apply());
      // for applySync() they are made on this thread, bounded lower than the peer's own.
      r =
        name !== 'programDigest'
          ? (ATTRIBUTES[name] as AttributeDef<unknown>).read(this)
          : this.#digests !== undefined
            ? (this.#digests.get(holderKey(this.#holder)) ??
              no(`process ${this.#holder.pid} was not a holder when the holders were hashed`))
            : this.procRead((proc) => executableDigest(proc, MAX_HOLDER_DIGEST_BYTES));
      this.#read.set(name, r);
    }
    return r;
  }

  procRead<T>(read: (proc: string) => Outcome<T>): Outcome<T> {
    const h = this.#holder;
    const r = read(h.task === undefined ? `/proc/${h.pid}` : `/proc/${h.pid}/task/${h.task}`);
    return stillHolds(h, this.#heldAs) ? r : no(`process ${h.pid} no longer holds the socket (exited)`);
  }

  connection(): undefined {
    return undefined;
  }
}

/**
 * Strict-mode holder check on a finished scan (`scan`: the `holders` attribute, read off
 * the event loop by the evaluator for apply(), on the calling thread for applySync()):
 * every holder of the peer end must pass `test`; three-valued.
 */
export function checkHolders(peer: Peer, test: HolderTest, scan: Outcome<HolderScanOf>): HolderVerdict {
  if (!scan.ok) return unknown(undefined, scan.reason);
  return judge(peer, test, scan.value);
}

/** Every holder of the peer end passes `test`: {@link checkHolders}'s three-valued verdict as a rule's Check. */
export function strictHoldersCheck(peer: Peer, test: HolderTest): Check {
  const r = checkHolders(peer, test, peer.attempt('holders'));
  return r.verdict === 'pass' ? PASS : r.verdict === 'unknown' ? unknownCheck(r.message, r.actual) : fail(r.actual, r.message);
}
