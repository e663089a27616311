/** Shared test helpers: temporary directories, peers run as other users, commands present. */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { once } from 'node:events';

export const isRoot = process.getuid?.() === 0;

/** Why a test cannot show its point under a user-mode emulator, by what it relies on. */
const EMULATION_LIMITS = {
  program: "/proc/PID/exe of an emulated peer names the emulator, not the peer's program",
  netlink: 'qemu-user opens no NETLINK_SOCK_DIAG sockets (EPROTONOSUPPORT)',
  peergroups: "qemu-user's getsockopt does not return SO_PEERGROUPS lists (ERANGE)",
} as const;

/**
 * The emulator the suite runs under, or undefined on native hardware: the Node binary is for
 * another architecture than the kernel (qemu-user through binfmt_misc), or CI says so in
 * SECPOLICY_TEST_EMULATED.
 */
export const emulator: string | undefined = (() => {
  if (process.env.SECPOLICY_TEST_EMULATED) return process.env.SECPOLICY_TEST_EMULATED;
  const kernel = (() => {
    try {
      return readFileSync('/proc/sys/kernel/arch', 'utf8').trim();
    } catch {
      return undefined;
    }
  })();
  const ours = ({ x64: 'x86_64', arm64: 'aarch64', arm: 'armv7l', riscv64: 'riscv64' } as Record<string, string>)[process.arch];
  return kernel && ours && !(kernel === ours || (process.arch === 'arm' && kernel.startsWith('arm')))
    ? `${process.arch} on ${kernel}`
    : undefined;
})();

/** A reason to skip under a user-mode emulator, when the test relies on `what`; else false. */
export function needNative(what: keyof typeof EMULATION_LIMITS): string | false {
  return emulator ? `under emulation (${emulator}): ${EMULATION_LIMITS[what]}` : false;
}

/** Whether a command is on PATH. */
export function hasCommand(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

/**
 * A reason to skip when not root, else false (for `{ skip: needRoot() }`); `why` names what
 * root is for when it is not running peers as other users.
 */
export function needRoot(why = 'runs peers as other users (setpriv)'): string | false {
  return isRoot ? false : `needs root: ${why}`;
}

/** A reason to skip when a command is missing, else false. */
export function needCommand(...names: string[]): string | false {
  const missing = names.filter((n) => !hasCommand(n));
  return missing.length ? `needs ${missing.join(', ')} (install: apt-get install -y ${missing.join(' ')})` : false;
}

/** A fresh directory that other users may enter (mode 0755), removed by the returned cleanup. */
export function tempDir(prefix = 'secpolicy-test-'): { dir: string; path: (name: string) => string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o755);
  return { dir, path: (name) => join(dir, name), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The checkout this suite runs from (tests run from dist/test/, helpers from dist/test/helpers/). */
export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

let shared: string | undefined;

/**
 * The path of `dist/<rel>` in a world-readable copy of the built package (dist/src,
 * dist/examples, their runtime dependencies and package.json), for peers that run as another user: the checkout
 * may sit in a directory only its owner can enter (a private temp dir, /root). Made once
 * per test file, removed when the process exits.
 */
export function sharedDist(rel: string): string {
  if (!shared) {
    const dir = mkdtempSync(join(tmpdir(), 'secpolicy-shared-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    cpSync(join(repoRoot, 'dist', 'src'), join(dir, 'dist', 'src'), { recursive: true });
    cpSync(join(repoRoot, 'dist', 'examples'), join(dir, 'dist', 'examples'), { recursive: true });
    cpSync(join(repoRoot, 'package.json'), join(dir, 'package.json'));
    // The runtime dependency closure (optional ones only where installed, e.g. koffi's binary).
    const seen = new Set<string>();
    const copy = (name: string) => {
      const from = join(repoRoot, 'node_modules', name);
      if (seen.has(name) || !existsSync(from)) return;
      seen.add(name);
      cpSync(from, join(dir, 'node_modules', name), { recursive: true, dereference: true });
      const pkg = JSON.parse(readFileSync(join(from, 'package.json'), 'utf8')) as Record<string, Record<string, string> | undefined>;
      for (const dep of [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.optionalDependencies ?? {})]) copy(dep);
    };
    const own = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    for (const dep of Object.keys(own.dependencies ?? {})) copy(dep);
    // World-readable all the way down, whatever the umask was.
    spawnSync('chmod', ['-R', 'a+rX', dir]);
    shared = dir;
  }
  const path = join(shared, 'dist', rel);
  if (!existsSync(path)) throw new Error(`sharedDist: ${rel} is not part of the built package`);
  return path;
}

/** Identity for a peer process: uid, gid and supplementary groups (none unless given). */
export interface RunAs {
  uid: number;
  gid: number;
  groups?: number[];
}

/** The argv that runs `command` as another user through setpriv (root only). */
export function asUser(who: RunAs | undefined, command: string, args: string[]): [string, string[]] {
  if (!who) return [command, args];
  const groups = who.groups && who.groups.length ? ['--groups', who.groups.join(',')] : ['--clear-groups'];
  return ['setpriv', ['--reuid', String(who.uid), '--regid', String(who.gid), ...groups, '--', command, ...args]];
}

/** Spawns a process (optionally as another user); stdout/stderr collected. */
export function run(
  command: string,
  args: string[],
  options: SpawnOptions & { as?: RunAs } = {},
): ChildProcess & { output: () => Promise<{ code: number | null; stdout: string; stderr: string }> } {
  const [cmd, argv] = asUser(options.as, command, args);
  const child = spawn(cmd, argv, { stdio: ['pipe', 'pipe', 'pipe'], ...options }) as ChildProcess & {
    output: () => Promise<{ code: number | null; stdout: string; stderr: string }>;
  };
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d) => (stdout += d));
  child.stderr?.on('data', (d) => (stderr += d));
  const done = once(child, 'close').then(([code]) => ({ code: code as number | null, stdout, stderr }));
  child.output = () => done;
  return child;
}

/**
 * A node client process that connects to `path`, writes `send` (if any), prints what it
 * receives, and stays connected `holdMs` before closing.
 */
export function nodeClient(path: string, options: { as?: RunAs; send?: string; holdMs?: number } = {}) {
  const script = `
    const s = require('net').connect(${JSON.stringify(path)});
    s.on('connect', () => { ${options.send ? `s.write(${JSON.stringify(options.send)});` : ''} setTimeout(() => s.end(), ${options.holdMs ?? 200}); });
    s.on('data', (d) => process.stdout.write(d));
    s.on('error', (e) => { process.stderr.write(String(e.code || e)); process.exitCode = 3; });`;
  return run(process.execPath, ['-e', script], options.as ? { as: options.as } : {});
}

/** A plain net.Server on `path` whose accepted sockets are handed to `onSocket`. */
export async function listenOn(path: string, onSocket: (socket: net.Socket) => void, mode?: number): Promise<net.Server> {
  const server = net.createServer(onSocket);
  server.listen(path);
  await once(server, 'listening');
  if (mode !== undefined) chmodSync(path, mode);
  return server;
}

/** Resolves with the next connection of a server. */
export function nextConnection(server: net.Server): Promise<net.Socket> {
  return once(server, 'connection').then(([s]) => s as net.Socket);
}

/** Closes a server and destroys its open connections. */
export async function closeServer(server: net.Server): Promise<void> {
  (server as net.Server & { closeAllConnections?: () => void }).closeAllConnections?.();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
