/**
 * stat(2) through statx with preallocated buffers: Node's fs.statSync costs ~2-3 µs more
 * per call than the syscall itself, and the program and perms rules stat on every
 * connection.
 */
import { lstatSync, statSync } from 'node:fs';
import { ErrorCode, SecpolicyError } from '../errors.js';
import { libc } from './libc.js';

/** What the rules need of a file: its identity, type, mode and owner. */
export interface FileStat {
  /** Device as major * 2^20 + minor (the kernel's internal dev_t layout). */
  dev: number;
  /** A number when it fits (no BigInt per stat on the accept path), else a bigint: one value always has the same form. */
  ino: number | bigint;
  /** Full st_mode: type and permission bits. */
  mode: number;
  uid: number;
  gid: number;
  /**
   * Birth time (statx STATX_BTIME), seconds and nanoseconds; -1 when the filesystem does
   * not report it. With device and inode it names one file: a file made later in a freed
   * inode has the same device and inode, not the same birth.
   */
  btimeSec?: number;
  btimeNsec?: number;
}

const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const STATX_BASIC = 0x7ff;
const STATX_BTIME = 0x800;
/** What a path's stat asks for: the basic fields and the birth time (one call, the same cost). */
const STATX_WANT = STATX_BASIC | STATX_BTIME;
const statxBuf = Buffer.alloc(256);
const PATH_MAX = 4096;
const pathBuf = Buffer.alloc(PATH_MAX + 1);

function statxImpl() {
  return libc().statx;
}

/**
 * `path` as a C string in a shared buffer, valid until the next call; undefined for a path
 * with a NUL (the C string would end early and name a shorter path) or of PATH_MAX bytes or
 * more (one encoding pass: a path that fills the buffer may have been cut).
 */
export function cPath(path: string): Buffer | undefined {
  if (path.includes('\0')) return undefined;
  const len = pathBuf.write(path, 0, PATH_MAX, 'utf8');
  if (len >= PATH_MAX) return undefined;
  pathBuf[len] = 0;
  return pathBuf;
}

/** stat() a path (following symlinks unless `noFollow`); undefined when missing or unreadable. */
export function statPath(path: string, noFollow = false): FileStat | undefined {
  const fn = statxImpl();
  if (fn) {
    const arg = cPath(path);
    if (arg === undefined || fn(AT_FDCWD, arg, noFollow ? AT_SYMLINK_NOFOLLOW : 0, STATX_WANT, statxBuf) !== 0) return undefined;
    return fromStatx();
  }
  if (path.includes('\0')) return undefined;
  try {
    const s = (noFollow ? lstatSync : statSync)(path, { bigint: true, throwIfNoEntry: false });
    if (!s) return undefined;
    return {
      dev: kernelDev(s.dev),
      ino: s.ino <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(s.ino) : s.ino,
      mode: Number(s.mode),
      uid: Number(s.uid),
      gid: Number(s.gid),
      // Node reports no birth time as the epoch: unknown, not a birth.
      btimeSec: s.birthtimeNs > 0n ? Number(s.birthtimeNs / 1_000_000_000n) : -1,
      btimeNsec: s.birthtimeNs > 0n ? Number(s.birthtimeNs % 1_000_000_000n) : -1,
    };
  } catch {
    return undefined;
  }
}

const AT_EMPTY_PATH = 0x1000;
const STATX_TYPE = 0x1;
const STATX_MODE = 0x2;
const EMPTY_PATH = Buffer.from([0]);

function statxFd(fd: number, mask: number): boolean {
  const fn = statxImpl();
  if (fn === null) throw new SecpolicyError(ErrorCode.UNSUPPORTED_PLATFORM, 'statx(2) is not available in this C library');
  return fn(fd, EMPTY_PATH, AT_EMPTY_PATH, mask, statxBuf) === 0;
}

/** stat() of an open fd (an O_PATH one too) through statx(fd, "", AT_EMPTY_PATH); undefined when it fails. */
export function statFd(fd: number): FileStat | undefined {
  return statxFd(fd, STATX_WANT) ? fromStatx() : undefined;
}

/**
 * st_mode (type and permission bits) of an open fd: one statx call asking for those only,
 * no allocation (the perms rule on every connection). -1 when the call fails (a closed fd).
 */
export function fdMode(fd: number): number {
  return statxFd(fd, STATX_TYPE | STATX_MODE) ? statxBuf.readUInt16LE(0x1c) : -1;
}

/** The FileStat in statxBuf. */
function fromStatx(): FileStat {
  const hi = statxBuf.readUInt32LE(0x24);
  const born = (statxBuf.readUInt32LE(0) & STATX_BTIME) !== 0;
  return {
    dev: statxBuf.readUInt32LE(0x88) * 1048576 + statxBuf.readUInt32LE(0x8c),
    ino: hi < 0x200000 ? hi * 4294967296 + statxBuf.readUInt32LE(0x20) : statxBuf.readBigUInt64LE(0x20),
    mode: statxBuf.readUInt16LE(0x1c),
    uid: statxBuf.readUInt32LE(0x14),
    gid: statxBuf.readUInt32LE(0x18),
    // stx_btime: a signed 64-bit second count (a safe integer for any real date), then nanoseconds.
    btimeSec: born ? statxBuf.readUInt32LE(0x50) + statxBuf.readInt32LE(0x54) * 4294967296 : -1,
    btimeNsec: born ? statxBuf.readUInt32LE(0x58) : -1,
  };
}

// "/proc/" then the pid's digits then "/exe" and a NUL, written byte by byte: no string per call.
const procExePath = Buffer.from('/proc/\0\0\0\0\0\0\0\0\0\0/exe\0\0\0\0\0\0\0\0', 'latin1');
const SLASH_EXE = [0x2f, 0x65, 0x78, 0x65, 0];

/** stat() of /proc/PID/exe, the peer's executable (followed), with the path built in a preallocated buffer. */
export function statProcExe(pid: number): FileStat | undefined {
  const fn = statxImpl();
  if (!fn || !Number.isSafeInteger(pid) || pid <= 0) return statPath(`/proc/${pid}/exe`);
  let digits = 1;
  for (let n = pid; n >= 10; n = Math.floor(n / 10)) digits++;
  let at = 6 + digits;
  for (let n = pid; at > 6; n = Math.floor(n / 10)) procExePath[--at] = 0x30 + (n % 10);
  at = 6 + digits;
  for (const b of SLASH_EXE) procExePath[at++] = b;
  if (fn(AT_FDCWD, procExePath, 0, STATX_WANT, statxBuf) !== 0) return undefined;
  return fromStatx();
}

/** glibc's dev_t (major and minor split across the word) as major * 2^20 + minor, like statx. */
function kernelDev(dev: bigint): number {
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  return major * 1048576 + minor;
}

export { formatMode } from './mode.js';

/** File type bits of st_mode. */
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFDIR = 0o040000;
