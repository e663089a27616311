/**
 * Strict mode against a local user who connects, lets the connecting process exec the
 * trusted program, and keeps the socket by other means: parked in a queued SCM_RIGHTS
 * message, held by threads of a process whose main thread exited, or bytes queued before
 * the exec. In each, the trusted program is the only holder a /proc/PID/fd scan sees.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  createReadStream,
  readFileSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { Policy, Result, type Decision } from '../../src/index.js';
import { needCommand, needRoot, tempDir } from '../helpers/index.js';
import { PY, acceptFrom, pythonPeer, reap, socketServer } from './peers.js';

const TRUSTED = '/usr/bin/sleep';
// A uid of this run alone: the parked-descriptor check suspects every process of the peer's
// uid, so another run of these tests on the same host must not lend its processes to this one.
const ATTACKER_ID = 30000 + (process.pid % 20000);
const ATTACKER = { uid: ATTACKER_ID, gid: ATTACKER_ID };

async function waitForExe(pid: number, exe: string): Promise<void> {
  // Polls for a state, bounded: the exec follows the child's signal at once.
  for (let i = 0; i < 500; i++) {
    try {
      if (readlinkSync(`/proc/${pid}/exe`) === exe) return;
    } catch {
      // Not there yet; keep looking until the bound.
    }
    await sleep(10);
  }
  throw new Error(`process ${pid} never ran ${exe}`);
}

/**
 * The connecting process forks a child that runs `child` (with `s`, the connection), waits
 * for it to print `ready`, then execs the trusted program keeping `s` open across the exec.
 */
function forkThenExec(child: string): string {
  const indented = child
    .trim()
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
  return `
import signal
r, w = os.pipe()
if os.fork() == 0:
    signal.alarm(60)
${indented}
    print('child', os.getpid(), flush=True)
    os.write(w, b'r')
    while True: signal.pause()
os.read(r, 1)
os.set_inheritable(s.fileno(), True)
os.execv(${JSON.stringify(TRUSTED)}, ['sleep', '60'])
`;
}

async function attack(t: { after: (fn: () => unknown) => void }, body: string) {
  const { path, server } = await socketServer(t);
  const connector = pythonPeer(path, { as: ATTACKER, body });
  const out = childPidOf(connector);
  let childPid = 0;
  t.after(async () => {
    // The child shares the connector's stdout: it must be gone before the connector is reaped.
    if (childPid) process.kill(childPid, 'SIGKILL');
    await reap(connector);
    // Gone before the next test's scan, which suspects every process of the attacker's uid.
    if (childPid) await gone(childPid);
  });
  const socket = await acceptFrom(server, connector);
  childPid = await out;
  await waitForExe(connector.pid!, TRUSTED);
  return { socket, connector, childPid, path, server };
}

/** Resolves once `pid` has exited (gone, or a zombie: its descriptors are closed), bounded. */
async function gone(pid: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    try {
      if (/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'))) return;
    } catch {
      return;
    }
    await sleep(10);
  }
}

/** The pid the forked child prints (`child PID` on a line of its own). */
function childPidOf(connector: ReturnType<typeof pythonPeer>): Promise<number> {
  return new Promise((resolve, reject) => {
    let out = '';
    connector.stdout!.on('data', (d) => {
      out += d;
      const m = /child (\d+)\n/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    connector.output().then((o) => reject(new Error(`the connector exited: ${o.stderr}`)));
  });
}

const strictPolicy = () => new Policy({ strict: true }).program(TRUSTED);

for (const [kind, send] of [
  ['a stream socketpair', "a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)\nsocket.send_fds(a, [b'x'], [s.fileno()])"],
  // An empty seqpacket message carries the fd with no byte queued; the sending end is closed.
  [
    'an empty seqpacket message, sender closed',
    'a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)\nsocket.send_fds(a, [], [s.fileno()])\na.close()',
  ],
  [
    'an empty datagram to a bound socket',
    "b = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\nb.bind('\\0secpolicy-park-%d' % os.getpid())\na = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\na.connect(b.getsockname())\nsocket.send_fds(a, [], [s.fileno()])\na.close()",
  ],
] as const) {
  test(`strict mode: a descriptor parked in ${kind} (SCM_RIGHTS to itself) makes the verdict unknown`, { skip: needRoot() }, async (t) => {
    const { socket, childPid } = await attack(t, forkThenExec(`${send}\ns.close()`));
    // What the old scan saw: the trusted program is the only holder.
    const d = await strictPolicy().apply(socket);
    assert.equal(d.result, Result.PROGRAM, 'the parked descriptor must not let the peer in');
    const failure = d.failures[0]!;
    assert.match(failure.message, /queued messages could carry the peer end/);
    const actual = failure.actual as { holders: number[]; queued: { holders: number[] } };
    assert.deepEqual(actual.queued.holders, [childPid]);
    assert.ok(!actual.holders.includes(childPid), 'the child holds no fd of the socket');
  });
}

/** The program rule failed, naming exactly `pid` (a python3) as the holder that does not pass. */
function assertNamedHolder(d: Decision, pid: number): void {
  assert.equal(d.result, Result.PROGRAM);
  const actual = d.failures[0]!.actual as { failing?: Array<{ pid: number; program: string }> };
  assert.ok(actual.failing !== undefined, `a named holder, not: ${JSON.stringify(d.failures)}`);
  assert.deepEqual(
    actual.failing.map((f) => f.pid),
    [pid],
  );
  assert.match(d.failures[0]!.message, /also held by process \d+ \(\/usr\/bin\/python3/);
}

test('strict mode: threads of a process whose main thread called pthread_exit hold the socket', { skip: needRoot() }, async (t) => {
  // The child's main thread exits through pthread_exit (ctypes releases the GIL for the call):
  // /proc/CHILD/fd is empty, the remaining thread's fd table still holds `s`.
  const child = `
import threading, ctypes
threading.Thread(target=__import__('time').sleep, args=(60,)).start()
print('child', os.getpid(), flush=True)
os.write(w, b'r')
ctypes.CDLL(None).pthread_exit(None)
`;
  const body = `
import signal
r, w = os.pipe()
if os.fork() == 0:
    signal.alarm(60)
${child
  .trim()
  .split('\n')
  .map((l) => `    ${l}`)
  .join('\n')}
os.read(r, 1)
os.set_inheritable(s.fileno(), True)
os.execv(${JSON.stringify(TRUSTED)}, ['sleep', '60'])
`;
  const { socket, childPid } = await attack(t, body);
  // The main thread is gone: its /proc/PID/fd lists nothing.
  for (let i = 0; i < 500 && readlinkSafe(`/proc/${childPid}/task/${childPid}/fd`); i++) await sleep(10);
  // Both paths name the same holder.
  for (const d of [await strictPolicy().apply(socket), strictPolicy().applySync(socket)]) assertNamedHolder(d, childPid);
});

// The child keeps the socket only under a high fd number, past 3,000 other fds (its fd
// table takes several getdents64 buffers), and closes the number it had.
const HIGH_FD = `
import resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
top = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))
p, q = os.pipe()
filler = [os.dup(p) for _ in range(3000)]
os.dup2(s.fileno(), top - 1)
s.close()
`;

// A thread gives itself an fd table of its own (unshare(CLONE_FILES)) holding the socket;
// the process's table, /proc/PID/fd, then closes it.
const OWN_TABLE = `
import threading, ctypes, time
fd = s.fileno()
shared = threading.Event()
def hold():
    assert ctypes.CDLL(None, use_errno=True).unshare(0x400) == 0
    shared.set()
    time.sleep(60)
holder = threading.Thread(target=hold, daemon=True)
holder.start()
shared.wait()
s.close()
assert not os.path.exists('/proc/%d/fd/%d' % (os.getpid(), fd))
assert os.path.exists('/proc/%d/task/%d/fd/%d' % (os.getpid(), holder.native_id, fd))
`;

for (const [kind, child] of [
  ['under a high fd number behind 3,000 other fds', HIGH_FD],
  ['only in the fd table a thread unshared for itself', OWN_TABLE],
] as const) {
  test(`strict mode: a forked child holding the socket ${kind} is named`, { skip: needRoot() }, async (t) => {
    const { socket, childPid } = await attack(t, forkThenExec(child));
    for (const d of [await strictPolicy().apply(socket), strictPolicy().applySync(socket)]) assertNamedHolder(d, childPid);
  });
}

/** True while /proc/PID/task/PID/fd still lists an fd (the main thread has not exited yet). */
function readlinkSafe(dir: string): boolean {
  try {
    return readlinkSync(`${dir}/0`).length > 0;
  } catch {
    return false;
  }
}

test('strict mode: bytes written before the exec and still queued make the verdict unknown', { skip: needRoot() }, async (t) => {
  const { path, server } = await socketServer(t);
  const body = `s.sendall(b'rm -rf /\\n')\nos.set_inheritable(s.fileno(), True)\nos.execv(${JSON.stringify(TRUSTED)}, ['sleep', '60'])`;
  const connector = pythonPeer(path, { as: ATTACKER, body });
  t.after(() => reap(connector));
  const socket = await acceptFrom(server, connector);
  await waitForExe(connector.pid!, TRUSTED);
  assert.equal((await new Policy().program(TRUSTED).apply(socket)).allowed, true, 'the program rule alone sees the trusted program');
  const d = await strictPolicy().apply(socket);
  assert.equal(d.result, Result.PROGRAM);
  assert.match(d.failures[0]!.message, /9 byte\(s\) from the peer arrived before its holders were verified/);
  assert.deepEqual(d.failures[0]!.actual, { holders: [connector.pid], queuedBytes: 9, readBytes: 0 });
});

test('strict mode allows a non-root peer whose only holder is the program and that sent nothing', { skip: needRoot() }, async (t) => {
  const { path, server } = await socketServer(t);
  const peer = pythonPeer(path, { as: ATTACKER });
  t.after(() => reap(peer));
  const socket = await acceptFrom(server, peer);
  const d = await new Policy({ strict: true }).program(PY).apply(socket);
  assert.equal(d.allowed, true, JSON.stringify(d.failures));
  assert.equal(new Policy({ strict: true }).program(PY).applySync(socket).allowed, true);
});

/** Registers the fd argv[1] with a new io_uring instance, closes the fd, signals on fd argv[2], and waits. */
const IO_URING_HOLDER = `
#include <linux/io_uring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(int argc, char **argv) {
  int fd = atoi(argv[1]), ready = atoi(argv[2]);
  struct io_uring_params p;
  memset(&p, 0, sizeof p);
  int ring = (int)syscall(__NR_io_uring_setup, 4, &p);
  int fds[1] = {fd};
  if (ring < 0 || syscall(__NR_io_uring_register, ring, IORING_REGISTER_FILES, fds, 1) < 0) {
    printf("unsupported\\n");
  } else {
    close(fd);
    printf("child %d\\n", getpid());
  }
  fflush(stdout);
  if (write(ready, "r", 1) != 1) return 1;
  for (;;) pause();
}
`;

test(
  'strict mode: a socket registered with an io_uring instance (no fd of its own) is held',
  { skip: needRoot() || needCommand('cc') },
  async (t) => {
    const tmp = tempDir('secpolicy-uring-');
    t.after(() => tmp.cleanup());
    writeFileSync(tmp.path('holder.c'), IO_URING_HOLDER);
    const built = spawnSync('cc', ['-O2', '-Wall', '-o', tmp.path('holder'), tmp.path('holder.c')], { encoding: 'utf8' });
    assert.equal(built.status, 0, built.stderr);
    chmodSync(tmp.path('holder'), 0o755);
    const { path, server } = await socketServer(t);
    const body = `
r, w = os.pipe()
os.set_inheritable(s.fileno(), True)
os.set_inheritable(w, True)
if os.fork() == 0:
    os.execv(${JSON.stringify(tmp.path('holder'))}, ['holder', str(s.fileno()), str(w)])
os.read(r, 1)
os.execv(${JSON.stringify(TRUSTED)}, ['sleep', '60'])
`;
    const connector = pythonPeer(path, { as: ATTACKER, body });
    let out = '';
    const said = new Promise<string>((resolve, reject) => {
      connector.stdout!.on('data', (d) => {
        out += d;
        const m = /(child \d+|unsupported)\n/.exec(out);
        if (m) resolve(m[1]!);
      });
      connector.output().then((o) => reject(new Error(`the connector exited: ${o.stderr}`)));
    });
    let childPid = 0;
    t.after(async () => {
      if (childPid) process.kill(childPid, 'SIGKILL');
      await reap(connector);
    });
    const socket = await acceptFrom(server, connector);
    const what = await said;
    if (what === 'unsupported') {
      // The helper still runs (and holds the fd): kill it through the connector's children.
      childPid = Number(readFileSync(`/proc/${connector.pid}/task/${connector.pid}/children`, 'utf8').trim().split(' ')[0]);
      t.skip('io_uring is not available here (io_uring_setup or IORING_REGISTER_FILES failed)');
      return;
    }
    childPid = Number(what.slice('child '.length));
    await waitForExe(connector.pid!, TRUSTED);
    const d = await strictPolicy().apply(socket);
    assert.equal(d.result, Result.PROGRAM);
    const actual = d.failures[0]!.actual as { holders: number[]; failing: Array<{ pid: number; program: string }> };
    assert.deepEqual(actual.failing, [{ pid: childPid, program: tmp.path('holder') }]);
  },
);

/** Whether the attacker's uid may make a user + network namespace here (unprivileged user namespaces). */
function userNamespaces(): string | false {
  const r = spawnSync(
    'setpriv',
    [
      '--reuid',
      String(ATTACKER_ID),
      '--regid',
      String(ATTACKER_ID),
      '--clear-groups',
      '--',
      PY,
      '-c',
      'import ctypes,sys; sys.exit(ctypes.CDLL(None).unshare(0x50000000) != 0)',
    ],
    { cwd: '/' },
  );
  return r.status === 0 ? false : 'unprivileged user namespaces are not available here';
}

test(
  'strict mode: a descriptor parked in a socketpair of a network namespace we do not list makes the verdict unknown',
  { skip: needRoot() || userNamespaces() },
  async (t) => {
    // The child makes its own user + network namespace: its sockets are not in our sock_diag dump.
    const park = `import ctypes\nassert ctypes.CDLL(None).unshare(0x50000000) == 0\na, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)\nsocket.send_fds(a, [b'x'], [s.fileno()])\ns.close()`;
    const { socket, childPid } = await attack(t, forkThenExec(park));
    const d = await strictPolicy().apply(socket);
    assert.equal(d.result, Result.PROGRAM, 'the parked descriptor must not let the peer in');
    assert.match(d.failures[0]!.message, /holds sockets in another network namespace, whose queues we cannot inspect/);
    assert.deepEqual((d.failures[0]!.actual as { foreign: number[] }).foreign, [childPid]);
  },
);

// strict covers every rule about what runs, not only `program`: here the trusted program is
// named by its digest, by its unit-free identity (noNewPrivs), and the forked child that
// keeps the socket is a python3.
const sleepDigest = () => createHash('sha256').update(readFileSync(TRUSTED)).digest('hex');

test(
  'strict mode + programDigest: a forked child that keeps the socket while the connector execs the allowed binary is named',
  { skip: needRoot() },
  async (t) => {
    const { socket, childPid } = await attack(t, forkThenExec(''));
    for (const d of [
      await new Policy({ strict: true }).programDigest(sleepDigest()).apply(socket),
      new Policy({ strict: true }).programDigest(sleepDigest()).applySync(socket),
    ]) {
      assert.equal(d.result, Result.PROGRAM_DIGEST, JSON.stringify(d.failures));
      assert.match(d.failures[0]!.message, new RegExp(`also held by process ${childPid} \\(/usr/bin/python3`));
    }
    // Without strict mode the connector alone is judged (and passes): the holder scan is what denies.
    assert.equal((await new Policy().programDigest(sleepDigest()).apply(socket)).allowed, true);
  },
);

test('strict mode + noNewPrivs: a holder without no_new_privs is named', { skip: needRoot() }, async (t) => {
  // The connector sets no_new_privs and execs the trusted program; the child it forked before does not have it.
  const { socket, childPid } = await attack(
    t,
    forkThenExec('').replace('os.read(r, 1)', 'os.read(r, 1)\nimport ctypes\nassert ctypes.CDLL(None).prctl(38, 1, 0, 0, 0) == 0'),
  );
  const d = await new Policy({ strict: true }).noNewPrivs().apply(socket);
  assert.equal(d.result, Result.NO_NEW_PRIVS, JSON.stringify(d.failures));
  assert.match(d.failures[0]!.message, new RegExp(`also held by process ${childPid}`));
});

// Another holder's executable is work the peer chooses too: its digest is made off the event
// loop, like the peer's own, and bounded by the same cap.
test(
  'strict mode + programDigest: a holder running a large executable is hashed off the event loop, a concurrent verification is answered first',
  { skip: needRoot() || needCommand('busybox') },
  async (t) => {
    const dir = tempDir();
    t.after(() => dir.cleanup());
    // A static binary padded (sparse) to 200 MiB: it still runs.
    const big = dir.path('busybox-big');
    copyFileSync(realpathSync(spawnSync('sh', ['-c', 'command -v busybox'], { encoding: 'utf8' }).stdout.trim()), big);
    truncateSync(big, 200 * 1024 * 1024);
    chmodSync(big, 0o755);
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(big)) hash.update(chunk as Buffer);
    const bigDigest = hash.digest('hex');
    const child = `
print('child', os.getpid(), flush=True)
os.write(w, b'r')
os.set_inheritable(s.fileno(), True)
os.execv(${JSON.stringify(big)}, ['sleep', '60'])`;
    const { socket, childPid, path, server } = await attack(t, forkThenExec(child));
    await waitForExe(childPid, big);
    const legit = pythonPeer(path);
    t.after(() => reap(legit));
    const other = await acceptFrom(server, legit);

    const order: string[] = [];
    let settled = false;
    const slow = new Policy({ strict: true })
      .programDigest([sleepDigest(), bigDigest])
      .apply(socket)
      .then((d) => ((settled = true), order.push('strict'), d));
    // The legitimate verification starts while the holder's file is being hashed: the file is
    // open in this process then (its fd handed to the digest thread), and this loop still turns.
    const hashing = (): boolean =>
      readdirSync('/proc/self/fd').some((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`) === big;
        } catch {
          return false;
        }
      });
    while (!settled && !hashing()) await new Promise(setImmediate);
    assert.equal(settled, false, "the event loop must turn while the holder's executable is hashed");
    const fast = new Policy()
      .uid(process.getuid!())
      .apply(other)
      .then((d) => (order.push('uid'), d));
    const [d1, d2] = await Promise.all([slow, fast]);
    assert.equal(d1.allowed, true, JSON.stringify(d1.failures));
    assert.equal(d2.allowed, true, JSON.stringify(d2.failures));
    assert.deepEqual(order, ['uid', 'strict'], 'the uid check must not wait for the holders to be hashed');
    // A holder running a program outside the list is still named.
    const d = await new Policy({ strict: true }).programDigest(sleepDigest()).apply(socket);
    assert.equal(d.result, Result.PROGRAM_DIGEST, JSON.stringify(d.failures));
    assert.match(d.failures[0]!.message, new RegExp(`also held by process ${childPid} \\(${big}`));
  },
);
