import assert from 'node:assert/strict';
import { once } from 'node:events';
import { copyFileSync, readlinkSync, realpathSync } from 'node:fs';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { Policy, Result, connect, createServer, listen } from '../../src/index.js';
import { Peer } from '../../src/identity/peer.js';
import { ATTRIBUTES } from '../../src/identity/proc-attributes.js';
import { programFiles, programMatches } from '../../src/policy/program-file.js';
import { PASS, fail, unknown } from '../../src/policy/rule.js';
import { checkHolders, type HolderTest } from '../../src/policy/strict.js';

/** A holder test as the program rule makes it: the holder's executable is one of the files. */
function runs(paths: string[]): HolderTest {
  const files = programFiles(paths);
  return (h) => {
    const exe = h.attempt('programStat');
    if (!exe.ok) return unknown(exe.reason);
    return programMatches(exe.value, files) ? PASS : fail(undefined, `its executable is not the file at ${paths.join(', ')}`);
  };
}

// The scan made off the event loop (as apply() reads it), or on this thread (as applySync() does).
const checkHoldersAsync = async (peer: Peer, paths: string[]) =>
  checkHolders(peer, runs(paths), await ATTRIBUTES.holders.readAsync!(peer, undefined));
const checkHoldersHere = (peer: Peer, paths: string[]) => checkHolders(peer, runs(paths), ATTRIBUTES.holders.read(peer));
import { isRoot, needCommand, needRoot, run, sharedDist, tempDir } from '../helpers/index.js';
import { PY, acceptFrom, pythonPeer, reap, socketServer, waitForOutput } from './peers.js';

/**
 * Fork then exec: the process that connected forks; the child keeps the socket and talks
 * until the server hangs up; the parent execs /usr/bin/sleep (the socket is close-on-exec
 * in python, so the trusted program no longer holds it).
 */
const FORK_THEN_EXEC = `
import signal
signal.alarm(60)
if os.fork() == 0:
    print('child', os.getpid(), flush=True)
    while s.recv(1024): pass
    os._exit(0)
os.execv('/usr/bin/sleep', ['sleep', '60'])
`;

async function waitForExe(pid: number, exe: string): Promise<void> {
  // Polls for a state, bounded: the exec happens right after connect.
  for (let i = 0; i < 500; i++) {
    try {
      if (readlinkSync(`/proc/${pid}/exe`) === exe) return;
    } catch {
      // Not there yet, or gone; keep looking until the bound.
    }
    await sleep(10);
  }
  throw new Error(`process ${pid} never ran ${exe}`);
}

test('fork then exec: allowed without strict, denied in strict mode naming the holder', { skip: needRoot() }, async (t) => {
  const { path, server } = await socketServer(t);
  const child = pythonPeer(path, { body: FORK_THEN_EXEC });
  t.after(() => reap(child));
  const socket = await acceptFrom(server, child);
  t.after(() => socket.destroy());
  await waitForExe(child.pid!, '/usr/bin/sleep');

  // SO_PEERCRED names the parent, which now runs the trusted program.
  const loose = await new Policy().program('/usr/bin/sleep').apply(socket);
  assert.equal(loose.allowed, true, JSON.stringify(loose.failures));

  const strict = await new Policy({ strict: true }).program('/usr/bin/sleep').apply(socket);
  assert.equal(strict.result, Result.PROGRAM);
  const failure = strict.failures[0]!;
  assert.match(failure.message, /strict mode: the peer end of the socket is also held by process \d+ \(\/usr\/bin\/python3/);
  const actual = failure.actual as { holders: number[]; failing: Array<{ pid: number }> };
  assert.equal(actual.failing.length, 1);
  assert.notEqual(actual.failing[0]!.pid, child.pid);
  assert.ok(!actual.holders.includes(child.pid!), 'the exec closed the socket in the parent');
});

test('strict mode allows a peer whose every holder is the trusted program', { skip: needRoot() }, async (t) => {
  const { path, server } = await socketServer(t);
  const child = pythonPeer(path);
  t.after(() => reap(child));
  const socket = await acceptFrom(server, child);
  const d = await new Policy({ strict: true }).program(PY).apply(socket);
  assert.equal(d.allowed, true, JSON.stringify(d.failures));
  // A connecting process that is not the program fails on its own, before any holder scan.
  const wrong = await new Policy({ strict: true }).program('/usr/bin/sleep').apply(socket);
  assert.equal(wrong.result, Result.PROGRAM);
  assert.doesNotMatch(wrong.failures[0]!.message, /strict mode/, 'the connecting process itself fails first');
});

test('strict mode in-process: our own process holds the peer end; a closed peer end fails closed', async (t) => {
  const name = `\0secpolicy-strict-${process.pid}`;
  const server = net.createServer({ pauseOnConnect: true }).listen(name);
  await once(server, 'listening');
  t.after(() => server.close());
  const client = net.connect(name);
  const [socket] = (await once(server, 'connection')) as [net.Socket];
  t.after(() => socket.destroy());
  const policy = new Policy({ strict: true }).program(process.execPath);
  const mine = policy.applySync(socket);
  // Not root: other users' fd tables are unreadable, and a holder could hide there.
  if (isRoot) assert.equal(mine.allowed, true, JSON.stringify(mine.failures));
  else assert.ok(mine.allowed || /cannot read the open files of process/.test(mine.failures[0]!.message), JSON.stringify(mine.failures));
  client.destroy();
  await once(client, 'close');
  const d = policy.applySync(socket);
  assert.equal(d.result, Result.PROGRAM);
  assert.match(d.failures[0]!.message, /strict mode: the peer end of the socket is closed|no process visible/);
});

test('strict mode finds the holders of a peer in another network namespace', { skip: needRoot() || needCommand('unshare') }, async (t) => {
  const { path, server } = await socketServer(t);
  const child = pythonPeer(path, { prefix: ['unshare', '--net'] });
  t.after(() => reap(child));
  const socket = await acceptFrom(server, child);
  const d = await new Policy({ strict: true }).program(PY).apply(socket);
  assert.equal(d.allowed, true, JSON.stringify(d.failures));
});

/** Holds the fd it is sent over `path` (SCM_RIGHTS) until the server hangs up. */
const RECEIVER = `
import socket, sys
l = socket.socket(socket.AF_UNIX); l.bind(sys.argv[1]); l.listen(1)
print('listening', flush=True)
c, _ = l.accept()
_, fds, _, _ = socket.recv_fds(c, 16, 1)
s = socket.socket(fileno=fds[0])
print('got', flush=True)
while s.recv(1024): pass
`;

test(
  'strict mode: a socket handed to another program over SCM_RIGHTS is denied though the connecting process passes',
  { skip: needRoot() },
  async (t) => {
    const { tmp, path, server } = await socketServer(t);
    // Another file than the rule's python: a copy, run with the system's standard library.
    const other = tmp.path('python-copy');
    copyFileSync(realpathSync(PY), other);
    const receiverPath = tmp.path('receiver.sock');
    const receiver = run(other, ['-c', RECEIVER, receiverPath], { env: { ...process.env, PYTHONHOME: '/usr' } });
    t.after(() => reap(receiver));
    await waitForOutput(receiver, 'listening');
    const got = waitForOutput(receiver, 'got');
    // The connecting process passes the socket on, closes its own copy, and stays alive.
    const body = `h=socket.socket(socket.AF_UNIX)\nh.connect(${JSON.stringify(receiverPath)})\nsocket.send_fds(h,[b'x'],[s.fileno()])\ns.close()\nprint('sent',flush=True)\nsys.stdin.read()`;
    const child = pythonPeer(path, { body });
    t.after(() => reap(child));
    const socket = await acceptFrom(server, child);
    await Promise.all([got, waitForOutput(child, 'sent')]);

    assert.equal((await new Policy().program(PY).apply(socket)).allowed, true);
    const strict = await new Policy({ strict: true }).program(PY).apply(socket);
    assert.equal(strict.result, Result.PROGRAM);
    const actual = strict.failures[0]!.actual as { holders: number[]; failing: Array<{ pid: number; program: string }> };
    assert.deepEqual(actual.holders, [receiver.pid]);
    assert.deepEqual(actual.failing, [{ pid: receiver.pid, program: other }]);
  },
);

/** A python3 server that holds its listener (and, with `fork`, a child running /usr/bin/sleep holds it too) and accept()s only when told. */
const LATE_SERVER = `
import os, socket, sys
l = socket.socket(socket.AF_UNIX); l.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o666); l.listen(8)
if sys.argv[2] == 'fork':
    os.set_inheritable(l.fileno(), True)
    child = os.fork()
    if child == 0: os.execv('/usr/bin/sleep', ['sleep', '60'])
    print('child', child, flush=True)
print('listening', flush=True)
sys.stdin.readline()
c, _ = l.accept()
print('accepted', flush=True)
sys.stdin.read()
`;

function lateServer(t: { after: (fn: () => unknown) => void }, mode: 'plain' | 'fork') {
  const tmp = tempDir('secpolicy-strict-late-');
  const path = tmp.path('late.sock');
  const server = run(PY, ['-c', LATE_SERVER, path, mode]);
  const up = waitForOutput(server, 'listening');
  t.after(async () => {
    // The forked sleep shares the server's stdout: it must be gone before the server is reaped.
    const child = /child (\d+)/.exec(await up.catch(() => ''));
    if (child) process.kill(Number(child[1]), 'SIGKILL');
    await reap(server);
    tmp.cleanup();
  });
  return { path, server, up };
}

test(
  "client-side strict connect(): a connection still in the accept queue is held by the listener's holders",
  { skip: needRoot() },
  async (t) => {
    const { path, server, up } = lateServer(t, 'plain');
    await up;
    const socket = await connect({ path, policy: new Policy({ strict: true }).program(PY) });
    t.after(() => socket.destroy());
    // The server had not accept()ed: it does so only now.
    const accepted = waitForOutput(server, 'accepted');
    server.stdin!.write('go\n');
    await accepted;
  },
);

test(
  'strict mode: every holder of the listener must be the program while the connection waits to be accepted',
  { skip: needRoot() },
  async (t) => {
    const { path, up } = lateServer(t, 'fork');
    await up;
    const policy = new Policy({ strict: true }).program(PY);
    const error = (await connect({ path, policy }).then(
      () => assert.fail('connect() must be denied'),
      (e: unknown) => e,
    )) as {
      code: string;
      decision: { failures: Array<{ message: string; actual: { failing: Array<{ program: string }>; listener: number } }> };
    };
    assert.equal(error.code, 'ERR_SECPOLICY_DENIED');
    const failure = error.decision.failures[0]!;
    assert.match(
      failure.message,
      /the listening socket whose accept queue holds the peer end is also held by process \d+ \(\/usr\/bin\/sleep\)/,
    );
    assert.equal(failure.actual.failing[0]!.program, '/usr/bin/sleep');
    assert.ok(failure.actual.listener > 0);
  },
);

/** Runs an in-process strict check in a child node (as another user, or in a pid namespace) and prints the Decision. */
const IN_PROCESS = `
const { Policy } = await import(process.argv[1]);
const net = await import('node:net');
const { once } = await import('node:events');
const name = '\\0secpolicy-strict-child-' + process.pid;
const server = net.createServer({ pauseOnConnect: true }).listen(name);
await once(server, 'listening');
const client = net.connect(name);
const [socket] = await once(server, 'connection');
const policy = new Policy({ strict: true }).program(process.execPath);
const sync = policy.applySync(socket);
const async = await policy.apply(socket);
console.log(JSON.stringify({ sync: sync.failures, async: async.failures }));
process.exit(0);
`;

async function inProcessChild(prefix: string[]): Promise<{ sync: Array<{ message: string }>; async: Array<{ message: string }> }> {
  const argv = [...prefix, process.execPath, '--input-type=module', '-e', IN_PROCESS, sharedDist('src/index.js')];
  const child = run(argv[0]!, argv.slice(1));
  const out = await child.output();
  assert.equal(out.code, 0, out.stderr);
  return JSON.parse(out.stdout);
}

test("strict mode is unknown when some process's open files cannot be read (not root)", { skip: needRoot() }, async () => {
  // A uid of this run alone, not the attackers' of strict-attacks.test.ts (here or in another
  // run on the host): a listener of this child would count there as a place to park a descriptor.
  const id = String(50000 + (process.pid % 10000));
  const r = await inProcessChild(['setpriv', '--reuid', id, '--regid', id, '--clear-groups', '--']);
  for (const failures of [r.sync, r.async]) {
    assert.equal(failures.length, 1);
    assert.match(failures[0]!.message, /strict mode: cannot read the open files of process 1\b.*strict mode needs root/);
  }
});

test(
  'strict mode is unknown from inside a pid namespace: processes outside it are invisible',
  { skip: needRoot() || needCommand('unshare') },
  async () => {
    const r = await inProcessChild(['unshare', '--pid', '--fork', '--mount-proc']);
    for (const failures of [r.sync, r.async]) {
      assert.equal(failures.length, 1);
      assert.match(failures[0]!.message, /pid namespace below the host's/);
    }
  },
);

test('concurrent verifications share one holder scan, made off the event loop after all of them asked', async (t) => {
  const name = `\0secpolicy-strict-batch-${process.pid}`;
  const server = net.createServer({ pauseOnConnect: true }).listen(name);
  await once(server, 'listening');
  t.after(() => server.close());
  const peers: Peer[] = [];
  for (let i = 0; i < 4; i++) {
    const client = net.connect(name);
    const [socket] = (await once(server, 'connection')) as [net.Socket];
    t.after(() => (client.destroy(), socket.destroy()));
    peers.push(new Peer(socket));
  }
  type Scan = { scan: { serial: number; thread: number; startedAt: number } };
  const first = await Promise.all(peers.map((p) => checkHoldersAsync(p, [process.execPath])));
  const serials = first.map((r) => (r.actual as Scan).scan.serial);
  assert.equal(new Set(serials).size, 1, `one scan for all: ${JSON.stringify(first)}`);
  assert.notEqual((first[0]!.actual as Scan).scan.thread, 0, 'the scan ran on a worker thread');
  if (isRoot)
    assert.deepEqual(
      first.map((r) => r.verdict),
      ['pass', 'pass', 'pass', 'pass'],
    );
  else for (const r of first) assert.notEqual(r.verdict, 'fail');

  // A verification asking while a scan runs waits for the next scan, begun after it asked.
  const a = checkHoldersAsync(peers[0]!, [process.execPath]);
  await new Promise((resolve) => setImmediate(resolve)); // the scan of `a` has begun
  const askedAt = Date.now();
  const b = await checkHoldersAsync(peers[1]!, [process.execPath]);
  const sa = ((await a).actual as Scan).scan;
  const sb = (b.actual as Scan).scan;
  assert.ok(sb.serial > sa.serial, 'a later scan');
  assert.ok(sb.startedAt >= askedAt, 'begun after the verification asked');

  // The synchronous form scans on this thread.
  assert.equal((checkHoldersHere(peers[2]!, [process.execPath]).actual as Scan).scan.thread, 0);
});

test('createServer() with a strict policy serves an allowed peer (the server speaks first)', { skip: needRoot() }, async (t) => {
  const tmp = tempDir('secpolicy-strict-server-');
  const path = tmp.path('s.sock');
  const policy = new Policy({ strict: true }).program(PY);
  // The server speaks first: a client that waits sends nothing before it is verified.
  const server = createServer({ policy }, (socket) => socket.end('hello\n'));
  const denied: unknown[] = [];
  server.on('denied', (reason) => denied.push(reason));
  await listen(server, path, { mode: 0o666 });
  t.after(async () => {
    server.close();
    tmp.cleanup();
  });
  const client = run(PY, [
    '-c',
    `import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\nprint(s.recv(64).decode(), end='', flush=True)`,
    path,
  ]);
  const out = await client.output();
  assert.equal(out.stdout, 'hello\n', `${out.stderr} ${JSON.stringify(denied)}`);
  assert.deepEqual(denied, []);
});
