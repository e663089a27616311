/**
 * The peer behind a connection, resolved lazily: a policy that checks only the uid makes
 * one getsockopt call, one that checks the program also stats /proc. Each attribute is
 * read at most once per connection; a failure to read one is remembered with its reason
 * so that the rules needing it fail closed and say why.
 */
import { readlinkSync } from 'node:fs';
import { Server, type Socket } from 'node:net';
import {
  groupName,
  localAddress,
  peerCred,
  peerGroups,
  peerSecurityLabel,
  remoteAddress,
  socketFd,
  statPath,
  statProcExe,
  userName,
  S_IFMT,
  S_IFSOCK,
  type FileStat,
} from '../native/index.js';
import { listenerFileMode } from './listener-file.js';
import { absent, isMissing, no, ok, type Outcome } from './outcome.js';
import { Pin, type Pinning } from './pin.js';
import {
  PROC_ATTRIBUTE_DEFS,
  PUBLIC_PROC_ATTRIBUTES,
  resolveProcAttribute,
  type AttributeDef,
  type ProcAttributeValues,
} from './proc-attributes.js';
import { idUnmapped } from './proc.js';

/** Which end of the connection we are: the side that accepted it, or the side that connected. */
export type Side = 'server' | 'client';

export type { Outcome };

/** Options for building a Peer (internal callers: apply(), connect()). */
export interface PeerOptions {
  /** Which end we are; by default the side that accepted (`socket.server` set) is the server. */
  side?: Side;
  /** The socket file the connection came through, when the caller knows it better than the kernel. */
  socketPath?: string;
}

/**
 * The attributes declared in the attribute table (namespaces, cgroup, container, unit,
 * slice, userUnit, noNewPrivs, programDigest): one getter each, read under the pin at the
 * time of reading; undefined when it cannot be read (`peer.reason(name)` says why).
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type, @typescript-eslint/no-unsafe-declaration-merging
export interface Peer extends ProcAttributeValues {}

/** The peer of a UNIX socket connection. */
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class Peer {
  readonly #socket: Socket;
  readonly #side: Side;
  readonly #knownPath: string | undefined;
  readonly #pid: number;
  readonly #uid: number;
  readonly #gid: number;
  // Attributes fixed at connect, each read at most once, one slot each (no map per
  // connection): the value itself once read (a failure as the Outcome saying why).
  #uidV: unknown;
  #gidV: unknown;
  #userV: unknown;
  #groupV: unknown;
  #pathV: unknown;
  #permsV: unknown;
  /** The rarer ones: supplementary groups, label, and what the last hold saw besides the executable. */
  #more: { groups?: unknown; label?: unknown; seenLive?: Map<string, Outcome<unknown>> } | undefined;
  // Attributes of the live process, kept only while a hold lasts: the executable in a slot
  // (the program rule reads it on every connection), the rest in a map made when needed.
  #exeR: Outcome<unknown> | undefined;
  #live: Map<string, Outcome<unknown>> | undefined;
  #pin: Pin | undefined;
  #pinMethod: Pinning | undefined;
  /** Why the process could not be pinned (pid 0, exited): remembered, never retried. */
  #pinBroken: string | undefined;
  #holding = 0;
  /** The executable's identity while the last hold lasted (`seen` is made from it when asked for). */
  #seenExe: FileStat | undefined;

  /** @internal Use `policy.apply()` or `peerOf()`; a Peer made by hand reads the socket it is given. */
  constructor(socket: Socket, options?: PeerOptions) {
    // socketFd first: it validates the argument before anything reads from it.
    const fd = socketFd(socket);
    this.#socket = socket;
    this.#side = options?.side ?? ((socket as { server?: unknown }).server ? 'server' : 'client');
    this.#knownPath = options?.socketPath;
    // Credentials are read at once: they are what every policy needs, and reading them
    // now (not when a getter is first touched) ties the Peer to this connection.
    const cred = peerCred(fd);
    this.#pid = cred.pid;
    this.#uid = cred.uid;
    this.#gid = cred.gid;
  }

  /** Which end of the connection this process is. */
  get side(): Side {
    return this.#side;
  }

  /** Peer process id as of connect(); 0 when the process is not visible in our pid namespace. */
  get pid(): number {
    return this.#pid;
  }

  /** Peer user id (65534 when the id has no mapping in our user namespace). */
  get uid(): number {
    return this.#uid;
  }

  /** Peer primary group id (65534 when unmapped). */
  get gid(): number {
    return this.#gid;
  }

  /** Supplementary groups from the kernel (SO_PEERGROUPS); empty when unavailable. */
  get groups(): number[] {
    const r = this.attempt('groups');
    return r.ok ? (r.value as number[]) : [];
  }

  /** Name of the peer's uid, through NSS; undefined when it has none. */
  get user(): string | undefined {
    return this.value<string>('user');
  }

  /** Name of the peer's primary gid, through NSS; undefined when it has none. */
  get group(): string | undefined {
    return this.value<string>('group');
  }

  /** The peer's executable, as its own mount namespace names it (/proc/PID/exe). */
  get program(): string | undefined {
    return this.value<string>('program');
  }

  /** Mode bits (& 0o777) of the socket file the connection came through; undefined for abstract and unnamed sockets. */
  get perms(): number | undefined {
    return this.value<number>('perms');
  }

  /** The peer's security label (SO_PEERSEC); undefined when no LSM provides one. */
  get label(): string | undefined {
    return this.value<string>('label');
  }

  /** The socket file (or `@name` for an abstract socket) the connection came through. */
  get socketPath(): string | undefined {
    return this.value<string>('socketPath');
  }

  /** How the process behind the connection is pinned against pid reuse (pinned on first use). */
  get pinning(): Pinning {
    if (this.#pinMethod === undefined) this.procRead(() => ok(undefined));
    return this.#pinMethod!;
  }

  /**
   * Why an attribute is undefined (the peer exited, /proc unreadable, ...), read now for the
   * attributes that describe the live process; undefined when it has a value.
   */
  reason(name: string): string | undefined {
    const r = this.attempt(name);
    return r.ok ? undefined : r.reason;
  }

  /** All attributes as plain data (the /proc ones read together, under one pin). */
  toJSON(): Record<string, unknown> {
    this.hold();
    try {
      return this.#json();
    } finally {
      this.#holding--;
      if (this.#holding === 0) this.#endHold(false);
    }
  }

  #json(): Record<string, unknown> {
    return {
      pid: this.pid,
      uid: this.uid,
      gid: this.gid,
      groups: this.groups,
      user: this.user,
      group: this.group,
      program: this.program,
      perms: this.perms,
      label: this.label,
      socketPath: this.socketPath,
      ...this.#tableJSON(),
      pinning: this.pinning,
    };
  }

  #tableJSON(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const name of PUBLIC_PROC_ATTRIBUTES) {
      if ((PROC_ATTRIBUTE_DEFS[name] as AttributeDef<unknown>).json !== false) out[name] = this.value(name);
    }
    return out;
  }

  /**
   * @internal An attribute or the reason it is missing. Attributes fixed at connect are
   * read once; those describing the live process (from /proc) are kept only while a hold
   * lasts, so that a read after apply() is of the process as it is then, pinned again.
   */
  attempt(name: string): Outcome<unknown> {
    switch (name) {
      case 'uid':
        return outcome((this.#uidV ??= this.#read(name)));
      case 'gid':
        return outcome((this.#gidV ??= this.#read(name)));
      case 'user':
        return outcome((this.#userV ??= this.#read(name)));
      case 'group':
        return outcome((this.#groupV ??= this.#read(name)));
      case 'socketPath':
        return outcome((this.#pathV ??= this.#read(name)));
      case 'perms':
        return outcome((this.#permsV ??= this.#read(name)));
      case 'groups':
      case 'label': {
        const more = (this.#more ??= {});
        return outcome((more[name] ??= this.#read(name)));
      }
      case 'programStat': {
        if (this.#exeR !== undefined) return this.#exeR;
        const r = this.#resolve(name);
        if (this.#holding > 0) this.#exeR = r;
        return r;
      }
      default: {
        let r = this.#live?.get(name);
        if (r === undefined) {
          r = this.#resolve(name);
          if (this.#holding > 0) (this.#live ??= new Map()).set(name, r);
        }
        return r;
      }
    }
  }

  /** An attribute fixed at connect, as its slot keeps it: the value, or the failure. */
  #read(name: string): unknown {
    const r = this.#resolve(name);
    return r.ok ? r.value : r;
  }

  /**
   * @internal The live attributes read during the last hold (an apply()): what its rules
   * saw. Made when asked for, so that a verified connection keeps no copy of it.
   */
  get seen(): Readonly<Record<string, unknown>> {
    let seen: Record<string, unknown> | undefined;
    if (this.#seenExe !== undefined) seen = { programStat: fileIdentity(this.#seenExe) };
    const live = this.#more?.seenLive;
    if (live !== undefined) {
      for (const [name, r] of live) if (r.ok && isPublicAttribute(name)) (seen ??= {})[name] = r.value;
    }
    return seen === undefined ? EMPTY : Object.freeze(seen);
  }

  /** @internal The value of an attribute, or undefined when it could not be read. */
  value<T>(name: string): T | undefined {
    const r = this.attempt(name);
    return r.ok ? (r.value as T) : undefined;
  }

  /**
   * @internal Reads /proc of the peer, then proves the process is still the peer: a pid
   * recycled during the read fails with "peer exited" (docs/security.md, "PID reuse").
   */
  procRead<T>(read: (proc: string) => Outcome<T>): Outcome<T> {
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

  /**
   * @internal Keeps one pin (one pidfd) across the /proc reads of an apply(), until
   * {@link Peer.release}. Outside of that a pin lives for one read: a verified connection
   * holds no pidfd, so a busy server does not need two fds per client.
   */
  hold(): void {
    this.#holding++;
  }

  /** @internal Ends a {@link Peer.hold}; the pidfd is closed when the last hold ends. */
  release(): void {
    if (this.#holding > 0 && --this.#holding === 0) this.#endHold(true);
  }

  /** The last hold ended: the pin is released and the live attributes are let go (kept for `seen`). */
  #endHold(keep: boolean): void {
    this.#unpin();
    const exe = this.#exeR;
    const live = this.#live;
    this.#exeR = undefined;
    this.#live = undefined;
    if (!keep) return;
    this.#seenExe = exe?.ok ? (exe.value as FileStat) : undefined;
    if (live !== undefined || this.#more?.seenLive !== undefined) (this.#more ??= {}).seenLive = live;
  }

  /** @internal True when the kernel could not map the peer's uid / gid into our user namespace (it shows 65534). */
  idUnmapped(kind: 'uid' | 'gid'): boolean {
    return idUnmapped(kind, kind === 'uid' ? this.#uid : this.#gid);
  }

  /** @internal The socket's fd (strict mode looks up its peer end). */
  fd(): number {
    return socketFd(this.#socket);
  }

  /** @internal Bytes Node has already read from the socket (strict mode: bytes that arrived before the check). */
  bytesRead(): number {
    return this.#socket.bytesRead;
  }

  // Pinned only when a rule needs /proc: a uid-only policy pays nothing for it. A new
  // pin (SO_PEERPIDFD) names the same process as the first: the kernel keeps the peer's
  // struct pid from connect() on the socket.
  #pinned(): Pin {
    if (this.#pin) return this.#pin;
    if (this.#pinBroken !== undefined) return Pin.broken(this.#pinMethod ?? 'none', this.#pid, this.#pinBroken);
    let fd = -1;
    try {
      fd = socketFd(this.#socket);
    } catch {
      // A closed socket: Pin.of reports it as a pin that cannot be made.
    }
    const pin = Pin.of(fd, this.#pid);
    this.#pinMethod = pin.method;
    this.#pin = pin;
    return pin;
  }

  #unpin(): void {
    const pin = this.#pin;
    if (pin === undefined) return;
    this.#pin = undefined;
    this.#pinBroken ??= pin.knownBroken;
    pin.close();
  }

  /** @internal File identity of the peer's executable (dev, inode), through /proc/PID/exe. */
  programStat(): Outcome<FileStat> {
    return this.attempt('programStat') as Outcome<FileStat>;
  }

  /** @internal Resolvers for attributes; later rooms add theirs here. */
  #resolve(name: string): Outcome<unknown> {
    switch (name) {
      case 'groups':
        return this.#fromSocket(() => peerGroups(socketFd(this.#socket)), 'SO_PEERGROUPS is not supported by this kernel');
      case 'label':
        return this.#fromSocket(
          () => peerSecurityLabel(socketFd(this.#socket)),
          'no security label: no LSM provides SO_PEERSEC here',
          true,
        );
      case 'uid':
      case 'gid': {
        // An id the kernel shows as the overflow id has no mapping here: it is no identity.
        const id = name === 'uid' ? this.#uid : this.#gid;
        return this.idUnmapped(name) ? no(`${name} is unmapped in our user namespace (shown as ${id})`) : ok(id);
      }
      case 'user':
        if (this.idUnmapped('uid')) return no(`uid is unmapped in our user namespace (shown as ${this.#uid})`);
        return named(userName(this.#uid), `uid ${this.#uid} has no user name`);
      case 'group':
        if (this.idUnmapped('gid')) return no(`gid is unmapped in our user namespace (shown as ${this.#gid})`);
        return named(groupName(this.#gid), `gid ${this.#gid} has no group name`);
      case 'program':
        return this.procRead((proc) => {
          try {
            return ok(readlinkSync(`${proc}/exe`));
          } catch (e) {
            return no(procError(e, 'executable'));
          }
        });
      case 'programStat':
        return this.procRead(() => {
          const s = statProcExe(this.#pid);
          return s ? ok(s) : no('cannot read /proc/PID/exe: the peer exited or its executable is not visible to us');
        });
      case 'socketPath':
        return this.#socketPath();
      case 'perms': {
        const path = this.attempt('socketPath');
        if (!path.ok) return path;
        const p = path.value as string;
        if (p.startsWith('@')) return absent('abstract sockets have no file permissions');
        // A listener's own file, held since listen(): not whatever the path names now.
        const server = this.#knownPath === undefined && this.#side === 'server' ? (this.#socket as { server?: unknown }).server : undefined;
        if (server instanceof Server) return listenerFileMode(server, p, this.#socket);
        const s = statPath(p, true);
        if (!s) return no(`cannot stat the socket file ${p}`);
        if ((s.mode & S_IFMT) !== S_IFSOCK) return no(`${p} is no longer a socket`);
        return ok(s.mode & 0o777);
      }
      default:
        return resolveProcAttribute(this, name) ?? no(`unknown attribute ${name}`);
    }
  }

  #socketPath(): Outcome<string> {
    if (this.#knownPath !== undefined) return ok(this.#knownPath);
    if (this.#side === 'server') {
      // Node keeps the path a pipe server listens on; no syscall needed.
      const address = (this.#socket as { server?: { address(): unknown } }).server?.address?.();
      // Node reports an abstract name with its leading NUL; we show it as `@name`.
      if (typeof address === 'string' && address.length > 0) return ok(address[0] === '\0' ? `@${address.slice(1)}` : address);
    }
    try {
      const fd = socketFd(this.#socket);
      const addr = this.#side === 'server' ? localAddress(fd) : remoteAddress(fd);
      return addr.path !== undefined ? ok(addr.path) : absent('the socket is unnamed (socketpair or unbound)');
    } catch (e) {
      return no(`cannot read the socket address: ${(e as Error).message}`);
    }
  }

  #fromSocket<T>(read: () => T | undefined, missing: string, known = false): Outcome<T> {
    try {
      const v = read();
      return v === undefined ? (known ? absent(missing) : no(missing)) : ok(v);
    } catch (e) {
      return no((e as Error).message);
    }
  }
}

/** The device and inode program() compared, as plain JSON-safe data. */
function fileIdentity(s: FileStat): { dev: number; ino: number | string } {
  const ino = Number(s.ino);
  return { dev: Number(s.dev), ino: Number.isSafeInteger(ino) ? ino : String(s.ino) };
}

const EMPTY: Readonly<Record<string, unknown>> = Object.freeze({});

/** A slot's content as an Outcome. */
const outcome = (slot: unknown): Outcome<unknown> => (isMissing(slot) ? slot : ok(slot));

// The executable's file identity (programStat) is what program() compares: kept in a Decision's snapshot.
const INTERNAL = new Set(['cgroupInfo']);
const isPublicAttribute = (name: string): boolean => !INTERNAL.has(name) && !name.includes(':');

function named(name: string | undefined, missing: string): Outcome<string> {
  // NSS answered and knows no name: a known absence, not an unreadable attribute.
  return name === undefined ? absent(missing) : ok(name);
}

function procError(e: unknown, what: string): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ESRCH') return `cannot read the peer's ${what}: the peer exited`;
  if (code === 'EACCES' || code === 'EPERM') return `cannot read the peer's ${what}: permission denied in /proc`;
  return `cannot read the peer's ${what}: ${(e as Error).message}`;
}

// The table's getters, installed once on the prototype.
for (const name of PUBLIC_PROC_ATTRIBUTES) {
  Object.defineProperty(Peer.prototype, name, {
    configurable: true,
    enumerable: false,
    get(this: Peer) {
      return this.value(name);
    },
  });
}
