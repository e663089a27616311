/**
 * Added cost per connection of the identity room: pinning (SO_PEERPIDFD, and the
 * pidfd_open + start-time fallback), namespace and container reads, programDigest (cached)
 * and strict mode's /proc scan, each beside the core applySync() with uid + program on the
 * same connections in the same run. Connections come from separate client processes.
 *
 *   node dist/bench/identity.js
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Policy } from '../src/index.js';
import { parseCgroup } from '../src/identity/container.js';
import { Pin } from '../src/identity/pin.js';
import { peerCred, socketFd } from '../src/native/index.js';
import { isMain, report, rounds, timePerOp } from './lib/stats.js';

const ROUNDS = 11;
const CLIENTS = 4;
const PER_CLIENT = 250;
// Strict mode scans every fd of every process: far fewer iterations per round.
const STRICT_OPS = 40;

/** A client process: opens n connections, says "ready", holds them until stdin ends. */
const CLIENT = `
const net = require('net');
const [path, n] = process.argv.slice(1);
let ok = 0;
const held = [];
for (let i = 0; i < +n; i++) {
  const s = net.connect(path);
  s.on('error', (e) => { console.error(e.code); process.exit(1); });
  s.on('connect', () => { if (++ok === +n) console.log('ready'); });
  held.push(s);
}
process.stdin.on('end', () => process.exit(0)).resume();`;

function procStats(): { processes: number; fds: number } {
  let processes = 0;
  let fds = 0;
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    processes++;
    try {
      fds += readdirSync(`/proc/${e}/fd`).length;
    } catch {
      // Exited meanwhile.
    }
  }
  return { processes, fds };
}

/** Runs the benchmark and prints its lines. */
export async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'secpolicy-bench-identity-'));
  const path = join(dir, 's.sock');
  const sockets: net.Socket[] = [];
  const clients: ChildProcess[] = [];
  const server = net.createServer({ pauseOnConnect: true }, (s) => void sockets.push(s));
  try {
    server.listen(path);
    await once(server, 'listening');
    chmodSync(path, 0o755);
    for (let i = 0; i < CLIENTS; i++) {
      const child = spawn(process.execPath, ['-e', CLIENT, path, String(PER_CLIENT)], { stdio: ['pipe', 'pipe', 'inherit'] });
      clients.push(child);
      const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
      if (line !== 'ready') throw new Error(`client said ${line}`);
    }
    while (sockets.length < CLIENTS * PER_CLIENT) await new Promise((r) => setImmediate(r));
    const n = sockets.length;
    const fds = sockets.map((s) => socketFd(s));
    const pids = fds.map((fd) => peerCred(fd).pid);
    let i = 0;
    const next = () => sockets[i++ % n]!;

    const uid = process.getuid!();
    const digest = createHash('sha256').update(readFileSync(process.execPath)).digest('hex');
    const base = new Policy().uid(uid).program(process.execPath);
    const policies = {
      container: new Policy().uid(uid).program(process.execPath).container(),
      host: new Policy().uid(uid).program(process.execPath).host(),
      digest: new Policy().uid(uid).program(process.execPath).programDigest(digest),
      strict: new Policy({ strict: true }).uid(uid).program(process.execPath),
    };
    for (const [name, p] of Object.entries({ base, host: policies.host, digest: policies.digest, strict: policies.strict })) {
      const d = p.applySync(sockets[0]!);
      if (!d.allowed) throw new Error(`the ${name} policy denies its own peers: ${JSON.stringify(d.failures)}`);
    }

    const anchorSamples = await rounds(ROUNDS, () => timePerOp(n, () => base.applySync(next())));
    const anchor = { name: 'applySync uid+program', samples: anchorSamples };
    const scan = procStats();
    console.log(`${n} connections from ${CLIENTS} client processes; /proc holds ${scan.processes} processes with ${scan.fds} fds`);
    report('applySync uid+program (anchor; a fresh pin per apply, pidfd checked)', anchorSamples);
    // A fresh pin per connection: what the first /proc rule on a new connection pays.
    report(
      'pin: SO_PEERPIDFD + pidfd check + close',
      await rounds(ROUNDS, () =>
        timePerOp(n, () => {
          const k = i++ % n;
          const p = Pin.of(fds[k]!, pids[k]!);
          p.check();
          p.close();
        }),
      ),
      anchor,
    );
    report(
      'pin fallback: start time + pidfd_open + check + close',
      await rounds(ROUNDS, () =>
        timePerOp(n, () => {
          const k = i++ % n;
          const p = Pin.of(fds[k]!, pids[k]!, { peerPidfd: false });
          p.check();
          p.close();
        }),
      ),
      anchor,
    );
    const cgroupText = readFileSync(`/proc/${pids[0]}/cgroup`, 'utf8');
    report('parseCgroup alone', await rounds(ROUNDS, () => timePerOp(n, () => parseCgroup(cgroupText))), anchor);
    report(
      'applySync uid+program+container()',
      await rounds(ROUNDS, () => timePerOp(n, () => policies.container.applySync(next()))),
      anchor,
    );
    report(
      'applySync uid+program+host() (2 ns links)',
      await rounds(ROUNDS, () => timePerOp(n, () => policies.host.applySync(next()))),
      anchor,
    );
    report(
      'applySync uid+program+programDigest (cached)',
      await rounds(ROUNDS, () => timePerOp(n, () => policies.digest.applySync(next()))),
      anchor,
    );
    report(
      `applySync strict uid+program (/proc scan of ${scan.fds} fds)`,
      await rounds(ROUNDS, () => timePerOp(STRICT_OPS, () => policies.strict.applySync(next()))),
      anchor,
    );
  } finally {
    for (const s of sockets) s.destroy();
    for (const c of clients) c.kill('SIGKILL');
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) await run();
