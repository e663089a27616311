/**
 * The Peer's attributes that come from /proc beyond the program, declared once each: its
 * name, how it is read, whether it describes the live process (read under the pin, again
 * on every later read) and how it is documented. The Peer's getters, `toJSON()`, the
 * docs table and the rules that need them come from this table.
 *
 * Every reader goes through `peer.procRead()`, which proves after the read that the
 * pinned process is still the peer and alive (not a zombie): otherwise the attribute is
 * unknown, never another process's value.
 */
import { no, ok, type Outcome } from './outcome.js';
import { cgroupTrust } from './cgroup-trust.js';
import { readCgroup, unitsOfPath, type CgroupInfo, type Container } from './container.js';
import { executableDigest } from './digest.js';
import { NAMESPACE_KINDS, readNamespace, readNamespaces, type NamespaceKind, type Namespaces } from './namespaces.js';
import { readProc } from './proc.js';

/** What an attribute reader sees of the Peer: other attributes, and /proc under the pin. */
export interface AttributeSource {
  attempt(name: string): Outcome<unknown>;
  procRead<T>(read: (proc: string) => Outcome<T>): Outcome<T>;
}

type Peer = AttributeSource;

/** One attribute of a Peer, declared once. */
export interface AttributeDef<T> {
  /** Reads the attribute (through `peer.procRead()` for /proc data), or says why it cannot. */
  read(peer: Peer): Outcome<T>;
  /** `live`: describes the process when read (re-read after apply()); `connect`: fixed at connect. */
  when: 'live' | 'connect';
  /** The attribute's type and meaning, for the docs table. */
  type: string;
  doc: string;
  /** Internal attributes (shared reads) have no getter and are not in toJSON. */
  internal?: true;
  /** Left out of toJSON (too costly to read for a printout: the digest hashes the file). */
  json?: false;
}

const define = <T>(def: AttributeDef<T>): AttributeDef<T> => Object.freeze(def);

function cgroupInfo(peer: Peer): Outcome<CgroupInfo> {
  return peer.attempt('cgroupInfo') as Outcome<CgroupInfo>;
}

/** The systemd units of the peer, from the path systemd manages, with the checks of who could have named them. */
interface Units {
  slice: string | null;
  unit: string | null;
  user: { uid: number; unit: string | null } | null;
}

function readUnits(peer: Peer): Outcome<Units> {
  const info = cgroupInfo(peer);
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

/** The attributes read from /proc (besides the program), by name. */
export const PROC_ATTRIBUTE_DEFS = Object.freeze({
  /** Namespace ids (inode numbers) of the peer process; undefined when /proc cannot tell (pid 0, exited). */
  namespaces: define<Namespaces>({
    when: 'live',
    type: '`{ pid, mnt, net, user, uts, ipc, cgroup }`',
    doc: 'inode numbers of /proc/PID/ns/*',
    read: (peer) =>
      peer.procRead((proc) => {
        const r = readNamespaces(proc);
        return typeof r === 'string' ? no(r) : ok(r);
      }),
  }),
  cgroupInfo: define<CgroupInfo>({
    when: 'live',
    internal: true,
    type: 'CgroupInfo',
    doc: '/proc/PID/cgroup, parsed',
    read: (peer) =>
      peer.procRead((proc) => {
        const info = readCgroup(proc);
        return typeof info === 'string' ? no(info) : ok(info);
      }),
  }),
  /** The peer's cgroup path (/proc/PID/cgroup: the v2 path, or a v1 hierarchy's). */
  cgroup: define<string>({
    when: 'live',
    type: 'string',
    doc: "the v2 path of /proc/PID/cgroup, or a v1 hierarchy's on hybrid hosts",
    read: (peer) => {
      const info = cgroupInfo(peer);
      if (!info.ok) return info;
      return info.value.path === undefined ? no('the peer has no cgroup line we understand') : ok(info.value.path);
    },
  }),
  /** The container the peer runs in, null on the host; undefined when it cannot be told. */
  container: define<Container | null>({
    when: 'live',
    type: '`{ runtime, id }` or null',
    doc: 'parsed from the cgroup path; unknown where a non-root uid could have made that path',
    read: (peer) => {
      const info = cgroupInfo(peer);
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
  }),
  /** SHA-256 (hex) of the peer's executable. */
  programDigest: define<string>({
    when: 'live',
    type: 'string',
    doc: 'SHA-256 of /proc/PID/exe, hashed once per file version',
    json: false,
    read: (peer) => peer.procRead(executableDigest),
  }),
  /** The systemd system unit the peer runs in (`nginx.service`); null in no system unit, or in a user manager's tree. */
  unit: define<string | null>({
    when: 'live',
    type: 'string or null',
    doc: 'systemd system unit from the cgroup path systemd manages; null under `user@UID.service`; unknown where a non-root uid could have made the path',
    read: (peer) => {
      const u = readUnits(peer);
      return u.ok ? ok(u.value.unit) : u;
    },
  }),
  /** The systemd slice of the peer's unit (`system.slice`, `user-1000.slice`); null when the path has none. */
  slice: define<string | null>({
    when: 'live',
    type: 'string or null',
    doc: 'innermost systemd slice above the unit',
    read: (peer) => {
      const u = readUnits(peer);
      return u.ok ? ok(u.value.slice) : u;
    },
  }),
  /**
   * For a peer in a user manager's tree (`user@UID.service`): that uid and the user unit.
   * The uid is the system's; the unit name is chosen by that user.
   */
  userUnit: define<{ uid: number; unit: string | null } | null>({
    when: 'live',
    type: '`{ uid, unit }` or null',
    doc: "the user manager (`user@UID.service`) the peer runs under and its user unit; the unit name is the user's own choice",
    read: (peer) => {
      const u = readUnits(peer);
      return u.ok ? ok(u.value.user) : u;
    },
  }),
  /** Whether the peer runs with no_new_privs (it can gain no privileges through exec). */
  noNewPrivs: define<boolean>({
    when: 'live',
    type: 'boolean',
    doc: '`NoNewPrivs:` of /proc/PID/status',
    read: (peer) =>
      peer.procRead((proc) => {
        const status = readProc(`${proc}/status`);
        if (status === undefined) return no(`cannot read ${proc}/status: the peer exited`);
        const m = /^NoNewPrivs:\s*(\d)/m.exec(status);
        return m ? ok(m[1] === '1') : no('this kernel does not report NoNewPrivs');
      }),
  }),
});

/** Names of the attributes declared in {@link PROC_ATTRIBUTE_DEFS}. */
export type ProcAttributeName = keyof typeof PROC_ATTRIBUTE_DEFS;

/** The value types of the public table attributes, for the Peer's getters. */
export type ProcAttributeValues = {
  readonly [
    K in keyof typeof PROC_ATTRIBUTE_DEFS as K extends 'cgroupInfo' ? never : K
  ]: (typeof PROC_ATTRIBUTE_DEFS)[K] extends AttributeDef<infer T> ? T | undefined : never;
};

/** The attributes of this room: each describes the live process at the time it is read. */
export const PROC_ATTRIBUTES: readonly string[] = Object.freeze(Object.keys(PROC_ATTRIBUTE_DEFS));

/** Public attributes of the table, in declaration order (getters and toJSON). */
export const PUBLIC_PROC_ATTRIBUTES = Object.freeze(
  (Object.keys(PROC_ATTRIBUTE_DEFS) as ProcAttributeName[]).filter((k) => !(PROC_ATTRIBUTE_DEFS[k] as AttributeDef<unknown>).internal),
) as readonly Exclude<ProcAttributeName, 'cgroupInfo'>[];

/** Resolves one of this room's attributes; undefined for a name it does not know. */
export function resolveProcAttribute(peer: Peer, name: string): Outcome<unknown> | undefined {
  if (Object.hasOwn(PROC_ATTRIBUTE_DEFS, name)) return (PROC_ATTRIBUTE_DEFS[name as ProcAttributeName] as AttributeDef<unknown>).read(peer);
  // `ns:<kind>`: one namespace, for rules that need only some (host() needs two of seven).
  const kind = name.startsWith('ns:') ? (name.slice(3) as NamespaceKind) : undefined;
  if (kind === undefined || !NAMESPACE_KINDS.includes(kind)) return undefined;
  return peer.procRead((proc) => {
    const r = readNamespace(proc, kind);
    return typeof r === 'string' ? no(r) : ok(r);
  });
}

/** The Markdown table of the live attributes, as docs/attributes.md carries it (a test keeps them equal). */
export function attributesDocTable(): string {
  const rows = PUBLIC_PROC_ATTRIBUTES.map((name) => {
    const d = PROC_ATTRIBUTE_DEFS[name] as AttributeDef<unknown>;
    return `| \`${name}\` | ${d.type} | ${d.when === 'live' ? 'read at the time of reading, under the pin' : 'fixed at connect'} | ${d.doc} |`;
  });
  return ['| attribute | type | when | source |', '|---|---|---|---|', ...rows].join('\n');
}
