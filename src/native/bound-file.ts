/**
 * The file a listening UNIX socket is bound to, held open: an O_PATH fd of the socket
 * file (opening a socket file for reading fails with ENXIO), its mode through
 * statx(fd, "", AT_EMPTY_PATH) into a preallocated buffer, and the device and inode the
 * kernel records for the listener's bound file (sock_diag UNIX_DIAG_VFS), which proves
 * that the fd names the very file the listener is bound to, whatever the path holds now.
 */
import { constants } from 'node:fs';
import { ErrorCode, SecpolicyError } from '../errors.js';
import { Errno, libc } from './libc.js';
import { unixSocket } from './sock-diag.js';

// Identical on x86-64 and arm64 (asm-generic); O_NOFOLLOW is not, so it comes from Node's build.
const O_PATH = 0o10000000;
const O_CLOEXEC = 0o2000000;
const OPEN_FLAGS = O_PATH | constants.O_NOFOLLOW | O_CLOEXEC;
const AT_EMPTY_PATH = 0x1000;
const STATX_TYPE = 0x1;
const STATX_MODE = 0x2;
const STATX_INO = 0x100;
const PATH_MAX = 4096;

const EMPTY_PATH = Buffer.from([0]);
const statxBuf = Buffer.alloc(256);
const pathBuf = Buffer.alloc(PATH_MAX + 1);

/** Device (major * 2^20 + minor, the kernel's internal dev_t), inode and full st_mode of an open file. */
export interface FdIdentity {
  dev: number;
  ino: bigint;
  mode: number;
}

const ERRNO_NAMES: Record<number, string> = {
  [Errno.ENOENT]: 'ENOENT',
  [Errno.EPERM]: 'EPERM',
  13: 'EACCES',
  20: 'ENOTDIR',
  23: 'ENFILE',
  24: 'EMFILE',
  36: 'ENAMETOOLONG',
  40: 'ELOOP',
  [Errno.ENOMEM]: 'ENOMEM',
};

/** The name of an errno for messages (`ENOENT`), or `errno N`. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
}

/**
 * Opens `path` with O_PATH | O_NOFOLLOW | O_CLOEXEC: a reference to the file itself (a
 * final symlink is opened as the link, never followed). Returns the fd, or -errno.
 */
export function openPathFd(path: string): number {
  if (path.includes('\0')) return -Errno.EINVAL;
  const len = pathBuf.write(path, 0, PATH_MAX, 'utf8');
  if (len >= PATH_MAX) return -36; // ENAMETOOLONG
  pathBuf[len] = 0;
  const c = libc();
  for (;;) {
    const fd = c.open(pathBuf, OPEN_FLAGS) as number;
    if (fd >= 0) return fd;
    const errno = c.errno();
    if (errno !== Errno.EINTR) return -errno;
  }
}

/** Closes an fd this module opened. */
export function closePathFd(fd: number): void {
  libc().close(fd);
}

function statxFd(fd: number, mask: number): boolean {
  const fn = libc().statx;
  if (fn === null) throw new SecpolicyError(ErrorCode.UNSUPPORTED_PLATFORM, 'statx(2) is not available in this C library');
  return fn(fd, EMPTY_PATH, AT_EMPTY_PATH, mask, statxBuf) === 0;
}

/**
 * st_mode (type and permission bits) of an open fd: one statx call into a preallocated
 * buffer, no allocation. -1 when the call fails (a closed fd).
 */
export function fdMode(fd: number): number {
  return statxFd(fd, STATX_TYPE | STATX_MODE) ? statxBuf.readUInt16LE(0x1c) : -1;
}

/** Device, inode and st_mode of an open fd; undefined when statx fails. */
export function fdIdentity(fd: number): FdIdentity | undefined {
  if (!statxFd(fd, STATX_TYPE | STATX_MODE | STATX_INO)) return undefined;
  return {
    dev: statxBuf.readUInt32LE(0x88) * 1048576 + statxBuf.readUInt32LE(0x8c),
    ino: statxBuf.readBigUInt64LE(0x20),
    mode: statxBuf.readUInt16LE(0x1c),
  };
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
