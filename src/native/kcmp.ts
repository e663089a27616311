/**
 * kcmp(2): whether two tasks share one file descriptor table. The holder scan reads each
 * distinct fd table once: threads normally share their process's table, but a thread
 * that called unshare(CLONE_FILES), or a thread group whose leader has exited
 * (pthread_exit from main), has a table that /proc/PID/fd does not show.
 */
import { libc } from './libc.js';

// kcmp has a different number on x86-64 and on arm64 (generic table).
const SYS_KCMP: Partial<Record<string, number>> = { x64: 312, arm64: 272 };
const KCMP_FILES = 2;

/**
 * True when tasks `a` and `b` share one fd table, false when they do not, undefined when
 * the kernel cannot tell us (no kcmp, no ptrace access, a task gone): the caller then
 * reads both tables.
 */
export function sameFdTable(a: number, b: number): boolean | undefined {
  const nr = SYS_KCMP[process.arch];
  if (nr === undefined) return undefined;
  // idx1 and idx2 are unused for KCMP_FILES.
  const r = Number(libc().syscall4(nr, a, b, KCMP_FILES, 0));
  return r === 0 ? true : r > 0 ? false : undefined;
}
