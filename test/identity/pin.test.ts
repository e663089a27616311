import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readdirSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import { test } from 'node:test';
import { Policy } from '../../src/index.js';
import { Pin } from '../../src/identity/pin.js';
import { socketFd } from '../../src/native/index.js';
import { needNative, run } from '../helpers/index.js';
import { PY, acceptFrom, pythonPeer, reap, reuseSkip, socketServer, spawnWithPid } from './peers.js';

/** pidfds this process holds (anon_inode:[pidfd], or pidfd:[...] with pidfs). */
function pidfdCount(): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).includes('pidfd')) n++;
    } catch {
      // The fd of readdir itself, closed by now.
    }
  }
  return n;
}

const fdCount = () => readdirSync('/proc/self/fd').length;
/** Peers here run as the user running the suite (root or not). */
const me = process.getuid!();

test('a live peer is pinned by SO_PEERPIDFD and its /proc attributes are read', async (t) => {
  const { path, server } = await socketServer(t);
  const child = pythonPeer(path);
  t.after(() => reap(child));
  const socket = await acceptFrom(server, child);
  const d = await new Policy().program(PY).uid(me).apply(socket);
  assert.equal(d.allowed, true, JSON.stringify(d.failures));
  assert.equal(d.peer.pinning, 'pidfd');
  assert.equal(d.peer.pid, child.pid);
  assert.ok(d.peer.namespaces && d.peer.namespaces.pid > 0);
});

test('a peer that exits right after connecting is denied with "peer exited", never described by /proc', async (t) => {
  const { path, server } = await socketServer(t);
  const child = pythonPeer(path, { body: 'pass' });
  t.after(() => reap(child));
  const socket = await acceptFrom(server, child);
  await child.output();
  const d = await new Policy().program(PY).uid(me).apply(socket);
  assert.equal(d.allowed, false);
  assert.equal(d.failures.length, 1);
  assert.equal(d.failures[0]!.rule, 'program');
  assert.match(d.failures[0]!.message, /peer exited/);
  // SO_PEERCRED still holds the credentials of connect(); /proc data is withheld.
  assert.equal(d.peer.uid, me);
  assert.equal(d.peer.program, undefined);
  assert.equal(d.peer.namespaces, undefined);
  assert.equal(d.peer.container, undefined);
});

test('pid reuse: a trusted program that inherits the pid of an exited peer does not pass for it', { skip: reuseSkip }, async (t) => {
  const { path, server } = await socketServer(t);
  const child = pythonPeer(path, { body: 'pass' });
  t.after(() => reap(child));
  const socket = await acceptFrom(server, child);
  await child.output();
  const sleeper = await spawnWithPid(child.pid!);
  if (!sleeper) {
    t.skip('the pid was taken by another process each time; pid reuse not provoked');
    return;
  }
  t.after(() => reap(sleeper));
  assert.equal(readlinkSync(`/proc/${child.pid}/exe`), '/usr/bin/sleep');
  const d = await new Policy().program('/usr/bin/sleep').apply(socket);
  assert.equal(d.allowed, false);
  assert.match(d.failures[0]!.message, /peer exited/);
  assert.equal(d.peer.program, undefined);
});

test(
  'fallback pinning (pidfd_open + start time) proves the process until it exits, also across pid reuse',
  { skip: reuseSkip },
  async (t) => {
    const { path, server } = await socketServer(t);
    const child = pythonPeer(path);
    t.after(() => reap(child));
    const socket = await acceptFrom(server, child);
    const pin = Pin.of(socketFd(socket), child.pid!, { peerPidfd: false });
    t.after(() => pin.close());
    assert.equal(pin.method, 'start-time');
    assert.equal(pin.check(), undefined);
    child.stdin!.end();
    await child.output();
    const sleeper = await spawnWithPid(child.pid!);
    if (sleeper) t.after(() => reap(sleeper));
    assert.equal(pin.check(), 'peer exited');
    assert.equal(pin.hasPidfd, false, 'the pidfd is released once the peer is known gone');
  },
);

test('pid 0 (not in our pid namespace) is pinned by nothing and says so', () => {
  const pin = Pin.of(-1, 0);
  assert.equal(pin.method, 'none');
  assert.match(pin.check()!, /pid 0/);
});

test('a uid-only policy opens no pidfd; a program rule holds one only while it reads /proc', { skip: needNative('program') }, async (t) => {
  const server = net.createServer().listen(`\0secpolicy-pin-${process.pid}`);
  await once(server, 'listening');
  const client = net.connect(`\0secpolicy-pin-${process.pid}`);
  const [socket] = (await once(server, 'connection')) as [net.Socket];
  t.after(() => {
    socket.destroy();
    client.destroy();
    server.close();
  });
  const before = pidfdCount();
  assert.equal(new Policy().uid(me).applySync(socket).allowed, true);
  assert.equal(pidfdCount(), before);
  const decision = new Policy().program(process.execPath).applySync(socket);
  assert.equal(decision.allowed, true);
  assert.equal(decision.peer.pinning, 'pidfd');
  assert.equal(pidfdCount(), before, 'a verified connection holds no pidfd');
  // A lazy /proc read after apply() pins again (the same process) and lets go.
  assert.equal(decision.peer.namespaces?.pid, (await import('node:fs')).statSync('/proc/self/ns/pid').ino);
  assert.equal(pidfdCount(), before);
});

test('500 verified connections leave the number of open fds where it was', { skip: needNative('program') }, async (t) => {
  const name = `\0secpolicy-fds-${process.pid}`;
  const policy = new Policy().program(process.execPath).sameNamespace('pid');
  let allowed = 0;
  const server = net.createServer((s) => {
    if (policy.applySync(s).allowed) allowed++;
    s.destroy();
  });
  server.listen(name);
  await once(server, 'listening');
  t.after(() => server.close());
  const connectOnce = () =>
    new Promise<void>((resolve, reject) => {
      const c = net.connect(name);
      c.on('error', reject);
      c.on('close', () => resolve());
      c.resume();
    });
  await connectOnce();
  const before = fdCount();
  for (let i = 0; i < 500; i += 10) await Promise.all(Array.from({ length: 10 }, connectOnce));
  // Let the server side's 'close' events run.
  await new Promise((r) => setImmediate(r));
  assert.equal(allowed, 501);
  assert.equal(fdCount(), before);
});

test('signals arriving during the liveness check do not make a live peer look exited', { skip: needNative('program') }, async (t) => {
  const { path, server } = await socketServer(t);
  const child = pythonPeer(path);
  t.after(() => reap(child));
  const socket = await acceptFrom(server, child);
  // A signal whose handler runs while poll() waits makes poll() fail with EINTR (it is never
  // restarted): a profiler's SIGPROF does this. Another process sends them to us without pause.
  // SIGALRM: nothing in Node uses it (SIGUSR2 may write a diagnostic report in a test runner's child).
  const onSignal = (): void => {};
  process.on('SIGALRM', onSignal);
  const sender = run('/bin/sh', ['-c', `while kill -ALRM ${process.pid} 2>/dev/null; do :; done`]);
  // The sender is gone before the handler is: a signal with no handler would end the test process.
  t.after(async () => {
    if (sender.exitCode === null && sender.signalCode === null) {
      sender.kill('SIGKILL');
      await once(sender, 'exit');
    }
    process.off('SIGALRM', onSignal);
  });
  const policy = new Policy().program(PY).uid(me);
  let denied = 0;
  let first: unknown;
  for (let i = 0; i < 3000; i++) {
    const d = policy.applySync(socket);
    if (!d.allowed) {
      denied++;
      first ??= d.failures;
    }
    // Let the signals' handlers run between checks as well.
    if (i % 100 === 0) await new Promise((r) => setImmediate(r));
  }
  assert.equal(denied, 0, `denied ${denied} times: ${JSON.stringify(first)}`);
});
