/**
 * Per-connection cost of policy.apply() / applySync() for the C library's full rule set
 * (uid, gid, user, group, program, perms), on real accepted connections made by separate
 * client processes, beside the raw getsockopt(SO_PEERCRED) call through koffi on the same
 * sockets in the same run, and (when a C compiler is present) beside a C program making
 * the same system calls on its own connections. Target: apply() <= 5 µs median.
 *
 *   node dist/bench/apply.js
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { Policy } from '../src/index.js';
import { groupName, peerCred, socketFd, userName } from '../src/native/index.js';
import { isMain, report } from './lib/stats.js';
import { C_BENCH } from './lib/apply-c.js';

const ROUNDS = 10;
const PROCESSES = 200;
const PER_PROCESS = 250;
const MODE = 0o755;
const PYTHON = '/usr/bin/python3';

/**
 * The load: forks `procs` processes that each open `per` connections, says "ready" when
 * all are connected, and holds them until stdin ends. Python forks fast, so every
 * connection can come from its own process, as on a real host.
 */
const FORKER = `
import os, signal, socket, sys
path, procs, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r, w = os.pipe()
kids = []
for i in range(procs):
    pid = os.fork()
    if pid == 0:
        held = []
        for j in range(per):
            s = socket.socket(socket.AF_UNIX); s.connect(path); held.append(s)
        os.write(w, b"x")
        signal.pause()
        os._exit(0)
    kids.append(pid)
got = 0
while got < procs:
    got += len(os.read(r, procs - got))
print("ready", flush=True)
sys.stdin.read()
for k in kids: os.kill(k, signal.SIGKILL)
for k in kids: os.waitpid(k, 0)
`;

/** Fresh connections: `procs` processes with `per` connections each, accepted and paused. */
async function batch(server: net.Server, path: string, procs: number, per: number): Promise<{ sockets: net.Socket[]; done: () => Promise<void> }> {
  const sockets: net.Socket[] = [];
  const onConnection = (s: net.Socket) => void sockets.push(s);
  server.on('connection', onConnection);
  const child = spawn(PYTHON, ['-c', FORKER, path, String(procs), String(per)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
  if (line !== 'ready') throw new Error(`load process said ${line}`);
  while (sockets.length < procs * per) await new Promise((r) => setImmediate(r));
  server.off('connection', onConnection);
  return {
    sockets,
    done: async () => {
      for (const s of sockets) s.destroy();
      child.stdin!.end();
      if (child.exitCode === null) await once(child, 'exit');
    },
  };
}

/** µs per connection of `fn` over fresh connections, one figure per round. */
async function perConnection(server: net.Server, path: string, procs: number, per: number, fn: (s: net.Socket) => unknown): Promise<number[]> {
  const out: number[] = [];
  for (let r = 0; r <= ROUNDS; r++) {
    const b = await batch(server, path, procs, per);
    try {
      const start = performance.now();
      for (const s of b.sockets) await fn(s);
      if (r > 0) out.push(((performance.now() - start) * 1000) / b.sockets.length); // round 0 warms up
    } finally {
      await b.done();
    }
  }
  return out;
}

/** Runs the benchmark and prints its lines. */
export async function run(): Promise<void> {
  if (!existsSync(PYTHON)) {
    console.log(`bench/apply skipped: needs ${PYTHON} to fork the client processes`);
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'secpolicy-bench-apply-'));
  const path = join(dir, 's.sock');
  const server = net.createServer({ pauseOnConnect: true });
  try {
    server.listen({ path, backlog: 4096 });
    await once(server, 'listening');
    chmodSync(path, MODE);
    const uid = process.getuid!();
    const gid = process.getgid!();
    const policy = new Policy().uid(uid).gid(gid).user(userName(uid)!).group(groupName(gid)!).program(PYTHON).perms(MODE);
    const uidOnly = new Policy().uid(uid);
    const sync = (s: net.Socket) => {
      if (!policy.applySync(s).allowed) throw new Error('the bench policy denies its own peers');
    };
    const async = async (s: net.Socket) => {
      if (!(await policy.apply(s)).allowed) throw new Error('the bench policy denies its own peers');
    };
    console.log(`rules: uid, gid, user, group, program, perms; ${ROUNDS} rounds of fresh connections, each round from new processes`);
    const raw = await perConnection(server, path, PROCESSES, 1, (s) => peerCred(socketFd(s)));
    const anchor = { name: 'getsockopt(SO_PEERCRED)', samples: raw };
    report('raw getsockopt(SO_PEERCRED) via koffi', raw);
    report(`applySync, ${PROCESSES} connections from ${PROCESSES} processes`, await perConnection(server, path, PROCESSES, 1, sync), anchor);
    report(`apply, ${PROCESSES} connections from ${PROCESSES} processes`, await perConnection(server, path, PROCESSES, 1, async), anchor);
    report(`applySync, ${4 * PER_PROCESS} connections from 4 processes`, await perConnection(server, path, 4, PER_PROCESS, sync), anchor);
    report('apply, uid only (one process per connection)', await perConnection(server, path, PROCESSES, 1, (s) => uidOnly.apply(s)), anchor);
    report(
      'applySync again on an already verified connection',
      await perConnection(server, path, PROCESSES, 1, (s) => {
        sync(s);
        sync(s);
      }).then((xs) => xs.map((x) => x / 2)),
      anchor,
    );

    const c = cBaseline(dir);
    if (typeof c === 'string') console.log(`C baseline skipped: ${c}`);
    else {
      report('C, same syscalls (SO_PEERCRED, SO_PEERPIDFD, statx exe, pidfd alive, statx socket, close)', c.full, anchor);
      report('C, getsockopt(SO_PEERCRED) alone', c.peercred, anchor);
    }
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Compiles and runs the C baseline; its figures, or why it could not run. */
function cBaseline(dir: string): { full: number[]; peercred: number[] } | string {
  const source = join(dir, 'apply.c');
  const exe = join(dir, 'apply-c');
  writeFileSync(source, C_BENCH);
  const cc = spawnSync('cc', ['-O2', '-o', exe, source], { encoding: 'utf8' });
  if (cc.error || cc.status !== 0) return `cannot compile with cc (${cc.error?.message ?? cc.stderr.trim()})`;
  const out = spawnSync(exe, [join(dir, 'c.sock'), String(PROCESSES), String(ROUNDS)], { encoding: 'utf8', timeout: 120_000 });
  if (out.status !== 0) return `C bench failed: ${out.stderr.trim()}`;
  const lines = Object.fromEntries(out.stdout.trim().split('\n').map((l) => {
    const [name, ...values] = l.split(' ');
    return [name, values.map(Number)];
  }));
  return { full: lines.full ?? [], peercred: lines.peercred ?? [] };
}

if (isMain(import.meta.url)) await run();
