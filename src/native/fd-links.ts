/**
 * Reads one fd table (/proc/PID/fd) for the holder scan: which fds are sockets (and their
 * inodes) and which are io_uring instances. One open, a getdents64 per 64 KiB of entries
 * and a readlinkat per fd, into preallocated buffers: the scan reads every fd on the
 * host, and fs.readdirSync + fs.readlinkSync cost about twice as much per fd.
 */
import { Errno, libc } from './libc.js';

const EACCES = 13;
const O_RDONLY_DIRECTORY_CLOEXEC = 0o200000 | 0o2000000;
// getdents64 has a different number on x86-64 and on arm64 (generic table).
const SYS_GETDENTS64: Partial<Record<string, number>> = { x64: 217, arm64: 61 };

const pathBuf = Buffer.alloc(4096);
const dents = Buffer.alloc(64 * 1024);
const nameBuf = Buffer.alloc(16);
const linkBuf = Buffer.alloc(64);
const SOCKET = Buffer.from('socket:[');
const IO_URING = Buffer.from('anon_inode:[io_uring]');

/** What one fd table holds that the holder scan cares about. Arrays are appended to. */
export interface FdLinks {
  /** Pairs: fd, socket inode. */
  sockets: number[];
  /** fds that are io_uring instances (their registered files are listed in fdinfo). */
  ioUring: number[];
}

/**
 * Appends the sockets and io_uring instances of fd table `dir` (e.g. `/proc/12/fd`) to
 * `out` and returns the number of fds read; `gone` when the process or thread has exited,
 * `denied` when we may not read it.
 */
export function readFdLinks(dir: string, out: FdLinks): number | 'gone' | 'denied' {
  const c = libc();
  const nr = SYS_GETDENTS64[process.arch];
  if (nr === undefined) return 'denied';
  const len = pathBuf.write(dir, 0, pathBuf.length - 1, 'latin1');
  pathBuf[len] = 0;
  const dfd = c.open(pathBuf, O_RDONLY_DIRECTORY_CLOEXEC) as number;
  if (dfd < 0) {
    const e = c.errno();
    return e === Errno.ENOENT || e === Errno.ESRCH ? 'gone' : 'denied';
  }
  let count = 0;
  try {
    for (;;) {
      const n = Number(c.getdents64(nr, dfd, dents, dents.length));
      if (n === 0) break;
      if (n < 0) {
        const e = c.errno();
        if (e === Errno.EINTR) continue;
        return e === Errno.ENOENT || e === Errno.ESRCH ? 'gone' : 'denied';
      }
      // struct linux_dirent64: d_ino u64, d_off s64, d_reclen u16, d_type u8, d_name (NUL-terminated).
      for (let off = 0; off < n;) {
        const reclen = dents.readUInt16LE(off + 16);
        let fd = 0;
        let i = off + 19;
        let digits = 0;
        for (; dents[i] !== 0 && i < off + reclen; i++, digits++) {
          const d = dents[i]! - 48;
          if (d < 0 || d > 9 || digits >= 15) {
            digits = -1;
            break;
          }
          fd = fd * 10 + d;
          nameBuf[digits] = dents[i]!;
        }
        off += reclen;
        if (digits <= 0) continue; // `.`, `..`
        nameBuf[digits] = 0;
        count++;
        const k = Number(c.readlinkat(dfd, nameBuf, linkBuf, linkBuf.length));
        if (k <= 0) {
          // The kernel checks ptrace access to the task on every fd link, not per fd: once one
          // is refused, so is every other in this table, and reading on costs a lookup each.
          const e = c.errno();
          if (e === EACCES || e === Errno.EPERM) return count;
          continue; // closed since getdents
        }
        if (k > SOCKET.length && linkBuf.compare(SOCKET, 0, SOCKET.length, 0, SOCKET.length) === 0) {
          let inode = 0;
          for (let j = SOCKET.length; j < k; j++) {
            const d = linkBuf[j]! - 48;
            if (d < 0 || d > 9) break;
            inode = inode * 10 + d;
          }
          out.sockets.push(fd, inode);
        } else if (k === IO_URING.length && linkBuf.compare(IO_URING, 0, k, 0, k) === 0) {
          out.ioUring.push(fd);
        }
      }
    }
  } finally {
    c.close(dfd);
  }
  return count;
}

/**
 * Appends the numeric entries of directory `dir` (the thread ids of `/proc/PID/task`) to
 * `out`; false when it cannot be read (the process exited). The holder scan reads one per
 * process, so this too avoids building a string per entry.
 */
export function readTaskIds(dir: string, out: number[]): boolean {
  const c = libc();
  const nr = SYS_GETDENTS64[process.arch];
  if (nr === undefined) return false;
  const len = pathBuf.write(dir, 0, pathBuf.length - 1, 'latin1');
  pathBuf[len] = 0;
  const dfd = c.open(pathBuf, O_RDONLY_DIRECTORY_CLOEXEC) as number;
  if (dfd < 0) return false;
  try {
    for (;;) {
      const n = Number(c.getdents64(nr, dfd, dents, dents.length));
      if (n === 0) return true;
      if (n < 0) {
        if (c.errno() === Errno.EINTR) continue;
        return false;
      }
      for (let off = 0; off < n;) {
        const reclen = dents.readUInt16LE(off + 16);
        let id = 0;
        let i = off + 19;
        for (; dents[i] !== 0 && i < off + reclen; i++) {
          const d = dents[i]! - 48;
          if (d < 0 || d > 9) {
            id = -1;
            break;
          }
          id = id * 10 + d;
        }
        off += reclen;
        if (id > 0) out.push(id);
      }
    }
  } finally {
    c.close(dfd);
  }
}
