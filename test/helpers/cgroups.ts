/**
 * Real cgroup directories for tests: made in every writable cgroup hierarchy systemd
 * would manage (cgroup v2, and the v1 `name=systemd` tree of hybrid hosts), chowned like
 * systemd delegates a subtree, and removed after the test (deepest first).
 */
import { chownSync, existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { needRoot } from './index.js';

/** Mount points of the hierarchies the identity code reads units and containers from. */
export function systemdHierarchies(): string[] {
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const dash = line.indexOf(' - ');
    if (dash < 0) continue;
    const mountpoint = line.slice(0, dash).split(' ')[4]!;
    const [fstype, , options = ''] = line.slice(dash + 3).split(' ');
    if (fstype === 'cgroup2' || (fstype === 'cgroup' && options.split(',').includes('name=systemd'))) out.push(mountpoint);
  }
  return out;
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
  readonly roots = systemdHierarchies();
  readonly #made: string[] = [];

  /** Makes `rel` (and missing parents) in every hierarchy; `owner` chowns the last component as systemd's delegation does. */
  make(rel: string, owner?: { uid: number; gid: number }): this {
    for (const root of this.roots) {
      let dir = root;
      for (const part of rel.split('/').filter(Boolean)) {
        dir = join(dir, part);
        if (!existsSync(dir)) {
          mkdirSync(dir);
          this.#made.push(dir);
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
