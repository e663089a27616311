import assert from 'node:assert/strict';
import { once } from 'node:events';
import { copyFileSync, readlinkSync, realpathSync } from 'node:fs';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { Policy, Result } from '../../src/index.js';
import { needCommand, needRoot, run } from '../helpers/index.js';
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
  assert.equal(policy.applySync(socket).allowed, true);
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
