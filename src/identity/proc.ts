/** Small /proc readers shared by pinning, namespaces and containers. */
import { closeSync, openSync, readSync } from 'node:fs';

const readBuf = Buffer.allocUnsafe(64 * 1024);

/**
 * Reads a small /proc file into a shared buffer (one open, read, close: no Buffer per
 * call); undefined when it cannot be read. Text longer than 64 KiB is cut.
 */
export function readProc(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return undefined;
  }
  try {
    let n = 0;
    // /proc files may come in several reads; stop at EOF or a full buffer.
    for (;;) {
      const got = readSync(fd, readBuf, n, readBuf.length - n, null);
      if (got <= 0 || n + got >= readBuf.length) {
        n += Math.max(got, 0);
        break;
      }
      n += got;
    }
    return readBuf.toString('utf8', 0, n);
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * Start time of a process (field 22 of /proc/PID/stat, in clock ticks since boot):
 * with the pid, it names one process for the life of the system. Undefined when gone.
 */
export function startTime(pid: number): string | undefined {
  const stat = readProc(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  // The command name (field 2) is in parentheses and may hold spaces or ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state), so field 22 is rest[19].
  return rest[19];
}

/**
 * The start time of a process that is still running: undefined once it has exited, also
 * while it is a zombie (state Z or X) whose parent has not reaped it yet.
 */
export function liveStartTime(pid: number): string | undefined {
  const stat = readProc(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const state = rest[0];
  return state === 'Z' || state === 'X' ? undefined : rest[19];
}

const unmappedCache = new Map<'uid' | 'gid', number | null>();

/**
 * Whether `id` is an id the kernel could not map into our user namespace: it shows such
 * ids as the overflow id (65534). True only when our own uid_map / gid_map leaves the
 * overflow id unmapped, so a real `nobody` on a host is never mistaken for one.
 */
export function idUnmapped(kind: 'uid' | 'gid', id: number): boolean {
  let overflow = unmappedCache.get(kind);
  if (overflow === undefined) {
    // Read once: a process's own id maps are written once, before it runs.
    const o = Number(readProc(`/proc/sys/kernel/overflow${kind}`)?.trim() ?? 65534);
    overflow = inMap(readProc(`/proc/self/${kind}_map`) ?? '', o) ? null : o;
    unmappedCache.set(kind, overflow);
  }
  return id === overflow;
}

function inMap(map: string, id: number): boolean {
  for (const line of map.split('\n')) {
    const [inside, , count] = line.trim().split(/\s+/).map(Number);
    if (inside !== undefined && count !== undefined && id >= inside && id < inside + count) return true;
  }
  return false;
}
