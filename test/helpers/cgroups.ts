/**
 * Real cgroup directories for tests: made in every writable cgroup hierarchy systemd
 * would manage (cgroup v2, and the v1 `name=systemd` tree of hybrid hosts), or in every
 * hierarchy mounted here, chowned like systemd delegates a subtree, and removed after the
 * test (deepest first).
 */
import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { needRoot } from './index.js';

/** A cgroup hierarchy mounted here: its mount point, and its name as /proc/PID/cgroup shows it (`''` for v2). */
export interface Hierarchy {
  mountpoint: string;
  /** `''` for cgroup v2; else the controllers and `name=` of the v1 hierarchy (`memory`, `name=systemd`). */
  key: string;
  v1: boolean;
}

const NOT_CONTROLLERS = new Set(['rw', 'ro', 'xattr', 'noprefix', 'clone_children', 'cpuset_v2_mode', 'favordynmods']);

/** Every cgroup hierarchy mounted at its root here (the first mount of each). */
export function hierarchies(): Hierarchy[] {
  const out: Hierarchy[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const dash = line.indexOf(' - ');
    if (dash < 0) continue;
    const before = line.slice(0, dash).split(' ');
    const [fstype, , options = ''] = line.slice(dash + 3).split(' ');
    if (before[3] !== '/' || (fstype !== 'cgroup' && fstype !== 'cgroup2')) continue;
    const key =
      fstype === 'cgroup2'
        ? ''
        : options
            .split(',')
            .filter((o) => (!o.includes('=') && !NOT_CONTROLLERS.has(o)) || o.startsWith('name='))
            .join(',');
    if (!out.some((h) => h.key === key)) out.push({ mountpoint: before[4]!, key, v1: fstype === 'cgroup' });
  }
  return out;
}

/** Mount points of the hierarchies the identity code reads units from. */
export function systemdHierarchies(): string[] {
  return hierarchies()
    .filter((h) => h.key === '' || h.key === 'name=systemd')
    .map((h) => h.mountpoint);
}

/** Mount points of every hierarchy mounted here: a process placed in all of them is wholly there. */
export function allHierarchies(): string[] {
  return hierarchies().map((h) => h.mountpoint);
}

/**
 * The v1 hierarchies here, `name=systemd` among them (where systemd keeps units on v1
 * and hybrid hosts). On a host without one (cgroup v2 only), mounts a v1 `name=systemd`
 * hierarchy (no controllers, as hybrid hosts have it) for the test and unmounts it after;
 * root only. Returns the mount points, or a reason to skip.
 */
export function v1Hierarchies(t: { after: (fn: () => unknown) => void }): string[] | string {
  const found = hierarchies().filter((h) => h.v1);
  if (found.some((h) => h.key === 'name=systemd')) return found.map((h) => h.mountpoint);
  const why = needRoot('mounts a v1 cgroup hierarchy');
  if (why) return why;
  const dir = mkdtempSync(join(tmpdir(), 'secpolicy-cgroup-v1-'));
  const r = spawnSync('mount', ['-t', 'cgroup', '-o', 'none,name=systemd', 'cgroup', dir], { encoding: 'utf8' });
  if (r.status !== 0) {
    rmdirSync(dir);
    return `cannot mount a v1 name=systemd cgroup hierarchy: ${r.stderr.trim()}`;
  }
  t.after(() => {
    spawnSync('umount', [dir]);
    rmdirSync(dir);
  });
  return [...found.map((h) => h.mountpoint), dir];
}

/** The cgroup v2 mount point, if cgroup v2 is mounted here. */
export function v2Hierarchy(): string | undefined {
  return hierarchies().find((h) => !h.v1)?.mountpoint;
}

let probed: string | false | undefined;

/** A reason to skip (not root, no writable cgroup hierarchy), else false. */
export function needCgroups(): string | false {
  if (probed !== undefined) return probed;
  probed = needRoot();
  if (probed === false) {
    const roots = systemdHierarchies();
    if (roots.length === 0) probed = 'needs a cgroup v2 or name=systemd hierarchy mounted';
    for (const root of roots) {
      const dir = join(root, `secpolicy-probe-${process.pid}`);
      try {
        mkdirSync(dir);
        rmdirSync(dir);
      } catch (e) {
        probed = `cannot create cgroups in ${root}: ${(e as Error).message}`;
      }
    }
  }
  return probed;
}

/** A cgroup path made in every hierarchy; `dirs(rel)` names it in each, `procs(rel)` their cgroup.procs files. */
export class Cgroups {
  readonly roots: string[];
  readonly #made: string[] = [];

  /** `roots`: the hierarchies (mount points) to make cgroups in; by default those systemd manages. */
  constructor(roots: string[] = systemdHierarchies()) {
    this.roots = roots;
  }

  /** Makes `rel` (and missing parents) in every hierarchy; `owner` chowns the last component as systemd's delegation does. */
  make(rel: string, owner?: { uid: number; gid: number }): this {
    for (const root of this.roots) {
      let dir = root;
      for (const part of rel.split('/').filter(Boolean)) {
        dir = join(dir, part);
        if (!existsSync(dir)) {
          mkdirSync(dir);
          this.#made.push(dir);
          // A v1 cpuset cgroup takes no process before it has cpus and memory nodes.
          for (const f of ['cpuset.cpus', 'cpuset.mems']) {
            const parent = join(dirname(dir), f);
            if (existsSync(join(dir, f)) && existsSync(parent)) writeFileSync(join(dir, f), readFileSync(parent, 'utf8').trim() || '\n');
          }
        }
      }
      if (owner) {
        chownSync(dir, owner.uid, owner.gid);
        for (const f of ['cgroup.procs', 'cgroup.subtree_control', 'cgroup.threads', 'tasks']) {
          if (existsSync(join(dir, f))) chownSync(join(dir, f), owner.uid, owner.gid);
        }
      }
    }
    return this;
  }

  /** Paths of `rel` in every hierarchy. */
  dirs(rel: string): string[] {
    return this.roots.map((root) => join(root, rel));
  }

  /** A shell command that moves the shell itself into `rel` in every hierarchy. */
  enter(rel: string): string {
    return this.dirs(rel)
      .map((d) => `echo $$ > '${d}/cgroup.procs'`)
      .join(' && ');
  }

  /** Moves a process into `rel` in every hierarchy. */
  move(pid: number, rel: string): void {
    for (const d of this.dirs(rel)) writeFileSync(join(d, 'cgroup.procs'), String(pid));
  }

  /** Moves one thread into `rel` in every v1 hierarchy of these (their `tasks` file; v2 moves whole processes). */
  moveThread(tid: number, rel: string): void {
    for (const d of this.dirs(rel)) if (existsSync(join(d, 'tasks'))) writeFileSync(join(d, 'tasks'), String(tid));
  }

  /** Removes what was made (and `extra` dirs a peer made itself), deepest first; processes must be gone. */
  remove(extra: string[] = []): void {
    const all = [...extra.flatMap((rel) => this.dirs(rel)), ...this.#made].sort((a, b) => b.length - a.length);
    for (const dir of all) {
      try {
        rmdirSync(dir);
      } catch {
        // Not there (a peer that never made it) or already removed.
      }
    }
  }
}

/**
 * Moves a process into the root cgroup of every hierarchy mounted here (root only): a
 * host layout wherever the test runs, for tests whose peer must be "in no container"
 * (a runner may keep its processes in a cgroup of its own that names neither).
 */
export function intoHostCgroup(pid: number): void {
  for (const root of allHierarchies()) writeFileSync(join(root, 'cgroup.procs'), String(pid));
}

/** A shell command that moves the shell itself as {@link intoHostCgroup} does (then `exec` the peer). */
export function enterHostCgroup(): string {
  return allHierarchies()
    .map((root) => `echo $$ > '${join(root, 'cgroup.procs')}'`)
    .join(' && ');
}
