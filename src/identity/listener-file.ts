/**
 * The socket file a listening server is bound to, held open (an O_PATH fd) from listen()
 * until the server closes, so that the perms rule reads the mode of the file connections
 * came through, never that of whatever the path names now: a file renamed over the path
 * after bind is another inode, and connections to our listener did not come through it.
 *
 * The fd is proven to be the listener's own file once, when it is opened: the kernel's
 * sock_diag record of the listening socket names the device and inode it is bound to.
 * After that every read is one fstat (statx on the fd) and no path walk. When the proof
 * fails (the path was replaced before it was opened, sock_diag is unavailable) the mode
 * is unknown, and a perms rule on it is unknown, never a guess.
 */
import type { Server, Socket } from 'node:net';
import {
  closePathFd,
  errnoName,
  fdIdentity,
  fdMode,
  handleFd,
  listenerBoundFile,
  listenerHandle,
  openPathFd,
  sameBoundFile,
  S_IFMT,
  S_IFSOCK,
  socketFd,
} from '../native/index.js';
import { absent, no, ok, type Outcome } from './outcome.js';

/** The held file of one listen(): its fd, or why there is none. */
interface Held {
  /** The listening handle it was proven for: a server listening again has another. */
  readonly handle: object;
  readonly path: string;
  /** The O_PATH fd, or -1 when the file could not be proven to be the listener's. */
  fd: number;
  readonly reason: string | undefined;
}

/** What {@link holdListenerFile} found: the file is held, or why not, and whether the path names another file. */
export type HoldResult = { ok: true } | { ok: false; reason: string; replaced: boolean };

const HELD = Symbol('secpolicy.listenerFile');
type Holder = Server & { [HELD]?: Held };

const ENOENT = 2;
// errno values that say nothing about the file (no fds or memory left).
const ENOMEM = 12;
const ENFILE = 23;
const EMFILE = 24;

const HOLD_OK: HoldResult = Object.freeze({ ok: true });
// One Outcome per mode value: the read on every connection allocates nothing.
const MODES: Outcome<number>[] = [];

/** The fd of a connection, read only when the file must be proven; undefined once it is closed. */
function connectionFd(socket: Socket): number | undefined {
  try {
    return socketFd(socket);
  } catch {
    return undefined;
  }
}

const isAbstract = (path: string) => path.startsWith('@') || path.startsWith('\0');

/**
 * Opens the socket file at `path` (O_PATH, a final symlink not followed), proves through
 * sock_diag that it is the very file the listening `server` is bound to, and keeps the fd
 * until the server closes. Call it right after the bind. `connection`: the fd of a connection
 * accepted through the listener, which names the same file where the server has no
 * listening fd of its own (a cluster worker). `witnessed`: the caller bound the
 * socket itself in a directory only it (or root) may write to, which proves the file when
 * sock_diag cannot. When the proof fails the reason is
 * kept and the mode stays unknown for this listen(); `replaced` says the path names
 * another file than the one the listener is bound to. A failure that may pass (no fds left,
 * sock_diag unavailable) is not kept: the next read tries again.
 */
export function holdListenerFile(server: Server, path: string, witnessed = false, connection?: number): HoldResult {
  const s = server as Holder;
  const handle = listenerHandle(server);
  // A cluster worker's server has no listening fd of its own (the primary accepts); a
  // connection it was handed shares the listener's bound file, and sock_diag says which.
  const fd = handle === undefined ? undefined : (handleFd(handle) ?? connection);
  if (handle === undefined) return { ok: false, reason: 'the server is not listening', replaced: false };
  if (fd === undefined)
    return { ok: false, reason: 'the server has no listening socket of its own to tell its file by (a cluster worker)', replaced: false };
  const current = s[HELD];
  if (current !== undefined) {
    if (current.handle === handle) return current.reason === undefined ? HOLD_OK : { ok: false, reason: current.reason, replaced: true };
    // The server was closed and listens again: the old file is not this listener's.
    release(current);
    s[HELD] = undefined;
  }
  if (isAbstract(path)) return { ok: false, reason: 'abstract sockets have no file', replaced: false };
  const bound = listenerBoundFile(fd);
  // Without sock_diag (a seccomp filter, RestrictAddressFamilies=, qemu-user) the proof may
  // be the caller's own: listen() binds in a directory nobody else may write to and opens
  // the file right after, so nobody else can have put another file there in between.
  if (typeof bound === 'string' && !witnessed)
    return { ok: false, reason: `cannot tell which file the server listens on: ${bound}`, replaced: false };
  const file = openPathFd(path);
  if (file < 0) {
    const errno = -file;
    const reason = `cannot open the socket file ${path}: ${errnoName(errno)}`;
    // Out of fds or memory: not a property of the file, so not kept.
    if (errno === ENFILE || errno === EMFILE || errno === ENOMEM) return { ok: false, reason, replaced: false };
    return keep(s, handle, path, -1, errno === ENOENT ? `${reason} (it was removed or replaced after bind)` : reason);
  }
  const id = fdIdentity(file);
  if (id === undefined || (id.mode & S_IFMT) !== S_IFSOCK || (typeof bound !== 'string' && !sameBoundFile(bound, id))) {
    closePathFd(file);
    return keep(s, handle, path, -1, `the socket file ${path} is not the one this server listens on (it was replaced after bind)`);
  }
  return keep(s, handle, path, file, undefined);
}

function keep(s: Holder, handle: object, path: string, fd: number, reason: string | undefined): HoldResult {
  const held: Held = { handle, path, fd, reason };
  s[HELD] = held;
  s.once('close', () => {
    // A server that listens again before its 'close' keeps its new file.
    if (s[HELD] === held) s[HELD] = undefined;
    release(held);
  });
  return reason === undefined ? HOLD_OK : { ok: false, reason, replaced: true };
}

function release(held: Held): void {
  if (held.fd >= 0) closePathFd(held.fd);
  held.fd = -1;
}

/**
 * The mode bits (& 0o777) of the socket file the listening `server` is bound to, read
 * through the fd held since {@link holdListenerFile} (one fstat). A server nobody held
 * (a plain `net.Server` the application made listen, a cluster worker's, proven through
 * `connection`, the socket being checked) is held on first use. Unknown (`no`)
 * when the file could not be proven to be the listener's, absent for an abstract socket.
 */
export function listenerFileMode(server: Server, path: string, connection?: Socket): Outcome<number> {
  if (isAbstract(path)) return absent('abstract sockets have no file permissions');
  let held = (server as Holder)[HELD];
  const handle = listenerHandle(server);
  // A closed server still draining its connections keeps its file until 'close'; a server
  // listening again has a new handle, and its new file is held.
  if (held === undefined || (handle !== undefined && held.handle !== handle)) {
    const r = holdListenerFile(server, path, false, connection === undefined ? undefined : connectionFd(connection));
    if (!r.ok) return no(r.reason);
    held = (server as Holder)[HELD]!;
  }
  if (held.reason !== undefined) return no(held.reason);
  const mode = fdMode(held.fd);
  if (mode < 0) return no(`cannot fstat the socket file ${held.path}`);
  // An inode never changes type; kept as a guard for an fd that is not what it should be.
  if ((mode & S_IFMT) !== S_IFSOCK) return no(`${held.path} is no longer a socket`);
  const bits = mode & 0o777;
  return (MODES[bits] ??= Object.freeze(ok(bits)));
}
