/**
 * Per-connection cost of policy.apply() / applySync() for the C library's full rule set
 * (uid, gid, user, group, program, perms), on real accepted connections made by separate
 * client processes, beside the raw getsockopt(SO_PEERCRED) call through koffi on the same
 * sockets in the same run, and (when a C compiler is present) beside a C program making
 * the same system calls on its own connections. Target: apply() <= 5 µs median.
 *
 * Reading the figures: with the program rule, apply() makes SO_PEERCRED, SO_PEERPIDFD (the
 * pin against pid reuse), statx of /proc/PID/exe, poll(pidfd) after it, and statx of
 * the socket file through the O_PATH fd held since the listener was first checked. The first time anyone looks at a process, the kernel builds its
 * /proc/PID entries and its pidfs inode; that first-touch cost is most of the figure for
 * one-process-per-connection load, in C as in JS (compare the C "first time" line). The
 * C program runs between the JS rounds (a first-time and a warm pass over 400 fresh
 * processes each time), so that both sample the same stretches of a shared machine.
 *
 *   node dist/bench/apply.js
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { Policy } from '../src/index.js';
import { groupName, peerCred, socketFd, userName } from '../src/native/index.js';
import { parseCgroup, unitsOfPath } from '../src/identity/container.js';
import { isMain, report } from './lib/stats.js';
import { C_BENCH } from './lib/apply-c.js';

const ROUNDS = 10;
const PROCESSES = 400;
const PER_PROCESS = 100;
const MODE = 0o755;
const PYTHON = '/usr/bin/python3';
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));

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
async function batch(
  server: net.Server,
  path: string,
  procs: number,
  per: number,
): Promise<{ sockets: net.Socket[]; done: () => Promise<void> }> {
  const sockets: net.Socket[] = [];
  const onConnection = (s: net.Socket) => void sockets.push(s);
  server.on('connection', onConnection);
  // Under no_new_privs (when setpriv is there) so that the noNewPrivs case is on its allow path; nothing else changes.
  const argv = [PYTHON, '-c', FORKER, path, String(procs), String(per)];
  const [cmd, ...args] = SETPRIV ? [SETPRIV, '--no-new-privs', ...argv] : argv;
  const child = spawn(cmd!, args, { stdio: ['pipe', 'pipe', 'inherit'] });
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

/** A measured case: a name and what it does to one fresh connection (returning µs when it times itself). */
interface Case {
  name: string;
  fn: (s: net.Socket) => unknown;
  samples: number[];
}

/**
 * Each round makes fresh connections and deals them out to the cases in contiguous blocks,
 * one block per case, the blocks rotating between rounds, so that every case samples the
 * same stretch of a noisy shared machine; each connection is timed on its own and the median
 * is taken over all connections of all rounds. Within a block a case runs back to back, as
 * the C anchor's loop does: dealt out one connection at a time, every case would run with
 * the caches the seven others left it, which the C program never does.
 */
async function measure(
  server: net.Server,
  path: string,
  procs: number,
  per: number,
  cases: Case[],
  afterRound?: (round: number) => void,
): Promise<void> {
  for (let r = 0; r <= ROUNDS; r++) {
    const b = await batch(server, path, procs, per);
    const block = Math.floor(b.sockets.length / cases.length);
    try {
      for (let i = 0; i < block * cases.length; i++) {
        const c = cases[(Math.floor(i / block) + r) % cases.length]!;
        const start = performance.now();
        let own = c.fn(b.sockets[i]!);
        if (own instanceof Promise) own = await own; // no microtask hop for the sync cases
        const us = typeof own === 'number' ? own : (performance.now() - start) * 1000;
        if (r > 0) c.samples.push(us); // round 0 warms up
      }
    } finally {
      await b.done();
    }
    afterRound?.(r);
  }
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
    const full = new Policy().uid(uid).gid(gid).user(userName(uid)!).group(groupName(gid)!).program(PYTHON).perms(MODE);
    const noProgram = new Policy().uid(uid).gid(gid).user(userName(uid)!).group(groupName(gid)!).perms(MODE);
    const uidOnly = new Policy().uid(uid);
    // The load runs in our own cgroup: its unit is ours (or none, then a unit it is not in).
    const ownUnit = ownSystemUnit();
    const uidUnit = ownUnit
      ? new Policy().uid(uid).unit(ownUnit)
      : new Policy().uid(uid).not(new Policy().unit('secpolicy-bench-none.service'));
    const uidNnp = new Policy().uid(uid).noNewPrivs();
    const allowed = (d: { allowed: boolean; failures: unknown[] }) => {
      if (!d.allowed) throw new Error(`the bench policy denies its own peers: ${JSON.stringify(d.failures)}`);
    };
    const cases: Case[] = [
      { name: 'raw getsockopt(SO_PEERCRED) via koffi', fn: (s) => peerCred(socketFd(s)), samples: [] },
      { name: 'apply', fn: async (s) => allowed(await full.apply(s)), samples: [] },
      { name: 'applySync', fn: (s) => allowed(full.applySync(s)), samples: [] },
      {
        name: 'applySync again on an already verified connection',
        fn: (s) => {
          allowed(full.applySync(s));
          const start = performance.now();
          allowed(full.applySync(s));
          return (performance.now() - start) * 1000;
        },
        samples: [],
      },
      { name: 'apply without the program rule (no pin, no /proc)', fn: async (s) => allowed(await noProgram.apply(s)), samples: [] },
      { name: 'apply, uid only', fn: async (s) => allowed(await uidOnly.apply(s)), samples: [] },
      {
        name: `applySync, uid+unit (${ownUnit ?? 'not in secpolicy-bench-none.service'})`,
        fn: (s) => allowed(uidUnit.applySync(s)),
        samples: [],
      },
      ...(SETPRIV ? [{ name: 'applySync, uid+noNewPrivs', fn: (s: net.Socket) => allowed(uidNnp.applySync(s)), samples: [] }] : []),
    ];
    const few: Case = {
      name: `applySync, ${4 * PER_PROCESS} connections from 4 processes`,
      fn: (s) => allowed(full.applySync(s)),
      samples: [],
    };
    // The C baseline runs between the rounds (one first-time and one warm pass per round),
    // so that it samples the same stretches of a shared machine as the JS cases.
    const c: CBaseline = { first: [], full: [], peercred: [] };
    let cSkipped: string | undefined;
    const exe = compileC(dir);
    if (exe.startsWith('cannot')) cSkipped = exe;
    const cRound = (r: number): void => {
      if (cSkipped !== undefined || r === 0) return;
      const got = cBaseline(dir, exe);
      if (typeof got === 'string') cSkipped = got;
      else for (const k of ['first', 'full', 'peercred'] as const) c[k].push(...got[k]);
    };
    await measure(server, path, PROCESSES, 1, cases, cRound);
    await measure(server, path, 4, PER_PROCESS, [few]);

    const [raw, ...rest] = cases;
    const anchor = { name: 'SO_PEERCRED', samples: raw!.samples };
    const per = { samples: 'connections' };
    console.log(`rules: uid, gid, user, group, program, perms; ${ROUNDS} rounds, one client process per connection (python3 forks)`);
    report(raw!.name, raw!.samples, undefined, per);
    for (const x of [...rest, few]) report(x.name, x.samples, anchor, per);

    if (cSkipped !== undefined) console.log(`C baseline skipped: ${cSkipped}`);
    else {
      report(
        'C, the same system calls, first time on each process (SO_PEERCRED, SO_PEERPIDFD, statx exe, poll pidfd, statx socket file fd, close)',
        c.first,
        anchor,
        per,
      );
      report('C, the same system calls again on the same processes', c.full, anchor, per);
      report('C, getsockopt(SO_PEERCRED) alone', c.peercred, anchor, per);
      // Each JS figure beside the C program making the same system calls: fresh processes, then warm ones.
      const byName = (name: string) => cases.find((x) => x.name === name)!.samples;
      const cFresh = { name: 'C, first time', samples: c.first };
      console.log('each beside C making the same system calls, measured between the same rounds (target <= 1.2x):');
      report('apply vs C', byName('apply'), cFresh, per);
      report('applySync vs C', byName('applySync'), cFresh, per);
      report('applySync, 4 processes (warm) vs C', few.samples, { name: 'C, again', samples: c.full }, per);
      report('raw SO_PEERCRED via koffi vs C', raw!.samples, { name: 'C SO_PEERCRED', samples: c.peercred }, per);
    }
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The systemd system unit this process runs in, or null. */
function ownSystemUnit(): string | null {
  const info = parseCgroup(readFileSync('/proc/self/cgroup', 'utf8'));
  return info.systemd ? unitsOfPath(info.systemd.path).unit : null;
}

interface CBaseline {
  first: number[];
  full: number[];
  peercred: number[];
}

/** Compiles the C baseline; the executable's path, or why it could not be built (a sentence starting "cannot"). */
function compileC(dir: string): string {
  const source = join(dir, 'apply.c');
  const exe = join(dir, 'apply-c');
  writeFileSync(source, C_BENCH);
  const cc = spawnSync('cc', ['-O2', '-o', exe, source], { encoding: 'utf8' });
  if (cc.error || cc.status !== 0) return `cannot compile with cc (${cc.error?.message ?? cc.stderr.trim()})`;
  return exe;
}

/** Runs the C baseline once (a first-time pass and a warm pass over fresh processes); its figures, or why it could not run. */
function cBaseline(dir: string, exe: string): CBaseline | string {
  const out = spawnSync(exe, [join(dir, 'c.sock'), String(PROCESSES), '2'], { encoding: 'utf8', timeout: 120_000 });
  if (out.status !== 0) return `C bench failed: ${out.stderr.trim()}`;
  const lines = Object.fromEntries(
    out.stdout
      .trim()
      .split('\n')
      .map((l) => {
        const [name, ...values] = l.split(' ');
        return [name, values.map(Number)];
      }),
  );
  return { first: lines.first ?? [], full: lines.full ?? [], peercred: lines.peercred ?? [] };
}

if (isMain(import.meta.url)) await run();
