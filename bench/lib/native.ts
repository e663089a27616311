/**
 * C anchors for the benchmarks: compiles a `bench/lib/*.c` program with `cc` into a
 * temporary directory at bench time (nothing is built at install time), and reads a
 * process's CPU time from /proc so that each figure can be set beside its anchor's.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The source of `bench/lib/<name>.c` (found beside the sources, also when run from dist/). */
export function cSource(name: string): string {
  for (const rel of [`./${name}.c`, `../../../bench/lib/${name}.c`]) {
    const path = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(path)) return path;
  }
  throw new Error(`bench/lib/${name}.c not found`);
}

/** Compiles `bench/lib/<name>.c` into `dir`; the executable's path, or why it could not be built. */
export function compile(name: string, dir: string, extra: string[] = []): { exe: string } | { error: string } {
  const exe = join(dir, name);
  const cc = spawnSync('cc', ['-O2', '-o', exe, cSource(name), ...extra], { encoding: 'utf8' });
  if (cc.error) return { error: `cannot run cc (${cc.error.message}); apt-get install -y gcc libc6-dev` };
  if (cc.status !== 0) return { error: `cc failed: ${cc.stderr.trim()}` };
  return { exe };
}

const TICK = 100; // USER_HZ: the unit of /proc/PID/stat times on Linux

/** CPU seconds used by a process so far: its threads, and its children that have been waited for. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start at field 3.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / TICK;
}

/** Resident memory of a process in bytes (VmRSS). */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** Child pids of a process (its main thread's children). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}
