/**
 * The file a listening UNIX socket is bound to, held open: an O_PATH fd of the socket
 * file (opening a socket file for reading fails with ENXIO), its mode through
 * statx(fd, "", AT_EMPTY_PATH) into a preallocated buffer, and the device and inode the
 * kernel records for the listener's bound file (sock_diag UNIX_DIAG_VFS), which proves
 * that the fd names the very file the listener is bound to, whatever the path holds now.
 */
import { constants } from 'node:fs';
import { cPath, statFd } from './file.js';
import { Errno, libc } from './libc.js';
import { unixSocket } from './sock-diag.js';

// Identical on x86-64 and arm64 (asm-generic); O_NOFOLLOW is not, so it comes from Node's build.
const O_PATH = 0o10000000;
const O_CLOEXEC = 0o2000000;
const OPEN_FLAGS = O_PATH | constants.O_NOFOLLOW | O_CLOEXEC;

/** Device (major * 2^20 + minor, the kernel's internal dev_t), inode and full st_mode of an open file. */
export interface FdIdentity {
  dev: number;
  ino: bigint;
  mode: number;
}

/**
 * Opens `path` with O_PATH | O_NOFOLLOW | O_CLOEXEC: a reference to the file itself (a
 * final symlink is opened as the link, never followed). Returns the fd, or -errno.
 */
export function openPathFd(path: string): number {
  if (path.includes('\0')) return -Errno.EINVAL;
  const arg = cPath(path);
  if (arg === undefined) return -Errno.ENAMETOOLONG;
  const c = libc();
  for (;;) {
    const fd = c.open(arg, OPEN_FLAGS) as number;
    if (fd >= 0) return fd;
    const errno = c.errno();
    if (errno !== Errno.EINTR) return -errno;
  }
}

/** Closes an fd this module opened. */
export function closePathFd(fd: number): void {
  libc().close(fd);
}

/** Device, inode and st_mode of an open fd; undefined when statx fails. */
export function fdIdentity(fd: number): FdIdentity | undefined {
  const s = statFd(fd);
  return s === undefined ? undefined : { dev: s.dev, ino: BigInt(s.ino), mode: s.mode };
}

/**
 * True when the kernel's UNIX_DIAG_VFS record (`udiag_vfs_dev` is the superblock's
 * internal dev_t, major << 20 | minor, and `udiag_vfs_ino` the inode cut to 32 bits)
 * names the file `file` describes (statx's dev_major/dev_minor and 64-bit inode).
 */
export function sameBoundFile(vfs: { dev: number; ino: number }, file: { dev: number; ino: bigint }): boolean {
  return vfs.dev === file.dev && vfs.ino === Number(file.ino & 0xffffffffn);
}

/**
 * The device and inode of the file the listening socket `fd` is bound to, from sock_diag;
 * a string says why it cannot be had (an abstract or unbound socket, no sock_diag here).
 */
export function listenerBoundFile(fd: number): { dev: number; ino: number } | string {
  const self = fdIdentity(fd);
  if (self === undefined) return `cannot fstat the listening socket (fd ${fd})`;
  const inode = Number(self.ino);
  if (!Number.isInteger(inode) || inode <= 0 || inode > 0xffffffff) return `the listening socket has no 32-bit inode (${self.ino})`;
  let info;
  try {
    info = unixSocket(inode);
  } catch (e) {
    return `cannot ask sock_diag which file the listener is bound to: ${(e as Error).message}`;
  }
  if (info === undefined) return 'sock_diag does not know the listening socket (another network namespace?)';
  if (info.vfs === undefined) return 'the listening socket is bound to no file';
  return info.vfs;
}
