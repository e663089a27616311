/** Peer processes for the identity tests: real python3 clients, run as other users or in namespaces. */
import { once } from 'node:events';
import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { closeServer, needRoot, nextConnection, run, tempDir, type RunAs } from '../helpers/index.js';

/** python3 outside any pyenv shim: it must run as other users and inside namespaces. */
export const PY = '/usr/bin/python3';

/**
 * Python code that connects `s` to the socket at `path` and prints `up` (then runs `body`;
 * by default it holds the connection until stdin closes).
 */
export function connectScript(path: string, body = 'sys.stdin.read()'): string {
  return `import os,socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(${JSON.stringify(path)})\nprint('up',os.getpid(),flush=True)\n${body}\n`;
}

/** A spawned peer; `prefix` wraps python (e.g. `unshare --pid --fork`). */
export function pythonPeer(path: string, options: { as?: RunAs; body?: string; prefix?: string[] } = {}) {
  const argv = [...(options.prefix ?? []), PY, '-c', connectScript(path, options.body)];
  return run(argv[0]!, argv.slice(1), options.as ? { as: options.as } : {});
}

type Child = ReturnType<typeof run>;

/** The server's next connection, or a rejection with the child's stderr if it exits first. */
export function acceptFrom(server: net.Server, child: Child): Promise<net.Socket> {
  return Promise.race([
    nextConnection(server),
    child.output().then((o) => Promise.reject(new Error(`peer exited before connecting (code ${o.code}): ${o.stderr}`))),
  ]);
}

/** A fresh directory with a world-connectable listening socket (accepted sockets paused); cleaned up with the test. */
export async function socketServer(t: { after: (fn: () => unknown) => void }, prefix = 'secpolicy-identity-') {
  const tmp = tempDir(prefix);
  const path = tmp.path('s.sock');
  const accepted: net.Socket[] = [];
  // Paused: a peer that exits before we apply must not make Node close the socket on EOF.
  const server = net.createServer({ pauseOnConnect: true }, (s) => accepted.push(s)).listen(path);
  await once(server, 'listening');
  // 0666: peers run as other users and need write permission on the socket file.
  chmodSync(path, 0o666);
  t.after(async () => {
    for (const s of accepted) s.destroy();
    await closeServer(server);
    tmp.cleanup();
  });
  return { tmp, path, server };
}

/** Kills a child (if still running) and waits for it, for t.after. */
export async function reap(child: Child): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await child.output();
}

/** Resolves with the child's stdout so far once it contains `text`; rejects if the child exits first. */
export function waitForOutput(child: Child, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes(text)) resolve(out);
    });
    child.output().then((o) => reject(new Error(`exited before printing "${text}": ${o.stderr}`)));
  });
}

/** Spawns `/usr/bin/sleep` with pid `pid` by setting ns_last_pid; undefined when another process took it first. */
export async function spawnWithPid(pid: number) {
  for (let attempt = 0; attempt < 20; attempt++) {
    writeFileSync('/proc/sys/kernel/ns_last_pid', String(pid - 1));
    const sleeper = run('/usr/bin/sleep', ['30']);
    if (sleeper.pid === pid) return sleeper;
    sleeper.kill('SIGKILL');
    await sleeper.output();
  }
  return undefined;
}

/** Why the pid-reuse tests cannot run here, or false. */
export const reuseSkip = needRoot() || (existsSync('/proc/sys/kernel/ns_last_pid') ? false : 'needs /proc/sys/kernel/ns_last_pid');
