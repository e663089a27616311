/**
 * A peer whose main thread called pthread_exit() while other threads go on holding the
 * connection. For such a process the kernel prints `/` for every cgroup v1 hierarchy in
 * /proc/PID/cgroup (the v2 line keeps the real path): read naively, a process in a
 * container, or in a system unit, looks like one at the root of the host. The cgroup must
 * be read through the threads that still run, and be unknown when they disagree.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { Policy, parsePolicy, type Decision } from '../../src/index.js';
import { Cgroups, v1Hierarchies, v2Hierarchy } from '../helpers/cgroups.js';
import { needRoot, run } from '../helpers/index.js';
import { compileStatic, needRunc, runContainer } from '../helpers/runc.js';
import { acceptFrom, reap, socketServer, waitForOutput } from './peers.js';

/**
 * Connects to argv[1], starts a second (idle) thread, then, once a line comes on stdin,
 * the main thread calls pthread_exit(). The talking thread joins the main thread (the join returns once the
 * kernel has let it go), then prints `up <pid> <tid> <idle tid>` and holds the connection.
 */
const LEADER_EXITS = `
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>
static pthread_t leader;
static int s;
static volatile long idle_tid;
static void *idle(void *a) { (void)a; idle_tid = syscall(SYS_gettid); for (;;) pause(); return 0; }
static void *talk(void *a) {
  (void)a;
  pthread_join(leader, NULL);
  while (idle_tid == 0) usleep(1000);
  printf("up %d %ld %ld\\n", getpid(), (long)syscall(SYS_gettid), idle_tid);
  fflush(stdout);
  char buf[256];
  while (read(s, buf, sizeof buf) > 0) {}
  _exit(0);
}
int main(int argc, char **argv) {
  s = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  strncpy(addr.sun_path, argv[1], sizeof addr.sun_path - 1);
  if (connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) { perror("connect"); return 2; }
  leader = pthread_self();
  pthread_t t;
  pthread_create(&t, 0, idle, 0);
  pthread_create(&t, 0, talk, 0);
  char go[8];
  if (read(0, go, sizeof go) < 0) return 3;
  pthread_exit(0);
}
`;

const notPassing = (d: Decision, what: string) => assert.equal(d.allowed, false, `${what} must not pass: ${JSON.stringify(d.failures)}`);
const isUnknown = (d: Decision) => d.failures.some((f) => f.unknown === true);

/** The v1 lines of /proc/PID/cgroup: each `path` the kernel shows for a v1 hierarchy. */
function v1Paths(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cgroup`, 'utf8')
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('0::'))
    .map((l) => l.slice(l.indexOf(':', l.indexOf(':') + 1) + 1));
}

/** The running peer's `up <pid> <tid> <idle tid>`. */
async function upLine(child: ReturnType<typeof run>): Promise<{ pid: number; tid: number; idle: number }> {
  const out = await waitForOutput(child, '\n');
  const m = /up (\d+) (\d+) (\d+)/.exec(out);
  assert.ok(m, out);
  return { pid: Number(m[1]), tid: Number(m[2]), idle: Number(m[3]) };
}

test('a runc container peer whose main thread exited: still the container, never "not in a container"', { skip: needRunc() }, async (t) => {
  const { server, tmp } = await socketServer(t, 'secpolicy-leader-');
  if (
    !readFileSync('/proc/self/cgroup', 'utf8')
      .split('\n')
      .some((l) => l !== '' && !l.startsWith('0::'))
  ) {
    t.skip('no cgroup v1 hierarchy here: runc puts containers in cgroup v2 only, whose line the kernel keeps for an exited leader');
    return;
  }
  const bin = tmp.path('bin/leader-exits');
  compileStatic(LEADER_EXITS, bin);
  const c = runContainer({
    bundle: tmp.path('bundle'),
    args: ['/bin/leader-exits', '/sock/s.sock'],
    files: [[bin, '/bin/leader-exits']],
    mounts: [{ source: tmp.dir, destination: '/sock' }],
  });
  t.after(() => c.stop());
  const socket = await acceptFrom(server, c.child);
  const pid = new Policy().applySync(socket).peer.pid;
  // runc also places the container in cgroup v2 where v2 is mounted beside v1 (a hybrid
  // host): back to the v2 root with it, as on a v1-only host, where v2 is not mounted and
  // the kernel prints `0::/` for every process.
  const v2 = v2Hierarchy();
  if (v2) writeFileSync(`${v2}/cgroup.procs`, String(pid));
  c.child.stdin!.write('go\n');
  await upLine(c.child);
  // What the attack rests on: the kernel now shows the v1 root for the peer.
  assert.ok(
    v1Paths(pid).every((p) => p === '/'),
    `the kernel shows / for an exited leader on v1: ${readFileSync(`/proc/${pid}/cgroup`, 'utf8')}`,
  );

  notPassing(parsePolicy('not: { container: true }').applySync(socket), 'not: { container: true }');
  notPassing(new Policy().not(new Policy().container()).applySync(socket), 'not(container())');
  notPassing(new Policy().host().applySync(socket), 'host()');
  const d = new Policy().container({ runtime: 'docker', id: c.id }).applySync(socket);
  assert.equal(d.allowed, true, `the container is read through the threads that still run: ${JSON.stringify(d.failures)}`);
  assert.deepEqual(d.peer.container, { runtime: 'docker', id: c.id });
  assert.equal(d.peer.cgroup, `/docker/${c.id}`);
});

test(
  'a host peer in a system unit whose main thread exited: its unit is read through its threads; threads in two cgroups are unknown',
  { skip: needRoot('moves peers into cgroups') || needCommandCc() },
  async (t) => {
    const v1 = v1Hierarchies(t);
    if (typeof v1 === 'string') {
      t.skip(v1);
      return;
    }
    const { server, tmp } = await socketServer(t, 'secpolicy-leader-');
    const bin = tmp.path('leader-exits');
    compileStatic(LEADER_EXITS, bin);
    const tag = `secpolicy-leader-${process.pid}-${randomBytes(3).toString('hex')}`;
    const a = `system.slice/${tag}-a.service`;
    const b = `system.slice/${tag}-b.service`;
    // A v1 host: the peer is in unit a in every v1 hierarchy, at the root of cgroup v2 (as
    // on a host that does not use v2, where the kernel still prints `0::/`).
    const cgroups = new Cgroups(v1).make(a).make(b);
    const v2 = v2Hierarchy();
    const enter = `${cgroups.enter(a)}${v2 ? ` && echo $$ > '${v2}/cgroup.procs'` : ''}`;
    const child = run('sh', ['-c', `${enter} && exec "$@"`, 'sh', bin, server.address() as string]);
    t.after(async () => {
      await reap(child);
      cgroups.remove();
    });
    const socket = await acceptFrom(server, child);
    child.stdin!.write('go\n');
    const up = await upLine(child);
    assert.ok(
      v1Paths(up.pid).every((p) => p === '/'),
      `the kernel shows / for an exited leader on v1: ${readFileSync(`/proc/${up.pid}/cgroup`, 'utf8')}`,
    );

    const unit = `${tag}-a.service`;
    const d = new Policy().unit(unit).not(new Policy().container()).applySync(socket);
    assert.equal(d.allowed, true, `read through the live threads: ${JSON.stringify(d.failures)}`);
    assert.equal(d.peer.unit, unit);
    notPassing(parsePolicy({ not: { unit } }).applySync(socket), 'not: { unit }');

    // One thread moved into unit b (v1 places threads one by one): the peer is in two cgroups.
    cgroups.moveThread(up.idle, b);
    for (const p of [
      new Policy().unit(unit),
      new Policy().not(new Policy().unit(unit)),
      new Policy().not(new Policy().unit(`${tag}-b.service`)),
      new Policy().container(),
      new Policy().not(new Policy().container()),
    ]) {
      const r = p.applySync(socket);
      notPassing(r, JSON.stringify(r.failures));
      assert.ok(isUnknown(r), JSON.stringify(r.failures));
    }
    assert.match(new Policy().applySync(socket).peer.reason('unit') ?? '', /threads/);
  },
);

function needCommandCc(): string | false {
  // compileStatic needs cc and a static libc (needRunc checks both, and more).
  const r = needRunc();
  return r && /cc|static libc/.test(r) ? r : false;
}
