/**
 * Availability: what a peer can hold open. Slow heads, trickled bodies and idle
 * keep-alive connections are cut at the policy's bounds; a peer no rule admits gets its
 * 403 and a closed connection; an upgrade that never completes, or a spliced stream one
 * side ends, leaves no file descriptor behind; a uid's connections are capped; SIGTERM
 * ends the process whatever streams are open. Clients are real sockets (other users
 * through setpriv), gateways run in this process (their descriptors counted in
 * /proc/self/fd) or as the real CLI (under prlimit).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { DEFAULT_LIMITS, parseGatewayPolicy } from '../../src/index.js';
import { needCommand, needRoot, run, tempDir, type RunAs } from '../helpers/index.js';
import { gatewayFixture, parseResponses, rawRequest, req, upstream } from './helpers.js';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const ME = process.getuid!();
const ATTACKER = { uid: 4242, gid: 4242 };
const READER = { uid: 4243, gid: 4243 };
/** How long a test waits for something the gateway must do: far above every bound it sets. */
const DEADLINE = 15_000;

/** Resolves with whether `socket` closed within `ms`. */
function closesWithin(socket: net.Socket, ms: number): Promise<boolean> {
  if (socket.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** A connected client socket in this process that collects what it receives. */
async function client(path: string, options: { allowHalfOpen?: boolean } = {}) {
  const s = net.connect({ path, allowHalfOpen: options.allowHalfOpen ?? false });
  let received = '';
  s.on('data', (d: Buffer) => (received += d.toString('latin1')));
  s.on('error', () => {});
  await once(s, 'connect');
  return { s, received: () => received };
}

/** Open descriptors of a process. */
function fds(pid: number | 'self' = 'self'): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Waits until the process's descriptors are back to at most `limit` (a leak never gets there); resolves with the last count. */
async function fdsSettle(limit: number, pid: number | 'self' = 'self'): Promise<number> {
  const until = Date.now() + DEADLINE;
  let n = fds(pid);
  while (n > limit && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 50));
    n = fds(pid);
  }
  return n;
}

const BOUNDS = { headersTimeoutMs: 300, requestTimeoutMs: 600, idleTimeoutMs: 300 };

test('a head sent slowly is cut at limits.headersTimeoutMs with a 408', async (t) => {
  const gw = await gatewayFixture(t, { version: 1, limits: BOUNDS, rules: [{ name: 'me', who: { uid: ME }, allow: ['GET /**'] }] });
  const c = await client(gw.path);
  c.s.write('GET /_ping HTTP/1.1\r\nHost: d\r\n');
  const drip = setInterval(() => c.s.writable && c.s.write('X-Drip: 1\r\n'), 50);
  t.after(() => clearInterval(drip));
  assert.equal(await closesWithin(c.s, DEADLINE), true, 'the connection was cut');
  assert.match(c.received(), /^HTTP\/1\.1 408 /);
  assert.equal(gw.up.received.length, 0);
});

test('a connection that sends nothing is cut at limits.headersTimeoutMs', async (t) => {
  const gw = await gatewayFixture(t, { version: 1, limits: BOUNDS, rules: [{ name: 'me', who: { uid: ME }, allow: ['GET /**'] }] });
  const c = await client(gw.path);
  assert.equal(await closesWithin(c.s, DEADLINE), true);
});

test('a body trickled by an admitted peer is cut at limits.requestTimeoutMs, and so is its upstream request', async (t) => {
  const gw = await gatewayFixture(t, { version: 1, limits: BOUNDS, rules: [{ name: 'me', who: { uid: ME }, allow: ['POST /upload'] }] });
  for (const target of ['/upload', '/denied']) {
    const c = await client(gw.path);
    c.s.write(`POST ${target} HTTP/1.1\r\nHost: d\r\nContent-Length: 100000\r\n\r\n`);
    const drip = setInterval(() => c.s.writable && c.s.write('x'), 50);
    t.after(() => clearInterval(drip));
    assert.equal(await closesWithin(c.s, DEADLINE), true, `${target}: the connection was cut`);
    clearInterval(drip);
  }
  assert.equal(gw.up.received.length, 0, 'the cut upload never completed upstream');
});

test('an idle keep-alive connection is closed at limits.idleTimeoutMs', async (t) => {
  const gw = await gatewayFixture(t, { version: 1, limits: BOUNDS, rules: [{ name: 'me', who: { uid: ME }, allow: ['GET /**'] }] });
  const c = await client(gw.path);
  c.s.write(req('GET /_ping'));
  assert.equal(await closesWithin(c.s, DEADLINE), true, 'closed after its answer, once idle');
  assert.match(c.received(), /^HTTP\/1\.1 200 /);
});

/** A node process (as `as`) that opens `n` connections and trickles a create body on each, one byte every 100 ms (once answered, or after a second). */
const TRICKLER = `
const net = require('net');
const [path, n] = [process.argv[1], Number(process.argv[2])];
const stats = { connected: 0, failed: 0, answered: 0, closed: 0, statuses: {} };
let settled = 0;
const sockets = [];
const settle = () => { if (++settled === n) process.stdout.write('ready\\n'); };
for (let i = 0; i < n; i++) {
  const s = net.connect(path);
  let seen = '';
  s.on('connect', () => {
    stats.connected++;
    s.write('POST /containers/create HTTP/1.1\\r\\nHost: d\\r\\nContent-Type: application/json\\r\\nContent-Length: 1000000\\r\\n\\r\\n{');
    settle();
  });
  s.on('data', (d) => {
    seen += d;
    const m = /^HTTP\\/1\\.1 (\\d+)/.exec(seen);
    if (m && !s.answered) { s.answered = true; stats.answered++; stats.statuses[m[1]] = (stats.statuses[m[1]] || 0) + 1; }
  });
  s.on('error', () => {});
  s.once('connect', () => ((s.wasConnected = true), (s.connectedAt = Date.now())));
  s.on('close', () => {
    stats.closed++;
    if (!s.wasConnected) { stats.failed++; settle(); }
  });
  sockets.push(s);
}
// The trickle goes on after the answer (a gateway that drained it would keep the connection);
// it starts once the answer was read, or after a second without one: a write racing the
// gateway's close would fail (EPIPE) and drop an answer not yet read.
const trickles = (s) => s.answered || Date.now() - s.connectedAt > 1000;
setInterval(() => { for (const s of sockets) if (s.writable && !s.connecting && trickles(s)) s.write(' '); }, 100);
process.stdin.on('data', () => process.stdout.write(JSON.stringify(stats) + '\\n'));
`;

function trickler(path: string, n: number, as?: RunAs) {
  const child = run(process.execPath, ['-e', TRICKLER, path, String(n)], as ? { as } : {});
  const lines: string[] = [];
  let buf = '';
  const waiters: Array<() => void> = [];
  child.stdout!.on('data', (d: Buffer) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) !== -1) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
      waiters.splice(0).forEach((w) => w());
    }
  });
  const next = async (): Promise<string> => {
    while (lines.length === 0) await new Promise<void>((r) => waiters.push(r));
    return lines.shift()!;
  };
  return {
    child,
    ready: () => next(),
    stats: async () => {
      child.stdin!.write('?\n');
      return JSON.parse(await next()) as {
        connected: number;
        failed: number;
        answered: number;
        closed: number;
        statuses: Record<string, number>;
      };
    },
  };
}

test('a peer no rule admits gets its 403 and a closed connection, not a keep-alive that drains a trickled body', async (t) => {
  // The only rule is for another uid: this process's uid is admitted by none.
  const gw = await gatewayFixture(t, {
    version: 1,
    api: 'docker',
    rules: [{ name: 'other', who: { uid: ME === READER.uid ? ATTACKER.uid : READER.uid }, allow: ['POST /**'] }],
  });
  const attack = trickler(gw.path, 20);
  t.after(() => attack.child.kill('SIGKILL'));
  assert.equal(await attack.ready(), 'ready');
  const until = Date.now() + DEADLINE;
  let stats = await attack.stats();
  while (stats.closed < stats.connected && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    stats = await attack.stats();
  }
  assert.equal(stats.connected, 20, JSON.stringify(stats));
  assert.deepEqual(stats.statuses, { 403: 20 }, JSON.stringify(stats));
  assert.equal(stats.closed, 20, `every connection was closed: ${JSON.stringify(stats)}`);
  assert.ok(gw.logs.every((e) => e.rule === null && !e.allowed));
});

const ATTACH = 'POST /containers/abc/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n';

test('an upgrade that announces a body, sends less and closes leaves no descriptor behind (an allowed attach, a reader’s /_ping)', async (t) => {
  const gw = await gatewayFixture(t, {
    version: 1,
    api: 'docker',
    rules: [{ name: 'me', who: { uid: ME }, allow: ['GET /**', 'POST /containers/*/attach'] }],
  });
  // Warm up: the first requests open what the gateway keeps (the upstream pool, lazy modules).
  parseResponses(await rawRequest(gw.path, req('GET /_ping', { close: true })));
  const before = fds();
  for (let i = 0; i < 100; i++) {
    const c = await client(gw.path);
    const head = i % 2 ? ATTACH : 'GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n';
    c.s.write(`${head}Content-Length: 100\r\n\r\nabc`);
    await new Promise((r) => setImmediate(r));
    c.s.destroy();
  }
  const after = await fdsSettle(before + 5);
  assert.ok(after <= before + 5, `descriptors: ${before} before, ${after} after 100 cut upgrades`);
});

test('a spliced stream is torn down on both sides when either side ends or goes away', async (t) => {
  const gw = await gatewayFixture(t, {
    version: 1,
    api: 'docker',
    rules: [{ name: 'me', who: { uid: ME }, allow: ['POST /containers/*/attach'] }],
  });
  parseResponses(await rawRequest(gw.path, req('GET /_ping', { close: true })));
  const before = fds();
  const streams = [];
  for (let i = 0; i < 30; i++) {
    // allowHalfOpen: this client never closes its side by itself.
    const c = await client(gw.path, { allowHalfOpen: true });
    c.s.write(`${ATTACH}\r\n`);
    while (!c.received().includes('\r\n\r\n')) await once(c.s, 'data');
    assert.match(c.received(), /^HTTP\/1\.1 101 /);
    c.s.write('hello');
    streams.push(c);
  }
  // A third of the clients go away; a third end their input (the upstream answers, then ends its side).
  const gone = streams.slice(0, 10);
  const ended = streams.slice(10, 20);
  const cutUpstream = streams.slice(20);
  for (const c of gone) c.s.destroy();
  for (const c of ended) c.s.end();
  const closed = await Promise.all(ended.map((c) => closesWithin(c.s, DEADLINE)));
  assert.deepEqual(
    closed,
    ended.map(() => true),
    'the gateway closed each stream whose upstream ended',
  );
  for (const c of ended) assert.match(c.received(), /HELLO\[stdin closed\]$/);
  // The upstream ends of the first two thirds are closed; the last third's upstream now goes away.
  const until = Date.now() + DEADLINE;
  while (gw.up.streams.size > cutUpstream.length && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  assert.equal(gw.up.streams.size, cutUpstream.length, 'the upstream side of each stream a client left was closed');
  for (const s of gw.up.streams) s.destroy();
  // These clients keep their own side open (allowHalfOpen) and never end it: they see
  // the end, and hold their own descriptor; the gateway's two for each must go regardless.
  await Promise.all(cutUpstream.map((c) => (c.s.readableEnded ? undefined : once(c.s, 'end'))));
  const held = cutUpstream.length;
  const after = await fdsSettle(before + held + 3);
  assert.ok(after <= before + held + 3, `descriptors: ${before} before, ${after} with ${held} clients still holding their side`);
  assert.equal(gw.up.streams.size, 0);
  for (const c of cutUpstream) c.s.destroy();
});

/** Resolves with the first match of `pattern` in the child's stderr. */
function stderrLine(child: ReturnType<typeof run>, pattern: RegExp): Promise<string> {
  let seen = '';
  return new Promise((resolve, reject) => {
    const check = (d?: Buffer): void => {
      if (d) seen += d;
      const m = pattern.exec(seen);
      if (m) {
        child.stderr!.off('data', check);
        resolve(m[0]);
      }
    };
    child.stderr!.on('data', check);
    child.once('close', () => reject(new Error(`the gateway exited before printing ${pattern}: ${seen}`)));
  });
}

/** `secpolicy gateway` as a real process, optionally under `prlimit --nofile`. */
async function cliGateway(t: test.TestContext, policy: string, options: { nofile?: number; grace?: number } = {}) {
  const tmp = tempDir('secpolicy-gateway-avail-');
  t.after(() => tmp.cleanup());
  const up = await upstream(t, tmp.path('up.sock'));
  writeFileSync(tmp.path('gateway.yaml'), policy);
  const argv = [
    CLI,
    'gateway',
    '--listen',
    tmp.path('gw.sock'),
    '--to',
    tmp.path('up.sock'),
    '--policy',
    tmp.path('gateway.yaml'),
    '--mode',
    '0666',
    ...(options.grace !== undefined ? ['--grace', String(options.grace)] : []),
  ];
  const gw =
    options.nofile === undefined
      ? run(process.execPath, argv)
      : run('prlimit', [`--nofile=${options.nofile}:${options.nofile}`, '--', process.execPath, ...argv]);
  t.after(() => gw.kill('SIGKILL'));
  await stderrLine(gw, /listening on/);
  return { tmp, up, gw, path: tmp.path('gw.sock'), stderrLine: (p: RegExp) => stderrLine(gw, p) };
}

test('secpolicy gateway: SIGTERM with an attach stream open exits within the grace period', async (t) => {
  const g = await cliGateway(t, `rules:\n  - { name: me, who: { uid: ${ME} }, allow: ["POST /containers/*/attach"] }\n`, { grace: 200 });
  const c = await client(g.path, { allowHalfOpen: true });
  c.s.write(`${ATTACH}\r\n`);
  while (!c.received().includes('\r\n\r\n')) await once(c.s, 'data');
  assert.match(c.received(), /^HTTP\/1\.1 101 /);
  c.s.write('still here');
  while (!c.received().includes('STILL HERE')) await once(c.s, 'data');
  g.gw.kill('SIGTERM');
  const exited = await Promise.race([g.gw.output(), new Promise<undefined>((r) => setTimeout(() => r(undefined), DEADLINE).unref())]);
  assert.notEqual(exited, undefined, 'the gateway process exited');
  assert.equal(exited!.code, 0, exited!.stderr);
  assert.match(exited!.stderr, /stopped/);
  if (!c.s.readableEnded) await once(c.s, 'end');
  assert.equal(c.s.readableEnded, true, 'the client saw its stream end');
});

test(
  'under a 400-descriptor limit, 500 trickling connections of a peer no rule admits do not keep an allowed user out',
  { skip: needRoot() || needCommand('prlimit', 'python3') },
  async (t) => {
    const g = await cliGateway(t, `api: docker\nrules:\n  - { name: reader, who: { uid: ${READER.uid} }, allow: ["GET /**"] }\n`, {
      nofile: 400,
    });
    const attack = trickler(g.path, 500, ATTACKER);
    t.after(() => attack.child.kill('SIGKILL'));
    assert.equal(await attack.ready(), 'ready');
    // Every attacking connection has been opened (or refused for want of descriptors), and the trickle goes on.
    const [r] = parseResponses(await rawRequest(g.path, req('GET /_ping', { close: true }), { as: READER }));
    assert.equal(r?.status, 200);
    const stats = await attack.stats();
    assert.equal(stats.connected + stats.failed, 500, JSON.stringify(stats));
    // Answered connections were refused; any other was shed unanswered while descriptors ran out.
    assert.deepEqual(Object.keys(stats.statuses), stats.answered ? ['403'] : [], JSON.stringify(stats));
    assert.ok(g.gw.exitCode === null, 'the gateway still runs');
  },
);

test(
  'limits.connectionsPerUid: a uid holding its quota of silent connections under a 400-descriptor limit does not keep another user out',
  { skip: needRoot() || needCommand('prlimit', 'python3') },
  async (t) => {
    const g = await cliGateway(
      t,
      [
        'api: docker',
        'limits: { connectionsPerUid: 50 }',
        'rules:',
        `  - { name: attacker, who: { uid: ${ATTACKER.uid} }, allow: ["GET /**"] }`,
        `  - { name: reader, who: { uid: ${READER.uid} }, allow: ["GET /**"] }`,
      ].join('\n'),
      { nofile: 400 },
    );
    const HOLD = `
const net = require('net');
let open = 0, settled = 0, refused = 0;
for (let i = 0; i < 500; i++) {
  const s = net.connect(process.argv[1]);
  let done = false;
  const settle = () => { if (!done) { done = true; if (++settled === 500) process.stdout.write('ready\\n'); } };
  s.on('connect', () => { open++; setTimeout(settle, 200); });
  s.on('data', (d) => { if (/^HTTP\\/1\\.1 503/.test(d)) refused++; });
  s.on('error', () => {});
  s.on('close', () => { open--; settle(); });
}
process.stdin.on('data', () => process.stdout.write(JSON.stringify({ open, refused }) + '\\n'));
`;
    const hold = run(process.execPath, ['-e', HOLD, g.path], { as: ATTACKER });
    t.after(() => hold.kill('SIGKILL'));
    await once(hold.stdout!, 'data');
    const [r] = parseResponses(await rawRequest(g.path, req('GET /_ping', { close: true }), { as: READER }));
    assert.equal(r?.status, 200);
    hold.stdin!.write('?\n');
    const [line] = (await once(hold.stdout!, 'data')) as [Buffer];
    const stats = JSON.parse(line.toString()) as { open: number; refused: number };
    assert.ok(stats.open <= 50, `the attacker holds at most its quota: ${JSON.stringify(stats)}`);
    assert.ok(stats.refused > 0, `the connections past the quota were told why: ${JSON.stringify(stats)}`);
  },
);

test('limits: unknown keys and values out of range are errors naming the field; absent bounds get their defaults', () => {
  const rules = [{ name: 'me', who: {}, allow: ['GET /**'] }];
  const bad: Array<[object, RegExp]> = [
    [{ connectionPerUid: 5 }, /limits\.connectionPerUid: unknown key "connectionPerUid"/],
    [{ connectionsPerUid: 0 }, /limits\.connectionsPerUid: must be a whole number of connections from 1/],
    [{ connectionsPerUid: 2.5 }, /limits\.connectionsPerUid/],
    [{ headersTimeoutMs: '10s' }, /limits\.headersTimeoutMs: must be a whole number of ms/],
    [{ idleTimeoutMs: 0 }, /limits\.idleTimeoutMs/],
    [{ requestTimeoutMs: 1000 }, /limits\.requestTimeoutMs: the head is part of the request/],
    [{ headersTimeoutMs: 400_000 }, /limits\.headersTimeoutMs: the head is part of the request/],
    [[], /limits: must be a mapping/],
  ];
  for (const [limits, message] of bad) {
    assert.throws(
      () => parseGatewayPolicy({ version: 1, limits, rules }),
      (e: Error & { code?: string }) => e.code === 'ERR_SECPOLICY_POLICY_FILE' && message.test(e.message),
      JSON.stringify(limits),
    );
  }
  assert.deepEqual(parseGatewayPolicy({ version: 1, rules }).limits, DEFAULT_LIMITS);
  assert.deepEqual(parseGatewayPolicy({ version: 1, limits: { connectionsPerUid: 8, idleTimeoutMs: 1000 }, rules }).limits, {
    ...DEFAULT_LIMITS,
    connectionsPerUid: 8,
    idleTimeoutMs: 1000,
  });
});
