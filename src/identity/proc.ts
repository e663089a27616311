/** Small /proc readers shared by pinning, namespaces and containers. */
import { readFileInto } from '../native/index.js';

const readBuf = Buffer.allocUnsafe(64 * 1024);

/**
 * Reads a small /proc file into a shared buffer (one open, read, close through libc: no
 * Buffer per call); undefined when it cannot be read. Text longer than 64 KiB is cut.
 * `single`: the file is made whole on each read (stat, status, cgroup), so one read is all
 * of it (see readFileInto).
 */
export function readProc(path: string, single = false): string | undefined {
  const n = readFileInto(path, readBuf, single);
  return n < 0 ? undefined : readBuf.toString('utf8', 0, n);
}

/** What /proc/.../stat says of a task: its state letter, its flags (field 9) and its start time (field 22). */
export interface TaskStat {
  state: string;
  flags: number;
  start: string;
}

const SPACE = 0x20;
const CLOSE_PAREN = 0x29;

/**
 * Reads and parses /proc/.../stat at `path` from the bytes (no string of the whole file);
 * undefined when it cannot be read (gone) or does not parse.
 */
export function readTaskStat(path: string): TaskStat | undefined {
  const n = readFileInto(path, readBuf, true);
  if (n <= 0) return undefined;
  // The command name (field 2) is in parentheses and may hold spaces or ')': field 3
  // (the state) starts two bytes after the last ')'.
  const paren = readBuf.lastIndexOf(CLOSE_PAREN, n - 1);
  if (paren < 0 || paren + 2 >= n) return undefined;
  const state = String.fromCharCode(readBuf[paren + 2]!);
  let at = paren + 2;
  let flags = -1;
  let start: string | undefined;
  // Walk fields 3.. to 22, reading 9 (flags) and 22 (start time) where they begin.
  for (let field = 3; field <= 22; field++) {
    let end = at;
    while (end < n && readBuf[end] !== SPACE) end++;
    if (field === 9) {
      flags = 0;
      for (let i = at; i < end; i++) {
        const d = readBuf[i]! - 0x30;
        if (d < 0 || d > 9) return undefined;
        flags = flags * 10 + d;
      }
      if (end === at) return undefined;
    } else if (field === 22) {
      if (end === at) return undefined;
      start = readBuf.toString('latin1', at, end);
    }
    if (end >= n) {
      if (field < 22) return undefined;
      break;
    }
    at = end + 1;
  }
  return start === undefined || flags < 0 ? undefined : { state, flags, start };
}

/**
 * Start time of a process (field 22 of /proc/PID/stat, in clock ticks since boot):
 * with the pid, it names one process for the life of the system. Undefined when gone.
 */
export function startTime(pid: number): string | undefined {
  return readTaskStat(`/proc/${pid}/stat`)?.start;
}

/**
 * The start time of a process that is still running: undefined once it has exited, also
 * while it is a zombie (state Z or X) whose parent has not reaped it yet.
 */
export function liveStartTime(pid: number): string | undefined {
  const stat = readTaskStat(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  return stat.state === 'Z' || stat.state === 'X' ? undefined : stat.start;
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
