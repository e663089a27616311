/**
 * The peer behind a connection, resolved lazily: a policy that checks only the uid makes
 * one getsockopt call, one that checks the program also stats /proc. Every attribute is
 * declared in the attribute registry (proc-attributes.ts); each is read at most once per
 * connection (fixed ones) or per evaluation (live ones); a failure to read one is
 * remembered with its reason so that the rules needing it fail closed and say why.
 */
import type { Socket } from 'node:net';
import { peerCred, socketFd } from '../native/index.js';
import { isMissing, no, ok, type Outcome } from './outcome.js';
import { PinnedReader, type Pinning } from './pin.js';
import {
  ATTRIBUTES,
  PUBLIC_ATTRIBUTES,
  isAttribute,
  type AttributeDef,
  type AttributeName,
  type AttributeTypes,
  type Connection,
  type PublicAttributeValues,
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
 * The public attributes of the registry: one getter each, undefined when it cannot be read
 * (`peer.reason(name)` says why). Live ones are read under the pin at the time of reading.
 * Each property's documentation begins with the registry's `doc` for it, and every public
 * attribute has one (test/identity/peer-docs.test.ts keeps them so).
 */
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface Peer extends PublicAttributeValues {
  /** NSS name of the uid. Undefined when it cannot be read (`peer.reason('user')` says why). */
  readonly user: PublicAttributeValues['user'];
  /** NSS name of the primary gid. Undefined when it cannot be read (`peer.reason('group')` says why). */
  readonly group: PublicAttributeValues['group'];
  /**
   * /proc/PID/exe, as the peer's own mount namespace names it. Undefined when it cannot be read (`peer.reason('program')` says why).
   */
  readonly program: PublicAttributeValues['program'];
  /**
   * Mode bits (& 0o777) of the socket file the connection came through; absent for abstract and unnamed sockets. Undefined when it
   * cannot be read (`peer.reason('perms')` says why).
   */
  readonly perms: PublicAttributeValues['perms'];
  /**
   * SO_PEERSEC security label; absent when no LSM provides one. Undefined when it cannot be read (`peer.reason('label')` says why).
   */
  readonly label: PublicAttributeValues['label'];
  /**
   * The socket file (or `@name` for an abstract socket) the connection came through. Undefined when it cannot be read
   * (`peer.reason('socketPath')` says why).
   */
  readonly socketPath: PublicAttributeValues['socketPath'];
  /** Inode numbers of /proc/PID/ns/*. Undefined when it cannot be read (`peer.reason('namespaces')` says why). */
  readonly namespaces: PublicAttributeValues['namespaces'];
  /**
   * The v2 path of /proc/PID/cgroup, or a v1 hierarchy's on hybrid hosts. Undefined when it cannot be read (`peer.reason('cgroup')`
   * says why).
   */
  readonly cgroup: PublicAttributeValues['cgroup'];
  /**
   * Parsed from the cgroup path; unknown where a non-root uid could have made that path. Undefined when it cannot be read
   * (`peer.reason('container')` says why).
   */
  readonly container: PublicAttributeValues['container'];
  /**
   * SHA-256 of /proc/PID/exe, hashed off the event loop for `apply()`, once per file version; unknown above the size cap. Left out
   * of toJSON() (reading it hashes the file). Undefined when it cannot be read (`peer.reason('programDigest')` says why).
   */
  readonly programDigest: PublicAttributeValues['programDigest'];
  /**
   * Systemd system unit from the cgroup path systemd manages; null under `user@UID.service`; unknown where a non-root uid could have
   * made the path. Undefined when it cannot be read (`peer.reason('unit')` says why).
   */
  readonly unit: PublicAttributeValues['unit'];
  /** Innermost systemd slice above the unit. Undefined when it cannot be read (`peer.reason('slice')` says why). */
  readonly slice: PublicAttributeValues['slice'];
  /**
   * The user manager (`user@UID.service`) the peer runs under and its user unit; the unit name is the user's own choice. Undefined
   * when it cannot be read (`peer.reason('userUnit')` says why).
   */
  readonly userUnit: PublicAttributeValues['userUnit'];
  /**
   * `NoNewPrivs:` of /proc/PID/task/TID/status: true only when every thread has it. Undefined when it cannot be read
   * (`peer.reason('noNewPrivs')` says why).
   */
  readonly noNewPrivs: PublicAttributeValues['noNewPrivs'];
  /**
   * `CapEff:` of /proc/PID/task/TID/status: the effective capabilities of any thread, sorted `CAP_` names. Undefined when it cannot be
   * read (`peer.reason('capabilities')` says why).
   */
  readonly capabilities: PublicAttributeValues['capabilities'];
}

// The attributes fixed at connect, each with a slot of its own in a small array.
const FIXED = (Object.keys(ATTRIBUTES) as AttributeName[]).filter((k) => ATTRIBUTES[k].when === 'connect');
const SLOT: Readonly<Record<string, number>> = Object.freeze(Object.fromEntries(FIXED.map((k, i) => [k, i])));

/** The peer of a UNIX socket connection. */
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class Peer {
  readonly #connection: Connection;
  /** Attributes fixed at connect, one slot each: the value once read (a failure as the Outcome saying why). */
  #fixed: unknown[] | undefined;
  /**
   * Live attributes, kept only while an evaluation holds the peer: the executable's
   * identity in a slot of its own (the program rule reads it on every connection), the
   * rest in a map made when needed.
   */
  #exe: Outcome<AttributeTypes['programStat']> | undefined;
  #live: Map<AttributeName, Outcome<unknown>> | undefined;
  /** What the last evaluation read of the live process (kept for `seen`). */
  #seenExe: AttributeTypes['programStat'] | undefined;
  #seenLive: Map<AttributeName, Outcome<unknown>> | undefined;
  /** The pin and its holds, made when a rule first needs /proc: a uid-only policy pays nothing for it. */
  #pinReader: PinnedReader | undefined;

  /** @internal Use `policy.apply()` or `peerOf()`; a Peer made by hand reads the socket it is given. */
  constructor(socket: Socket, options?: PeerOptions) {
    // socketFd first: it validates the argument before anything reads from it.
    const fd = socketFd(socket);
    // Credentials are read at once: they are what every policy needs, and reading them
    // now (not when a getter is first touched) ties the Peer to this connection.
    const cred = peerCred(fd);
    this.#connection = {
      socket,
      side: options?.side ?? ((socket as { server?: unknown }).server ? 'server' : 'client'),
      knownPath: options?.socketPath,
      pid: cred.pid,
      uid: cred.uid,
      gid: cred.gid,
    };
  }

  get #reader(): PinnedReader {
    return (this.#pinReader ??= new PinnedReader(this.#connection));
  }

  /** Which end of the connection this process is. */
  get side(): Side {
    return this.#connection.side;
  }

  /** Peer process id as of connect(); 0 when the process is not visible in our pid namespace. */
  get pid(): number {
    return this.#connection.pid;
  }

  /** Peer user id: SO_PEERCRED; unknown when the kernel shows the overflow id (no mapping here), then 65534. */
  get uid(): number {
    return this.#connection.uid;
  }

  /** Peer primary group id: SO_PEERCRED (primary group); unknown when unmapped, then 65534. */
  get gid(): number {
    return this.#connection.gid;
  }

  /** Peer groups: SO_PEERGROUPS (supplementary groups); `[]` when the kernel has no SO_PEERGROUPS (or it cannot be read). */
  get groups(): number[] {
    const r = this.attempt('groups');
    return r.ok ? r.value : [];
  }

  /** How the process behind the connection is pinned against pid reuse (pinned on first use). */
  get pinning(): Pinning {
    return this.#reader.method;
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
      const out: Record<string, unknown> = { pid: this.pid };
      for (const name of PUBLIC_ATTRIBUTES) {
        if ((ATTRIBUTES[name] as AttributeDef<unknown>).json !== false) out[name] = (this as unknown as Record<string, unknown>)[name];
      }
      out.pinning = this.pinning;
      return out;
    } finally {
      if (this.#reader.release()) this.#endHold(false);
    }
  }

  /**
   * @internal An attribute or the reason it is missing. Attributes fixed at connect are
   * read once; live ones (from /proc) are kept only while an evaluation holds the peer, so
   * that a read after apply() is of the process as it is then, pinned again.
   */
  attempt<K extends AttributeName>(name: K): Outcome<AttributeTypes[K]>;
  /** @internal An attribute named by a string (the inspect report's loop), as above. */
  attempt(name: string): Outcome<unknown>;
  attempt(name: string): Outcome<unknown> {
    if (!isAttribute(name)) return no(`unknown attribute ${name}`);
    const def = ATTRIBUTES[name] as AttributeDef<unknown>;
    if (def.when === 'connect') {
      const slots = (this.#fixed ??= new Array<unknown>(FIXED.length));
      const i = SLOT[name]!;
      let slot = slots[i];
      if (slot === undefined) {
        const r = def.read(this);
        // The value itself (no Outcome object kept per connection), or the failure saying why.
        slot = slots[i] = r.ok ? r.value : r;
      }
      return isMissing(slot) ? slot : ok(slot);
    }
    const holding = this.#pinReader?.holding === true;
    if (name === 'programStat') {
      if (this.#exe !== undefined) return this.#exe;
      const r = ATTRIBUTES.programStat.read(this);
      if (holding) this.#exe = r;
      return r;
    }
    let r = this.#live?.get(name);
    if (r === undefined) {
      r = def.read(this);
      if (holding) (this.#live ??= new Map()).set(name, r);
    }
    return r;
  }

  /** @internal For the evaluator: an asynchronous attribute read before the rules, kept while the evaluation holds the peer. */
  provide<K extends AttributeName>(name: K, value: Outcome<AttributeTypes[K]>): void {
    if (this.#pinReader?.holding) (this.#live ??= new Map()).set(name, value);
  }

  /** @internal True when an attribute is already read in this evaluation. */
  has(name: AttributeName): boolean {
    return this.#live?.has(name) ?? false;
  }

  /** @internal The connection, for the registry's socket readers. */
  connection(): Connection {
    return this.#connection;
  }

  /**
   * @internal The live attributes read during the last evaluation: what its rules saw.
   * Made when asked for, so that a verified connection keeps no copy of it.
   */
  get seen(): Readonly<Record<string, unknown>> {
    const live = this.#seenLive;
    let seen: Record<string, unknown> | undefined;
    if (this.#seenExe !== undefined) seen = { programStat: ATTRIBUTES.programStat.seen!(this.#seenExe) };
    for (const [name, r] of live ?? []) {
      if (!r.ok) continue;
      const def = ATTRIBUTES[name] as AttributeDef<unknown>;
      if (def.seen) (seen ??= {})[name] = def.seen(r.value);
      else if (!def.internal) (seen ??= {})[name] = r.value;
    }
    return seen === undefined ? EMPTY : Object.freeze(seen);
  }

  /** @internal The value of an attribute, or undefined when it could not be read. */
  value<K extends AttributeName>(name: K): AttributeTypes[K] | undefined {
    const r = this.attempt(name);
    return r.ok ? r.value : undefined;
  }

  /**
   * @internal Reads /proc of the peer, then proves the process is still the peer: a pid
   * recycled during the read fails with "peer exited" (docs/security.md, "PID reuse").
   */
  procRead<T>(read: (proc: string) => Outcome<T>): Outcome<T> {
    return this.#reader.read(read);
  }

  /**
   * @internal Keeps one pin (one pidfd) across the /proc reads of an evaluation, until
   * {@link Peer.release}. Outside of that a pin lives for one read: a verified connection
   * holds no pidfd, so a busy server does not need two fds per client.
   */
  hold(): void {
    this.#reader.hold();
  }

  /** @internal Ends a {@link Peer.hold}; the pidfd is closed when the last hold ends. */
  release(): void {
    if (this.#pinReader?.release()) this.#endHold(true);
  }

  /** The last hold ended: the live attributes are let go (kept for `seen` when `keep`). */
  #endHold(keep: boolean): void {
    const exe = this.#exe;
    const live = this.#live;
    this.#exe = undefined;
    this.#live = undefined;
    if (!keep) return;
    this.#seenExe = exe?.ok ? exe.value : undefined;
    if (live !== undefined || this.#seenLive !== undefined) this.#seenLive = live;
  }

  /** @internal True when the kernel could not map the peer's uid / gid into our user namespace (it shows 65534). */
  idUnmapped(kind: 'uid' | 'gid'): boolean {
    return idUnmapped(kind, kind === 'uid' ? this.uid : this.gid);
  }

  /** @internal The socket's fd (strict mode looks up its peer end). */
  fd(): number {
    return socketFd(this.#connection.socket);
  }

  /** @internal Bytes Node has already read from the socket (strict mode: bytes that arrived before the check). */
  bytesRead(): number {
    return this.#connection.socket.bytesRead;
  }

  /** @internal File identity of the peer's executable (dev, inode), through /proc/PID/exe. */
  programStat(): Outcome<AttributeTypes['programStat']> {
    return this.attempt('programStat');
  }
}

const EMPTY: Readonly<Record<string, unknown>> = Object.freeze({});

// The registry's getters, installed once on the prototype (uid, gid, groups have their own above).
for (const name of PUBLIC_ATTRIBUTES) {
  if (Object.hasOwn(Peer.prototype, name)) continue;
  Object.defineProperty(Peer.prototype, name, {
    configurable: true,
    enumerable: false,
    get(this: Peer) {
      return this.value(name);
    },
  });
}
