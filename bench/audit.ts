/**
 * audit() beside `ss -xlp` on a host where this benchmark holds SECPOLICY_BENCH_AUDIT_SOCKETS
 * (default 5000) extra listening sockets, spread over a few python3 processes (half bound
 * to paths, half abstract) so that no process nears its fd limit. Both list every
 * listening socket and find its holders through /proc/PID/fd; rounds alternate between
 * them. Also the whole `secpolicy audit --json` command, node start-up included.
 * Target: audit() within 2x of ss.
 *
 *   node dist/bench/audit.js
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { audit } from '../src/audit/audit.js';
import { isMain, report } from './lib/stats.js';

const SOCKETS = Number(process.env.SECPOLICY_BENCH_AUDIT_SOCKETS ?? 5000);
const HOLDERS = 5;
const ROUNDS = 11;
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

const HOLDER = `
import os, resource, socket, sys
first, count, directory = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
want = count + 64
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want, hard))
socks = []
for i in range(first, first + count):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(f'{directory}/s{i}.sock' if i % 2 else f'\\0secpolicy-bench-audit-{os.getpid()}-{i}')
    s.listen(1)
    socks.append(s)
print('READY', flush=True)
sys.stdin.read()
`;

function ms(fn: () => void): number {
  const start = performance.now();
  fn();
  return performance.now() - start;
}

/** Runs the benchmark and prints audit() and the CLI against `ss -xlp`. */
export async function run(): Promise<void> {
  for (const tool of ['ss', 'python3']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status !== 0) {
      console.log(`audit: skipped (needs ${tool})`);
      return;
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'secpolicy-bench-audit-'));
  chmodSync(dir, 0o755);
  const holders: ChildProcess[] = [];
  try {
    const per = Math.ceil(SOCKETS / HOLDERS);
    for (let h = 0; h < HOLDERS; h++) {
      const child = spawn('python3', ['-c', HOLDER, String(h * per), String(Math.min(per, SOCKETS - h * per)), dir], {
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      holders.push(child);
    }
    await Promise.all(holders.map((c) => once(c.stdout!, 'data')));
    let listed = 0;
    const ss: number[] = [];
    const api: number[] = [];
    const cli: number[] = [];
    for (let i = 0; i <= ROUNDS; i++) {
      const tSs = ms(() => {
        const r = spawnSync('ss', ['-xlp'], { stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 256 * 1024 * 1024 });
        if (r.status !== 0) throw new Error('ss -xlp failed');
      });
      const start = performance.now();
      listed = (await audit()).length;
      const tApi = performance.now() - start;
      const tCli = ms(() => {
        const r = spawnSync(process.execPath, [CLI, 'audit', '--json'], {
          stdio: ['ignore', 'pipe', 'ignore'],
          maxBuffer: 256 * 1024 * 1024,
        });
        if (r.status !== 0) throw new Error('secpolicy audit failed');
      });
      if (i === 0) continue; // warm-up
      ss.push(tSs);
      api.push(tApi);
      cli.push(tCli);
    }
    console.log(`audit: ${listed} listening sockets on the host (${SOCKETS} opened by the benchmark)`);
    report('audit()', api, { name: 'ss -xlp', samples: ss }, { unit: 'ms' });
    report('secpolicy audit --json (process)', cli, { name: 'ss -xlp', samples: ss }, { unit: 'ms' });
  } finally {
    for (const c of holders) {
      c.stdin!.end();
      if (c.exitCode === null) await once(c, 'exit');
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) await run();
