/**
 * The policy-enforcing proxy (`secpolicy proxy`, its own process, splice(2) relay) beside,
 * in the same run and with rounds alternating between them:
 *  - a plain C epoll proxy moving bytes with splice(2) (bench/lib/proxy-c.c, no policy);
 *  - `socat -b 65536 UNIX-LISTEN:<path>,fork UNIX-CONNECT:<target>`;
 *  - the proxy with its JavaScript data path (`dataPath: 'streams'`, the fallback);
 *  - a direct connection to the target.
 * Both ends are C (bench/lib/load.c) so that on a small machine they cost little beside
 * the proxy under test. Figures:
 *  - throughput: one stream of SECPOLICY_BENCH_PROXY_MIB MiB (default 2048) client -> target;
 *  - CPU per GiB: the proxy process's CPU time (all threads, and socat's forked children) per GiB moved;
 *  - connection rate: connect, 4-byte request, 4-byte reply, close, from 8 client threads;
 *  - CPU per connection, the same way.
 * Targets: throughput >= 1.2x socat, connection rate >= 0.5x the C proxy, CPU per GiB <= socat's.
 *
 *   node dist/bench/proxy.js              SECPOLICY_BENCH_PROXY_MIB=256 node dist/bench/proxy.js
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { childPids, compile, cpuSeconds } from './lib/native.js';
import { isMain, report } from './lib/stats.js';

const MIB = Number(process.env.SECPOLICY_BENCH_PROXY_MIB ?? 2048);
const THROUGHPUT_ROUNDS = Number(process.env.SECPOLICY_BENCH_PROXY_ROUNDS ?? 5);
const RATE_ROUNDS = 9;
const CONNECTIONS = 3000;
const THREADS = 8;
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const INDEX = fileURLToPath(new URL('../src/index.js', import.meta.url));

async function waitForFile(path: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 500 && !existsSync(path); i++) {
    if (child.exitCode !== null) throw new Error(`${child.spawnfile} exited with ${child.exitCode}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  if (!existsSync(path)) throw new Error(`${path} never appeared`);
}

/** Runs the load program and returns the seconds it printed. */
function load(exe: string, args: string[]): number {
  const out = spawnSync(exe, args, { encoding: 'utf8', timeout: 600_000 });
  if (out.status !== 0) throw new Error(`load ${args.join(' ')} failed: ${out.stderr.trim() || out.signal}`);
  return Number(out.stdout.trim());
}

/** CPU seconds of a proxy process, once its forked children (socat) have exited and been counted. */
async function settledCpu(pid: number): Promise<number> {
  for (let i = 0; i < 200 && childPids(pid).length > 0; i++) await new Promise((r) => setTimeout(r, 5));
  return cpuSeconds(pid);
}

interface Subject {
  name: string;
  path: string;
  /** The process whose CPU is counted (none for the direct connection). */
  pid?: number;
  mibps: number[];
  cpuPerGiB: number[];
  rate: number[];
  cpuPerConn: number[];
}

/** Runs the benchmark and prints throughput, CPU and connection-rate lines, each against its anchors. */
export async function run(): Promise<void> {
  if (spawnSync('sh', ['-c', 'command -v socat'], { stdio: 'ignore' }).status !== 0) {
    console.log('proxy: skipped (needs socat: apt-get install -y socat)');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'secpolicy-bench-proxy-'));
  chmodSync(dir, 0o755);
  const children: ChildProcess[] = [];
  try {
    const loader = compile('load', dir, ['-lpthread']);
    const cproxy = compile('proxy-c', dir);
    if ('error' in loader || 'error' in cproxy) {
      console.log(
        `proxy: skipped (the C ends and anchor need a compiler: ${'error' in loader ? loader.error : (cproxy as { error: string }).error})`,
      );
      return;
    }
    const targetPath = join(dir, 'target.sock');
    const target = spawn(loader.exe, ['target', targetPath], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(target);
    const [ready] = (await once(createInterface({ input: target.stdout! }), 'line')) as [string];
    if (ready !== 'ready') throw new Error(`the target said ${ready}`);
    writeFileSync(join(dir, 'policy.yaml'), `uid: ${process.getuid!()}\n`);
    const start = (name: string, path: string, command: string, args: string[]): Subject => {
      const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'inherit'] });
      children.push(child);
      return { name, path, pid: child.pid!, mibps: [], cpuPerGiB: [], rate: [], cpuPerConn: [] };
    };
    const p = (name: string) => join(dir, name);
    const streamsScript = `import(${JSON.stringify(INDEX)}).then(async (m) => {
      const server = await m.createProxy({ listen: process.argv[1], target: process.argv[2], policy: await m.loadPolicy(process.argv[3]), dataPath: 'streams' });
      process.on('SIGTERM', () => m.closeProxy(server, { grace: 0 }));
    })`;
    const subjects = {
      secpolicy: start('secpolicy proxy', p('secpolicy.sock'), process.execPath, [
        CLI,
        'proxy',
        '--listen',
        p('secpolicy.sock'),
        '--to',
        targetPath,
        '--policy',
        p('policy.yaml'),
      ]),
      streams: start('secpolicy proxy, JavaScript streams', p('streams.sock'), process.execPath, [
        '-e',
        streamsScript,
        p('streams.sock'),
        targetPath,
        p('policy.yaml'),
      ]),
      c: start('C epoll proxy (splice)', p('c.sock'), cproxy.exe, [p('c.sock'), targetPath]),
      socat: start('socat -b 65536', p('socat.sock'), 'socat', [
        '-b',
        '65536',
        `UNIX-LISTEN:${p('socat.sock')},fork`,
        `UNIX-CONNECT:${targetPath}`,
      ]),
      direct: { name: 'direct', path: targetPath, mibps: [], cpuPerGiB: [], rate: [], cpuPerConn: [] } as Subject,
    };
    const all = Object.values(subjects);
    await Promise.all(children.slice(1).map((c, i) => waitForFile(all[i]!.path, c)));

    // One round of each in turn, so that the machine's noise falls on all alike; the first round warms up.
    for (let i = 0; i <= THROUGHPUT_ROUNDS; i++) {
      for (const s of all) {
        const cpu0 = s.pid ? cpuSeconds(s.pid) : 0;
        const seconds = load(loader.exe, ['stream', s.path, String(MIB)]);
        const cpu = s.pid ? (await settledCpu(s.pid)) - cpu0 : 0;
        if (i === 0) continue;
        s.mibps.push(MIB / seconds);
        s.cpuPerGiB.push((cpu * 1024) / MIB);
      }
    }
    for (let i = 0; i <= RATE_ROUNDS; i++) {
      for (const s of all) {
        const cpu0 = s.pid ? cpuSeconds(s.pid) : 0;
        const seconds = load(loader.exe, ['rate', s.path, String(CONNECTIONS), String(THREADS)]);
        const cpu = s.pid ? (await settledCpu(s.pid)) - cpu0 : 0;
        if (i === 0) continue;
        s.rate.push(CONNECTIONS / seconds);
        s.cpuPerConn.push((cpu * 1e6) / CONNECTIONS);
      }
    }
    const { secpolicy, streams, c, socat, direct } = subjects;
    const anchor = (s: Subject, key: 'mibps' | 'cpuPerGiB' | 'rate' | 'cpuPerConn') => ({ name: s.name, samples: s[key] });
    const tput = `throughput ${MIB} MiB`;
    for (const s of [secpolicy, streams]) {
      report(`${tput} via ${s.name}`, s.mibps, anchor(socat, 'mibps'), { unit: 'MiB/s' });
      report(`${tput} via ${s.name}`, s.mibps, anchor(c, 'mibps'), { unit: 'MiB/s' });
    }
    report(`${tput} via ${c.name}`, c.mibps, anchor(socat, 'mibps'), { unit: 'MiB/s' });
    report(`${tput} via ${secpolicy.name}`, secpolicy.mibps, anchor(direct, 'mibps'), { unit: 'MiB/s' });
    for (const s of [secpolicy, streams]) {
      report(`CPU per GiB, ${s.name}`, s.cpuPerGiB, anchor(socat, 'cpuPerGiB'), { unit: 's/GiB' });
      report(`CPU per GiB, ${s.name}`, s.cpuPerGiB, anchor(c, 'cpuPerGiB'), { unit: 's/GiB' });
    }
    for (const s of [secpolicy, streams]) {
      report(`connection rate via ${s.name}`, s.rate, anchor(c, 'rate'), { unit: 'conn/s' });
      report(`connection rate via ${s.name}`, s.rate, anchor(socat, 'rate'), { unit: 'conn/s' });
    }
    report(`connection rate via ${secpolicy.name}`, secpolicy.rate, anchor(direct, 'rate'), { unit: 'conn/s' });
    for (const s of [secpolicy, streams])
      report(`CPU per connection, ${s.name}`, s.cpuPerConn, anchor(c, 'cpuPerConn'), { unit: 'µs/conn' });
    report(`CPU per connection, ${secpolicy.name}`, secpolicy.cpuPerConn, anchor(socat, 'cpuPerConn'), { unit: 'µs/conn' });
  } finally {
    for (const c of children) {
      c.kill('SIGTERM');
      if (c.exitCode === null && c.signalCode === null) await once(c, 'exit');
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) await run();
