/**
 * `inspect()`: who listens on a socket. Connects as a client, reads the server's identity
 * through the same lazy Peer the policies use (no policy involved), and adds what the
 * socket file and the directories above it say.
 */
import { formatMode } from '../native/index.js';
import { Peer } from '../identity/index.js';
import { groupName, userName } from '../native/index.js';
import { DEFAULT_TIMEOUT } from '../policy/index.js';
import * as v from '../validate.js';
import { dial } from './dial.js';
import { abstractFindings, checkFile, type Finding } from './findings.js';

/** What `inspect()` found about the listener of a socket (the `--json` shape of `secpolicy inspect`). */
export interface PeerReport {
  /** The socket: an absolute path, or `@name` for an abstract socket. */
  path: string;
  abstract: boolean;
  /** The listener's pid as of its listen(); 0 when it is not visible from our pid namespace. */
  pid: number;
  uid: number;
  user?: string;
  gid: number;
  group?: string;
  /** Supplementary groups of the listener (SO_PEERGROUPS). */
  groups: Array<{ gid: number; name?: string }>;
  /** The listener's executable, as its own mount namespace names it. */
  program?: string;
  /** Security label (SO_PEERSEC), when an LSM provides one. */
  label?: string;
  /** The container the listener runs in (null: none); absent when it could not be read. */
  container?: { runtime: string; id: string } | null;
  /** Owner of the socket file; absent for abstract sockets. */
  owner?: { uid: number; user?: string; gid: number; group?: string };
  /** Mode bits (& 0o7777) of the socket file; absent for abstract sockets. */
  mode?: number;
  /** The same mode as an octal string (`"0666"`), for people reading the JSON. */
  modeOctal?: string;
  /** What about the socket, its file and its directories deserves attention. */
  findings: Finding[];
  /** Attributes that could not be read, with the reason (e.g. `program: permission denied in /proc`). */
  unavailable: Record<string, string>;
}

/** Options of {@link inspect}. */
export interface InspectOptions {
  /** Bound on connecting, in ms. @default 5000 */
  timeout?: number;
}

/**
 * Connects to the socket at `path` (`@name` for an abstract socket) and reports who
 * listens there. Rejects with ERR_SECPOLICY_CONNECT when nobody can be reached there.
 */
export async function inspect(path: string, options?: InspectOptions): Promise<PeerReport> {
  const o = v.options<InspectOptions>('options', options);
  const timeout = v.timeout('options.timeout', o.timeout, DEFAULT_TIMEOUT);
  const { socket, path: shown, abstract } = await dial(path, timeout);
  try {
    // Every attribute is read while the connection is open: the kernel's record of the
    // listener lives on the socket, and /proc still belongs to it.
    const peer = new Peer(socket, { side: 'client', ...(!abstract && { socketPath: shown }) });
    return report(peer, shown, abstract);
  } finally {
    socket.destroy();
  }
}

function report(peer: Peer, path: string, abstract: boolean): PeerReport {
  const unavailable: Record<string, string> = {};
  const read = <T>(name: string): T | undefined => {
    const r = peer.attempt(name);
    if (r.ok) return r.value as T;
    unavailable[name] = r.reason;
    return undefined;
  };
  const out: PeerReport = { path, abstract, pid: peer.pid, uid: peer.uid, gid: peer.gid, groups: [], findings: [], unavailable };
  const user = read<string>('user');
  const group = read<string>('group');
  if (user !== undefined) out.user = user;
  if (group !== undefined) out.group = group;
  out.groups = (read<number[]>('groups') ?? []).map((gid) => named(gid, groupName(gid)));
  const program = read<string>('program');
  if (program !== undefined) out.program = program;
  const label = read<string>('label');
  if (label !== undefined) out.label = label;
  const container = read<PeerReport['container']>('container');
  if (container !== undefined) out.container = container;
  if (abstract) {
    out.findings = abstractFindings();
  } else {
    const file = checkFile(path);
    out.findings = file.findings;
    if (file.stat) {
      const { uid, gid } = file.stat;
      out.owner = { uid, ...opt('user', userName(uid)), gid, ...opt('group', groupName(gid)) };
      out.mode = file.stat.mode & 0o7777;
      out.modeOctal = formatMode(out.mode);
    }
  }
  return out;
}

function named(gid: number, name: string | undefined): { gid: number; name?: string } {
  return name === undefined ? { gid } : { gid, name };
}

function opt<K extends string>(key: K, value: string | undefined): { [P in K]?: string } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: string };
}
