/**
 * listen(): a socket file made safely.
 *
 * The file is born with its final mode: the kernel gives a new socket file the mode
 * 0777 & ~umask, so the umask is set to exactly `~mode` for the one synchronous bind()
 * inside `server.listen()` and restored at once. There is no moment at which the file
 * exists with a wider mode, and no chmod that could hit a swapped path. The umask is
 * process-wide: a file that a libuv worker thread creates during that bind is masked by
 * `~mode` instead of the usual umask (docs/serving.md). (Binding in a private directory and
 * renaming the file into place would avoid that, but the kernel, `ss` and every peer's
 * getpeername() would then report the temporary name as the server's address.)
 */
import { once } from 'node:events';
import { lchownSync } from 'node:fs';
import type { Server } from 'node:net';
import { resolve } from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { escapeText } from '../escape.js';
import { ErrorCode, SecpolicyError, invalidArg } from '../errors.js';
import { formatMode, gidOf, uidOf } from '../native/index.js';
import { holdListenerFile, type HoldResult } from '../identity/listener-file.js';
import * as v from '../policy/validate.js';
import { log } from '../diagnostics.js';
import { checkCreated, checkDirectories, clearStaleSocket, pathErrorCode } from './socket-file.js';

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
 * umask window, ownership applied, a symlink or non-socket at the path refused
 * (`ERR_SECPOLICY_UNSAFE_PATH`), a stale socket replaced only when nobody listens on it
 * (a live one is `ERR_SECPOLICY_ADDRESS_IN_USE`), and a directory that its group or other
 * users could write to without the sticky bit refused unless `allowInsecureDirectory` is set. Must run on the main thread (the
 * umask cannot be changed from a worker). The file is held open (O_PATH) from the bind until
 * the server closes, and the perms rule reads its mode through that fd, not the path; a path
 * that names another file right after the bind is `ERR_SECPOLICY_UNSAFE_PATH`. Node removes
 * the file when the server closes.
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
  if (!isMainThread)
    throw new SecpolicyError(ErrorCode.UNSAFE_PATH, `${file}: listen() sets the umask around bind, which only the main thread can do`, {
      path: file,
    });

  if (!o.allowInsecureDirectory) checkDirectories(file);
  await clearStaleSocket(file);

  const listening = once(server, 'listening');
  let held: HoldResult;
  try {
    const previous = process.umask(0o777 & ~mode);
    try {
      // exclusive: bind here, not in a cluster primary that has another umask.
      server.listen({ path: file, exclusive: true, ...(o.backlog !== undefined && { backlog: o.backlog }) });
    } finally {
      process.umask(previous);
    }
    // The bind is synchronous: the file is held before anyone can connect, and the perms
    // rule reads this file for the server's life (src/identity/listener-file.ts).
    // In a directory checked above, nobody else can have swapped the file since the bind.
    held = holdListenerFile(server, file, !o.allowInsecureDirectory);
    await listening;
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE')
      throw new SecpolicyError(ErrorCode.ADDRESS_IN_USE, `${file}: another process created the path first`, { path: file, cause });
    throw new SecpolicyError(pathErrorCode(cause), `${file}: cannot listen (${code ?? (cause as Error).message})`, { path: file, cause });
  }
  try {
    // The path names another file than the one we bound: owner and group must not go to it.
    if (!held.ok && held.replaced) throw new SecpolicyError(ErrorCode.UNSAFE_PATH, `${file}: ${held.reason}`, { path: file });
    checkCreated(file, mode);
    if (uid !== -1 || gid !== -1) lchownSync(file, uid, gid);
  } catch (cause) {
    server.close();
    if (cause instanceof SecpolicyError) throw cause;
    const code = (cause as NodeJS.ErrnoException).code;
    throw new SecpolicyError(ErrorCode.NATIVE, `${file}: cannot give the socket file owner ${uid} and group ${gid} (${code})`, {
      path: file,
      syscall: 'lchown',
      cause,
    });
  }
  log('listen %s mode %s owner %d group %d', escapeText(file), formatMode(mode), uid, gid);
}

function resolveId(name: string, value: unknown, lookup: (n: string) => number | undefined, what: string): number {
  if (v.isId(value)) return value;
  if (!v.isName(value)) throw invalidArg(name, `a ${what} name or id`, value);
  const id = lookup(value);
  if (id === undefined) throw invalidArg(name, `a ${what} known to the system`, value);
  return id;
}
