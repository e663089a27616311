/**
 * The policy-enforcing proxy (`secpolicy proxy`, its own process) beside
 * `socat -b 65536 UNIX-LISTEN:<path>,fork UNIX-CONNECT:<target>` and beside a direct
 * connection to the target, in the same run, rounds alternating between the three:
 *  - throughput: one stream of SECPOLICY_BENCH_PROXY_MIB MiB (default 2048) client -> target;
 *  - connection rate: connect, 4-byte request, 4-byte reply, close; IN_FLIGHT (32) at a time.
 * Targets: throughput >= 1.0x socat, connection rate >= 3x socat (socat forks per connection).
 *
 *   node dist/bench/proxy.js              SECPOLICY_BENCH_PROXY_MIB=256 node dist/bench/proxy.js
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { isMain, report } from './lib/stats.js';

const MIB = Number(process.env.SECPOLICY_BENCH_PROXY_MIB ?? 2048);
const THROUGHPUT_ROUNDS = Number(process.env.SECPOLICY_BENCH_PROXY_ROUNDS ?? 5);
const RATE_ROUNDS = 9;
const CONNECTIONS = 500;
const IN_FLIGHT = 32;
const CHUNK = Buffer.alloc(1 << 20, 0x5a);
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/** The target: counts bytes until the client's end, then answers with the count; "ping" gets "pong". */
function target(path: string): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    let n = 0;
    s.on('data', (d: Buffer) => {
      n += d.length;
      if (n === 4 && d.length === 4) s.write('pong');
    });
    s.on('end', () => s.end(n === 4 ? '' : String(n)));
    s.on('error', () => {});
  });
  server.listen(path);
  return once(server, 'listening').then(() => server);
}

/** MiB/s of one MIB-MiB stream to `path`, timed until the target has acknowledged every byte. */
function stream(path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const s = net.connect({ path, allowHalfOpen: true });
    let left = MIB;
    const pump = (): void => {
      while (left > 0) {
        left--;
        if (!s.write(CHUNK)) return void s.once('drain', pump);
      }
      s.end();
    };
    let reply = '';
    s.on('connect', pump);
    s.on('data', (d) => (reply += d));
    s.on('end', () => {
      if (Number(reply) !== MIB * CHUNK.length) return reject(new Error(`target received ${reply} bytes of ${MIB * CHUNK.length}`));
      resolve(MIB / ((performance.now() - start) / 1000));
    });
    s.on('error', reject);
  });
}

/** Connections per second: CONNECTIONS short exchanges, IN_FLIGHT at a time. */
function connectionRate(path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    let started = 0;
    let finished = 0;
    const one = (): void => {
      if (started >= CONNECTIONS) return;
      started++;
      const s = net.connect(path);
      let ok = false;
      s.on('connect', () => s.write('ping'));
      s.on('data', () => {
        ok = true;
        s.end();
      });
      s.on('close', () => {
        if (!ok) return;
        if (++finished === CONNECTIONS) resolve(CONNECTIONS / ((performance.now() - start) / 1000));
        else one();
      });
      s.on('error', (e: NodeJS.ErrnoException) => {
        // A full accept queue (socat listens with a backlog of 5): try that one again.
        if (e.code !== 'EAGAIN') return reject(e);
        started--;
        setTimeout(one, 1);
      });
    };
    for (let i = 0; i < IN_FLIGHT; i++) one();
  });
}

async function waitForFile(path: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 500 && !existsSync(path); i++) {
    if (child.exitCode !== null) throw new Error(`${child.spawnfile} exited with ${child.exitCode}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  if (!existsSync(path)) throw new Error(`${path} never appeared`);
}

/** Runs the benchmark and prints throughput and connection rate lines, each against socat. */
export async function run(): Promise<void> {
  if (spawnSync('sh', ['-c', 'command -v socat'], { stdio: 'ignore' }).status !== 0) {
    console.log('proxy: skipped (needs socat: apt-get install -y socat)');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'secpolicy-bench-proxy-'));
  chmodSync(dir, 0o755);
  const children: ChildProcess[] = [];
  let server: net.Server | undefined;
  try {
    const targetPath = join(dir, 'target.sock');
    server = await target(targetPath);
    writeFileSync(join(dir, 'policy.yaml'), `uid: ${process.getuid!()}\n`);
    const proxyPath = join(dir, 'proxy.sock');
    const socatPath = join(dir, 'socat.sock');
    const proxy = spawn(process.execPath, [CLI, 'proxy', '--listen', proxyPath, '--to', targetPath, '--policy', join(dir, 'policy.yaml')], {
      stdio: 'ignore',
    });
    const socat = spawn('socat', ['-b', '65536', `UNIX-LISTEN:${socatPath},fork`, `UNIX-CONNECT:${targetPath}`], { stdio: 'ignore' });
    children.push(proxy, socat);
    await Promise.all([waitForFile(proxyPath, proxy), waitForFile(socatPath, socat)]);

    const paths = { direct: targetPath, secpolicy: proxyPath, socat: socatPath };
    const measure = async (n: number, fn: (path: string) => Promise<number>): Promise<Record<keyof typeof paths, number[]>> => {
      const out = { direct: [] as number[], secpolicy: [] as number[], socat: [] as number[] };
      // One round of each in turn, so that the machine's noise falls on all three alike;
      // the first (warm-up) round is not recorded.
      for (let i = 0; i <= n; i++) {
        for (const name of ['socat', 'secpolicy', 'direct'] as const) {
          const figure = await fn(paths[name]);
          if (i > 0) out[name].push(figure);
        }
      }
      return out;
    };
    const tput = await measure(THROUGHPUT_ROUNDS, stream);
    report(`throughput ${MIB} MiB via secpolicy proxy`, tput.secpolicy, { name: 'socat -b 65536', samples: tput.socat }, { unit: 'MiB/s' });
    report(`throughput ${MIB} MiB via secpolicy proxy`, tput.secpolicy, { name: 'direct', samples: tput.direct }, { unit: 'MiB/s' });
    const rate = await measure(RATE_ROUNDS, connectionRate);
    report('connection rate via secpolicy proxy', rate.secpolicy, { name: 'socat fork', samples: rate.socat }, { unit: 'conn/s' });
    report('connection rate via secpolicy proxy', rate.secpolicy, { name: 'direct', samples: rate.direct }, { unit: 'conn/s' });
  } finally {
    for (const c of children) {
      c.kill('SIGTERM');
      if (c.exitCode === null) await once(c, 'exit');
    }
    await new Promise((r) => (server ? server.close(r) : r(undefined)));
    rmSync(dir, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) await run();
