/**
 * listen(): a socket file made safely, with no process-wide side effect.
 *
 * The umask is never changed (it is process-wide: a file another thread creates meanwhile
 * would get the wrong mode). The socket is made and bound here, not in `server.listen()`:
 * its inode's mode is set with fchmod(2) before bind(), so the file is born with
 * `mode & ~umask`, never wider than asked; owner, group and whatever the umask took away are
 * applied through an O_PATH fd of the file, proven to be the one the socket is bound to,
 * before listen(2). Until listen(2) a connect() is refused, so nobody connects before the
 * file's mode and owner are final; then the server listens on the fd. The socket stays
 * bound to the path itself (not to a temporary name renamed into place), so getsockname(),
 * every peer's getpeername(), `ss` and the audit report the path (docs/serving.md).
 */
import { once } from 'node:events';
import type { Server } from 'node:net';
import { resolve } from 'node:path';
import { escapeText } from '../escape.js';
import { ErrorCode, SecpolicyError, invalidArg } from '../errors.js';
import {
  bindSocketFile,
  chmodPathFd,
  chownPathFd,
  closeFd,
  closePathFd,
  errnoName,
  formatMode,
  gidOf,
  listenOnBoundSocket,
  openPathFd,
  uidOf,
  type FileStat,
} from '../native/index.js';
import { holdListenerFile } from '../identity/index.js';
import * as v from '../validate.js';
import { log } from '../diagnostics.js';
import { checkDirectories, clearStaleSocket, fileAt, pathErrorCode, proveBoundFile, removeIfSame, sameFileAt } from './socket-file.js';

/** Options of {@link listen}. */
export interface ListenOptions {
  /** Exact mode of the socket file (a peer needs write permission to connect). @default 0o600 */
  mode?: number;
  /** Owner of the socket file: a user name or uid. @default the process's user */
  owner?: string | number;
  /** Group of the socket file: a group name or gid. @default the process's group */
  group?: string | number;
  /** Length of the queue of pending connections. @default Node's default (511) */
  backlog?: number;
  /**
   * Use a directory that others could write to (its group or every user, without the
   * sticky bit) or that belongs to another user, although they could then replace the socket file.
   * @default false
   */
  allowInsecureDirectory?: boolean;
}

/** Longest path that fits sockaddr_un.sun_path with its terminating NUL. */
const MAX_PATH_BYTES = 107;

/**
 * Makes `server` listen on a socket file at `path`, created safely: exact mode with no
 * umask window and no change to the process's umask, ownership applied before anyone can
 * connect, a symlink or non-socket at the path refused (`ERR_SECPOLICY_UNSAFE_PATH`), a
 * stale socket replaced only when nobody listens on it (a live one is
 * `ERR_SECPOLICY_ADDRESS_IN_USE`), and a directory that its group or other users could write
 * to without the sticky bit refused unless `allowInsecureDirectory` is set. Works on any
 * thread. The file is held open (O_PATH) from the bind until the server closes, and the
 * perms rule reads its mode through that fd, not the path; a path that names another file
 * right after the bind is `ERR_SECPOLICY_UNSAFE_PATH`. `server.close()` removes the file,
 * as Node does for a path it bound, if the path still names it.
 */
export async function listen(server: Server, path: string, options?: ListenOptions): Promise<void> {
  if (typeof server !== 'object' || server === null || typeof (server as Server).listen !== 'function')
    throw invalidArg('server', 'a net.Server', server);
  if (server.listening) throw invalidArg('server', 'a server that is not listening yet', server);
  if (!v.isName(path)) throw invalidArg('path', 'a non-empty socket file path (abstract sockets have no file)', path);
  const file = resolve(path);
  if (Buffer.byteLength(file) > MAX_PATH_BYTES)
    throw invalidArg('path', `a path of at most ${MAX_PATH_BYTES} bytes (the sun_path limit)`, file);
  const o = v.options<ListenOptions>('options', options);
  const mode = v.mode('options.mode', o.mode ?? 0o600);
  const uid = o.owner === undefined ? -1 : resolveId('options.owner', o.owner, uidOf, 'user');
  const gid = o.group === undefined ? -1 : resolveId('options.group', o.group, gidOf, 'group');
  if (o.backlog !== undefined && (typeof o.backlog !== 'number' || !Number.isSafeInteger(o.backlog) || o.backlog < 1)) {
    throw invalidArg('options.backlog', 'a positive integer', o.backlog);
  }
  if (o.allowInsecureDirectory !== undefined && typeof o.allowInsecureDirectory !== 'boolean') {
    throw invalidArg('options.allowInsecureDirectory', 'a boolean', o.allowInsecureDirectory);
  }

  if (!o.allowInsecureDirectory) checkDirectories(file);
  await clearStaleSocket(file);
  if (server.listening) throw invalidArg('server', 'a server that is not listening yet', server);
  // In a directory checked above, nobody but us (or root) can put another file at the path.
  const witnessed = !o.allowInsecureDirectory;

  let socket: number;
  try {
    socket = bindSocketFile(file, mode);
  } catch (cause) {
    const errno = (cause as SecpolicyError).errno;
    // Not a system call's failure (no libc here, say): as it is.
    if (errno === undefined) throw cause;
    const code = errnoName(errno);
    if (code === 'EADDRINUSE')
      throw new SecpolicyError(ErrorCode.ADDRESS_IN_USE, `${file}: another process created the path first`, { path: file, cause });
    throw new SecpolicyError(pathErrorCode({ code }), `${file}: cannot listen (${code})`, { path: file, cause });
  }

  // Bound, not listening: a connect() is refused until everything below is final.
  const held = openPathFd(file);
  let bound: FileStat | undefined;
  try {
    if (held < 0)
      throw new SecpolicyError(ErrorCode.UNSAFE_PATH, `${file}: cannot open the socket file right after bind (${errnoName(-held)})`, {
        path: file,
      });
    proveBoundFile(file, socket, held, witnessed);
    bound = fileAt(held, file);
    if (uid !== -1 || gid !== -1) {
      const errno = chownPathFd(held, uid, gid);
      if (errno !== 0)
        throw new SecpolicyError(
          ErrorCode.NATIVE,
          `${file}: cannot give the socket file owner ${uid} and group ${gid} (${errnoName(errno)})`,
          {
            path: file,
            syscall: 'fchownat',
            errno,
          },
        );
    }
    setExactMode(file, held, mode, uid, gid);
    listenOnBoundSocket(server, socket, file, o.backlog);
  } catch (cause) {
    closeFd(socket);
    // Only the file proven to be ours is removed; anything else at the path is left alone.
    if (bound !== undefined) removeIfSame(file, bound);
    if (held >= 0) closePathFd(held);
    throw cause;
  }

  // From here the socket belongs to the server: closing it closes the socket. The file goes
  // when the server is closed, if the path still names it. Until then an O_PATH fd of it is
  // open, ours or the one the perms rule holds (released at the server's close event), so
  // its inode number cannot have been given to another file.
  const ours = bound;
  let pinned = held;
  let cleaned = false;
  removeOnClose(server, () => {
    if (cleaned) return;
    cleaned = true;
    removeIfSame(file, ours);
    if (pinned >= 0) closePathFd(pinned);
    pinned = -1;
  });
  try {
    const listening = once(server, 'listening');
    // The file is held for the perms rule (src/identity/listener-file.ts) before anyone can connect.
    const hold = holdListenerFile(server, file, witnessed);
    await listening;
    // The path names another file than the one we bound (replaced right after bind).
    if ((!hold.ok && hold.replaced) || !sameFileAt(file, ours))
      throw new SecpolicyError(
        ErrorCode.UNSAFE_PATH,
        `${file}: ${hold.ok ? 'the path names another file than the socket bound to it' : hold.reason}`,
        {
          path: file,
        },
      );
    // The perms rule's fd pins the file until the server's close event: ours is not needed.
    if (hold.ok) {
      closePathFd(pinned);
      pinned = -1;
    }
  } catch (cause) {
    server.close();
    if (cause instanceof SecpolicyError) throw cause;
    const code = (cause as NodeJS.ErrnoException).code;
    throw new SecpolicyError(pathErrorCode(cause), `${file}: cannot listen (${code ?? (cause as Error).message})`, { path: file, cause });
  }
  log('listen %s mode %s owner %d group %d', escapeText(file), formatMode(mode), uid, gid);
}

/**
 * Runs `cleanUp` when `server.close()` is called, before the listening socket is closed, as
 * Node removes a socket file it bound itself (a socket made here is one Node was handed,
 * whose name it does not know), and at the latest at the server's close event. The own
 * `close` property this sets on the server is taken away again at the first close, unless
 * something replaced it meanwhile.
 */
function removeOnClose(server: Server, cleanUp: () => void): void {
  const own = Object.prototype.hasOwnProperty.call(server, 'close');
  const previous = server.close;
  const restore = (): void => {
    if (server.close !== closing) return;
    if (own) server.close = previous;
    else delete (server as Partial<Server>).close;
  };
  const closing = function (this: Server, ...args: Parameters<Server['close']>): Server {
    restore();
    cleanUp();
    return previous.apply(this, args);
  };
  server.close = closing;
  server.once('close', () => {
    restore();
    cleanUp();
  });
}

/**
 * Puts back what the umask took from the file's mode (it was born `mode & ~umask`), through
 * the held fd, and checks the result: a socket with exactly `mode`, owner and group as asked.
 */
function setExactMode(file: string, held: number, mode: number, uid: number, gid: number): void {
  let s = fileAt(held, file);
  if ((s.mode & 0o7777) !== mode) {
    try {
      chmodPathFd(held, mode);
    } catch (cause) {
      const code = (cause as NodeJS.ErrnoException).code;
      throw new SecpolicyError(ErrorCode.NATIVE, `${file}: cannot give the socket file mode ${formatMode(mode)} (${code})`, {
        path: file,
        syscall: 'chmod',
        cause,
      });
    }
    s = fileAt(held, file);
  }
  if ((s.mode & 0o7777) !== mode)
    throw new SecpolicyError(
      ErrorCode.UNSAFE_PATH,
      `${file}: the socket file has mode ${formatMode(s.mode)} instead of ${formatMode(mode)}`,
      {
        path: file,
      },
    );
  if ((uid !== -1 && s.uid !== uid) || (gid !== -1 && s.gid !== gid))
    throw new SecpolicyError(ErrorCode.UNSAFE_PATH, `${file}: the socket file belongs to ${s.uid}:${s.gid} instead of ${uid}:${gid}`, {
      path: file,
    });
}

function resolveId(name: string, value: unknown, lookup: (n: string) => number | undefined, what: string): number {
  if (v.isId(value)) return value;
  if (!v.isName(value)) throw invalidArg(name, `a ${what} name or id`, value);
  const id = lookup(value);
  if (id === undefined) throw invalidArg(name, `a ${what} known to the system`, value);
  return id;
}
