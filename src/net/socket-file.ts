/**
 * Checks on the place a socket file goes: the directories above it and whatever is
 * already at the path. Nothing here follows a symlink at the path or removes anything
 * but a socket that nobody listens on.
 */
import { lstatSync, realpathSync, unlinkSync, type Stats } from 'node:fs';
import * as net from 'node:net';
import { dirname } from 'node:path';
import { ErrorCode, SecpolicyError } from '../errors.js';
import { formatMode, listenerBoundFile, sameBoundFile, statFd, statPath, S_IFMT, S_IFSOCK, type FileStat } from '../native/index.js';

const S_ISVTX = 0o1000;
/** How long a probe of an existing socket may take before we call it live. */
const PROBE_TIMEOUT = 1000;

function unsafe(path: string, why: string, cause?: unknown): SecpolicyError {
  return new SecpolicyError(pathErrorCode(cause), `${path}: ${why}`, cause === undefined ? { path } : { path, cause });
}

/**
 * @internal The code of a path that could not be used: a missing path or a permission
 * problem is not an unsafe path, and says what to fix.
 */
export function pathErrorCode(cause: unknown): ErrorCode {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return ErrorCode.NOT_FOUND;
  if (code === 'EACCES' || code === 'EPERM') return ErrorCode.PERMISSION;
  return ErrorCode.UNSAFE_PATH;
}

/**
 * Refuses a directory (and each one above it) in which someone else could replace the
 * socket file: writable by its group or by every user without the sticky bit, or owned by a user that is
 * neither root nor us. Both the path as written and the real path are walked, so that a
 * symlinked directory is judged by where it points and by who could swap the link.
 */
export function checkDirectories(path: string): void {
  let real: string;
  try {
    real = realpathSync(dirname(path));
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' || code === 'ENOTDIR'
        ? `directory ${dirname(path)} does not exist (${code})`
        : code === 'EACCES' || code === 'EPERM'
          ? `no permission to search the directories above it (${code})`
          : `its directory cannot be used (${code})`;
    throw unsafe(path, why, cause);
  }
  const me = process.geteuid?.() ?? 0;
  const seen = new Set<string>();
  for (let dir of [dirname(path), real]) {
    for (;;) {
      if (!seen.has(dir)) {
        seen.add(dir);
        checkDirectory(path, dir, lstatSync(dir), me);
      }
      if (dir === '/') break;
      dir = dirname(dir);
    }
  }
}

function checkDirectory(path: string, dir: string, s: Stats, me: number): void {
  if (s.uid !== 0 && s.uid !== me) {
    throw unsafe(
      path,
      `${s.isSymbolicLink() ? 'symbolic link' : 'directory'} ${dir} belongs to uid ${s.uid}, who could replace the socket file; pass allowInsecureDirectory to use it anyway`,
    );
  }
  // A link's own mode means nothing; the directory holding it is checked in its turn.
  if (!s.isSymbolicLink() && s.mode & 0o002 && !(s.mode & S_ISVTX)) {
    throw unsafe(
      path,
      `directory ${dir} is writable by every user without the sticky bit (mode ${formatMode(s.mode)}); pass allowInsecureDirectory to use it anyway`,
    );
  }
  // A group's members could unlink the socket file and bind their own in its place.
  if (!s.isSymbolicLink() && s.mode & 0o020 && !(s.mode & S_ISVTX)) {
    throw unsafe(
      path,
      `directory ${dir} is writable by its group (gid ${s.gid}) without the sticky bit (mode ${formatMode(s.mode)}): a member could replace the socket file; pass allowInsecureDirectory to use it anyway`,
    );
  }
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw unsafe(path, `cannot inspect the path (${(cause as NodeJS.ErrnoException).code})`, cause);
  }
}

/** Whether something accepts connections on a socket file: 'live', 'stale', or an errno code. */
function probe(path: string): Promise<'live' | 'stale' | string> {
  return new Promise((resolve) => {
    const socket = net.connect({ path });
    const done = (answer: string): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    // A listener whose backlog is full does not answer at once: it is alive all the same.
    const timer = setTimeout(() => done('live'), PROBE_TIMEOUT);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve('live');
      // Hang up politely (read what it says, then end) so that the live server sees an
      // ordinary close rather than a reset; cut it off if it keeps the line open.
      socket
        .on('error', () => {})
        .resume()
        .end();
      setTimeout(() => socket.destroy(), PROBE_TIMEOUT).unref();
    });
    socket.once('error', (e: NodeJS.ErrnoException) =>
      done(e.code === 'ECONNREFUSED' ? 'stale' : e.code === 'EAGAIN' ? 'live' : (e.code ?? 'error')),
    );
  });
}

/**
 * Clears the way for a new socket file at `path`: nothing there is fine; a stale socket
 * (connecting is refused) is removed; a live socket is ERR_SECPOLICY_ADDRESS_IN_USE;
 * a symlink or anything that is not a socket is ERR_SECPOLICY_UNSAFE_PATH and untouched.
 */
export async function clearStaleSocket(path: string): Promise<void> {
  const before = lstatOrUndefined(path);
  if (before === undefined) return;
  if (before.isSymbolicLink()) throw unsafe(path, 'is a symbolic link; it is neither followed nor removed');
  if (!before.isSocket()) throw unsafe(path, 'exists and is not a socket; it is not removed');
  const state = await probe(path);
  if (state === 'live') throw new SecpolicyError(ErrorCode.ADDRESS_IN_USE, `${path}: a server is listening on this socket`, { path });
  if (state !== 'stale') throw unsafe(path, `cannot tell whether a server listens on this socket (${state}); it is not removed`);
  // The probe took a turn of the event loop: remove only the very socket that was probed.
  const now = lstatOrUndefined(path);
  if (now === undefined) return;
  if (!now.isSocket() || now.ino !== before.ino || now.dev !== before.dev)
    throw unsafe(path, 'was replaced while it was being checked; it is not removed');
  try {
    unlinkSync(path);
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code !== 'ENOENT')
      throw unsafe(path, `cannot remove the stale socket (${(cause as NodeJS.ErrnoException).code})`, cause);
  }
}

/** The socket file an O_PATH fd holds (its identity, mode and owner); it must still be a socket. */
export function fileAt(held: number, path: string): FileStat {
  const s = statFd(held);
  if (s === undefined) throw unsafe(path, 'cannot fstat the socket file right after bind');
  if ((s.mode & S_IFMT) !== S_IFSOCK) throw unsafe(path, 'is not a socket right after bind: it was replaced');
  return s;
}

/**
 * Proves that `held` (an O_PATH fd of `path`, opened right after bind) is the file the
 * socket `socket` is bound to, before anything is changed through it: sock_diag names the
 * device and inode of a bound socket's file. Where sock_diag is unavailable, the bind
 * itself is the proof in a directory nobody else may write to (`witnessed`); elsewhere the
 * file must at least be ours, so that an owner or mode is never applied to someone else's.
 */
export function proveBoundFile(path: string, socket: number, held: number, witnessed: boolean): void {
  const s = fileAt(held, path);
  const bound = listenerBoundFile(socket);
  if (typeof bound !== 'string') {
    if (!sameBoundFile(bound, { dev: s.dev, ino: BigInt(s.ino) }))
      throw unsafe(path, 'the path names another file than the one the socket was bound to (it was replaced right after bind)');
    return;
  }
  if (witnessed) return;
  const me = process.geteuid?.() ?? 0;
  if (s.uid !== me)
    throw unsafe(path, `cannot tell whether the socket file is the one just bound (${bound}), and it belongs to uid ${s.uid}`);
}

/** True when `path` (not followed) names the file `file` describes (the same device and inode). */
export function sameFileAt(path: string, file: { dev: number; ino: number | bigint }): boolean {
  const now = statPath(path, true);
  return now !== undefined && now.dev === file.dev && now.ino === file.ino;
}

/**
 * Removes `path` if it still names `file` (whose inode the caller keeps open, so that its
 * number cannot have been given to a new file); anything else there is left alone.
 */
export function removeIfSame(path: string, file: { dev: number; ino: number | bigint }): void {
  if (!sameFileAt(path, file)) return;
  try {
    unlinkSync(path);
  } catch {
    // Gone already, or no longer ours to remove: nothing to clean.
  }
}
