/**
 * Accept rate of createServer() beside a plain net.Server running the same code, and
 * beside C accept loops (bench/lib/accept-c.c, compiled with cc at bench time), in the
 * same run: connections per second accepted (and verified) from a separate client
 * process. Policies: (a) uid only, (b) uid + group + program, (c) the C library's full set
 * uid, gid, user, group, program, perms. Rounds alternate between the servers so that the
 * noise of a shared machine falls on all of them alike.
 *
 * The figure that matters is CPU time, not rate (other processes disturb it less): each
 * server's own CPU time per connection (process.cpuUsage() in this process, getrusage in
 * the C one), one sample per round. What verification adds is the verifying server's
 * figure minus the plain net.Server's of the same round; its floor is what the same system
 * calls add to a C accept loop: the C loop making the calls (SO_PEERCRED, SO_PEERPIDFD,
 * statx of /proc/PID/exe, poll of the pidfd, close; and for the full set a statx of the
 * socket file's held fd) minus the plain C loop, of the same round. The lines
 * "added CPU ... vs C" print the two medians and their ratio (target: <= 1.2x). Beside
 * them, the same calls made through koffi by a plain net.Server with no secpolicy code
 * (rawCalls): what the FFI alone adds over C, the least any verification through koffi costs.
 *
 * Memory: a separate server process (plain net.Server, then createServer with the full
 * set) holds N connections from a client process; its resident memory grows by so much
 * per held connection (after a GC), printed beside the plain server's as a ratio.
 *
 *   node dist/bench/accept.js
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { groupName, socketFd, userName } from '../src/native/index.js';
import { libc } from '../src/native/libc.js';
import { fileURLToPath } from 'node:url';
import { Policy, createServer } from '../src/index.js';
import { compile, rssBytes } from './lib/native.js';
import { isMain, report } from './lib/stats.js';

const ROUNDS = 15;
const CONNECTIONS = 3000;
const IN_FLIGHT = 16;
const HELD = 2000;
const MEMORY_ROUNDS = 5;
const INDEX = fileURLToPath(new URL('../src/index.js', import.meta.url));

/** The load process: on "<path> <n>" it makes n connections (IN_FLIGHT at a time), each closed at once. */
const CLIENT = `
const net = require('net');
require('readline').createInterface({ input: process.stdin }).on('line', (line) => {
  const [path, n] = line.split(' ');
  let started = 0, finished = 0;
  const one = () => {
    if (started >= +n) return;
    started++;
    const s = net.connect(path);
    const done = () => { if (++finished === +n) console.log('done'); else one(); };
    s.on('connect', () => { s.destroy(); done(); });
    s.on('error', (e) => { if (e.code === 'EAGAIN') { started--; setTimeout(one, 1); } else { console.error(e.code); process.exit(1); } });
  };
  for (let i = 0; i < ${IN_FLIGHT}; i++) one();
});`;

interface Target {
  name: string;
  server: net.Server;
  path: string;
  accepted: number;
  /** Connections per second, one per round. */
  samples: number[];
  /** This process's CPU time per connection (µs), one per round: steadier than wall time on a busy machine. */
  cpu: number[];
}

/** Runs the benchmark and prints one line per server, each against the plain net.Server. */
export async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'secpolicy-bench-accept-'));
  const uid = process.getuid!();
  const gid = process.getgid!();
  const user = userName(uid)!;
  const group = groupName(gid)!;
  const handler = (socket: net.Socket): void => {
    socket.destroy();
  };
  const targets: Target[] = [
    { name: 'net.Server (plain)', server: net.createServer(handler) },
    { name: 'createServer uid', server: createServer({ policy: new Policy().uid(uid) }, handler) },
    {
      name: 'createServer uid+group+program',
      server: createServer({ policy: new Policy().uid(uid).group(group).program(process.execPath) }, handler),
    },
    // The floor through koffi: the same calls as uid+group+program, made through the package's
    // koffi declarations with no secpolicy code around them (no Peer, no rule, no decision).
    { name: 'net.Server + the calls of uid+group+program through koffi', server: net.createServer(rawCalls) },
    {
      name: 'createServer uid,gid,user,group,program,perms',
      server: createServer(
        { policy: new Policy().uid(uid).gid(gid).user(user).group(group).program(process.execPath).perms(0o600) },
        handler,
      ),
    },
  ].map((t, i) => ({ ...t, path: join(dir, `${i}.sock`), accepted: 0, samples: [], cpu: [] }));
  const client = spawn(process.execPath, ['-e', CLIENT], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: client.stdout! })[Symbol.asyncIterator]();
  try {
    for (const t of targets) {
      t.server.on('connection', () => t.accepted++);
      t.server.on('denied', (reason) => {
        throw new Error(`${t.name}: the bench client was denied: ${JSON.stringify(reason)}`);
      });
      t.server.listen(t.path);
      await once(t.server, 'listening');
      chmodSync(t.path, 0o600);
    }
    const round = async (t: Target): Promise<[rate: number, cpu: number]> => {
      const before = t.accepted;
      const cpu = process.cpuUsage();
      const start = performance.now();
      client.stdin!.write(`${t.path} ${CONNECTIONS}\n`);
      const line = await lines.next();
      if (line.done || line.value !== 'done') throw new Error('the bench client stopped');
      // The client is done once its last connect() returned; the server may still be accepting.
      while (t.accepted - before < CONNECTIONS) await new Promise((r) => setImmediate(r));
      const elapsed = performance.now() - start;
      const used = process.cpuUsage(cpu);
      return [(CONNECTIONS * 1000) / elapsed, (used.user + used.system) / CONNECTIONS];
    };
    const c = await startC(dir);
    const C_MODES = ['plain', 'calls', 'full'] as const;
    const cRate: Record<(typeof C_MODES)[number], number[]> = { plain: [], calls: [], full: [] };
    const cCpu: Record<(typeof C_MODES)[number], number[]> = { plain: [], calls: [], full: [] };
    /** One round against the C accept loop in `mode`: the same client, the C process's own CPU time (getrusage). */
    const cRound = async (mode: (typeof C_MODES)[number]): Promise<[rate: number, cpu: number]> => {
      const child = c.child!;
      const start = performance.now();
      child.stdin!.write(`${CONNECTIONS} ${mode}\n`);
      client.stdin!.write(`${c.path} ${CONNECTIONS}\n`);
      const [line, own] = await Promise.all([lines.next(), c.lines!.next()]);
      const used = /^done (\d+)$/.exec(String(own.value));
      if (line.done || line.value !== 'done' || own.done || !used) throw new Error('the C bench stopped');
      const elapsed = performance.now() - start;
      return [(CONNECTIONS * 1000) / elapsed, Number(used[1]) / CONNECTIONS];
    };
    try {
      for (const t of targets) await round(t); // warm-up
      if (!c.error) for (const mode of C_MODES) await cRound(mode);
      for (let i = 0; i < ROUNDS; i++) {
        for (const t of targets) {
          const [rate, cpu] = await round(t);
          t.samples.push(rate);
          t.cpu.push(cpu);
        }
        if (!c.error) {
          for (const mode of C_MODES) {
            const [rate, cpu] = await cRound(mode);
            cRate[mode].push(rate);
            cCpu[mode].push(cpu);
          }
        }
      }
    } finally {
      c.child?.kill();
    }
    const [plain, uidOnly, ugp, raw, full] = targets as [Target, Target, Target, Target, Target];
    const verified = [uidOnly, ugp, raw, full];
    const cAnchor = { name: 'C accept loop', samples: cRate.plain };
    const rate = { unit: 'conn/s' };
    const cpu = { unit: 'µs/conn' };
    if (c.error) console.log(`C accept loops skipped: ${c.error}`);
    else report('C accept loop (accept, close)', cRate.plain, undefined, rate);
    report(plain.name, plain.samples, !c.error ? cAnchor : undefined, rate);
    for (const t of verified) {
      report(t.name, t.samples, { name: 'plain', samples: plain.samples }, rate);
      if (!c.error) report(t.name, t.samples, cAnchor, rate);
    }
    if (!c.error) {
      report('C accept loop, server CPU', cCpu.plain, undefined, cpu);
      report('C accept loop with the calls of uid+group+program, server CPU', cCpu.calls, { name: 'plain C', samples: cCpu.plain }, cpu);
      report('C accept loop with the calls of the full set, server CPU', cCpu.full, { name: 'plain C', samples: cCpu.plain }, cpu);
    }
    report(`${plain.name}, server CPU`, plain.cpu, !c.error ? { name: 'C', samples: cCpu.plain } : undefined, cpu);
    for (const t of verified) report(`${t.name}, server CPU`, t.cpu, { name: 'plain', samples: plain.cpu }, cpu);
    // What verification adds, per round (the same stretch of a noisy machine), beside what its system calls add in C.
    const added = (a: readonly number[], b: readonly number[]) => a.map((x, i) => x - b[i]!);
    report('added CPU of uid over net.Server', added(uidOnly.cpu, plain.cpu), undefined, cpu);
    if (!c.error) {
      console.log(
        'added CPU per connection: the verifying server over net.Server, vs C making the same calls over plain C (target <= 1.2x):',
      );
      report(
        'added CPU of uid+group+program over net.Server',
        added(ugp.cpu, plain.cpu),
        { name: 'C calls over plain C', samples: added(cCpu.calls, cCpu.plain) },
        cpu,
      );
      report(
        'added CPU of the same calls through koffi alone over net.Server',
        added(raw.cpu, plain.cpu),
        { name: 'C calls over plain C', samples: added(cCpu.calls, cCpu.plain) },
        cpu,
      );
      report(
        'added CPU of uid,gid,user,group,program,perms over net.Server',
        added(full.cpu, plain.cpu),
        { name: 'C full over plain C', samples: added(cCpu.full, cCpu.plain) },
        cpu,
      );
    }
  } finally {
    client.kill();
    for (const t of targets) t.server.close();
  }
  try {
    await memory(dir, uid, gid, user, group);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const rawBufs = {
  cred: Buffer.alloc(12),
  pidfd: Buffer.alloc(4),
  len: Buffer.alloc(4),
  path: Buffer.alloc(32),
  statx: Buffer.alloc(256),
  poll: Buffer.alloc(8),
};

/**
 * The calls of uid+group+program (those bench/lib/accept-c.c makes) through koffi, as the
 * package declares them, with nothing else: getsockopt(SO_PEERCRED), getsockopt(SO_PEERPIDFD),
 * statx of /proc/PID/exe, poll of the pidfd, close of the pidfd; the fd from socketFd().
 */
function rawCalls(socket: net.Socket): void {
  const c = libc();
  const fd = socketFd(socket);
  rawBufs.len.writeUInt32LE(12, 0);
  if (c.getsockopt(fd, 1, 17, rawBufs.cred, rawBufs.len) !== 0) throw new Error('SO_PEERCRED failed');
  rawBufs.len.writeUInt32LE(4, 0);
  const pidfd = c.getsockopt(fd, 1, 77, rawBufs.pidfd, rawBufs.len) === 0 ? rawBufs.pidfd.readInt32LE(0) : -1;
  const end = rawBufs.path.write(`/proc/${rawBufs.cred.readInt32LE(0)}/exe`, 'latin1');
  rawBufs.path[end] = 0;
  // AT_FDCWD, no flags, STATX_BASIC_STATS | STATX_BTIME: what the program rule asks for.
  c.statx!(-100, rawBufs.path, 0, 0x7ff | 0x800, rawBufs.statx);
  if (pidfd >= 0) {
    rawBufs.poll.writeInt32LE(pidfd, 0);
    rawBufs.poll.writeInt32LE(1, 4); // events POLLIN, revents 0
    c.poll(rawBufs.poll, 1, 0);
    c.close(pidfd);
  }
  socket.destroy();
}

interface CServer {
  child?: ChildProcess;
  lines?: AsyncIterator<string>;
  path: string;
  /** Why the anchor could not run. */
  error?: string;
}

/** The C accept loop, started (or why it could not be built). */
async function startC(dir: string): Promise<CServer> {
  const built = compile('accept-c', dir);
  const path = join(dir, 'c.sock');
  if ('error' in built) return { error: built.error, path };
  const child = spawn(built.exe, [path], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const ready = await lines.next();
  if (ready.value !== 'ready') {
    child.kill();
    return { error: `accept-c said ${String(ready.value)}`, path };
  }
  return { child, path, lines };
}

/** A server process that holds every connection and, on "gc", collects and answers "rss". */
const HOLDER = `
const [index, kind, path, uid, gid, user, group] = process.argv.slice(1);
import(index).then((m) => {
  const held = [];
  const keep = (s) => { held.push(s); s.on('error', () => {}); };
  const server = kind === 'plain' ? require('net').createServer(keep)
    : m.createServer({ policy: new m.Policy().uid(+uid).gid(+gid).user(user).group(group).program(process.execPath).perms(0o600) }, keep);
  server.on('denied', (r) => { console.error('denied', JSON.stringify(r.failures ?? r.code)); process.exit(1); });
  server.listen(path, () => { require('fs').chmodSync(path, 0o600); console.log('ready'); });
  require('readline').createInterface({ input: process.stdin }).on('line', (n) => {
    const wait = () => (held.length >= +n ? (globalThis.gc(), globalThis.gc(), console.log('held ' + held.length + ' ' + process.memoryUsage().heapUsed)) : setTimeout(wait, 5));
    wait();
  });
});`;

/** The client side: opens n connections to path and holds them until stdin ends. */
const OPENER = `
const [path, n] = process.argv.slice(1);
const held = [];
let open = 0;
const one = () => {
  const s = require('net').connect(path);
  held.push(s);
  s.on('connect', () => { if (++open === +n) console.log('open'); else if (held.length < +n) one(); });
  s.on('error', (e) => { if (e.code === 'EAGAIN') { held.pop(); setTimeout(one, 1); } else { console.error(e.code); process.exit(1); } });
};
for (let i = 0; i < 16; i++) one();
process.stdin.on('end', () => process.exit(0)).resume();`;

/** RSS growth per held connection of a separate plain and verifying server process, rounds alternating. */
async function memory(dir: string, uid: number, gid: number, user: string, group: string): Promise<void> {
  const perConn: Record<'plain' | 'verified', number[]> = { plain: [], verified: [] };
  const heapPerConn: Record<'plain' | 'verified', number[]> = { plain: [], verified: [] };
  const heapOf = (line: unknown): number => Number(String(line).split(' ')[2]);
  for (let r = 0; r < MEMORY_ROUNDS; r++) {
    for (const kind of ['plain', 'verified'] as const) {
      const path = join(dir, `held-${kind}-${r}.sock`);
      const server = spawn(process.execPath, ['--expose-gc', '-e', HOLDER, INDEX, kind, path, String(uid), String(gid), user, group], {
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      const out = createInterface({ input: server.stdout! })[Symbol.asyncIterator]();
      let opener: ChildProcess | undefined;
      try {
        const first = await out.next();
        if (first.value !== 'ready') throw new Error(`the holding server did not start: ${JSON.stringify(first)} ${server.exitCode}`);
        // The baseline: the server with one connection held, so that lazily loaded code is in.
        opener = spawn(process.execPath, ['-e', OPENER, path, '1'], { stdio: ['pipe', 'pipe', 'inherit'] });
        server.stdin!.write('1\n');
        const one = (await out.next()).value;
        if (!String(one).startsWith('held')) throw new Error('the holding server stopped');
        const before = rssBytes(server.pid!);
        const many = spawn(process.execPath, ['-e', OPENER, path, String(HELD)], { stdio: ['pipe', 'pipe', 'inherit'] });
        const opened = createInterface({ input: many.stdout! })[Symbol.asyncIterator]();
        if ((await opened.next()).value !== 'open') throw new Error('the opener stopped');
        server.stdin!.write(`${HELD + 1}\n`);
        const all = (await out.next()).value;
        if (!String(all).startsWith('held')) throw new Error('the holding server stopped');
        perConn[kind].push((rssBytes(server.pid!) - before) / HELD);
        heapPerConn[kind].push((heapOf(all) - heapOf(one)) / HELD);
        many.stdin!.end();
        await once(many, 'exit');
      } finally {
        opener?.stdin!.end();
        server.kill();
        await once(server, 'exit');
      }
    }
  }
  const unit = { unit: 'B/conn', samples: 'rounds' };
  console.log(`memory: RSS growth of a separate server process holding ${HELD} connections, after GC`);
  report('held connection, plain net.Server', perConn.plain, undefined, unit);
  report(
    'held connection, createServer uid,gid,user,group,program,perms',
    perConn.verified,
    { name: 'plain', samples: perConn.plain },
    unit,
  );
  report('held connection, plain net.Server, V8 heap only', heapPerConn.plain, undefined, unit);
  report(
    'held connection, createServer uid,gid,user,group,program,perms, V8 heap only',
    heapPerConn.verified,
    { name: 'plain', samples: heapPerConn.plain },
    unit,
  );
}

if (isMain(import.meta.url)) await run();
