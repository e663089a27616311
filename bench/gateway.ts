/**
 * The Docker API gateway against its anchors, all in front of one offline dockerd in the
 * same run: requests per second straight to dockerd, through HAProxy configured as
 * docker-socket-proxy configures it (http mode, `option http-server-close`, one path
 * regex ACL per API section on `(/v1.xx)?/section`, a UNIX socket listener), through the
 * same HAProxy keeping its upstream connections alive (as the gateway does), and
 * through `secpolicy gateway` (the CLI with a realistic policy: three rules, the Docker
 * profile, identity forwarding, a decision log file), with its default `--workers` (a process
 * per CPU, as HAProxy runs a thread per CPU) and in one process (`--workers 1`). The
 * rate load is C (bench/lib/http-load.c); each proxy's CPU per request (all its processes
 * and threads) is printed beside HAProxy's. Beside them, the Node.js floors
 * (bench/lib/node-floor.ts): a byte relay that never parses HTTP, a bare HTTP proxy on
 * node:http with no policy, and a minimal HTTP proxy on node:net with its own HTTP reading,
 * in one process and in a process per CPU, each printed against
 * HAProxy with upstream keep-alive, and each gateway against the bare proxy with as many
 * processes: what any proxy on Node.js costs here, and what the gateway adds to it.
 * GET /_ping and GET /containers/json, keep-alive and one connection per request; the
 * latency each proxy adds over direct (p50, p99 of sequential keep-alive requests); and
 * memory per idle keep-alive connection (RSS growth of the gateway process holding N
 * connections, beside a plain verified HTTP server holding N). The load comes from a
 * separate process; rounds interleave the targets and figures are medians of rounds.
 * Targets: the gateway at >= 1.0x the rate of HAProxy keeping its upstream connections alive
 * (keep-alive and one connection per request); added p50 <= HAProxy's; memory per idle
 * connection no more than before.
 *
 *   node dist/bench/gateway.js        (root; skips without dockerd or haproxy)
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDockerd } from '../test/helpers/dockerd.js';
import { hasCommand } from '../test/helpers/index.js';
import { startLoad } from './lib/http-load.js';
import { childPids, compile, cpuSeconds, rssBytes } from './lib/native.js';
import { isMain, percentile, report } from './lib/stats.js';

const ROUNDS = 7;
const RATE_REQUESTS = 6000;
const CONCURRENCY = 16;
const LATENCY_REQUESTS = 500;
const IDLE_CONNECTIONS = 500;
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const VERIFIED_HTTP = fileURLToPath(new URL('./lib/verified-http.js', import.meta.url));
const NODE_FLOOR = fileURLToPath(new URL('./lib/node-floor.js', import.meta.url));
const GATEWAY = 'secpolicy gateway';
/** The gateway in one process (its default is a process per CPU). */
const ONE = 'secpolicy gateway --workers 1';

/**
 * An HAProxy configuration equivalent to docker-socket-proxy's for a read-mostly setup
 * (sections PING, VERSION, INFO, CONTAINERS, IMAGES on; POST off), in front of `target`.
 * docker-socket-proxy closes the upstream connection after each response
 * (`http-server-close`); with `upstreamKeepAlive` HAProxy keeps and reuses it, as the
 * gateway does, which makes a stricter anchor for the gateway's keep-alive figures.
 */
export function haproxyConfig(listen: string, target: string, upstreamKeepAlive = false): string {
  const sections = ['_ping', 'version', 'info', 'containers', 'images'];
  return [
    'global',
    '    maxconn 4000',
    'defaults',
    '    mode http',
    upstreamKeepAlive ? '    option http-keep-alive' : '    option http-server-close',
    '    option dontlognull',
    '    timeout http-request 10s',
    '    timeout connect 10s',
    '    timeout client 10m',
    '    timeout server 10m',
    '    timeout http-keep-alive 10s',
    '    maxconn 3000',
    'backend docker',
    `    server dockerd unix@${target}`,
    'frontend api',
    `    bind unix@${listen} mode 666`,
    '    http-request deny unless METH_GET',
    ...sections.map((s) => `    http-request allow if { path,url_dec -m reg -i ^(/v[0-9.]+)?/${s} }`),
    '    http-request deny',
    '    default_backend docker',
    '',
  ].join('\n');
}

/**
 * The gateway policy measured, a realistic one: two rules that do not match root before
 * the one that does, the Docker profile's limits on one, and the peer's identity forwarded
 * on every request (the gateway also writes a decision log file).
 */
const GATEWAY_POLICY = `version: 1
api: docker
forward: { identity: true }
rules:
  - name: readers
    who: { gid: 4241 }
    allow: ["GET /**", "HEAD /**"]
    deny: ["GET /containers/*/archive", "GET /containers/*/export"]
  - name: ci
    who: { uid: 4242 }
    allow: ["GET /**", "POST /containers/create", "POST /containers/*/start"]
    docker: { privileged: false, hostNamespaces: false, capAdd: [], devices: false, binds: ["/srv/ci/**"] }
  - name: root
    who: { uid: 0 }
    allow: ["* /**"]
`;

/** Resolves once a connection to `path` succeeds, or rejects when `child` exits first. */
async function waitForSocket(path: string, child: ChildProcess, what: () => string): Promise<void> {
  for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`exited before listening: ${what()}`);
    if (existsSync(path)) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.connect(path, () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(false));
      });
      if (ok) return;
    }
    await new Promise((r) => setTimeout(r, delay));
  }
}

function spawnLogged(cmd: string, args: string[]): { child: ChildProcess; log: () => string } {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.on('data', (d) => (log += d));
  child.stderr!.on('data', (d) => (log += d));
  return { child, log: () => log };
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await once(child, 'exit');
  clearTimeout(timer);
}

/** CPU seconds of a process and its children (a gateway's other processes; HAProxy's threads are its own). */
function groupCpu(pid: number): number {
  return [pid, ...childPids(pid)].reduce((sum, p) => sum + cpuSeconds(p), 0);
}

/** One thing the load is sent to: its socket, and the process whose CPU is counted (none for dockerd itself). */
interface Target {
  name: string;
  socket: string;
  pid?: number;
}

/** RSS of a process and its children (a gateway's other processes). */
function groupRss(pid: number): number {
  return [pid, ...childPids(pid)].reduce((sum, p) => sum + rssBytes(p), 0);
}

/** Whether this build's gateway has --workers. */
function hasWorkers(): boolean {
  return spawnSync(process.execPath, [CLI, 'gateway', '--help'], { encoding: 'utf8' }).stdout.includes('--workers');
}

/** Why the bench cannot run here, or false. */
function gatewayCliMissing(): string | false {
  const r = spawnSync(process.execPath, [CLI, 'gateway', '--help'], { encoding: 'utf8' });
  // --help of an unknown command prints the program's help, so look for the command's own usage line.
  return r.status === 0 && /Usage: \S+ gateway/.test(r.stdout)
    ? false
    : 'the gateway command is not in this build (secpolicy gateway --help)';
}

/** Runs the benchmark. */
export async function run(): Promise<void> {
  if (process.getuid?.() !== 0) return void console.log('skipped: needs root (a private dockerd)');
  if (!hasCommand('haproxy')) return void console.log('skipped: needs haproxy (apt-get install -y haproxy)');
  const daemon = await startDockerd();
  if (daemon.skip) return void console.log(`skipped: ${daemon.skip}`);
  const children: ChildProcess[] = [];
  const load = startLoad();
  try {
    // The rate load in C when a compiler is here (on two cores a JavaScript load takes much
    // of the CPU the targets share); the Node load process otherwise.
    const loader = compile('http-load', daemon.dir, ['-lpthread']);
    if ('error' in loader) console.log(`note: the rate load runs in Node (${loader.error})`);
    const direct: Target = { name: 'direct dockerd', socket: daemon.socket };
    const targets: Target[] = [direct];
    for (const keep of [false, true]) {
      const name = keep ? 'haproxy-ka' : 'haproxy';
      const socket = join(daemon.dir, `${name}.sock`);
      writeFileSync(join(daemon.dir, `${name}.cfg`), haproxyConfig(socket, daemon.socket, keep));
      const haproxy = spawnLogged('haproxy', ['-db', '-f', join(daemon.dir, `${name}.cfg`)]);
      children.push(haproxy.child);
      await waitForSocket(socket, haproxy.child, haproxy.log);
      targets.push({
        name: keep ? 'haproxy with upstream keep-alive' : 'haproxy (docker-socket-proxy config)',
        socket,
        pid: haproxy.child.pid!,
      });
    }

    const missing = gatewayCliMissing();
    if (missing) console.log(`gateway figures skipped: ${missing}`);
    writeFileSync(join(daemon.dir, 'gateway.yaml'), GATEWAY_POLICY);
    let started = 0;
    /** A fresh gateway CLI process in front of the daemon (with its default --workers unless given). */
    const startGateway = async (workers?: number): Promise<{ socket: string; pid: number; child: ChildProcess }> => {
      const n = started++;
      const socket = join(daemon.dir, `gateway${n}.sock`);
      const gw = spawnLogged(process.execPath, [
        CLI,
        'gateway',
        '--listen',
        socket,
        '--to',
        daemon.socket,
        '--policy',
        join(daemon.dir, 'gateway.yaml'),
        '--log',
        join(daemon.dir, `gateway${n}.log`),
        ...(workers === undefined ? [] : ['--workers', String(workers)]),
      ]);
      children.push(gw.child);
      await waitForSocket(socket, gw.child, gw.log);
      return { socket, pid: gw.child.pid!, child: gw.child };
    };
    /** A fresh plain verified HTTP server process. */
    const startVerified = async (): Promise<{ socket: string; pid: number; child: ChildProcess }> => {
      const socket = join(daemon.dir, `verified${started++}.sock`);
      const v = spawnLogged(process.execPath, [VERIFIED_HTTP, socket]);
      children.push(v.child);
      await waitForSocket(socket, v.child, v.log);
      return { socket, pid: v.child.pid!, child: v.child };
    };
    const gateway = missing ? undefined : await startGateway();
    if (gateway) targets.push({ name: GATEWAY, socket: gateway.socket, pid: gateway.pid });
    // The same gateway in one process, beside its default, when this build has --workers.
    const one = missing || !hasWorkers() ? undefined : await startGateway(1);
    if (one) targets.push({ name: ONE, socket: one.socket, pid: one.pid });
    const gateways = targets.filter((t) => t.name === GATEWAY || t.name === ONE).map((t) => t.name);

    // The Node.js floors (bench/lib/node-floor.ts): a byte relay, a bare node:http proxy and a
    // minimal proxy with its own HTTP reading, in one process and in as many as the gateway's
    // default; what a Node.js proxy costs at least.
    const cpus = availableParallelism();
    /** The floor that does what the gateway `name` does, minus the gateway's own work. */
    const floorOf = new Map<string, string>();
    const floors: string[] = [];
    for (const [mode, what] of [
      ['relay', 'node byte relay'],
      ['http', 'node http proxy'],
      ['mini', 'node minimal HTTP proxy'],
    ] as const) {
      for (const workers of cpus > 1 ? [1, cpus] : [1]) {
        const name = `${what}, ${workers === 1 ? '1 process' : `${workers} processes`}`;
        const socket = join(daemon.dir, `floor-${mode}-${workers}.sock`);
        const floor = spawnLogged(process.execPath, [NODE_FLOOR, mode, socket, daemon.socket, String(workers)]);
        children.push(floor.child);
        await waitForSocket(socket, floor.child, floor.log);
        targets.push({ name, socket, pid: floor.child.pid! });
        floors.push(name);
        if (mode === 'http') floorOf.set(workers === 1 ? ONE : GATEWAY, name);
      }
    }

    for (const path of ['/_ping', '/containers/json']) {
      for (const keepAlive of [true, false]) {
        const samples = new Map<string, number[]>(targets.map((t) => [t.name, []]));
        const cpu = new Map<string, number[]>(targets.map((t) => [t.name, []]));
        const n = keepAlive ? RATE_REQUESTS : RATE_REQUESTS / 2;
        for (let i = 0; i <= ROUNDS; i++) {
          for (const t of targets) {
            const before = t.pid === undefined ? 0 : groupCpu(t.pid);
            let ms: number;
            if ('exe' in loader) {
              const r = spawnSync(loader.exe, [t.socket, path, String(n), String(CONCURRENCY), keepAlive ? '1' : '0'], {
                encoding: 'utf8',
              });
              if (r.status !== 0) throw new Error(`http-load against ${t.name}: ${r.stderr}`);
              ms = Number(r.stdout) * 1000;
            } else {
              ({ ms } = await load.send<{ ms: number }>({ op: 'rate', socket: t.socket, path, n, keepAlive, concurrency: CONCURRENCY }));
            }
            if (i === 0) continue; // round 0 warms up
            samples.get(t.name)!.push((n * 1000) / ms);
            if (t.pid !== undefined) cpu.get(t.name)!.push(((groupCpu(t.pid) - before) * 1e6) / n);
          }
        }
        const label = `GET ${path} ${keepAlive ? 'keep-alive' : 'connection per request'}`;
        const d = { name: direct.name, samples: samples.get(direct.name)! };
        const h = { name: targets[1]!.name, samples: samples.get(targets[1]!.name)! };
        const hk = { name: targets[2]!.name, samples: samples.get(targets[2]!.name)! };
        report(`${label}, ${h.name}`, h.samples, d, { unit: 'req/s' });
        report(`${label}, ${hk.name}`, hk.samples, d, { unit: 'req/s' });
        for (const name of floors) report(`${label}, ${name}`, samples.get(name)!, hk, { unit: 'req/s' });
        for (const name of gateways) {
          const g = samples.get(name)!;
          report(`${label}, ${name}`, g, d, { unit: 'req/s' });
          report(`${label}, ${name}`, g, h, { unit: 'req/s' });
          report(`${label}, ${name}`, g, hk, { unit: 'req/s' });
          const floor = floorOf.get(name);
          if (floor) report(`${label}, ${name}`, g, { name: floor, samples: samples.get(floor)! }, { unit: 'req/s' });
        }
        // CPU per request of each proxy (all its processes and threads): what the rate
        // becomes once the machine's cores are the limit.
        const hkCpu = { name: hk.name, samples: cpu.get(hk.name)! };
        report(`CPU per request, ${label}, ${h.name}`, cpu.get(h.name)!, hkCpu, { unit: 'µs' });
        for (const name of floors) report(`CPU per request, ${label}, ${name}`, cpu.get(name)!, hkCpu, { unit: 'µs' });
        for (const name of gateways) {
          report(`CPU per request, ${label}, ${name}`, cpu.get(name)!, hkCpu, { unit: 'µs' });
          const floor = floorOf.get(name);
          if (floor)
            report(`CPU per request, ${label}, ${name}`, cpu.get(name)!, { name: floor, samples: cpu.get(floor)! }, { unit: 'µs' });
        }
      }
    }

    // Added latency: per round, each proxy's p50/p99 minus direct's in the same round.
    const added = new Map<string, { p50: number[]; p99: number[] }>(targets.slice(1).map((t) => [t.name, { p50: [], p99: [] }]));
    for (let i = 0; i <= ROUNDS; i++) {
      const round = new Map<string, number[]>();
      for (const t of targets) {
        const { samples } = await load.send<{ samples: number[] }>({
          op: 'latency',
          socket: t.socket,
          path: '/_ping',
          n: LATENCY_REQUESTS,
        });
        round.set(t.name, samples);
      }
      if (i === 0) continue;
      const base = round.get(direct.name)!;
      for (const [name, a] of added) {
        a.p50.push(percentile(round.get(name)!, 0.5) - percentile(base, 0.5));
        a.p99.push(percentile(round.get(name)!, 0.99) - percentile(base, 0.99));
      }
    }
    const ha = added.get(targets[1]!.name)!;
    report(`added latency p50 GET /_ping keep-alive, ${targets[1]!.name}`, ha.p50);
    report(`added latency p99 GET /_ping keep-alive, ${targets[1]!.name}`, ha.p99);
    const hka = added.get(targets[2]!.name)!;
    report(`added latency p50 GET /_ping keep-alive, ${targets[2]!.name}`, hka.p50);
    report(`added latency p99 GET /_ping keep-alive, ${targets[2]!.name}`, hka.p99);
    for (const name of floors)
      report(`added latency p50 GET /_ping keep-alive, ${name}`, added.get(name)!.p50, {
        name: 'haproxy with upstream keep-alive',
        samples: hka.p50,
      });
    for (const name of gateways) {
      const ga = added.get(name)!;
      for (const [anchor, a] of [
        ['haproxy', ha],
        ['haproxy with upstream keep-alive', hka],
      ] as const) {
        report(`added latency p50 GET /_ping keep-alive, ${name}`, ga.p50, { name: anchor, samples: a.p50 });
        report(`added latency p99 GET /_ping keep-alive, ${name}`, ga.p99, { name: anchor, samples: a.p99 });
      }
    }

    // Memory per idle keep-alive connection: RSS growth of a fresh, warmed-up process while
    // N connections sit idle (fresh each round: a process that held and released N
    // connections before keeps that memory and would show no growth).
    const holders: Array<{ name: string; start: () => Promise<{ socket: string; pid: number; child: ChildProcess }> }> = [
      { name: 'plain verified server (createServer + http)', start: startVerified },
    ];
    if (gateway) holders.push({ name: GATEWAY, start: () => startGateway() });
    if (one) holders.push({ name: ONE, start: () => startGateway(1) });
    const perConn = new Map<string, number[]>(holders.map((h) => [h.name, []]));
    for (let i = 0; i < ROUNDS; i++) {
      for (const h of holders) {
        const p = await h.start();
        await load.send({ op: 'rate', socket: p.socket, path: '/_ping', n: 200, keepAlive: true, concurrency: 4 });
        // A gateway of several processes: all of them (the kernel spreads the connections).
        const before = groupRss(p.pid);
        await load.send({ op: 'hold', socket: p.socket, path: '/_ping', n: IDLE_CONNECTIONS });
        const after = groupRss(p.pid);
        const { closedEarly } = await load.send<{ closedEarly: number }>({ op: 'release' });
        if (closedEarly) console.log(`note: ${h.name} closed ${closedEarly} of ${IDLE_CONNECTIONS} idle connections while held`);
        perConn.get(h.name)!.push((after - before) / 1024 / IDLE_CONNECTIONS);
        await kill(p.child);
      }
    }
    const plainMem = { name: holders[0]!.name, samples: perConn.get(holders[0]!.name)! };
    report(`RSS per idle keep-alive connection (N=${IDLE_CONNECTIONS}), ${plainMem.name}`, plainMem.samples, undefined, { unit: 'KiB' });
    for (const name of gateways) {
      report(`RSS per idle keep-alive connection (N=${IDLE_CONNECTIONS}), ${name}`, perConn.get(name)!, plainMem, { unit: 'KiB' });
    }
    console.log(
      `targets: ${GATEWAY} >= 1.0x haproxy with upstream keep-alive (keep-alive and connection per request); added p50 <= haproxy's; memory per idle connection no more than before`,
    );
  } finally {
    await load.close().catch(() => {});
    for (const c of children.reverse()) await kill(c);
    await daemon.stop();
  }
}

if (isMain(import.meta.url)) await run();
