/**
 * Identities read from cgroups, with real cgroup directories (cgroup v2 and the v1
 * name=systemd tree where both exist) and real peers moved into them: a system unit, a
 * user manager's delegated tree chowned to uid 1000 as systemd does it, and the attack of
 * an unprivileged process naming its own cgroup `docker-<id>.scope` or `nginx.service`.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { Policy, Result, parsePolicy, type Decision } from '../../src/index.js';
import { cgroupTrust } from '../../src/identity/cgroup-trust.js';
import { unitsOfPath } from '../../src/identity/container.js';
import { Cgroups, needCgroups } from '../helpers/cgroups.js';
import { asUser, needCommand, run, type RunAs } from '../helpers/index.js';
import { PY, acceptFrom, connectScript, socketServer } from './peers.js';

const USER: RunAs = { uid: 1000, gid: 1000 };
const tag = `secpolicy-test-${process.pid}`;

/**
 * A peer that root first moves into `rel` (in every hierarchy); then, running as `as`,
 * it may make `own` below it and move itself there, as any process may in a tree it owns.
 */
function peerIn(path: string, cgroups: Cgroups, rel: string, options: { as?: RunAs; own?: string } = {}) {
  const own = options.own
    ? `for r in ${JSON.stringify(cgroups.roots)}:\n    d=r+'/${rel}/${options.own}'\n    os.makedirs(d, exist_ok=True)\n    open(d+'/cgroup.procs','w').write(str(os.getpid()))\n`
    : '';
  const script = `import os\n${own}${connectScript(path)}`;
  const [cmd, argv] = asUser(options.as, PY, ['-c', script]);
  return run('sh', ['-c', `${cgroups.enter(rel)} && exec "$@"`, 'sh', cmd, ...argv]);
}

async function withPeer(
  t: { after: (fn: () => unknown) => void },
  rel: string,
  setup: (c: Cgroups) => void,
  options: Parameters<typeof peerIn>[3] = {},
) {
  const { path, server } = await socketServer(t, 'secpolicy-cgroups-');
  const cgroups = new Cgroups();
  setup(cgroups);
  const child = peerIn(path, cgroups, rel, options);
  t.after(async () => {
    if (child.exitCode === null) child.stdin!.end();
    await child.output();
    // The dirs the peer made itself, each level of them.
    const parts = options.own?.split('/') ?? [];
    cgroups.remove(parts.map((_, i) => `${rel}/${parts.slice(0, i + 1).join('/')}`));
  });
  const socket = await acceptFrom(server, child);
  return { socket, child };
}

const notPassing = (d: Decision, what: string) => assert.equal(d.allowed, false, `${what} must not pass: ${JSON.stringify(d.failures)}`);
const unknownFailure = (d: Decision) => d.failures.some((f) => f.unknown === true && f.message.startsWith('unknown: '));

test('unit names: slices then the first unit, user managers apart', () => {
  assert.deepEqual(unitsOfPath('/system.slice/nginx.service'), { slice: 'system.slice', unit: 'nginx.service', prefix: '/system.slice' });
  assert.deepEqual(unitsOfPath('/system.slice/system-getty.slice/getty@tty1.service/x'), {
    slice: 'system-getty.slice',
    unit: 'getty@tty1.service',
    prefix: '/system.slice/system-getty.slice',
  });
  assert.deepEqual(unitsOfPath('/user.slice/user-1000.slice/user@1000.service/app.slice/nginx.service'), {
    slice: 'user-1000.slice',
    unit: null,
    prefix: '/user.slice/user-1000.slice',
    user: { uid: 1000, unit: 'nginx.service' },
  });
  assert.deepEqual(unitsOfPath('/'), { slice: null, unit: null, prefix: '/' });
  assert.equal(unitsOfPath('/docker/abc').unit, null);
});

test(
  'a process in system.slice/<name>.service has that unit and slice; a host process outside units has none',
  { skip: needCgroups() },
  async (t) => {
    const name = `${tag}-a.service`;
    const rel = `system.slice/${name}`;
    const { socket } = await withPeer(t, rel, (c) => c.make(rel));
    const d = new Policy().unit(name).slice('system.slice').applySync(socket);
    assert.equal(d.allowed, true, JSON.stringify(d.failures));
    assert.equal(d.attributes.unit, name, 'the Decision keeps what the rule saw');
    assert.equal(d.peer.unit, name);
    assert.equal(d.peer.slice, 'system.slice');
    assert.equal(d.peer.userUnit, null);
    const other = new Policy().unit(['nginx.service', 'sshd.service']).applySync(socket);
    assert.equal(other.allowed, false);
    assert.equal(other.result, Result.UNIT);
    assert.match(other.failures[0]!.message, new RegExp(`runs in ${name}, not one of nginx.service, sshd.service`));
    assert.equal(parsePolicy(`unit: ${name}`).applySync(socket).allowed, true);
    assert.equal(parsePolicy({ not: { unit: name } }).applySync(socket).allowed, false);
  },
);

test(
  'a delegated user@1000.service tree: no system unit whatever its names say, the user unit with its uid; an unprivileged docker-<id>.scope is no container',
  { skip: needCgroups() },
  async (t) => {
    const manager = `user.slice/user-1000.slice/user@1000.service`;
    const rel = `${manager}/app.slice`;
    const hex = randomBytes(32).toString('hex');
    // The peer, as uid 1000, names its own cgroup like a docker container and a system service.
    const own = `system.slice/docker-${hex}.scope`;
    const { socket } = await withPeer(
      t,
      rel,
      (c) => {
        c.make(manager, USER);
        c.make(rel, USER);
      },
      { as: USER, own },
    );
    const container = new Policy().container().applySync(socket);
    notPassing(container, 'container');
    assert.ok(unknownFailure(container), JSON.stringify(container.failures));
    assert.match(container.failures[0]!.message, /owned by uid 1000/);
    notPassing(new Policy().not(new Policy().container()).applySync(socket), 'not container');
    notPassing(parsePolicy('not: { container: true }').applySync(socket), 'not: { container: true } (file)');
    notPassing(parsePolicy('anyOf: [{ not: { container: true } }, { uid: 4242 }]').applySync(socket), 'anyOf with not container');
    assert.equal(socket.destroyed, false);
    const peerContainer = new Policy().uid(1000).applySync(socket).peer;
    assert.equal(peerContainer.container, undefined);
    assert.match(peerContainer.reason('container') ?? '', /owned by uid 1000/);

    // No system unit under a user manager, whatever the names below it say.
    const unit = new Policy().unit(`docker-${hex}.scope`).applySync(socket);
    notPassing(unit, 'unit');
    assert.equal(peerContainer.unit, null);
    assert.deepEqual(peerContainer.userUnit, { uid: 1000, unit: `docker-${hex}.scope` });
    assert.equal(new Policy().userUnit({ uid: 1000, unit: `docker-${hex}.scope` }).applySync(socket).allowed, true);
    assert.equal(new Policy().userUnit({ uid: 0 }).applySync(socket).result, Result.USER_UNIT);
    assert.equal(parsePolicy({ userUnit: { uid: 1000 }, uid: 1000 }).applySync(socket).allowed, true);
  },
);

test(
  'a tree chowned to a non-root uid outside any user manager: its unit and container are unknown, never passing',
  { skip: needCgroups() },
  async (t) => {
    const delegated = `system.slice/${tag}-d.service`;
    const hex = randomBytes(32).toString('hex');
    const own = `docker-${hex}.scope`;
    const { socket } = await withPeer(t, delegated, (c) => c.make(delegated, USER), { as: USER, own });
    for (const p of [
      new Policy().unit(`${tag}-d.service`),
      new Policy().not(new Policy().unit('nginx.service')),
      new Policy().container(),
    ]) {
      const d = p.applySync(socket);
      notPassing(d, JSON.stringify(d.failures));
      assert.ok(unknownFailure(d), JSON.stringify(d.failures));
    }
  },
);

test('cgroupTrust: a removed cgroup and a path outside our namespace are unknown', () => {
  assert.equal(cgroupTrust('', `/docker/${'a'.repeat(64)} (deleted)`).trusted, false);
  assert.equal(cgroupTrust('', '/../../x').trusted, false);
  assert.equal(cgroupTrust('no-such-hierarchy', '/system.slice').trusted, false, 'a hierarchy we cannot see cannot be checked');
  assert.equal(cgroupTrust('no-such-hierarchy', '/').trusted, true, 'nobody but root places a process in a root cgroup');
});

test('noNewPrivs: a peer started with setpriv --no-new-privs passes, another fails', { skip: needCommand('setpriv') }, async (t) => {
  const { path, server } = await socketServer(t, 'secpolicy-nnp-');
  const on = run('setpriv', ['--no-new-privs', PY, '-c', connectScript(path)]);
  t.after(async () => {
    on.stdin!.end();
    await on.output();
  });
  const socketOn = await acceptFrom(server, on);
  const off = run(PY, ['-c', connectScript(path)]);
  t.after(async () => {
    off.stdin!.end();
    await off.output();
  });
  const socketOff = await acceptFrom(server, off);
  assert.equal(new Policy().noNewPrivs().applySync(socketOn).allowed, true);
  assert.equal(parsePolicy('noNewPrivs: true').applySync(socketOn).allowed, true);
  const d = new Policy().noNewPrivs().applySync(socketOff);
  assert.equal(d.result, Result.NO_NEW_PRIVS);
  assert.match(d.failures[0]!.message, /without no_new_privs/);
  assert.equal(parsePolicy({ not: { noNewPrivs: true } }).applySync(socketOff).allowed, true);
  assert.throws(() => parsePolicy('noNewPrivs: false'), /noNewPrivs.*must be true/);
});
