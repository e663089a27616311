/**
 * Start-up of the `secpolicy` command as whole processes: `secpolicy --version` beside
 * `node -e 0` (what node itself costs), and `secpolicy audit --json` beside `ss -xlp` on
 * the host as it is (bench/audit.ts measures both with 5,000 extra sockets). Rounds
 * alternate between the four commands; medians. Target: `audit --json` at most 3x `ss -xlp`.
 *
 *   node dist/bench/cli.js
 */
import { spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { isMain, report } from './lib/stats.js';

const ROUNDS = Number(process.env.SECPOLICY_BENCH_CLI_ROUNDS ?? 21);
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/** Wall time of one whole process, in ms; throws when it fails. */
function wall(command: string, args: string[]): number {
  const start = performance.now();
  const r = spawnSync(command, args, { stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 256 * 1024 * 1024 });
  const elapsed = performance.now() - start;
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${r.status ?? r.signal})`);
  return elapsed;
}

/** Runs the benchmark and prints each command beside its anchor. */
export async function run(): Promise<void> {
  const hasSs = spawnSync('sh', ['-c', 'command -v ss'], { stdio: 'ignore' }).status === 0;
  const node: number[] = [];
  const version: number[] = [];
  const auditJson: number[] = [];
  const ss: number[] = [];
  for (let i = 0; i <= ROUNDS; i++) {
    const n = wall(process.execPath, ['-e', '0']);
    const v = wall(process.execPath, [CLI, '--version']);
    const a = wall(process.execPath, [CLI, 'audit', '--json']);
    const s = hasSs ? wall('ss', ['-xlp']) : NaN;
    if (i === 0) continue; // warm-up: page cache, and the compile cache where Node has one
    node.push(n);
    version.push(v);
    auditJson.push(a);
    ss.push(s);
  }
  console.log(
    `cli: node ${process.version}, ${ROUNDS} rounds, compile cache ${'enableCompileCache' in (await import('node:module')).default ? 'on' : 'not available'}`,
  );
  report('secpolicy --version (process)', version, { name: 'node -e 0', samples: node }, { unit: 'ms' });
  report('secpolicy audit --json (process)', auditJson, { name: 'node -e 0', samples: node }, { unit: 'ms' });
  if (hasSs) report('secpolicy audit --json (process)', auditJson, { name: 'ss -xlp', samples: ss }, { unit: 'ms' });
  else console.log('cli: ss not installed, the ss -xlp anchor is skipped');
}

if (isMain(import.meta.url)) await run();
