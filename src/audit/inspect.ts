/**
 * `inspect()`: who listens on a socket. Connects as a client, reads the server's identity
 * through the same lazy Peer the policies use (no policy involved), and adds what the
 * socket file and the directories above it say.
 */
import net from 'node:net';
import { resolve } from 'node:path';
import { ErrorCode, SecpolicyError, invalidArg } from '../errors.js';
import { Peer } from '../identity/peer.js';
import { connectAbstract, groupName, userName } from '../native/index.js';
import * as v from '../policy/validate.js';
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
  /** The container the listener runs in (null: none), when this build can tell. */
  container?: { runtime: string; id: string } | null;
  /** Owner of the socket file; absent for abstract sockets. */
  owner?: { uid: number; user?: string; gid: number; group?: string };
  /** Mode bits (& 0o7777) of the socket file; absent for abstract sockets. */
  mode?: number;
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
  if (!v.isName(path) || path === '@') throw invalidArg('path', 'a socket path, or @name for an abstract socket', path);
  const o = v.options<InspectOptions>('options', options);
  const timeout = v.timeout('options.timeout', o.timeout, 5000);
  const abstract = path.startsWith('@');
  const shown = abstract ? path : resolve(path);
  const socket = abstract ? await openAbstract(path.slice(1), timeout) : await open(shown, shown, timeout);
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
  // The container getter arrives with the containers work; until then the field is left out.
  if ('container' in peer) out.container = (peer as { container?: PeerReport['container'] }).container ?? null;
  if (abstract) {
    out.findings = abstractFindings();
  } else {
    const file = checkFile(path);
    out.findings = file.findings;
    if (file.stat) {
      const { uid, gid } = file.stat;
      out.owner = { uid, ...opt('user', userName(uid)), gid, ...opt('group', groupName(gid)) };
      out.mode = file.stat.mode & 0o7777;
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

/**
 * An abstract name as other programs bind it (exact length), then as Node binds it
 * (padded to the whole sun_path) when nobody listens on the exact one.
 */
async function openAbstract(name: string, timeout: number): Promise<net.Socket> {
  let fd: number;
  try {
    fd = connectAbstract(name);
  } catch (e) {
    if ((e as { errnoName?: string }).errnoName !== 'ECONNREFUSED') throw e;
    return open(`\0${name}`, `@${name}`, timeout);
  }
  const socket = new net.Socket({ fd, readable: true, writable: true });
  socket.on('error', () => {});
  return socket;
}

/** Connects within `timeout`; a missing or dead socket is ERR_SECPOLICY_CONNECT naming the errno. */
function open(address: string, shown: string, timeout: number): Promise<net.Socket> {
  return new Promise((resolvePromise, reject) => {
    const socket = net.connect({ path: address });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new SecpolicyError(ErrorCode.TIMEOUT, `connecting to ${shown} took longer than ${timeout} ms`, { path: shown }));
    }, timeout);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      // A server that writes or closes first must not crash us while we read its identity.
      socket.on('error', () => {});
      resolvePromise(socket);
    });
    socket.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      reject(new SecpolicyError(ErrorCode.CONNECT, `cannot connect to ${shown}: ${e.code ?? e.message}`, { cause: e, path: shown }));
    });
  });
}
