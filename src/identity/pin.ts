/**
 * Pinning the process behind a connection (pid reuse, docs/security.md). /proc/PID
 * names whichever process has that pid *now*; a pin proves, after each read, that this is
 * still the process that connected. Best: the kernel's SO_PEERPIDFD, a pidfd taken at
 * connect() time. Else pidfd_open(pid) with the start time compared around it and after
 * every read. Else nothing can be proven and /proc-based rules fail.
 */
import type { Socket } from 'node:net';
import { closeFd, socketFd } from '../native/index.js';
import { pidfdAlive, pidfdOpen, socketPeerPidfd } from '../native/index.js';
import { no, ok, type Outcome } from './outcome.js';
import { liveStartTime as startTime } from './proc.js';

/** How the process behind a connection was pinned. */
export type Pinning = 'pidfd' | 'start-time' | 'none';

/** The reason given by every rule whose /proc data could not be proven to be the peer's. */
export const PEER_EXITED = 'peer exited';

/** Options of {@link Pin.of}. */
export interface PinOptions {
  /** Ask the socket for SO_PEERPIDFD first. Tests turn it off to exercise the fallback. @default true */
  peerPidfd?: boolean;
}

/** A pinned peer process; owns a pidfd to close. */
export class Pin {
  /** How the process was pinned. */
  readonly method: Pinning;
  readonly pid: number;
  #pidfd: number | undefined;
  #start: string | undefined;
  #broken: string | undefined;

  private constructor(method: Pinning, pid: number, pidfd: number | undefined, start: string | undefined, broken: string | undefined) {
    this.method = method;
    this.pid = pid;
    this.#pidfd = pidfd;
    this.#start = start;
    this.#broken = broken;
  }

  /** Pins the peer of socket `fd` whose SO_PEERCRED pid is `pid`. Never throws: a failure is a broken pin with a reason. */
  static of(fd: number, pid: number, options: PinOptions = {}): Pin {
    if (pid <= 0) return new Pin('none', pid, undefined, undefined, 'peer process is not visible from our pid namespace (pid 0)');
    try {
      if (options.peerPidfd !== false) {
        const r = socketPeerPidfd(fd);
        if (typeof r === 'number') return new Pin('pidfd', pid, r, undefined, undefined);
        // The kernel has SO_PEERPIDFD and says the process is gone: its pid may be anyone's now.
        if (r === 'exited') return new Pin('pidfd', pid, undefined, undefined, PEER_EXITED);
      }
      return Pin.#byStartTime(pid);
    } catch (e) {
      return new Pin('none', pid, undefined, undefined, `cannot pin the peer process: ${(e as Error).message}`);
    }
  }

  /** A pin already known to be broken, for a peer whose process could not be pinned before. */
  static broken(method: Pinning, pid: number, reason: string): Pin {
    return new Pin(method, pid, undefined, undefined, reason);
  }

  static #byStartTime(pid: number): Pin {
    const before = startTime(pid);
    if (before === undefined) return new Pin('start-time', pid, undefined, undefined, PEER_EXITED);
    const fd = pidfdOpen(pid);
    if (fd === 'exited') return new Pin('start-time', pid, undefined, before, PEER_EXITED);
    const pidfd = typeof fd === 'number' ? fd : undefined;
    // The same start time on both sides of pidfd_open: the pidfd is of the process we first saw.
    if (startTime(pid) !== before) {
      if (pidfd !== undefined) closeFd(pidfd);
      return new Pin('start-time', pid, undefined, before, PEER_EXITED);
    }
    return new Pin('start-time', pid, pidfd, before, undefined);
  }

  /** Undefined while the pinned process is alive and still has its pid; else why not. */
  check(): string | undefined {
    if (this.#broken !== undefined) return this.#broken;
    if (this.#pidfd !== undefined && !pidfdAlive(this.#pidfd)) return this.#break(PEER_EXITED);
    if (this.method === 'start-time' && startTime(this.pid) !== this.#start) return this.#break(PEER_EXITED);
    return undefined;
  }

  /** Why the pin is already known to be broken, without asking the kernel again; else undefined. */
  get knownBroken(): string | undefined {
    return this.#broken;
  }

  /** Whether the pin holds a pidfd (for tests of fd hygiene). */
  get hasPidfd(): boolean {
    return this.#pidfd !== undefined;
  }

  /** Releases the pidfd; later checks fail, since nothing proves the pid any more. */
  close(): void {
    if (this.#pidfd !== undefined) {
      closeFd(this.#pidfd);
      this.#pidfd = undefined;
    }
    this.#broken ??= 'the connection is closed: the peer process is no longer pinned';
  }

  #break(reason: string): string {
    this.#broken = reason;
    if (this.#pidfd !== undefined) {
      closeFd(this.#pidfd);
      this.#pidfd = undefined;
    }
    return reason;
  }
}

/** What a {@link PinnedReader} pins: a connection's socket and its peer's pid (SO_PEERCRED). */
export interface PinnedConnection {
  readonly socket: Socket;
  readonly pid: number;
}

/**
 * The pin of one Peer, counted: a pin (one pidfd) lives for one /proc read, or, while
 * holds are open ({@link PinnedReader.hold}), across every read until the last hold ends.
 * A verified connection holds no pidfd between verifications.
 */
export class PinnedReader {
  readonly #connection: PinnedConnection;
  #pin: Pin | undefined;
  #method: Pinning | undefined;
  /** Why the process could not be pinned (pid 0, exited): remembered, never retried. */
  #broken: string | undefined;
  #holding = 0;

  /** The peer of a connection (its socket and its SO_PEERCRED pid), kept as the one object the Peer has. */
  constructor(connection: PinnedConnection) {
    this.#connection = connection;
  }

  /** How the process is pinned (pinned now if it never was). */
  get method(): Pinning {
    if (this.#method === undefined) this.read(() => ok(undefined));
    return this.#method!;
  }

  /** True while a hold is open. */
  get holding(): boolean {
    return this.#holding > 0;
  }

  /** Reads /proc of the peer, then proves the process is still the peer (else "peer exited"). */
  read<T>(read: (proc: string) => Outcome<T>): Outcome<T> {
    const pin = this.#pinned();
    try {
      // Liveness is proven once, after the read: a process gone before the read is still
      // gone after it, so a check before would only cost one more system call.
      const known = pin.knownBroken;
      if (known !== undefined) return no(known);
      const r = read(`/proc/${pin.pid}`);
      const broken = pin.check();
      return broken === undefined ? r : no(broken);
    } finally {
      if (this.#holding === 0) this.#unpin();
    }
  }

  hold(): void {
    this.#holding++;
  }

  /** Ends a hold; true when it was the last (the pin is released). */
  release(): boolean {
    if (this.#holding > 0 && --this.#holding === 0) {
      this.#unpin();
      return true;
    }
    return false;
  }

  // Pinned only when a rule needs /proc: a uid-only policy pays nothing for it. A new
  // pin (SO_PEERPIDFD) names the same process as the first: the kernel keeps the peer's
  // struct pid from connect() on the socket.
  #pinned(): Pin {
    if (this.#pin) return this.#pin;
    if (this.#broken !== undefined) return Pin.broken(this.#method ?? 'none', this.#connection.pid, this.#broken);
    let fd = -1;
    try {
      fd = socketFd(this.#connection.socket);
    } catch {
      // A closed socket: Pin.of reports it as a pin that cannot be made.
    }
    const pin = Pin.of(fd, this.#connection.pid);
    this.#method = pin.method;
    this.#pin = pin;
    return pin;
  }

  #unpin(): void {
    const pin = this.#pin;
    if (pin === undefined) return;
    this.#pin = undefined;
    this.#broken ??= pin.knownBroken;
    pin.close();
  }
}
