/**
 * Which container a process runs in, from its cgroup path (/proc/PID/cgroup). Container
 * runtimes put each container in a cgroup named after it, under cgroup v1 (one line per
 * hierarchy) and v2 (the single `0::` line), with the cgroupfs or the systemd driver.
 * The cgroup is set by the runtime, not by the process: a process inside a container
 * cannot move itself out of it without privileges over the host's cgroup tree.
 */

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
  container: Container | null;
  /** Where the container was read from (its hierarchy and path), for the check of who could have named it. */
  containerAt: CgroupLine | undefined;
  /** The path systemd manages: the v2 line unless it is the empty root of a hybrid host, else `name=systemd`. */
  systemd: CgroupLine | undefined;
  /** Every line with a path. */
  lines: readonly CgroupLine[];
}

const HEX = '([0-9a-f]{64})';
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
];

/** systemd unit-name escaping: `\x2d` stands for `-` in a machine name. */
function unescapeUnit(name: string): string {
  return name.replace(/\\x([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

// One pass that rules out most host paths before the patterns run one by one.
const ANY = /docker|containerd|nerdctl|crio|libpod|kubepods|lxc|machine\.slice|^\/(?:default|k8s\.io|moby|buildkit)\//;

/** The container a cgroup path names, or null for a host cgroup. */
export function containerOfPath(path: string): Container | null {
  if (!ANY.test(path)) return null;
  for (const [pattern, runtime] of PATTERNS) {
    const m = pattern.exec(path);
    if (m) return { runtime, id: runtime === 'systemd-nspawn' ? unescapeUnit(m[1]!) : m[1]! };
  }
  return null;
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
  let container: Container | null = null;
  let containerAt: CgroupLine | undefined;
  const tried = new Set<string>();
  for (const l of ordered) {
    if (tried.has(l.path)) continue;
    tried.add(l.path);
    container = containerOfPath(l.path);
    if (container) {
      containerAt = l;
      break;
    }
  }
  // The v2 path is the process's one cgroup; on hybrid hosts an empty v2 tree ('/') says less than v1.
  const path = ordered.find((l) => l.path !== '/')?.path ?? ordered[0]?.path;
  const managed = v2 && (v2.path !== '/' || !systemd) ? v2 : (systemd ?? v2);
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
const USER_MANAGER = /^user@(\d+)\.service$/;

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
