/**
 * Whether a cgroup path could have been chosen by an unprivileged process. Every user on
 * a systemd host owns a delegated subtree (`user@UID.service`), where it may create a
 * cgroup with any name (`docker-<id>.scope`) and move its own processes in. A name read
 * from such a path says nothing: identities read from cgroups count only where every
 * directory from the hierarchy's mount root down to the process's cgroup is owned by root
 * and writable by nobody else.
 */
import { statPath } from '../native/index.js';
import { readProc } from './proc.js';

/** A hierarchy as /proc/PID/cgroup names it: `''` for cgroup v2 (`0::`), else its v1 controllers (`name=systemd`, `cpu,cpuacct`). */
export type Hierarchy = string;

interface CgroupMount {
  /** The mount's root inside the hierarchy (`/` unless a subtree is mounted). */
  root: string;
  mountpoint: string;
}

let mounts: Map<Hierarchy, CgroupMount> | undefined;
let mountsRead = 0;
const MOUNTS_TTL = 5000;

const NOT_CONTROLLERS = new Set(['rw', 'ro', 'xattr', 'noprefix', 'clone_children', 'cpuset_v2_mode', 'favordynmods']);

/** Mountinfo's octal escapes (`\040` for a space). */
const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** Our cgroup mounts by hierarchy, from /proc/self/mountinfo (re-read every few seconds). */
function cgroupMounts(): Map<Hierarchy, CgroupMount> {
  const now = Date.now();
  if (mounts && now - mountsRead < MOUNTS_TTL) return mounts;
  const found = new Map<Hierarchy, CgroupMount>();
  for (const line of (readProc('/proc/self/mountinfo') ?? '').split('\n')) {
    const dash = line.indexOf(' - ');
    if (dash < 0) continue;
    const before = line.slice(0, dash).split(' ');
    const [fstype, , superOptions = ''] = line.slice(dash + 3).split(' ');
    const root = unescape(before[3] ?? '');
    const mountpoint = unescape(before[4] ?? '');
    if (fstype === 'cgroup2') {
      if (!found.has('')) found.set('', { root, mountpoint });
    } else if (fstype === 'cgroup') {
      // /proc/PID/cgroup names a v1 hierarchy by its controllers and name=, in the order mountinfo lists them.
      const key = superOptions
        .split(',')
        .filter((o) => (!o.includes('=') && !NOT_CONTROLLERS.has(o)) || o.startsWith('name='))
        .join(',');
      if (!found.has(key)) found.set(key, { root, mountpoint });
    }
  }
  mounts = found;
  mountsRead = now;
  return found;
}

/** What {@link cgroupTrust} found: nothing to distrust, or why the path's names prove nothing. */
export type Trust = { trusted: true } | { trusted: false; reason: string };

const TRUSTED: Trust = Object.freeze({ trusted: true });
const TRUST_TTL = 1000;
const trustCache = new Map<string, { trust: Trust; expires: number }>();

/** The files of a cgroup directory that move processes (or threads) into it when written. */
const MOVERS = ['cgroup.procs', 'tasks', 'cgroup.threads'] as const;

/** Why `s` (of `what`) could be written by someone other than root, or undefined. */
function writableByOthers(s: { uid: number; gid: number; mode: number }, what: string): string | undefined {
  if (s.uid !== 0) return `${what} is owned by uid ${s.uid}`;
  if (s.mode & 0o002) return `${what} is writable by every user`;
  if (s.mode & 0o020 && s.gid !== 0) return `${what} is writable by group ${s.gid}`;
  return undefined;
}

/**
 * Whether every directory of `path` (in `hierarchy`), and every file in them that moves
 * processes, is root's and writable by root only, so that no unprivileged process could
 * have made or named the path or put itself there. Results are cached for a
 * second: the accept path must not walk the tree per connection.
 */
export function cgroupTrust(hierarchy: Hierarchy, path: string): Trust {
  const key = `${hierarchy}:${path}`;
  const now = Date.now();
  const hit = trustCache.get(key);
  if (hit && hit.expires > now) return hit.trust;
  const trust = walk(hierarchy, path);
  if (trustCache.size > 4096) trustCache.clear();
  trustCache.set(key, { trust, expires: now + TRUST_TTL });
  return trust;
}

function walk(hierarchy: Hierarchy, path: string): Trust {
  if (path.endsWith(' (deleted)')) return { trusted: false, reason: `the peer's cgroup ${path} has been removed` };
  if (path.split('/').includes('..')) return { trusted: false, reason: `the peer's cgroup ${path} is outside our cgroup namespace` };
  // A hierarchy's root: no unprivileged process can move anything there.
  if (path === '/') return TRUSTED;
  const mount = cgroupMounts().get(hierarchy);
  const name = hierarchy === '' ? 'cgroup v2' : `the ${hierarchy} hierarchy`;
  if (!mount) return { trusted: false, reason: `${name} is not mounted here, so who may write ${path} cannot be checked` };
  const root = mount.root === '/' ? '' : mount.root;
  if (root !== '' && path !== root && !path.startsWith(`${root}/`)) {
    return { trusted: false, reason: `${path} is outside the part of ${name} mounted here` };
  }
  let dir = mount.mountpoint;
  const steps = path.slice(root.length).split('/').filter(Boolean);
  for (let i = -1; i < steps.length; i++) {
    if (i >= 0) dir = `${dir}/${steps[i]}`;
    const s = statPath(dir);
    if (!s) return { trusted: false, reason: `cannot stat ${dir} (the cgroup may have been removed)` };
    const where = `/${steps.slice(0, i + 1).join('/')}`;
    const dirWhy = writableByOthers(s, `cgroup ${where}`);
    if (dirWhy) return { trusted: false, reason: `${dirWhy}, who may create and name cgroups under it` };
    // Every cgroup has cgroup.procs; v1 adds tasks, v2 cgroup.threads (the other is absent).
    for (const file of MOVERS) {
      const f = statPath(`${dir}/${file}`);
      if (!f) {
        if (file === 'cgroup.procs')
          return { trusted: false, reason: `cannot stat ${dir}/cgroup.procs (the cgroup may have been removed)` };
        continue;
      }
      const why = writableByOthers(f, `${file} of cgroup ${where}`);
      if (why) return { trusted: false, reason: `${why}, who may move processes into it` };
    }
  }
  return TRUSTED;
}
