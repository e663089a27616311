/**
 * The attribute registry: every attribute of a Peer declared once — its value type, when
 * it is read (fixed at connect, live under the pin, or asynchronous, read before the rules
 * run), whether it is internal, how to read it and how it is documented. The Peer's
 * getters, `toJSON()`, the record of what the rules saw, the docs table and the rules'
 * reads all come from this table; a rule names its attribute by a key of it, so the
 * value type its check gets is the one declared here.
 *
 * Every /proc reader goes through `source.procRead()`, which proves after the read that
 * the pinned process is still the peer and alive (not a zombie): otherwise the attribute
 * is unknown, never another process's value.
 */
import { readdirSync, readlinkSync } from 'node:fs';
import { Server, type Socket } from 'node:net';
import {
  groupName,
  localAddress,
  peerGroups,
  peerSecurityLabel,
  remoteAddress,
  socketFd,
  socketInode,
  statPath,
  statProcExe,
  userName,
  S_IFMT,
  S_IFSOCK,
  type FileStat,
} from '../native/index.js';
import { absent, no, ok, type Outcome } from './outcome.js';
import { cgroupTrust } from './cgroup-trust.js';
import { readCgroup, unitsOfPath, type CgroupInfo, type Container } from './container.js';
import { executableDigest, executableDigestAsync } from './digest.js';
import { scanHolders, scanHoldersAsync, type HolderScan, type OurEnd } from './holders.js';
import { listenerFileMode } from './listener-file.js';
import { NAMESPACE_KINDS, readNamespace, readNamespaces, type NamespaceKind, type Namespaces } from './namespaces.js';
import { idUnmapped, readProc } from './proc.js';

/** The connection behind a Peer, for the attributes read from the socket. */
export interface Connection {
  readonly socket: Socket;
  readonly side: 'server' | 'client';
  /** The socket file the caller said the connection came through. */
  readonly knownPath: string | undefined;
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

/**
 * What an attribute reader sees: other attributes, /proc under the pin, and (for a Peer,
 * not for a holder strict mode inspects) the connection.
 */
export interface AttributeSource {
  attempt<K extends AttributeName>(name: K): Outcome<AttributeTypes[K]>;
  procRead<T>(read: (proc: string) => Outcome<T>): Outcome<T>;
  connection(): Connection | undefined;
}

/** What an evaluation brings for the asynchronous attributes whose reader lives elsewhere (the gateway's Docker lookup). */
export type Lookups = { readonly [K in AsyncAttributeName]?: (source: AttributeSource) => Promise<Outcome<AttributeTypes[K]>> };

/** One attribute, declared once. */
export interface AttributeDef<T> {
  /**
   * `connect`: fixed at connect (read once); `live`: describes the process when read
   * (read again after an evaluation); `async`: live, and read before the rules run by
   * the evaluator (off the event loop when it can), or on the calling thread for applySync.
   */
  when: 'connect' | 'live' | 'async';
  /** Reads the attribute on the calling thread, or says why it cannot. */
  read(source: AttributeSource): Outcome<T>;
  /** For `async` attributes: the read the evaluator awaits before the rules run. */
  readAsync?(source: AttributeSource, lookups: Lookups | undefined): Promise<Outcome<T>>;
  /** The attribute's type and meaning, for the docs table. */
  type: string;
  doc: string;
  /** Internal attributes (shared reads, strict mode's scan) have no getter, are not in toJSON nor in the docs table. */
  internal?: true;
  /** Left out of toJSON (too costly to read for a printout: the digest hashes the file). */
  json?: false;
  /** How the value is kept in a Decision's record of what the rules saw; internal attributes are left out unless they say. */
  seen?(value: T): unknown;
}

/** The value of the holder scan for one connection: our end and the scan that looked it up. */
export interface HolderScanOf {
  end: OurEnd;
  scan: HolderScan;
  /**
   * The digest of each holder's executable (by `pid` or `pid/task`), made off the event
   * loop before the rules run, when a strict rule needs it (apply()); absent for applySync().
   */
  digests?: Map<string, Outcome<string>>;
}

/** What the Docker API says about a peer's container (the gateway's lookup). */
export interface DockerContainer {
  name: string;
  labels: Readonly<Record<string, string>>;
}

/** The value type of every attribute, by name. */
export interface AttributeTypes extends NamespaceTypes {
  uid: number;
  gid: number;
  groups: number[];
  user: string;
  group: string;
  program: string;
  programStat: FileStat;
  perms: number;
  label: string;
  socketPath: string;
  namespaces: Namespaces;
  cgroupInfo: CgroupInfo;
  cgroup: string;
  container: Container | null;
  programDigest: string;
  unit: string | null;
  slice: string | null;
  userUnit: { uid: number; unit: string | null } | null;
  noNewPrivs: boolean;
  capabilities: string[];
  holders: HolderScanOf;
  dockerContainer: DockerContainer;
}

/** `ns:<kind>`: one namespace, for rules that need only some (host() needs two of seven). */
type NamespaceTypes = { [K in NamespaceKind as `ns:${K}`]: number };

/** Every attribute's name. */
export type AttributeName = keyof AttributeTypes;

/** Names of the attributes read asynchronously before the rules run. */
export type AsyncAttributeName = 'holders' | 'dockerContainer' | 'programDigest';

type Registry = { readonly [K in AttributeName]: AttributeDef<AttributeTypes[K]> };

/** Thrown-free socket reads: a value, a known absence, or why it cannot be read. */
function fromSocket<T>(read: () => T | undefined, missing: string, known = false): Outcome<T> {
  try {
    const v = read();
    return v === undefined ? (known ? absent(missing) : no(missing)) : ok(v);
  } catch (e) {
    return no((e as Error).message);
  }
}

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

const NO_CONNECTION = 'not an attribute of a process without a connection';

/** The fd of a connection's socket (it throws once the socket is closed). */
function fdOf(c: Connection): number {
  return socketFd(c.socket);
}

function connectionOf(source: AttributeSource): Outcome<Connection> {
  const c = source.connection();
  return c === undefined ? no(NO_CONNECTION) : ok(c);
}

function idOf(source: AttributeSource, kind: 'uid' | 'gid'): Outcome<number> {
  const c = connectionOf(source);
  if (!c.ok) return c;
  // An id the kernel shows as the overflow id has no mapping here: it is no identity.
  const id = c.value[kind];
  return idUnmapped(kind, id) ? no(`${kind} is unmapped in our user namespace (shown as ${id})`) : ok(id);
}

function socketPathOf(source: AttributeSource): Outcome<string> {
  const c = connectionOf(source);
  if (!c.ok) return c;
  const { socket, side, knownPath } = c.value;
  if (knownPath !== undefined) return ok(knownPath);
  if (side === 'server') {
    // Node keeps the path a pipe server listens on; no syscall needed.
    const address = (socket as { server?: { address(): unknown } }).server?.address?.();
    // Node reports an abstract name with its leading NUL; we show it as `@name`.
    if (typeof address === 'string' && address.length > 0) return ok(address[0] === '\0' ? `@${address.slice(1)}` : address);
  }
  try {
    const fd = fdOf(c.value);
    const addr = side === 'server' ? localAddress(fd) : remoteAddress(fd);
    return addr.path !== undefined ? ok(addr.path) : absent('the socket is unnamed (socketpair or unbound)');
  } catch (e) {
    return no(`cannot read the socket address: ${(e as Error).message}`);
  }
}

function permsOf(source: AttributeSource): Outcome<number> {
  const c = connectionOf(source);
  if (!c.ok) return c;
  const path = source.attempt('socketPath');
  if (!path.ok) return path;
  const p = path.value;
  if (p.startsWith('@')) return absent('abstract sockets have no file permissions');
  const { socket, side, knownPath } = c.value;
  // A listener's own file, held since listen(): not whatever the path names now.
  const server = knownPath === undefined && side === 'server' ? (socket as { server?: unknown }).server : undefined;
  if (server instanceof Server) return listenerFileMode(server, p, socket);
  const s = statPath(p, true);
  if (!s) return no(`cannot stat the socket file ${p}`);
  if ((s.mode & S_IFMT) !== S_IFSOCK) return no(`${p} is no longer a socket`);
  return ok(s.mode & 0o777);
}

/** The systemd units of the peer, from the path systemd manages, with the checks of who could have named them. */
interface Units {
  slice: string | null;
  unit: string | null;
  user: { uid: number; unit: string | null } | null;
}

function readUnits(source: AttributeSource): Outcome<Units> {
  const info = source.attempt('cgroupInfo');
  if (!info.ok) return info;
  const at = info.value.systemd;
  if (!at) return no('the peer has no cgroup line systemd manages');
  const u = unitsOfPath(at.path);
  // The slices and the user manager's place are above anything a user may write.
  const above = cgroupTrust(at.hierarchy, u.prefix);
  if (!above.trusted) return no(above.reason);
  if (u.user) return ok({ slice: u.slice, unit: null, user: u.user });
  // A system unit counts only where no unprivileged uid could have made the path.
  if (u.unit !== null) {
    const whole = cgroupTrust(at.hierarchy, at.path);
    if (!whole.trusted) return no(whole.reason);
  }
  return ok({ slice: u.slice, unit: u.unit, user: null });
}

/** The `/proc/PID/task/TID/status` fields the per-thread attributes read. */
const NO_NEW_PRIVS = { name: 'NoNewPrivs', pattern: /^NoNewPrivs:\s*(\S+)/m, key: '\nNoNewPrivs:' };
const CAP_EFF = { name: 'CapEff', pattern: /^CapEff:\s*(\S+)/m, key: '\nCapEff:' };

/** The value of the line starting with `key` (`\nName:`) of a status text, trimmed; undefined when absent. */
function statusLine(status: string, key: string): string | undefined {
  const at = status.indexOf(key);
  if (at < 0) return undefined;
  const end = status.indexOf('\n', at + key.length);
  return status.slice(at + key.length, end < 0 ? undefined : end).trim();
}

/**
 * The field of a process that has one thread, from /proc/PID/status alone (one read, no
 * task list): when its main thread is alive (not Z or X) and `Threads:` says 1, that
 * thread is the only one, and a thread made later starts with what its maker has. Else
 * undefined: the threads are read one by one.
 */
function soleThreadField(base: string, key: string): string | undefined {
  const status = readProc(`${base}/status`, true);
  if (status === undefined) return undefined;
  const state = statusLine(status, '\nState:');
  if (state === undefined || state.startsWith('Z') || state.startsWith('X')) return undefined;
  if (statusLine(status, '\nThreads:') !== '1') return undefined;
  return statusLine(status, key);
}

/**
 * Reads `/proc/PID/task/TID/status` of every thread of the process at `proc` and folds
 * the field `field` of each: attributes the kernel keeps per thread hold only if they hold
 * for every thread. A thread that ended during the read is gone and counts no more; any
 * other thread that cannot be read makes the attribute unknown.
 */
function everyThread<T>(
  proc: string,
  field: { name: string; pattern: RegExp; key: string },
  fold: (acc: T | undefined, value: string, tid: string) => T,
): Outcome<T> {
  // A holder whose main thread exited is read through one of its threads: the process's own task list is above it.
  const base = proc.replace(/\/task\/\d+$/, '');
  const sole = soleThreadField(base, field.key);
  if (sole !== undefined) return ok(fold(undefined, sole, base.slice(base.lastIndexOf('/') + 1)));
  let tids: string[];
  try {
    tids = readdirSync(`${base}/task`);
  } catch (e) {
    return no(procError(e, 'threads'));
  }
  let acc: T | undefined;
  let seen = 0;
  for (const tid of tids) {
    const status = readProc(`${base}/task/${tid}/status`, true);
    if (status === undefined) {
      // Gone since readdir (its threads inherit from a thread still listed), or unreadable.
      if (threadGone(base, tid)) continue;
      return no(`cannot read ${base}/task/${tid}/status: one thread of the peer is unreadable`);
    }
    const m = field.pattern.exec(status);
    if (!m) return no(`this kernel does not report ${field.name} in /proc/PID/status`);
    acc = fold(acc, m[1]!, tid);
    seen++;
  }
  return seen === 0 || acc === undefined ? no(`cannot read the threads of ${base}: the peer exited`) : ok(acc);
}

function threadGone(base: string, tid: string): boolean {
  try {
    readlinkSync(`${base}/task/${tid}/ns/pid`);
    return false;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ESRCH';
  }
}

/** Capability names by bit (include/uapi/linux/capability.h). */
export const CAPABILITY_NAMES: readonly string[] = Object.freeze(
  [
    'CHOWN',
    'DAC_OVERRIDE',
    'DAC_READ_SEARCH',
    'FOWNER',
    'FSETID',
    'KILL',
    'SETGID',
    'SETUID',
    'SETPCAP',
    'LINUX_IMMUTABLE',
    'NET_BIND_SERVICE',
    'NET_BROADCAST',
    'NET_ADMIN',
    'NET_RAW',
    'IPC_LOCK',
    'IPC_OWNER',
    'SYS_MODULE',
    'SYS_RAWIO',
    'SYS_CHROOT',
    'SYS_PTRACE',
    'SYS_PACCT',
    'SYS_ADMIN',
    'SYS_BOOT',
    'SYS_NICE',
    'SYS_RESOURCE',
    'SYS_TIME',
    'SYS_TTY_CONFIG',
    'MKNOD',
    'LEASE',
    'AUDIT_WRITE',
    'AUDIT_CONTROL',
    'SETFCAP',
    'MAC_OVERRIDE',
    'MAC_ADMIN',
    'SYSLOG',
    'WAKE_ALARM',
    'BLOCK_SUSPEND',
    'AUDIT_READ',
    'PERFMON',
    'BPF',
    'CHECKPOINT_RESTORE',
  ].map((n) => `CAP_${n}`),
);

/** The capability names of a CapEff mask (a bit this table does not know is `CAP_<bit>`). */
function capabilityNames(mask: bigint): string[] {
  const out: string[] = [];
  for (let bit = 0; mask >> BigInt(bit) !== 0n; bit++) {
    if ((mask >> BigInt(bit)) & 1n) out.push(CAPABILITY_NAMES[bit] ?? `CAP_${bit}`);
  }
  return out.sort();
}

/** Our end of a Peer's connection, as the holder scan looks it up. */
function ourEnd(source: AttributeSource): Outcome<OurEnd> {
  const c = connectionOf(source);
  if (!c.ok) return c;
  try {
    const fd = fdOf(c.value);
    const inode = socketInode(fd);
    return inode === undefined ? no('our end of the connection is not a socket') : ok({ inode, fd });
  } catch (e) {
    return no(`cannot find the peer end of the socket: ${(e as Error).message}`);
  }
}

/** Bound on a holder scan made on the calling thread (applySync), in ms: past it the verdict is unknown. */
export const SYNC_SCAN_BUDGET_MS = 1000;

const live = <T>(doc: string, type: string, read: (source: AttributeSource) => Outcome<T>, more?: Partial<AttributeDef<T>>) =>
  Object.freeze({ when: 'live' as const, type, doc, read, ...more });
const fixed = <T>(doc: string, type: string, read: (source: AttributeSource) => Outcome<T>, more?: Partial<AttributeDef<T>>) =>
  Object.freeze({ when: 'connect' as const, type, doc, read, ...more });

function namespaceDefs(): { [K in NamespaceKind as `ns:${K}`]: AttributeDef<number> } {
  const out: Record<string, AttributeDef<number>> = {};
  for (const kind of NAMESPACE_KINDS) {
    out[`ns:${kind}`] = live(
      `inode number of /proc/PID/ns/${kind}`,
      'number',
      (source) =>
        source.procRead((proc) => {
          const r = readNamespace(proc, kind);
          return typeof r === 'string' ? no(r) : ok(r);
        }),
      { internal: true },
    );
  }
  return out as { [K in NamespaceKind as `ns:${K}`]: AttributeDef<number> };
}

/** The attribute registry, in the order of `toJSON()` and the docs table. */
export const ATTRIBUTES: Registry = Object.freeze({
  uid: fixed('SO_PEERCRED; unknown when the kernel shows the overflow id (no mapping here)', 'number', (s) => idOf(s, 'uid')),
  gid: fixed('SO_PEERCRED (primary group); unknown when unmapped', 'number', (s) => idOf(s, 'gid')),
  groups: fixed('SO_PEERGROUPS (supplementary groups); `[]` when the kernel has no SO_PEERGROUPS', 'number[]', (s) => {
    const c = connectionOf(s);
    return c.ok ? fromSocket(() => peerGroups(fdOf(c.value)), 'SO_PEERGROUPS is not supported by this kernel') : c;
  }),
  user: fixed('NSS name of the uid', 'string', (s) => {
    const uid = idOf(s, 'uid');
    return uid.ok ? named(userName(uid.value), `uid ${uid.value} has no user name`) : uid;
  }),
  group: fixed('NSS name of the primary gid', 'string', (s) => {
    const gid = idOf(s, 'gid');
    return gid.ok ? named(groupName(gid.value), `gid ${gid.value} has no group name`) : gid;
  }),
  program: live("/proc/PID/exe, as the peer's own mount namespace names it", 'string', (s) =>
    s.procRead((proc) => {
      try {
        return ok(readlinkSync(`${proc}/exe`));
      } catch (e) {
        return no(procError(e, 'executable'));
      }
    }),
  ),
  programStat: live(
    'device and inode of /proc/PID/exe',
    'FileStat',
    (s) =>
      s.procRead((proc) => {
        // The peer's own executable through a path written into a preallocated buffer; a
        // holder's (possibly through one of its threads) by its /proc path.
        const c = s.connection();
        const st = c !== undefined ? statProcExe(c.pid) : statPath(`${proc}/exe`);
        return st ? ok(st) : no('cannot read /proc/PID/exe: the peer exited or its executable is not visible to us');
      }),
    { internal: true, seen: fileIdentity },
  ),
  perms: fixed(
    'mode bits (& 0o777) of the socket file the connection came through; absent for abstract and unnamed sockets',
    'number',
    permsOf,
  ),
  label: fixed('SO_PEERSEC security label; absent when no LSM provides one', 'string', (s) => {
    const c = connectionOf(s);
    return c.ok ? fromSocket(() => peerSecurityLabel(fdOf(c.value)), 'no security label: no LSM provides SO_PEERSEC here', true) : c;
  }),
  socketPath: fixed('the socket file (or `@name` for an abstract socket) the connection came through', 'string', socketPathOf),
  namespaces: live('inode numbers of /proc/PID/ns/*', '`{ pid, mnt, net, user, uts, ipc, cgroup }`', (s) =>
    s.procRead((proc) => {
      const r = readNamespaces(proc);
      return typeof r === 'string' ? no(r) : ok(r);
    }),
  ),
  ...namespaceDefs(),
  cgroupInfo: live(
    '/proc/PID/cgroup, parsed',
    'CgroupInfo',
    (s) =>
      s.procRead((proc) => {
        const info = readCgroup(proc);
        return typeof info === 'string' ? no(info) : ok(info);
      }),
    { internal: true },
  ),
  cgroup: live("the v2 path of /proc/PID/cgroup, or a v1 hierarchy's on hybrid hosts", 'string', (s) => {
    const info = s.attempt('cgroupInfo');
    if (!info.ok) return info;
    return info.value.path === undefined ? no('the peer has no cgroup line we understand') : ok(info.value.path);
  }),
  container: live(
    'parsed from the cgroup path; unknown where a non-root uid could have made that path',
    '`{ runtime, id }` or null',
    (s) => {
      const info = s.attempt('cgroupInfo');
      if (!info.ok) return info;
      const { container, containerAt, lines } = info.value;
      // A name counts only where nobody but root could have chosen it; and "no container"
      // only where no line sits in a tree someone else may write (a rootless container does).
      for (const line of containerAt ? [containerAt] : lines) {
        const trust = cgroupTrust(line.hierarchy, line.path);
        if (!trust.trusted) return no(trust.reason);
      }
      return container === undefined ? no(info.value.unrecognised!) : ok(container);
    },
  ),
  programDigest: Object.freeze({
    when: 'async' as const,
    type: 'string',
    doc: 'SHA-256 of /proc/PID/exe, hashed off the event loop for `apply()`, once per file version; unknown above the size cap',
    json: false as const,
    read: (s: AttributeSource) => s.procRead(executableDigest),
    readAsync: (s: AttributeSource) => executableDigestAsync(s),
  }),
  unit: live(
    'systemd system unit from the cgroup path systemd manages; null under `user@UID.service`; unknown where a non-root uid could have made the path',
    'string or null',
    (s) => {
      const u = readUnits(s);
      return u.ok ? ok(u.value.unit) : u;
    },
  ),
  slice: live('innermost systemd slice above the unit', 'string or null', (s) => {
    const u = readUnits(s);
    return u.ok ? ok(u.value.slice) : u;
  }),
  userUnit: live(
    "the user manager (`user@UID.service`) the peer runs under and its user unit; the unit name is the user's own choice",
    '`{ uid, unit }` or null',
    (s) => {
      const u = readUnits(s);
      return u.ok ? ok(u.value.user) : u;
    },
  ),
  noNewPrivs: live('`NoNewPrivs:` of /proc/PID/task/TID/status: true only when every thread has it', 'boolean', (s) =>
    s.procRead((proc) => everyThread<boolean>(proc, NO_NEW_PRIVS, (acc, v) => (acc ?? true) && v === '1')),
  ),
  capabilities: live(
    '`CapEff:` of /proc/PID/task/TID/status: the effective capabilities of any thread, sorted `CAP_` names',
    'string[]',
    (s) =>
      s.procRead((proc) => {
        const r = everyThread<bigint>(proc, CAP_EFF, (acc, v) => (acc ?? 0n) | BigInt(`0x${v}`));
        return r.ok ? ok(capabilityNames(r.value)) : r;
      }),
  ),
  holders: Object.freeze({
    when: 'async' as const,
    internal: true as const,
    type: 'HolderScanOf',
    doc: 'strict mode: every process holding the peer end of the socket, from a scan of every fd table on the host',
    read: (s: AttributeSource): Outcome<HolderScanOf> => {
      const end = ourEnd(s);
      if (!end.ok) return end;
      try {
        return ok({ end: end.value, scan: scanHolders([end.value], { budgetMs: SYNC_SCAN_BUDGET_MS }) });
      } catch (e) {
        return no(`the holder scan failed: ${(e as Error).message}`);
      }
    },
    readAsync: async (s: AttributeSource): Promise<Outcome<HolderScanOf>> => {
      const end = ourEnd(s);
      return end.ok ? ok({ end: end.value, scan: await scanHoldersAsync(end.value) }) : end;
    },
  }),
  dockerContainer: Object.freeze({
    when: 'async' as const,
    internal: true as const,
    type: '`{ name, labels }`',
    doc: "the peer's Docker container as the Docker API describes it (looked up by the gateway)",
    read: (): Outcome<DockerContainer> => no('the container was not looked up (only the gateway looks up Docker names)'),
    readAsync: (s: AttributeSource, lookups: Lookups | undefined) =>
      lookups?.dockerContainer?.(s) ?? Promise.resolve(no('the container was not looked up (only the gateway looks up Docker names)')),
  }),
});

/** The device and inode program() compared, as plain JSON-safe data. */
function fileIdentity(s: FileStat): { dev: number; ino: number | string } {
  const ino = Number(s.ino);
  return { dev: Number(s.dev), ino: Number.isSafeInteger(ino) ? ino : String(s.ino) };
}

/** True for a name of the registry. */
export const isAttribute = (name: string): name is AttributeName => Object.hasOwn(ATTRIBUTES, name);

/** The public attributes (getters, toJSON, docs), in declaration order. */
export const PUBLIC_ATTRIBUTES: readonly AttributeName[] = Object.freeze(
  (Object.keys(ATTRIBUTES) as AttributeName[]).filter((k) => !(ATTRIBUTES[k] as AttributeDef<unknown>).internal),
);

/** The value types of the public attributes, for the Peer's getters: undefined when unreadable (`peer.reason(name)` says why). */
export type PublicAttributeValues = {
  readonly [K in Exclude<AttributeName, InternalAttributeName | 'uid' | 'gid' | 'groups'>]: AttributeTypes[K] | undefined;
};

/** The attributes declared `internal`. */
type InternalAttributeName = 'programStat' | 'cgroupInfo' | 'holders' | 'dockerContainer' | `ns:${NamespaceKind}`;

const WHEN: Record<AttributeDef<unknown>['when'], string> = {
  connect: 'fixed at connect',
  live: 'read at the time of reading, under the pin',
  async: 'read before the rules run (off the event loop for `apply()`), under the pin',
};

/** The Markdown table of the attributes, as docs/attributes.md carries it (a test keeps them equal). */
export function attributesDocTable(): string {
  const rows = PUBLIC_ATTRIBUTES.map((name) => {
    const d = ATTRIBUTES[name] as AttributeDef<unknown>;
    return `| \`${name}\` | ${d.type} | ${WHEN[d.when]} | ${d.doc} |`;
  });
  return ['| attribute | type | when | source |', '|---|---|---|---|', ...rows].join('\n');
}
