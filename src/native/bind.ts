/**
 * A UNIX stream socket bound to a file whose mode never depends on the umask being
 * changed: the process-wide umask is left alone.
 *
 * Linux gives a new socket file the mode of the socket's own inode masked by the umask
 * (af_unix's bind: `S_IFSOCK | (SOCK_INODE(sock)->i_mode & ~current_umask())`), and
 * fchmod(2) on a socket fd sets that inode's mode. So fchmod(fd, mode) before bind() makes
 * the file `mode & ~umask`: never wider than asked. What the umask took away is put back
 * with a chmod of the file the socket was bound to, reached through an O_PATH fd of it,
 * before listen(2): until then a connect() is refused (ECONNREFUSED), so nobody connects
 * before the mode and owner are final.
 */
import cluster from 'node:cluster';
import type { Server } from 'node:net';
import { chmodSync } from 'node:fs';
import { ErrorCode } from '../errors.js';
import { errnoError, libc, libcFunction } from './libc.js';
import { sockaddrUn } from './socket.js';

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const AT_EMPTY_PATH = 0x1000;
const EMPTY_PATH = Buffer.from([0]);
/** (uid_t)-1: "leave unchanged" for fchownat. */
const UNCHANGED = 0xffffffff;

/**
 * A new UNIX stream socket, its inode's mode set to `mode`, bound to `path` (not listening:
 * connecting to it is refused). Returns the fd; throws an errno error (its `errno` says why,
 * EADDRINUSE when the path exists) after closing the socket.
 */
export function bindSocketFile(path: string, mode: number): number {
  const c = libc();
  const fchmod = libcFunction('int fchmod(int fd, uint32_t mode)');
  const bind = libcFunction('int bind(int fd, void *addr, uint32_t len)');
  const addr = sockaddrUn(Buffer.from(path), false);
  const fd = c.socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) as number;
  if (fd < 0) throw errnoError('socket', c.errno(), ErrorCode.NATIVE);
  if ((fchmod(fd, mode) as number) !== 0) {
    const errno = c.errno();
    c.close(fd);
    throw errnoError('fchmod', errno, ErrorCode.NATIVE, 'the socket before bind');
  }
  if ((bind(fd, addr, addr.length) as number) !== 0) {
    const errno = c.errno();
    c.close(fd);
    throw errnoError('bind', errno, ErrorCode.NATIVE, path);
  }
  return fd;
}

/** fchownat(fd, "", uid, gid, AT_EMPTY_PATH) on an O_PATH fd (-1 leaves one unchanged): 0, or the errno. */
export function chownPathFd(fd: number, uid: number, gid: number): number {
  const fchownat = libcFunction('int fchownat(int dirfd, const char *path, uint32_t uid, uint32_t gid, int flags)');
  const r = fchownat(fd, EMPTY_PATH, uid < 0 ? UNCHANGED : uid, gid < 0 ? UNCHANGED : gid, AT_EMPTY_PATH) as number;
  return r === 0 ? 0 : libc().errno();
}

/**
 * chmod of the file an O_PATH fd holds (fchmod refuses O_PATH fds): through its
 * /proc/self/fd link, which resolves to that very inode, whatever its path names now.
 * Throws Node's errno error.
 */
export function chmodPathFd(fd: number, mode: number): void {
  chmodSync(`/proc/self/fd/${fd}`, mode);
}

/**
 * Makes `server` listen on the bound socket `fd` (Node calls listen(2) on it), and report
 * `path` as its address as a server that listened on a path does. In a cluster worker the
 * socket is served by the worker itself, as `exclusive: true` does for a path: Node would
 * otherwise ask the primary to listen on an fd number that means nothing in its process.
 */
export function listenOnBoundSocket(server: Server, fd: number, path: string, backlog: number | undefined): void {
  const worker = cluster.isWorker === true;
  // listenInCluster() serves a listen itself in the primary or when exclusive; an fd
  // listen is never exclusive (only a path's or a port's is), so the worker is taken for
  // the primary for this one synchronous call (no other JavaScript runs meanwhile).
  const primary = Object.getOwnPropertyDescriptor(cluster, 'isPrimary');
  if (worker) Object.defineProperty(cluster, 'isPrimary', { value: true, configurable: true, writable: true });
  try {
    if (backlog === undefined) server.listen({ fd });
    else server.listen({ fd }, backlog);
  } finally {
    if (worker) {
      if (primary !== undefined) Object.defineProperty(cluster, 'isPrimary', primary);
      else delete (cluster as { isPrimary?: boolean }).isPrimary;
    }
  }
  reportPath(server, path);
}

/**
 * Node's address() of a server that listens on an fd is null (its name is kept only for
 * a path listen): while it listens, this server answers `path`, the name the socket is
 * bound to (as getsockname() says). The answer goes with the server's close.
 */
function reportPath(server: Server, path: string): void {
  const address = function (this: Server): ReturnType<Server['address']> {
    return this.listening ? path : null;
  };
  server.address = address;
  server.once('close', () => {
    if (server.address === address) delete (server as Partial<Server>).address;
  });
}
