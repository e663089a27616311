/**
 * Which container a process runs in, from its cgroup path (/proc/PID/cgroup). Container
 * runtimes put each container in a cgroup named after it, under cgroup v1 (one line per
 * hierarchy) and v2 (the single `0::` line), with the cgroupfs or the systemd driver.
 * The cgroup is set by the runtime, not by the process: a process inside a container
 * cannot move itself out of it without privileges over the host's cgroup tree.
 *
 * "No container" is itself a finding that must be positively made: every line must be a
 * layout the host's own processes have (the root, systemd's slices and units, see
 * {@link hostLayout}). A path that names no container and is no such layout is unknown:
 * a runtime this code does not know, or one configured with a parent of its own, puts
 * containers in exactly such paths.
 */
import { readdirSync } from 'node:fs';
import { readProc, readTaskStat } from './proc.js';

/** The container a peer runs in. */
export interface Container {
  /** `docker`, `containerd`, `cri-o`, `podman`, `lxc` or `systemd-nspawn`. */
  runtime: string;
  /** The container id (64 hex digits for docker, containerd, cri-o, podman) or name (lxc, systemd-nspawn, containerd's ctr). */
  id: string;
}

/** One line of /proc/PID/cgroup: a hierarchy (`''` for cgroup v2) and the process's path in it. */
export interface CgroupLine {
  hierarchy: string;
  path: string;
}

/** What /proc/PID/cgroup says. */
export interface CgroupInfo {
  /** The process's cgroup path: the v2 path, or on v1 the systemd (else first) hierarchy's. */
  path: string | undefined;
  /** The container a line names; null when every line is a recognised host layout; undefined when neither (see `unrecognised`). */
  container: Container | null | undefined;
  /** Why the container cannot be told: a line that names no container and is no host layout we recognise. */
  unrecognised?: string;
  /** Where the container was read from (its hierarchy and path), for the check of who could have named it. */
  containerAt: CgroupLine | undefined;
  /** The path systemd manages: the v2 line unless it is the empty root of a hybrid host, else `name=systemd`. */
  systemd: CgroupLine | undefined;
  /** Every line with a path. */
  lines: readonly CgroupLine[];
}

const HEX = '([0-9a-f]{64})';
const USER_MANAGER = /^user@(\d+)\.service$/;
const END = '(?=/|$)';

/** [pattern, runtime]: group 1 holds the id; the first pattern that matches a path wins. */
const PATTERNS: ReadonlyArray<readonly [RegExp, string]> = [
  // systemd cgroup driver: one scope per container, named by the runtime.
  [new RegExp(`(?:^|/)docker-${HEX}\\.scope${END}`), 'docker'],
  [new RegExp(`(?:^|/)cri-containerd-${HEX}\\.scope${END}`), 'containerd'],
  [new RegExp(`(?:^|/)nerdctl-${HEX}\\.scope${END}`), 'containerd'],
  // crio-conmon-<id> and libpod-conmon-<id> are the runtime's monitor on the host: no match.
  [new RegExp(`(?:^|/)crio-${HEX}(?:\\.scope)?${END}`), 'cri-o'],
  [new RegExp(`(?:^|/)libpod-${HEX}(?:\\.scope)?${END}`), 'podman'],
  // cgroupfs driver.
  [new RegExp(`^/docker/${HEX}${END}`), 'docker'],
  // Kubernetes with the cgroupfs driver: containerd names the leaf by the bare id (cri-o is matched above).
  [new RegExp(`^/kubepods(?:/[a-z]+)?/pod[0-9a-f_-]+/${HEX}${END}`), 'containerd'],
  // LXC 4+ on cgroup v2 (and LXD): lxc.payload.<name>; older LXC: /lxc/<name>. lxc.monitor.<name> is the host-side monitor.
  [/^\/lxc\.payload[./]([^/]+)(?=\/|$)/, 'lxc'],
  [/^\/lxc\/([^/]+)(?=\/|$)/, 'lxc'],
  // systemd-nspawn (and machinectl): machine.slice/machine-<escaped name>.scope.
  [/(?:^|\/)machine\.slice\/machine-([^/]+)\.scope(?=\/|$)/, 'systemd-nspawn'],
  // containerd's own default (ctr, nerdctl with cgroupfs): /<namespace>/<id>.
  [/^\/(?:default|k8s\.io|moby|buildkit)\/([^/]+)$/, 'containerd'],
  // docker's cgroupfs driver with --cgroup-parent: /<parent>/<id> at any depth. A path part of
  // exactly 64 hex digits is a container id: nothing on a host names its cgroups so.
  [new RegExp(`(?:^|/)${HEX}${END}`), 'docker'],
];

/** systemd unit-name escaping: `\x2d` stands for `-` in a machine name. */
function unescapeUnit(name: string): string {
  return name.replace(/\\x([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

// One pass that rules out most host paths before the patterns run one by one.
const ANY = /docker|containerd|nerdctl|crio|libpod|kubepods|lxc|machine\.slice|^\/(?:default|k8s\.io|moby|buildkit)\/|[0-9a-f]{64}/;

/** The container a cgroup path names, or null when it names none (see {@link hostLayout} for what is the host's). */
export function containerOfPath(path: string): Container | null {
  if (!ANY.test(path)) return null;
  for (const [pattern, runtime] of PATTERNS) {
    const m = pattern.exec(path);
    if (m) return { runtime, id: runtime === 'systemd-nspawn' ? unescapeUnit(m[1]!) : m[1]! };
  }
  return null;
}

/** Scopes the host's own processes run in: logind sessions, systemd-run, PID 1, and the runtimes' monitors. */
const HOST_SCOPE = /^(?:init|session-[0-9a-z]+|run-[0-9a-z-]+|(?:crio|libpod)-conmon-[0-9a-f]{64})\.scope$/;
/** Units whose cgroup is the host's: services, sockets, mounts, swaps (each a unit systemd itself starts). */
const HOST_UNIT = /^[^/]+\.(?:service|socket|mount|swap)$/;

/**
 * Whether a cgroup path (naming no container) is one the host's own processes have:
 *
 * - `/`, the root of the hierarchy (of our cgroup namespace);
 * - `/init.scope`;
 * - systemd's slices (`/system.slice`, `/user.slice/user-1000.slice`: on v1 a controller's
 *   hierarchy often stops at a slice), then optionally one unit: a `.service`, `.socket`,
 *   `.mount` or `.swap` (with a delegated unit's `.control` below it), or one of the
 *   {@link HOST_SCOPE} scopes; under a user manager (`user@UID.service`) the same again,
 *   where a scope may have any name (the user's own tree, which the trust walk rejects);
 * - `/lxc.monitor.<name>` (LXC's monitor, on the host side).
 *
 * Anything else, a cgroup below a service's own, a scope of another name, a tree of its
 * own at the top, is not recognised.
 */
export function hostLayout(path: string): boolean {
  const parts = path.split('/').filter(Boolean);
  if (parts.length === 0) return true;
  if (parts.length === 1 && (parts[0] === 'init.scope' || /^lxc\.monitor[./][^/]+$/.test(parts[0]!))) return true;
  return slicesThenHostUnit(parts, 0, false);
}

function slicesThenHostUnit(parts: readonly string[], from: number, user: boolean): boolean {
  let i = from;
  while (i < parts.length && parts[i]!.endsWith('.slice')) i++;
  if (i === from && !(user && parts[i] !== undefined)) return false;
  if (i === parts.length) return true;
  const unit = parts[i]!;
  const rest = parts.length - i - 1;
  if (!user && USER_MANAGER.test(unit)) return rest === 0 || slicesThenHostUnit(parts, i + 1, true);
  if (HOST_UNIT.test(unit)) return rest === 0 || (rest === 1 && parts[i + 1] === '.control');
  return rest === 0 && unit.endsWith('.scope') && (user || HOST_SCOPE.test(unit));
}

/**
 * Parses /proc/PID/cgroup (`hierarchy-id:controllers:path` per line). The container is
 * looked for in the v2 line first, then in every v1 hierarchy, so that a hybrid host
 * (v1 controllers beside an empty v2 tree) is read right.
 */
export function parseCgroup(text: string): CgroupInfo {
  let v2: CgroupLine | undefined;
  let systemd: CgroupLine | undefined;
  const v1: CgroupLine[] = [];
  const lines: CgroupLine[] = [];
  for (const line of text.split('\n')) {
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first < 0 || second < 0) continue;
    const path = line.slice(second + 1);
    if (!path.startsWith('/')) continue;
    const id = line.slice(0, first);
    const hierarchy = line.slice(first + 1, second);
    const entry = { hierarchy, path };
    lines.push(entry);
    if (id === '0' && hierarchy === '') v2 = entry;
    else if (hierarchy === 'name=systemd') systemd = entry;
    else v1.push(entry);
  }
  const ordered = [v2, systemd, ...v1].filter((l): l is CgroupLine => l !== undefined);
  // v1 hierarchies usually agree: each distinct path is matched once.
  let container: Container | null | undefined = null;
  let containerAt: CgroupLine | undefined;
  let unrecognised: CgroupLine | undefined;
  const tried = new Set<string>();
  for (const l of ordered) {
    if (tried.has(l.path)) continue;
    tried.add(l.path);
    container = containerOfPath(l.path);
    if (container) {
      containerAt = l;
      break;
    }
    if (!unrecognised && !hostLayout(l.path)) unrecognised = l;
  }
  // The v2 path is the process's one cgroup; on hybrid hosts an empty v2 tree ('/') says less than v1.
  const path = ordered.find((l) => l.path !== '/')?.path ?? ordered[0]?.path;
  const managed = v2 && (v2.path !== '/' || !systemd) ? v2 : (systemd ?? v2);
  // No line names a container: that is "no container" only if every line is a host layout.
  if (!container && unrecognised) {
    const where = unrecognised.hierarchy === '' ? 'cgroup v2' : `the ${unrecognised.hierarchy} hierarchy`;
    const why = `the peer's cgroup ${unrecognised.path} (${where}) is not a layout recognised as the host's or a container's`;
    return { path, container: undefined, unrecognised: why, containerAt, systemd: managed, lines };
  }
  return { path, container, containerAt, systemd: managed, lines };
}

/** The systemd units a cgroup path names (as systemd reads them: slices, then the first unit). */
export interface UnitPath {
  /** The innermost slice before the unit (`system.slice`), null when the path has none. */
  slice: string | null;
  /** The first unit after the slices (`nginx.service`); `user@UID.service` is reported as `user`. */
  unit: string | null;
  /** The path up to the unit's parent, which must be root's alone for any of this to count. */
  prefix: string;
  /** For a path in a user manager's tree: its uid and the user unit (first unit after its slices). */
  user?: { uid: number; unit: string | null };
}

const UNIT = /^[^/]+\.(?:service|scope|socket|mount|swap)$/;

/** Slices, then the first unit: `cg_path_get_slice` and `cg_path_get_unit` of systemd. */
function slicesThenUnit(parts: readonly string[], from: number): { slice: string | null; unit: string | null; at: number } {
  let slice: string | null = null;
  let i = from;
  while (i < parts.length && parts[i]!.endsWith('.slice')) slice = parts[i++]!;
  const unit = i < parts.length && UNIT.test(parts[i]!) ? parts[i]! : null;
  return { slice, unit, at: i };
}

/** Reads the slice and unit of a systemd-managed cgroup path. */
export function unitsOfPath(path: string): UnitPath {
  const parts = path.split('/').filter(Boolean);
  const top = slicesThenUnit(parts, 0);
  const prefix = `/${parts.slice(0, top.at).join('/')}`;
  const manager = top.unit === null ? null : USER_MANAGER.exec(top.unit);
  if (!manager) return { slice: top.slice, unit: top.unit, prefix };
  const inner = slicesThenUnit(parts, top.at + 1);
  return { slice: top.slice, unit: null, prefix, user: { uid: Number(manager[1]), unit: inner.unit } };
}

/** Parsed /proc/PID/cgroup texts, by text: most processes of a host share a handful. */
const PARSED = new Map<string, CgroupInfo>();
const PARSED_MAX = 256;
/** Texts longer than this (a peer's own long paths) are parsed each time, not kept. */
const PARSED_MAX_TEXT = 2048;

/**
 * parseCgroup() of a text seen before, from a cache, frozen (the container object a Peer
 * reports is shared by the peers with the same text): parsing is a pure function of the
 * text, and costs a few µs per connection.
 */
function parsedCgroup(text: string): CgroupInfo {
  let info = PARSED.get(text);
  if (info !== undefined) return info;
  info = parseCgroup(text);
  if (text.length > PARSED_MAX_TEXT) return info;
  for (const line of info.lines) Object.freeze(line);
  Object.freeze(info.lines);
  if (info.container) Object.freeze(info.container);
  Object.freeze(info);
  if (PARSED.size >= PARSED_MAX) PARSED.clear();
  PARSED.set(text, info);
  return info;
}

/** PF_EXITING in the flags of /proc/PID/stat: the task has begun to exit (it never clears). */
const PF_EXITING = 0x4;
/** The most threads read one by one for a peer whose main thread has exited. */
const MAX_THREADS = 64;

/** The flags (field 9) of a /proc/.../stat; undefined when it cannot be read. */
function taskFlags(dir: string): number | undefined {
  return readTaskStat(`${dir}/stat`)?.flags;
}

/**
 * Reads and parses /proc/PID/cgroup of the process at `proc` (`/proc/PID`), or says why
 * its cgroup cannot be told.
 *
 * Once a thread has begun to exit, the kernel prints `/` for it in every v1 hierarchy
 * (cgroup v2 keeps the real path). When the main thread of a process has exited
 * (pthread_exit()) while other threads run on, /proc/PID/cgroup is that thread's: on v1
 * every process would look like one at the root of the host. So when a v1 line says `/`
 * and the main thread is exiting (read after the cgroup: the flag never clears, so a main
 * thread not exiting then was not exiting during the read), the cgroup is read through
 * the threads still running, and must be the same for all of them.
 */
export function readCgroup(proc: string): CgroupInfo | string {
  const text = readProc(`${proc}/cgroup`, true);
  if (text === undefined) return `cannot read ${proc}/cgroup: the peer exited`;
  const info = parsedCgroup(text);
  if (!info.lines.some((l) => l.hierarchy !== '' && l.path === '/')) return info;
  const flags = taskFlags(proc);
  if (flags === undefined) return `cannot read ${proc}/stat: the peer exited`;
  return flags & PF_EXITING ? throughThreads(proc) : info;
}

/** The cgroup of the threads of `proc` that are not exiting, if they all agree. */
function throughThreads(proc: string): CgroupInfo | string {
  const exited = "the peer's main thread has exited, so the kernel shows / for its cgroup v1 hierarchies";
  let tids: string[];
  try {
    tids = readdirSync(`${proc}/task`);
  } catch {
    return `${exited}, and its threads cannot be listed`;
  }
  if (tids.length > MAX_THREADS) return `${exited}, and its ${tids.length} threads are more than the ${MAX_THREADS} read one by one`;
  let seen: string | undefined;
  for (const tid of tids) {
    const dir = `${proc}/task/${tid}`;
    const text = readProc(`${dir}/cgroup`, true);
    const flags = taskFlags(dir);
    // A thread gone or exiting (the main one among them) holds nothing any longer.
    if (text === undefined || flags === undefined || flags & PF_EXITING) continue;
    if (seen === undefined) seen = text;
    else if (text !== seen) return `${exited}, and its threads are in different cgroups`;
  }
  return seen === undefined ? `${exited}, and no thread of it is left running` : parseCgroup(seen);
}
