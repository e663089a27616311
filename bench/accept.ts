/**
 * Accept rate of createServer() beside a plain net.Server running the same code, in the
 * same run: connections per second accepted (and verified) from a separate client
 * process. Policies: (a) uid + group + program, (b) the C library's full set uid, gid,
 * user, group, program, perms. Rounds alternate between the servers so that the noise of
 * a shared machine falls on all of them alike. Target: ratio >= 0.9. The server's CPU time
 * per connection is printed too (ratio > 1 means dearer): other processes disturb it less.
 *
 *   node dist/bench/accept.js
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { groupName, userName } from '../src/native/index.js';
import { Policy, createServer } from '../src/index.js';
import { isMain, report } from './lib/stats.js';

const ROUNDS = 15;
const CONNECTIONS = 3000;
const IN_FLIGHT = 16;

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
    {
      name: 'createServer uid+group+program',
      server: createServer({ policy: new Policy().uid(uid).group(group).program(process.execPath) }, handler),
    },
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
    for (const t of targets) await round(t); // warm-up
    for (let i = 0; i < ROUNDS; i++) {
      for (const t of targets) {
        const [rate, cpu] = await round(t);
        t.samples.push(rate);
        t.cpu.push(cpu);
      }
    }
    const [plain, ...verified] = targets;
    report(plain!.name, plain!.samples, undefined, { unit: 'conn/s' });
    for (const t of verified) report(t.name, t.samples, { name: 'plain', samples: plain!.samples }, { unit: 'conn/s' });
    report(`${plain!.name}, server CPU`, plain!.cpu, undefined, { unit: 'µs/conn' });
    for (const t of verified) report(`${t.name}, server CPU`, t.cpu, { name: 'plain', samples: plain!.cpu }, { unit: 'µs/conn' });
  } finally {
    client.kill();
    for (const t of targets) t.server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) await run();
