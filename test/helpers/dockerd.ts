/**
 * A real, offline Docker daemon for tests: one dockerd per test file in a fresh temporary
 * directory (vfs storage, no iptables, no bridge, its own data-root and exec-root), a
 * one-file busybox image imported as `bb:latest`, and a teardown that removes every
 * container, stops the daemon (and its containerd and shims), unmounts whatever it left
 * mounted under the directory and deletes it, also when the tests failed or the process
 * is exiting.
 *
 * ```ts
 * const daemon = await startDockerd();          // daemon.skip: the reason when it cannot run here
 * after(() => daemon.stop());
 * test('...', { skip: daemon.skip }, async () => { await daemon.docker(['ps']) });
 * ```
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import {
  chmodSync,
  existsSync,
  watch,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  copyFileSync,
} from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hasCommand, needRoot, run, type RunAs } from './index.js';

const DOCKERD = ['/usr/sbin/dockerd', '/usr/bin/dockerd'].find((p) => existsSync(p));
const BUSYBOX = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
/** The image every test container runs: a rootfs of busybox-static and its applet links. */
export const IMAGE = 'bb:latest';

/** The reason docker tests cannot run here (not root, dockerd, docker CLI or busybox-static missing), else false. */
export function needDockerd(): string | false {
  return (
    (needRoot() ? 'needs root (runs a private dockerd and peers as other users)' : false) ||
    (DOCKERD ? false : 'needs dockerd (apt-get install -y docker.io)') ||
    (hasCommand('docker') ? false : 'needs the docker CLI (apt-get install -y docker.io)') ||
    (BUSYBOX ? false : 'needs busybox-static (apt-get install -y busybox-static)')
  );
}

/** Result of {@link dockerApi}: status, headers and the body as text. */
export interface ApiResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One HTTP request to a Docker API socket (a fresh connection each time). */
export function dockerApi(socketPath: string, method: string, path: string, body?: unknown): Promise<ApiResponse> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const req = http.request(
      {
        socketPath,
        method,
        path,
        agent: false,
        headers: data === undefined ? {} : { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

/** A running test daemon. */
export interface Dockerd {
  /** Why docker tests cannot run here (then every other member throws), or false. */
  skip: string | false;
  /** The temporary directory holding everything the daemon writes. */
  dir: string;
  /** The daemon's API socket. */
  socket: string;
  /** Runs the docker CLI against `host` (default: the daemon's own socket), optionally as another user. */
  docker: (
    args: string[],
    options?: { host?: string; as?: RunAs; input?: string; env?: NodeJS.ProcessEnv },
  ) => Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** One request straight to the daemon. */
  api: (method: string, path: string, body?: unknown) => Promise<ApiResponse>;
  /** Names of every container the daemon has (running or not), straight from the daemon. */
  containerNames: () => Promise<string[]>;
  /** Removes every container, stops the daemon and deletes its directory; safe to call twice. */
  stop: () => Promise<void>;
}

/** The directory to put daemons in: short, because the exec-root holds sockets whose paths must fit in sun_path. */
function baseDir(): string {
  const t = tmpdir();
  return t.length <= 40 ? t : '/tmp';
}

/** Ids of the containers the daemon in `dir` has created (its data-root lists them). */
function containerIds(dir: string): string[] {
  try {
    return readdirSync(join(dir, 'root', 'containers')).filter((id) => /^[0-9a-f]{64}$/.test(id));
  } catch {
    return [];
  }
}

/** Every pid whose command line mentions `dir` (the daemon, its containerd, the shims) or that runs in one of `ids`' cgroups. */
function processesUsing(dir: string, ids: string[]): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cgroup = ids.length ? readFileSync(`/proc/${entry}/cgroup`, 'utf8') : '';
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(dir) || ids.some((id) => cgroup.includes(id))) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** Removes the (now empty) cgroup directories of `ids`, in every hierarchy. */
function removeCgroups(ids: string[]): void {
  if (ids.length === 0) return;
  const roots = existsSync('/sys/fs/cgroup/cgroup.controllers')
    ? ['/sys/fs/cgroup']
    : readdirSync('/sys/fs/cgroup').map((h) => join('/sys/fs/cgroup', h));
  for (const root of roots) {
    for (const id of ids) {
      for (const parent of ['docker', 'system.slice']) {
        for (const name of [id, `docker-${id}.scope`]) {
          try {
            rmdirSync(join(root, parent, name));
          } catch {
            // not there, or not ours to remove
          }
        }
      }
    }
  }
}

/** Mount points at or under `dir`, deepest first. */
function mountsUnder(dir: string): string[] {
  const points = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => !!p)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(dir + '/'));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** Synchronous last-resort cleanup: kill what runs from `dir`, unmount under it, delete it. */
function forceCleanup(dir: string): void {
  const ids = containerIds(dir);
  for (const pid of processesUsing(dir, ids)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (let i = 0; i < 3; i++) {
    const points = mountsUnder(dir);
    if (points.length === 0) break;
    for (const p of points) spawnSync('umount', ['-l', p], { stdio: 'ignore' });
  }
  rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  removeCgroups(ids);
}

const live = new Set<string>();
let exitHook = false;
const lastResort: Array<() => void> = [];

/**
 * Registers synchronous cleanup (accounts, directories a test made) that also runs when the
 * process exits or is stopped by a signal before its after() hooks ran; `fn` must be safe
 * to call after the hook already cleaned up.
 */
export function atTeardown(fn: () => void): void {
  lastResort.push(fn);
}

function runLastResort(): void {
  for (const fn of lastResort.splice(0).reverse()) {
    try {
      fn();
    } catch {
      // best effort: the process is going away
    }
  }
}

/** Removes daemons that a test process which has since died left behind (its `owner` file names a pid that is gone). */
function removeOrphans(base: string): void {
  for (const name of readdirSync(base)) {
    if (!/^spd-/.test(name)) continue;
    const dir = join(base, name);
    let owner: number;
    try {
      owner = Number(readFileSync(join(dir, 'owner'), 'utf8'));
    } catch {
      continue; // being set up, or not ours
    }
    try {
      process.kill(owner, 0);
    } catch {
      forceCleanup(dir);
    }
  }
}

/** Cleans up and exits on a signal: the test runner stops a file that hangs with SIGTERM, which skips 'exit' handlers. */
function onSignal(signal: NodeJS.Signals): void {
  for (const d of live) forceCleanup(d);
  runLastResort();
  process.kill(process.pid, signal);
}

/** Resolves once GET /_ping answers OK, or rejects when the daemon exits or `ms` pass. */
async function waitForPing(socket: string, child: ChildProcess, ms: number, log: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  let exited = false;
  child.once('exit', () => (exited = true));
  let delay = 25;
  while (!exited && Date.now() < deadline) {
    if (existsSync(socket)) {
      try {
        const r = await dockerApi(socket, 'GET', '/_ping');
        if (r.status === 200 && r.body === 'OK') return;
      } catch {
        // not accepting yet
      }
    }
    // Polling is the only way: dockerd says nothing machine-readable when it is ready.
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 200);
  }
  throw new Error(`dockerd ${exited ? 'exited' : 'did not answer /_ping'}: ${log().trim().split('\n').slice(-3).join(' | ')}`);
}

/** Writes a tar of a busybox rootfs (every applet linked in /bin) and imports it as {@link IMAGE}. */
async function importImage(dir: string, socket: string): Promise<void> {
  const rootfs = join(dir, 'img');
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  for (const d of ['etc', 'tmp', 'proc', 'sys', 'dev']) mkdirSync(join(rootfs, d), { recursive: true });
  chmodSync(join(rootfs, 'tmp'), 0o1777);
  copyFileSync(BUSYBOX!, join(rootfs, 'bin', 'busybox'));
  const list = spawnSync(BUSYBOX!, ['--list'], { encoding: 'utf8' });
  for (const applet of list.stdout.split('\n').filter((a) => a && a !== 'busybox')) symlinkSync('busybox', join(rootfs, 'bin', applet));
  const tar = join(dir, 'img.tar');
  const t = spawnSync('tar', ['-C', rootfs, '-cf', tar, '.']);
  if (t.status !== 0) throw new Error(`tar failed: ${t.stderr}`);
  rmSync(rootfs, { recursive: true, force: true });
  const r = await run('docker', ['-H', `unix://${socket}`, 'import', tar, IMAGE]).output();
  if (r.code !== 0) throw new Error(`docker import failed: ${r.stderr}`);
  rmSync(tar, { force: true });
}

/** A daemon that is not there: `skip` says why, `stop()` does nothing, the rest throws. */
function skipped(reason: string): Dockerd {
  const no = (): never => {
    throw new Error(reason);
  };
  return { skip: reason, dir: '', socket: '', docker: no, api: no, containerNames: no, stop: async () => {} };
}

/**
 * Starts a daemon for this test file. Resolves with `skip` set to a reason (and has cleaned up) when
 * docker tests cannot run here or the daemon fails to start; tests pass that reason on.
 */
export async function startDockerd(): Promise<Dockerd> {
  const reason = needDockerd();
  if (reason) return skipped(reason);
  removeOrphans(baseDir());
  const dir = mkdtempSync(join(baseDir(), 'spd-'));
  chmodSync(dir, 0o755); // other users reach sockets under it
  writeFileSync(join(dir, 'owner'), String(process.pid));
  live.add(dir);
  if (!exitHook) {
    exitHook = true;
    // Tests that crash or time out still leave nothing behind.
    process.on('exit', () => {
      for (const d of live) forceCleanup(d);
      runLastResort();
    });
    for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.once(signal, onSignal);
  }
  const socket = join(dir, 'docker.sock');
  let log = '';
  const child = spawn(
    DOCKERD!,
    [
      '--storage-driver=vfs',
      '--iptables=false',
      '--ip6tables=false',
      '--bridge=none',
      '-H',
      `unix://${socket}`,
      '--data-root',
      join(dir, 'root'),
      '--exec-root',
      join(dir, 'x'),
      '--pidfile',
      join(dir, 'pid'),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout!.on('data', (d) => (log += d));
  child.stderr!.on('data', (d) => (log += d));
  child.on('error', (e) => (log += String(e)));
  const exited = once(child, 'exit');

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    try {
      if (child.exitCode === null && child.signalCode === null) {
        try {
          const list = await dockerApi(socket, 'GET', '/containers/json?all=1');
          const ids = (JSON.parse(list.body) as Array<{ Id: string }>).map((c) => c.Id);
          await Promise.all(ids.map((id) => dockerApi(socket, 'DELETE', `/containers/${id}?force=1&v=1`)));
        } catch {
          // the daemon is failing; the forced cleanup below still runs
        }
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      }
    } finally {
      forceCleanup(dir);
      live.delete(dir);
    }
  };

  try {
    await waitForPing(socket, child, 60_000, () => log);
    await importImage(dir, socket);
  } catch (error) {
    await stop();
    return skipped(`dockerd cannot run here: ${(error as Error).message}`);
  }

  const docker: Dockerd['docker'] = (args, options = {}) => {
    const child = run('docker', ['-H', `unix://${options.host ?? socket}`, ...args], {
      ...(options.as ? { as: options.as } : {}),
      // A bound, not a measure: a command stuck on a broken gateway fails its test instead of hanging the file.
      timeout: 20_000,
      killSignal: 'SIGKILL', // docker run passes SIGTERM on to the container and keeps waiting
      // A HOME the user can write: the CLI wants a config directory.
      env: { PATH: process.env.PATH, HOME: join(dir, 'home'), DOCKER_CONFIG: join(dir, 'home'), ...options.env },
    });
    // The CLI may exit before it reads its input (its exit code and output say why): not an error here.
    child.stdin!.on('error', () => {});
    child.stdin!.end(options.input ?? '');
    return child.output();
  };
  mkdirSync(join(dir, 'home'), { recursive: true });
  chmodSync(join(dir, 'home'), 0o1777);
  return {
    skip: false,
    dir,
    socket,
    docker,
    api: (method, path, body) => dockerApi(socket, method, path, body),
    containerNames: async () => {
      const r = await dockerApi(socket, 'GET', '/containers/json?all=1');
      return (JSON.parse(r.body) as Array<{ Names: string[] }>).flatMap((c) => c.Names.map((n) => n.replace(/^\//, '')));
    },
    stop,
  };
}

/** Resolves once `path` exists (watching its directory, no polling), rejects when `child` exits first. */
export function waitForPath(path: string, child: ChildProcess, what: () => string): Promise<void> {
  return new Promise((resolve, reject) => {
    const watcher = watch(dirname(path), () => check());
    const done = (error?: Error): void => {
      watcher.close();
      child.off('exit', gone);
      if (error) reject(error);
      else resolve();
    };
    const check = (): void => {
      if (existsSync(path)) done();
    };
    const gone = (): void => done(new Error(`exited before ${path} appeared: ${what()}`));
    child.once('exit', gone);
    check();
  });
}

/** A running `secpolicy gateway` CLI process. */
export interface GatewayProcess {
  child: ChildProcess;
  socket: string;
  /** Everything the process wrote to stderr and stdout so far. */
  output: () => string;
  /** SIGTERM, then SIGKILL after 5 s; resolves with the exit code. */
  stop: () => Promise<number | null>;
}

/** The compiled CLI's entry point. */
export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

/** Spawns `node dist/src/cli/main.js gateway --listen <socket> --to <target> --policy <file> ...extra` and waits for its socket. */
export async function startGateway(options: { socket: string; target: string; policy: string; extra?: string[] }): Promise<GatewayProcess> {
  const child = spawn(
    process.execPath,
    [CLI, 'gateway', '--listen', options.socket, '--to', options.target, '--policy', options.policy, ...(options.extra ?? [])],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exit = once(child, 'exit');
  const stop = async (): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exit;
      clearTimeout(timer);
    }
    return child.exitCode;
  };
  try {
    await waitForPath(options.socket, child, () => out);
  } catch (error) {
    await stop();
    throw error;
  }
  return { child, socket: options.socket, output: () => out, stop };
}

/**
 * A static HTTP client for a UNIX socket, for containers (busybox has none): `client
 * <socket> <method> <path> [body]` writes one request with Connection: close and prints
 * the raw response.
 */
export const UNIX_HTTP_CLIENT = String.raw`
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(int argc, char **argv) {
  if (argc < 4) { fprintf(stderr, "usage: client socket method path [body]\n"); return 2; }
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a; memset(&a, 0, sizeof a); a.sun_family = AF_UNIX;
  strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); return 3; }
  const char *body = argc > 4 ? argv[4] : "";
  char req[8192];
  int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", argv[2], argv[3], strlen(body), body);
  if (write(fd, req, n) != n) { perror("write"); return 4; }
  char buf[4096]; ssize_t r;
  while ((r = read(fd, buf, sizeof buf)) > 0) fwrite(buf, 1, r, stdout);
  return 0;
}
`;
