/**
 * HTTP requests per second over a UNIX socket through guard() beside the same server
 * unguarded, in the same run, with the load coming from a separate process: once with
 * keep-alive off (every request a new, verified connection) and once with keep-alive on
 * (verification paid once per connection). The policy is uid + group + program. Rounds
 * alternate between the servers. Target: ratio >= 0.9.
 *
 *   node dist/bench/http.js
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { groupName } from '../src/native/index.js';
import { Policy, guard } from '../src/index.js';
import { isMain, report } from './lib/stats.js';

const ROUNDS = 11;
const REQUESTS = 2000;
const CONCURRENCY = 16;

/** The load process: on "<path> <n> <keepAlive>" it runs n GETs, CONCURRENCY at a time, and prints the ms taken. */
const LOAD = `
const http = require('http');
const agents = { true: new http.Agent({ keepAlive: true, maxSockets: ${CONCURRENCY} }), false: new http.Agent({ keepAlive: false }) };
require('readline').createInterface({ input: process.stdin }).on('line', (line) => {
  const [socketPath, n, keepAlive] = line.split(' ');
  const agent = agents[keepAlive];
  let started = 0, finished = 0;
  const start = performance.now();
  const one = () => {
    if (started >= +n) return;
    started++;
    http.get({ socketPath, path: '/', agent }, (res) => {
      res.resume().on('end', () => {
        if (res.statusCode !== 200) { console.error('status ' + res.statusCode); process.exit(1); }
        if (++finished === +n) console.log(String(performance.now() - start)); else one();
      });
    }).on('error', (e) => { console.error(e.code || e.message); process.exit(1); });
  };
  for (let i = 0; i < ${CONCURRENCY}; i++) one();
});`;

/** Runs the benchmark and prints, per keep-alive mode, the guarded server against the unguarded one. */
export async function run(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'secpolicy-bench-http-'));
  const policy = new Policy().uid(process.getuid!()).group(groupName(process.getgid!())!).program(process.execPath);
  const handler = (_req: http.IncomingMessage, res: http.ServerResponse): void => {
    res.end('ok');
  };
  const plain = { name: 'http unguarded', server: http.createServer(handler), path: join(dir, 'plain.sock') };
  const guarded = {
    name: 'http guard(uid+group+program)',
    server: guard(http.createServer(handler), policy),
    path: join(dir, 'guarded.sock'),
  };
  guarded.server.on('denied', (reason) => {
    throw new Error(`the load process was denied: ${JSON.stringify(reason)}`);
  });
  const load = spawn(process.execPath, ['-e', LOAD], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: load.stdout! })[Symbol.asyncIterator]();
  try {
    for (const t of [plain, guarded]) {
      t.server.listen(t.path);
      await once(t.server, 'listening');
    }
    // Both servers live in this process and rounds run one at a time: its CPU time in a round is that server's.
    const round = async (path: string, keepAlive: boolean, cpu?: number[]): Promise<number> => {
      const used = process.cpuUsage();
      load.stdin!.write(`${path} ${REQUESTS} ${keepAlive}\n`);
      const line = await lines.next();
      if (line.done) throw new Error('the load process stopped');
      const u = process.cpuUsage(used);
      cpu?.push((u.user + u.system) / REQUESTS);
      return (REQUESTS * 1000) / Number(line.value);
    };
    for (const keepAlive of [false, true]) {
      const samples = { plain: [] as number[], guarded: [] as number[] };
      const cpu = { plain: [] as number[], guarded: [] as number[] };
      await round(plain.path, keepAlive); // warm-up
      await round(guarded.path, keepAlive);
      for (let i = 0; i < ROUNDS; i++) {
        samples.plain.push(await round(plain.path, keepAlive, cpu.plain));
        samples.guarded.push(await round(guarded.path, keepAlive, cpu.guarded));
      }
      const mode = keepAlive ? 'keep-alive' : 'new connection per request';
      report(`${plain.name} (${mode})`, samples.plain, undefined, { unit: 'req/s' });
      report(`${guarded.name} (${mode})`, samples.guarded, { name: 'unguarded', samples: samples.plain }, { unit: 'req/s' });
      report(`${plain.name} (${mode}), server CPU`, cpu.plain, undefined, { unit: 'µs/req' });
      report(`${guarded.name} (${mode}), server CPU`, cpu.guarded, { name: 'unguarded', samples: cpu.plain }, { unit: 'µs/req' });
    }
  } finally {
    load.kill();
    for (const t of [plain, guarded]) {
      t.server.closeAllConnections();
      t.server.close();
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

if (isMain(import.meta.url)) await run();
