/**
 * Small /proc files read with one open, read and close into a caller's buffer, the path
 * written into a preallocated C string: fs.openSync + readSync + closeSync cost about
 * 1.5 µs more per file, and the unit, container and noNewPrivs rules read one or two
 * /proc files on every connection.
 */
import { Errno, libc } from './libc.js';
import { cPath } from './file.js';

const O_RDONLY_CLOEXEC = 0o2000000;

/**
 * Reads the file at `path` into `buf` from offset 0; the number of bytes read, or -1 when
 * it cannot be opened or read. `single`: the file is one record made whole by the kernel
 * on each read (/proc/PID/stat, status and cgroup are: `single_open` seq files), so a
 * read shorter than the buffer is all of it and no second read is made to see the end;
 * otherwise it is read until the end. A file longer than the buffer is cut.
 */
export function readFileInto(path: string, buf: Buffer, single: boolean): number {
  const arg = cPath(path);
  if (arg === undefined) return -1;
  const c = libc();
  const fd = c.open(arg, O_RDONLY_CLOEXEC) as number;
  if (fd < 0) return -1;
  let n = 0;
  try {
    while (n < buf.length) {
      const got = Number(c.read(fd, n === 0 ? buf : buf.subarray(n), buf.length - n));
      if (got < 0) {
        if (c.errno() === Errno.EINTR) continue;
        return -1;
      }
      n += got;
      if (got === 0 || single) break;
    }
    return n;
  } finally {
    c.close(fd);
  }
}
