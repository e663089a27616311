/** Shared test helpers: temporary directories, peers run as other users, commands present. */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';

export const isRoot = process.getuid?.() === 0;

/** Whether a command is on PATH. */
export function hasCommand(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

/** A reason to skip when not root, else false (for `{ skip: needRoot() }`). */
export function needRoot(): string | false {
  return isRoot ? false : 'needs root (setpriv to other users)';
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
