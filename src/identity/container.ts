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

/** What /proc/PID/cgroup says. */
export interface CgroupInfo {
  /** The process's cgroup path: the v2 path, or on v1 the systemd (else first) hierarchy's. */
  path: string | undefined;
  container: Container | null;
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
  let v2: string | undefined;
  let systemd: string | undefined;
  const v1: string[] = [];
  for (const line of text.split('\n')) {
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first < 0 || second < 0) continue;
    const path = line.slice(second + 1);
    if (!path.startsWith('/')) continue;
    const id = line.slice(0, first);
    const controllers = line.slice(first + 1, second);
    if (id === '0' && controllers === '') v2 = path;
    else if (controllers === 'name=systemd') systemd = path;
    else v1.push(path);
  }
  // v1 hierarchies usually agree: each distinct path is matched once.
  const candidates = [...new Set([v2, systemd, ...v1])].filter((p): p is string => p !== undefined);
  let container: Container | null = null;
  for (const p of candidates) {
    container = containerOfPath(p);
    if (container) break;
  }
  // The v2 path is the process's one cgroup; on hybrid hosts an empty v2 tree ('/') says less than v1.
  const path = [v2, systemd, ...v1].find((p) => p !== undefined && p !== '/') ?? candidates[0];
  return { path, container };
}
