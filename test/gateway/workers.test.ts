/**
 * `secpolicy gateway --workers N`: one socket served by N real processes, in front of a
 * plain HTTP upstream. Which process accepts a connection is the kernel's choice; the
 * tests make it theirs by stopping the other process (SIGSTOP): whatever connects then is
 * accepted, verified and decided by the one left running, and its decisions reach the one
 * log file, the one metrics socket and the one reload.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { availableParallelism } from 'node:os';
import { closeServer, isRoot, needCommand, run, tempDir } from '../helpers/index.js';
import { secpolicy } from '../cli/cli.js';
import { outputMatches, RawConnection, readLog, sample, scrape, startListening } from './operate-helpers.js';
import type { GatewayProcess } from '../helpers/dockerd.js';

const me = process.getuid!();
const NOBODY = 65534;

async function plainUpstream(path: string): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const body = JSON.stringify({ url: req.url });
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }).end(body);
  });
  server.listen(path);
  await new Promise((r) => server.once('listening', r));
  return server;
}

/** The gateway's other processes: its children running the worker script. */
function workersOf(pid: number): number[] {
  const r = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' });
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map(Number)
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('gateway-worker.js');
      } catch {
        return false;
      }
    });
}

function alive(pid: number): boolean {
  return existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
}

async function until(what: string, test: () => boolean): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (test()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`never: ${what}`);
}

/** Runs `body` with every process of the group but `pid` stopped: only `pid` can accept. */
async function onlyServing<T>(group: number[], pid: number, body: () => Promise<T>): Promise<T> {
  const others = group.filter((p) => p !== pid);
  for (const p of others) process.kill(p, 'SIGSTOP');
  try {
    return await body();
  } finally {
    for (const p of others) process.kill(p, 'SIGCONT');
  }
}

/** GET `path` on a new connection made by this process. */
async function get(socket: string, path: string): Promise<number> {
  const c = await RawConnection.open(socket);
  try {
    return (await c.request('GET', path)).status;
  } finally {
    c.close();
  }
}

/** GET `path` from a curl process run as uid/gid `uid`: the status code. */
async function getAs(socket: string, path: string, uid: number): Promise<number> {
  const out = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--unix-socket', socket, `http://x${path}`], {
    as: { uid, gid: uid },
  }).output();
  return Number(out.stdout);
}

async function group(t: TestContext, policyText: string, extra: string[] = []) {
  const tmp = tempDir('secpolicy-workers-');
  // Other users reach the socket through the directory (the socket's mode decides).
  if (isRoot) spawnSync('chmod', ['0755', tmp.dir]);
  const up = await plainUpstream(tmp.path('up.sock'));
  const policy = tmp.path('policy.yaml');
  writeFileSync(policy, policyText, { mode: 0o600 });
  const log = tmp.path('decisions.log');
  const metrics = tmp.path('metrics.sock');
  const gw: GatewayProcess = await startListening({
    socket: tmp.path('gw.sock'),
    target: tmp.path('up.sock'),
    policy,
    extra: ['--workers', '2', '--mode', '0666', '--log', log, '--metrics', metrics, ...extra],
  });
  t.after(async () => {
    await gw.stop();
    await closeServer(up);
    tmp.cleanup();
  });
  await outputMatches(gw, (o) => o.includes('2 processes'));
  const workers = workersOf(gw.child.pid!);
  assert.equal(workers.length, 1, `one other process: ${JSON.stringify(workers)}\n${gw.output()}`);
  return { tmp, gw, policy, log, metrics, pids: [gw.child.pid!, workers[0]!] };
}

const allowMe = (paths: string) => `version: 1\nrules:\n  - name: me\n    who: { uid: ${me} }\n    allow: [${paths}]\n`;

test('--workers 2: each process accepts and verifies its own connections; one log of whole lines and one metrics socket count them all', async (t) => {
  const { gw, log, metrics, pids } = await group(t, allowMe('"GET /**"'));
  for (const pid of pids) {
    await onlyServing(pids, pid, async () => {
      assert.equal(await get(gw.socket, `/served-by-${pid}`), 200);
      // Another user is decided by the same process: no rule admits it.
      if (isRoot) assert.equal(await getAs(gw.socket, `/nobody-at-${pid}`, NOBODY), 403);
    });
  }
  // Load on both at once: 8 connections, 10 requests each.
  await Promise.all(
    Array.from({ length: 8 }, async (_, i) => {
      const c = await RawConnection.open(gw.socket);
      for (let j = 0; j < 10; j++) assert.equal((await c.request('GET', `/load/${i}/${j}`)).status, 200);
      c.close();
    }),
  );
  const denied = isRoot ? 2 : 0;
  await until('every decision logged', () => readLog(log).length === 82 + denied);
  const entries = readLog(log); // each line parses as one JSON object
  for (const pid of pids) assert.ok(entries.some((e) => e.path === `/served-by-${pid}` && e.allowed));
  if (isRoot) for (const pid of pids) assert.ok(entries.some((e) => e.path === `/nobody-at-${pid}` && !e.allowed && e.peer.uid === NOBODY));
  const { samples } = await scrape(metrics);
  assert.equal(sample(samples, 'secpolicy_gateway_requests_total', { rule: 'me', verdict: 'allowed' }), 82);
  assert.equal(sample(samples, 'secpolicy_gateway_requests_total', { rule: '', verdict: 'denied' }), denied);
  assert.equal(sample(samples, 'secpolicy_gateway_request_duration_seconds_count'), 82 + denied);

  // SIGTERM: every process ends, and the socket file goes.
  assert.equal(await gw.stop(), 0);
  await until('the other process exits', () => !alive(pids[1]!));
  assert.equal(existsSync(gw.socket), false);
});

test('--workers 2: a SIGHUP is applied by every process or by none, and counted once', async (t) => {
  const { gw, policy, metrics, pids } = await group(t, allowMe('"GET /a", "GET /b"'));
  writeFileSync(policy, allowMe('"GET /b"'));
  gw.child.kill('SIGHUP');
  await outputMatches(gw, (o) => o.includes('SIGHUP: reloaded'));
  for (const pid of pids)
    await onlyServing(pids, pid, async () => {
      assert.equal(await get(gw.socket, '/a'), 403, `process ${pid} runs the new policy`);
      assert.equal(await get(gw.socket, '/b'), 200);
    });

  // A file that does not parse, then one that adds a limit the processes count each on their own: nothing changes anywhere.
  writeFileSync(policy, 'version: 1\nrules: [\n');
  gw.child.kill('SIGHUP');
  await outputMatches(gw, (o) => o.split('reload failed').length === 2);
  writeFileSync(policy, `${allowMe('"GET /a"')}limits: { connectionsPerUid: 5 }\n`);
  gw.child.kill('SIGHUP');
  await outputMatches(gw, (o) => o.split('reload failed').length === 3);
  assert.match(
    gw.output(),
    /connectionsPerUid can be added by a reload only to a gateway started with it .*: this gateway runs 2 processes/,
  );
  for (const pid of pids)
    await onlyServing(pids, pid, async () => {
      assert.equal(await get(gw.socket, '/a'), 403, `process ${pid} kept the running policy`);
      assert.equal(await get(gw.socket, '/b'), 200);
    });
  const { samples } = await scrape(metrics);
  assert.equal(sample(samples, 'secpolicy_gateway_reloads_total', { result: 'success' }), 1);
  assert.equal(sample(samples, 'secpolicy_gateway_reloads_total', { result: 'failure' }), 2);
});

test('--workers 2: a process that dies is replaced, and a reload while it starts reaches it; when the first process is gone, the others stop', async (t) => {
  const { gw, policy, pids } = await group(t, allowMe('"GET /a", "GET /b"'));
  process.kill(pids[1]!, 'SIGKILL');
  await outputMatches(gw, (o) => /process \d+ ended \(SIGKILL\); starting another/.test(o));
  let next: number | undefined;
  await until('another process', () => (next = workersOf(pids[0]!).find((p) => p !== pids[1])) !== undefined);
  // A reload as it starts: it waits for the process, which then takes the new policy too.
  writeFileSync(policy, allowMe('"GET /b"'));
  gw.child.kill('SIGHUP');
  await outputMatches(gw, (o) => o.includes('SIGHUP: reloaded'));
  await onlyServing([pids[0]!, next!], next!, async () => {
    assert.equal(await get(gw.socket, '/b'), 200);
    assert.equal(await get(gw.socket, '/a'), 403, 'the new process runs the reloaded policy');
  });

  gw.child.kill('SIGKILL');
  await until('the orphaned process stops', () => !alive(next!));
});

test("--workers 2 with --log -: the other process's decisions come out whole on the first one's standard output", async (t) => {
  const { gw, pids } = await group(t, allowMe('"GET /**"'), ['--log', '-']);
  await onlyServing(pids, pids[1]!, async () => {
    for (let i = 0; i < 5; i++) assert.equal(await get(gw.socket, `/through-${i}`), 200);
  });
  await until('the last line on stdout', () => gw.output().includes('"path":"/through-4"'));
  const lines = gw
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'));
  for (const l of lines) JSON.parse(l);
  assert.equal(lines.filter((l) => l.includes('"path":"/through-')).length, 5);
});

test('--workers: a count of processes from 1 to 64, or auto (a process per CPU)', async () => {
  const tmp = tempDir('secpolicy-workers-');
  try {
    const policy = tmp.path('p.yaml');
    writeFileSync(policy, `${allowMe('"GET /**"')}limits: { connectionsPerUid: 5 }\n`, { mode: 0o600 });
    const base = ['gateway', '--listen', tmp.path('g.sock'), '--to', tmp.path('up.sock'), '--policy', policy];
    for (const bad of ['0', 'many', '65', '-1']) {
      const r = await secpolicy([...base, '--workers', bad]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /auto or a number of processes from 1 to 64/);
    }
    assert.equal(existsSync(tmp.path('g.sock')), false);

    const up = await plainUpstream(tmp.path('up.sock'));
    const gw = await startListening({ socket: tmp.path('g.sock'), target: tmp.path('up.sock'), policy });
    try {
      const n = Math.min(64, availableParallelism());
      if (n > 1) await outputMatches(gw, (o) => o.includes(`${n} processes`));
      assert.equal(workersOf(gw.child.pid!).length, n - 1, gw.output());
      assert.equal(await get(gw.socket, '/x'), 200);
    } finally {
      await gw.stop();
      await closeServer(up);
    }
  } finally {
    tmp.cleanup();
  }
});

/** Connections waiting to be accepted on the listening socket `path` (ss's Recv-Q). */
function queued(path: string): number {
  const out = spawnSync('ss', ['-xlH'], { encoding: 'utf8' }).stdout;
  const line = out.split('\n').find((l) => l.trim().split(/\s+/)[4] === path);
  return line === undefined ? -1 : Number(line.trim().split(/\s+/)[2]);
}

/**
 * Connects (with `open`) so that process `pid` accepts: the others are stopped until it has
 * taken the connection from the queue, then go on (a process of a group that counts
 * connections per uid waits for the first process's answer before it serves one).
 */
async function acceptedBy<T>(group: number[], pid: number, socket: string, open: () => Promise<T>): Promise<T> {
  const others = group.filter((p) => p !== pid);
  for (const p of others) process.kill(p, 'SIGSTOP');
  try {
    const connected = await open();
    await until(`process ${pid} accepts`, () => queued(socket) === 0);
    return connected;
  } finally {
    for (const p of others) process.kill(p, 'SIGCONT');
  }
}

/** A connection on which nothing is sent: everything the gateway wrote before it closed. */
async function silent(socket: string): Promise<{ said: Promise<string> }> {
  const c = net.connect(socket);
  let text = '';
  c.on('data', (d: Buffer) => (text += d.toString('latin1')));
  c.on('error', () => {});
  const said = once(c, 'close').then(() => text);
  await once(c, 'connect');
  return { said };
}

test(
  "--workers 2 with limits.connectionsPerUid: the first process counts every process's connections, and those of a process that dies are given back",
  { skip: needCommand('ss') },
  async (t) => {
    const { gw, pids } = await group(t, `${allowMe('"GET /**"')}limits: { connectionsPerUid: 2 }\n`);
    const [first, other] = pids as [number, number];
    const held: RawConnection[] = [];
    t.after(() => held.forEach((c) => c.close()));
    /** Opens a connection that `pid` accepts, keeps it, and answers the status of a request on it. */
    const hold = async (group: number[], pid: number): Promise<number> => {
      const c = await acceptedBy(group, pid, gw.socket, () => RawConnection.open(gw.socket));
      held.push(c);
      return (await c.request('GET', '/held')).status;
    };
    const refused = async (group: number[], pid: number): Promise<string> =>
      (await acceptedBy(group, pid, gw.socket, () => silent(gw.socket))).said;
    // One connection through each process: neither has reached the limit on its own.
    assert.equal(await hold(pids, first), 200);
    assert.equal(await hold(pids, other), 200);
    for (const pid of pids)
      assert.match(await refused(pids, pid), /^HTTP\/1\.1 503 [^]*2 connections open[^]*connectionsPerUid/, `process ${pid}`);
    // The first process's connection closes: its place is free for the other process.
    held.shift()!.close();
    let again = 0;
    for (let i = 0; i < 100 && again !== 200; i++) {
      again = await hold(pids, other).catch(() => 0);
      if (again !== 200) {
        held.pop()?.close();
        await new Promise((r) => setTimeout(r, 25));
      }
    }
    assert.equal(again, 200, 'a place given back');
    // Both held connections are the other process's: it dies, and they are given back with it.
    assert.equal(held.length, 2);
    process.kill(other, 'SIGKILL');
    let next: number | undefined;
    await until('another process', () => (next = workersOf(first).find((p) => p !== other)) !== undefined);
    const now = [first, next!];
    assert.equal(await hold(now, first), 200);
    assert.equal(await hold(now, next!), 200);
    assert.match(await refused(now, first), /^HTTP\/1\.1 503 /);
  },
);
